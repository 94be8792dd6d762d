"""The result cache: re-running `embed` over unchanged rows, and over 10% new rows.

    python benchmarks/cache.py [--rows 100000]

A distilbert-base-sized model (random weights), 100,000 distinct sentences (real sentences
with a row number), default settings (precision auto), in a fresh cache. Rows:

1. first run: every row runs the model, and its result is stored;
2. the same rows again: every row comes from the cache;
3. the same rows with 10% of them replaced by new texts: only those run;
4. the first run again with cache=False, for reference.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=100_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="distilframe-cache-") as tmp:
        os.environ["DISTILFRAME_HOME"] = str(Path(tmp) / "home")
        import pandas as pd

        from throughput import base_checkpoint, sentences

        pool = sentences()
        model = base_checkpoint(Path(tmp) / "base", pool)
        texts = pd.Series([f"{pool[i % len(pool)]} (row {i})" for i in range(args.rows)])
        changed = texts.copy()
        step = 10
        changed.iloc[::step] = [f"A new sentence about row {i}, written today." for i in range(0, args.rows, step)]
        texts.iloc[:10].distil.embed(model=model, cache=False, progress=False)  # load and warm the model

        def timed(series, **options):
            t = time.perf_counter()
            series.distil.embed(model=model, progress=False, **options)
            return time.perf_counter() - t

        first = timed(texts)
        again = timed(texts)
        partial = timed(changed)
        no_cache = timed(texts, cache=False)
        from distilframe._result_cache import default_cache

        info = default_cache().info()
        print(f"{args.rows:,} distinct rows, distilbert-base dimensions, precision auto, fresh cache")
        print()
        print("| run | seconds | vs first run |")
        print("| --- | --- | --- |")
        print(f"| first run (computes and stores every row) | {first:.1f} | 1.00x |")
        print(f"| same rows again (all from the cache) | {again:.2f} | {first / again:.0f}x faster |")
        print(f"| 10% new rows | {partial:.1f} | {partial / first:.1%} of the first run |")
        print(f"| first run without the cache | {no_cache:.1f} | storing costs {first / no_cache - 1:+.1%} |")
        print()
        print(f"cache: {info['rows']:,} results, {info['bytes'] / 2**20:,.0f} MB stored, "
              f"{info['disk_bytes'] / 2**20:,.0f} MB on disk")


if __name__ == "__main__":
    main()
