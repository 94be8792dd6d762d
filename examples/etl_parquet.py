"""An ETL step: embed a text column of a Parquet file into a new Parquet file, resumably.

    python examples/etl_parquet.py INPUT.parquet OUTPUT.parquet [--column review] [--keep id product]
                                   [--model distilbert-base-uncased] [--resume]

Without arguments it embeds examples/reviews.csv (written to examples/output/reviews.parquet
first) into examples/output/reviews_etl.parquet. The job streams the input in chunks (memory stays
flat), writes the output atomically, and after a crash or Ctrl-C continues where it stopped
with --resume (without it, an existing OUTPUT is replaced). A job scheduler reads the exit status: 0 done, 2 bad input (one line on
stderr), 130 interrupted. The same job from a shell: `distilframe embed INPUT OUTPUT --column ...`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

import distilframe
from distilframe.files import read_metadata

HERE = Path(__file__).resolve().parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("input", nargs="?", type=Path)
    parser.add_argument("output", nargs="?", default=HERE / "output" / "reviews_etl.parquet", type=Path)
    parser.add_argument("--column", default="review")
    parser.add_argument("--keep", nargs="*", default=None, help="input columns to copy (default: all)")
    parser.add_argument("--model", default="distilbert-base-uncased")
    parser.add_argument("--resume", action="store_true", help="continue an interrupted run")
    args = parser.parse_args(argv)

    if args.input is None:  # the demo: the example CSV as a Parquet file
        args.input = HERE / "output" / "reviews.parquet"
        args.input.parent.mkdir(parents=True, exist_ok=True)
        pd.read_csv(HERE / "reviews.csv").to_parquet(args.input, index=False)

    try:
        done = distilframe.embed_file(args.input, args.output, column=args.column, keep=args.keep,
                                      model=args.model, resume=args.resume, overwrite=not args.resume)
    except (distilframe.DistilFrameError, ValueError, OSError) as e:
        print(f"etl_parquet: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("etl_parquet: interrupted; run again with --resume to continue.", file=sys.stderr)
        return 130

    meta = read_metadata(done.output)
    if done.already_complete:  # --resume after this same job had finished
        print(f"{done.output} is already complete ({done.rows} rows): nothing to do.")
    else:
        print(f"Wrote {done.rows} rows to {done.output} in {done.seconds:.1f} s "
              f"({done.chunks} chunks, {done.resumed_chunks} resumed).")
    print(f"model={meta['model']} dim={meta['dim']} pooling={meta['pooling']} "
          f"checkpoint_hash={meta['checkpoint_hash']} columns={meta['columns']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
