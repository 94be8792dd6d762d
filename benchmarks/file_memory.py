"""Resident memory of `distilframe embed` over large Parquet files of distinct texts, chunk by chunk.

    python benchmarks/file_memory.py [--rows 1000000] [--base-rows 30000]

Each row of the table runs the real command (`python -m distilframe embed IN OUT --column text --keep id`)
in a child process. Every text is distinct (a sentence of benchmarks/sentences.txt and its row number), so
every chunk runs the model on all of its rows, batches come in all the shapes a real job gives, and the
result cache stores every row. The parent samples the child's resident memory (VmRSS) five times a second
and reads it off as each 10,000-row chunk lands in the parts folder; the last column is the peak
(getrusage via wait4). Memory levels off when the chunks after the third add nothing that keeps growing.

Rows:
* distilbert-base dimensions (768 wide, 6 layers), with Paddle's own oneDNN shape cache, as before
  `_engine.SHAPE_CACHE` (the child turns `Config.set_mkldnn_cache_capacity` into a no-op);
* the same input with distilframe's shape cache (the default);
* a million distinct rows through a narrow model (128 wide, 2 layers), so that the run takes minutes,
  not hours, on 2 cores: reading, tokenizing, the result cache, the parts and the final file are full size.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import pyarrow as pa
import pyarrow.parquet as pq
from throughput import BASE, cpu_flags, sentences, train_vocab

from distilframe.testing import write_checkpoint

CHUNK_ROWS = 10_000  # the command's default chunk
SMALL = {"hidden": 128, "layers": 2, "heads": 2, "ffn": 512, "positions": 512}
BEFORE = ("import sys, paddle.inference\n"
          "paddle.inference.Config.set_mkldnn_cache_capacity = lambda self, n: None\n"
          "from distilframe.cli import main\nsys.exit(main())\n")


def make_input(path: Path, rows: int) -> None:
    pool = sentences()
    writer = None
    for start in range(0, rows, 100_000):
        index = range(start, min(rows, start + 100_000))
        texts = [f"{pool[i % len(pool)]} (row {i})" for i in index]
        table = pa.table({"id": pa.array(index, pa.int64()), "text": texts})
        writer = writer or pq.ParquetWriter(path, table.schema)
        writer.write_table(table)
    writer.close()


def rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def run(input_path: Path, output: Path, model: Path, before: bool,
        home: Path) -> tuple[float, dict[int, float], float]:
    """Seconds, RSS (MB) as each chunk was finished, and peak RSS (MB) of one `distilframe embed` child."""
    head = ["-c", BEFORE] if before else ["-m", "distilframe"]
    env = dict(os.environ, DISTILFRAME_HOME=str(home))  # a fresh home each: an empty result cache
    start = time.perf_counter()
    child = subprocess.Popen([sys.executable, *head, "embed", str(input_path), str(output), "--column", "text",
                              "--keep", "id", "--model", str(model), "--quiet"], stderr=subprocess.PIPE, env=env)
    parts = Path(f"{output}.distilframe-parts")
    at_chunk: dict[int, float] = {}
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            now = rss_mb(child.pid)
            try:
                finished = sum(1 for p in parts.iterdir() if p.suffix == ".parquet")
            except OSError:
                finished = 0
            if now is not None and finished and finished not in at_chunk:
                at_chunk[finished] = now
            done.wait(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    _, status, usage = os.wait4(child.pid, 0)
    done.set()
    sampler.join()
    seconds = time.perf_counter() - start
    if status != 0:
        raise SystemExit(f"distilframe embed failed: {child.stderr.read().decode()}")
    return seconds, at_chunk, usage.ru_maxrss / 1024  # ru_maxrss is in KiB on Linux


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows of the narrow model's run")
    parser.add_argument("--base-rows", type=int, default=30_000, help="rows of the distilbert-base runs")
    args = parser.parse_args()
    print(f"CPU: {cpu_flags()}; {os.cpu_count()} cores")
    with tempfile.TemporaryDirectory(prefix="distilframe-mem-", dir=os.environ.get("TMPDIR")) as tmp:
        tmp = Path(tmp)
        vocab = train_vocab(sentences())
        base = write_checkpoint(tmp / "base", seed=0, vocab=vocab, weight_std=0.02, **BASE)
        small = write_checkpoint(tmp / "small", seed=0, vocab=vocab, weight_std=0.02, **SMALL)
        cases = [(f"base, {args.base_rows:,} rows, Paddle's shape cache", base, args.base_rows, True),
                 (f"base, {args.base_rows:,} rows, distilframe", base, args.base_rows, False),
                 (f"128 wide, {args.rows:,} rows, distilframe", small, args.rows, False)]
        print("RSS in MB after the chunks of 10,000 rows; 'growth' is from the 3rd chunk to the last.\n")
        print(f"| {'input (all texts distinct)':<44} | {'rows/s':>6} | {'1st':>5} | {'2nd':>5} | {'3rd':>5} "
              f"| {'half':>5} | {'last':>5} | {'growth':>6} | {'peak':>5} |")
        print(f"|{'-' * 46}|{'-' * 8}|" + "|".join("-" * 7 for _ in range(5)) + f"|{'-' * 8}|{'-' * 7}|")
        for number, (label, model, rows, before) in enumerate(cases):
            source, out = tmp / "in.parquet", tmp / "out.parquet"
            make_input(source, rows)
            seconds, at, peak = run(source, out, model, before, tmp / f"home{number}")
            n = -(-rows // CHUNK_ROWS)
            last = max(at, default=0)  # the parts folder may be gone before the last one is seen
            pick = [at.get(k) for k in (1, 2, 3, min(last, max(1, n // 2)), last)]
            cells = " | ".join(f"{v:>5,.0f}" if v else f"{'-':>5}" for v in pick)
            growth = f"{pick[4] - pick[2]:>+6,.0f}" if pick[2] and pick[4] else f"{'-':>6}"
            print(f"| {label:<44} | {rows / seconds:>6,.0f} | {cells} | {growth} | {peak:>5,.0f} |", flush=True)
            source.unlink()
            out.unlink()


if __name__ == "__main__":
    main()
