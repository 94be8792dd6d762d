"""Warm calls in a notebook: a few texts per call, each call's input shape different from the one before.

    python benchmarks/warm_calls.py [--calls 30] [--rounds 2]

Paddle's oneDNN kernels keep the state of one input shape (`_engine.SHAPE_CACHE`): a batch in a new shape
makes them reorder every weight again. A batch that fits the shape of the batch before it with at most
`_engine.KEEP_SHAPE_TOKENS` more padded tokens runs in that shape instead. This script times warm calls
through `Series.distil.embed` (distilbert-base dimensions, random weights, `cache=False`, so every call runs
the model) with the rule off (`KEEP_SHAPE_TOKENS = 0`, as before) and on, alternating in rounds in one
process, and prints the median milliseconds per call of each pattern, the ratio, and the largest difference
between the two settings' embeddings. The last row times a job (the 512 benchmark sentences) both ways.

bf16 is timed only where it is native and fast (`_config.fast_bf16`); elsewhere it is skipped with the reason.
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

import numpy as np
from throughput import BASE, cpu_flags, cpu_name, sentences, train_vocab

WORDS = "the quick brown fox jumps over a lazy dog and then runs far away".split() * 2


def patterns(texts: list[str], calls: int) -> dict[str, list[list[str]]]:
    rng = np.random.default_rng(0)
    return {
        "one short text, repeated": [["hello world"]] * calls,
        # engines.py's pattern: 1, 9, 17 and 25 words in turn, each call's padded length unlike the one before
        "1, 9, 17, 25 words in turn": [[" ".join(WORDS[i % 5:i % 5 + 1 + 8 * (i % 4)])] for i in range(calls)],
        "a different sentence each call": [[texts[int(i)]] for i in rng.choice(len(texts), calls, replace=False)],
        "8-24 different sentences each call": [[texts[int(i)] for i in rng.choice(len(texts), int(n), replace=False)]
                                               for n in rng.integers(8, 25, calls)],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=2, help="rounds of (off, on) per pattern")
    parser.add_argument("--keep", type=int, help="padded tokens the rule may add (default: the engine's, "
                        "_engine.KEEP_SHAPE_TOKENS, per precision)")
    args = parser.parse_args()
    if args.keep is not None and args.keep < 1:
        parser.error(f"--keep {args.keep}: the rule off is the other column; give 1 or more")
    with tempfile.TemporaryDirectory(prefix="distilframe-warm-") as tmp:
        tmp = Path(tmp)
        os.environ["DISTILFRAME_HOME"] = str(tmp / "home")
        import pandas as pd

        import distilframe
        from distilframe import _engine
        from distilframe._config import fast_bf16
        from distilframe.testing import write_checkpoint

        texts = sentences()
        model = write_checkpoint(tmp / "base", seed=0, vocab=train_vocab(texts), weight_std=0.02, **BASE)
        print(f"CPU: {cpu_name()}; flags: {cpu_flags()}; {os.cpu_count()} cores\n")
        print(f"The rule on: up to {args.keep if args.keep is not None else _engine.KEEP_SHAPE_TOKENS} more padded "
              "tokens.\n")
        print("| precision | pattern | rule off, ms/call | rule on, ms/call | off / on | max abs diff |")
        print("| --- | --- | --- | --- | --- | --- |")
        for precision in ("fp32", "bf16"):
            if precision == "bf16" and not fast_bf16():
                print("| bf16 | skipped: no fast native bf16 on this CPU (_config.fast_bf16) | | | | |")
                continue

            def embed(batch: list[str]) -> np.ndarray:
                return distilframe.to_numpy(pd.Series(batch).distil.embed(
                    model=str(model), precision=precision, progress=False, cache=False))

            embed(texts[:10])  # load and export
            default = _engine.KEEP_SHAPE_TOKENS[precision]
            chosen = default if args.keep is None else args.keep
            for name, inputs in patterns(texts, args.calls).items():
                times: dict[int, list[float]] = {0: [], chosen: []}
                outputs: dict[int, list[np.ndarray]] = {}
                for _ in range(args.rounds):
                    for keep in times:
                        _engine.KEEP_SHAPE_TOKENS[precision] = keep
                        embed(inputs[-1])  # so the first call's shape differs as the others' do
                        outputs[keep] = []
                        for batch in inputs:
                            start = time.perf_counter()
                            outputs[keep].append(embed(batch))
                            times[keep].append(time.perf_counter() - start)
                off, on = (1000 * float(np.median(t)) for t in times.values())
                diff = max(float(np.abs(a - b).max()) for a, b in zip(*outputs.values()))
                print(f"| {precision} | {name} | {off:.1f} | {on:.1f} | {off / on:.2f}x | {diff:.1e} |", flush=True)
            rates: dict[int, list[float]] = {0: [], chosen: []}
            for _ in range(args.rounds):
                for keep in rates:
                    _engine.KEEP_SHAPE_TOKENS[precision], start = keep, time.perf_counter()
                    embed(texts)
                    rates[keep].append(len(texts) / (time.perf_counter() - start))
            _engine.KEEP_SHAPE_TOKENS[precision] = default
            off, on = (max(r) for r in rates.values())
            print(f"| {precision} | job: 512 sentences, sentences/s (best of {args.rounds}) | {off:.1f} | {on:.1f} "
                  f"| {on / off:.2f}x (on / off) | |", flush=True)


if __name__ == "__main__":
    main()
