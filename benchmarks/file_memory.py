"""Peak memory of `distilframe embed` on large Parquet files, distilbert-base dimensions.

    python benchmarks/file_memory.py [--rows 1000000]

Each row runs the real command (`python -m distilframe embed IN OUT --column text`) in a child
process and reports that process's peak resident memory (getrusage via wait4).

Embedding a million distinct texts takes hours on 2 cores, so in the large files each
10,000-row chunk repeats 64 distinct real sentences (the executor runs each distinct text
of a chunk once). The model still runs on every chunk, and everything else is full size:
reading a million rows, a million 768-float embeddings (3 GB) through the parts and into
the final file. The last row embeds 5,000 all-distinct sentences: the model's own peak with
full batches. Memory is flat when the peak does not grow with the number of rows.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

from throughput import base_checkpoint, sentences  # noqa: E402

CHUNK_ROWS = 10_000


def make_input(path: Path, rows: int, distinct_per_chunk: int | None) -> None:
    pool = sentences()
    writer = None
    for start in range(0, rows, 100_000):
        n = min(100_000, rows - start)
        index = range(start, start + n)
        if distinct_per_chunk is None:
            texts = [f"{pool[i % len(pool)]} (row {i})" for i in index]
        else:
            texts = [pool[((i // CHUNK_ROWS) * 7 + i % distinct_per_chunk) % len(pool)] for i in index]
        table = pa.table({"id": pa.array(index, pa.int64()), "text": texts})
        writer = writer or pq.ParquetWriter(path, table.schema)
        writer.write_table(table)
    writer.close()


def run(input_path: Path, output: Path, model: Path) -> tuple[float, float]:
    """Seconds and peak RSS (MB) of one `distilframe embed` child process."""
    start = time.perf_counter()
    child = subprocess.Popen([sys.executable, "-m", "distilframe", "embed", str(input_path), str(output),
                              "--column", "text", "--keep", "id", "--model", str(model), "--quiet"],
                             stderr=subprocess.PIPE)
    _, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - start
    if status != 0:
        raise SystemExit(f"distilframe embed failed: {child.stderr.read().decode()}")
    return seconds, usage.ru_maxrss / 1024  # ru_maxrss is in KiB on Linux


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="distilframe-mem-", dir=os.environ.get("TMPDIR")) as tmp:
        tmp = Path(tmp)
        model = base_checkpoint(tmp / "base", sentences())
        cases = [("100,000 rows, 64 distinct per chunk", 100_000, 64),
                 (f"{args.rows:,} rows, 64 distinct per chunk", args.rows, 64),
                 ("5,000 rows, all distinct", 5_000, None)]
        print(f"| {'input':<40} | {'seconds':>7} | {'rows/s':>8} | {'peak RSS':>9} | {'output':>8} |")
        print(f"|{'-' * 42}|{'-' * 9}|{'-' * 10}|{'-' * 11}|{'-' * 10}|")
        for label, rows, distinct in cases:
            source, out = tmp / "in.parquet", tmp / "out.parquet"
            make_input(source, rows, distinct)
            seconds, peak = run(source, out, model)
            size = out.stat().st_size / 2**30
            print(f"| {label:<40} | {seconds:>7.1f} | {rows / seconds:>8,.0f} | {peak:>6,.0f} MB | {size:>5.2f} GB |",
                  flush=True)
            source.unlink()
            out.unlink()


if __name__ == "__main__":
    main()
