"""The first processes to use a Hugging Face checkpoint: the very first (conversion, export, then 10 rows), the
next one, and the one after it, each a new Python process timed from its script's first line to its 10 rows.

    python benchmarks/first_use.py [--rounds 3] [--precision fp32]

A cache folder's manifest records the SHA-256 of the weights it holds; a later process checks them against it
once per file version, and keeps the hashes it computed (``_fs``) only for files that had been still for a while
before they were read. The manifests of a new conversion and a new export are written right after their weights,
so their hashes were not kept, and the next process read 2 x 265 MB again (distilbert-base). Now a manifest
written in a folder this process is staging keeps its hashes at once. This script runs the three processes
both ways, "before" (that rule off, in the child) and "now", alternating in rounds, each round in fresh caches,
and prints the median seconds of each process, the ratio, and how many megabytes each process hashed.
Random distilbert-base-sized weights (Hugging Face layout, written without torch).
"""

from __future__ import annotations

import time

START = time.perf_counter()  # a child's clock starts here, before its imports

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from throughput import BASE, cpu_flags, cpu_name, sentences, train_vocab  # noqa: E402

PROCESSES = ("first use (convert + export)", "next process", "the one after")


def child(folder: Path, precision: str, before: bool) -> None:
    import pandas as pd

    import distilframe
    from distilframe import _fs

    if before:  # as before this change: no folder counts as staged, so no manifest's hashes are kept at once
        class Never(set):
            def add(self, item):
                pass

        _fs._staging = Never()
    hashed = []
    real = _fs._hash_file

    def counting(h, path):
        hashed.append(Path(path).stat().st_size)
        return real(h, path)

    _fs._hash_file = counting
    distilframe.to_numpy(pd.Series(sentences()[:10]).distil.embed(model=folder, precision=precision,
                                                                  progress=False, cache=False))
    print(json.dumps({"seconds": time.perf_counter() - START, "hashed_mb": sum(hashed) / 1e6}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--precision", default="fp32")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--before", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args.child, args.precision, args.before)
    from distilframe.testing import write_hf_checkpoint

    with tempfile.TemporaryDirectory(prefix="distilframe-first-use-") as tmp:
        tmp = Path(tmp)
        folder = write_hf_checkpoint(tmp / "model", seed=0, vocab=train_vocab(sentences()), weight_std=0.02, **BASE)
        times = {(mode, p): [] for mode in ("before", "now") for p in PROCESSES}
        hashed = {}
        for k in range(args.rounds):
            for mode in (("before", "now") if k % 2 == 0 else ("now", "before")):
                env = {**os.environ, "DISTILFRAME_HOME": str(tmp / f"home-{k}-{mode}")}
                for p in PROCESSES:
                    command = [sys.executable, __file__, "--child", str(folder), "--precision", args.precision]
                    out = subprocess.run(command + (["--before"] if mode == "before" else []), env=env,
                                         capture_output=True, text=True, check=True).stdout
                    result = json.loads(out.strip().splitlines()[-1])
                    times[mode, p].append(result["seconds"])
                    hashed[mode, p] = result["hashed_mb"]
            print(f"  round {k + 1} of {args.rounds} done", file=sys.stderr, flush=True)

    def median(values):
        return sorted(values)[len(values) // 2]

    print(f"CPU: {cpu_name()}; flags: {cpu_flags()}; {len(os.sched_getaffinity(0))} cores; precision "
          f"{args.precision}; {args.rounds} rounds, medians (each process timed from its script's first line)")
    print()
    print("| process | before, s | now, s | before / now | MB hashed before | now |")
    print("| --- | --- | --- | --- | --- | --- |")
    for p in PROCESSES:
        b, n = median(times["before", p]), median(times["now", p])
        print(f"| {p} | {b:.2f} | {n:.2f} | {b / n:.2f}x | {hashed['before', p]:.0f} | {hashed['now', p]:.0f} |")


if __name__ == "__main__":
    main()
