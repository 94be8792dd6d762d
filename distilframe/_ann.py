"""Approximate nearest neighbours for large tables: faiss's inverted file (extra ``ann``: ``pip install
"distilframe[ann]"``, faiss-cpu), over the same unit vectors as the exact search of ``_search``.

The valid rows are split into ``lists`` clusters by k-means (trained on a sample of at most 256 rows per
cluster); a query scores only the rows of the ``probes`` clusters whose centres are nearest to it (the
nearest eighth, at least 4; more until they hold ``k`` rows). The
rows found are then scored exactly from the matrix, so the scores are those of exact search; only rows in
clusters not probed can be missing (recall@10: benchmarks/search.py). An inverted file builds in about the
time of a few exact scans; faiss's HNSW graph was measured too and took 52 s for 20,000 rows of 768 on 2
cores, too slow to build for the tables this is for.
"""

from __future__ import annotations

import numpy as np

__all__ = ["InvertedFile"]

SAMPLE_PER_LIST = 256  # k-means training rows per cluster at most
PIECE = 65_536  # rows added at once: no copy of the whole matrix
MIN_PROBES = 4  # clusters probed at least: the nearest eighth of a small table's few is one or two


def _faiss():
    try:
        import faiss
    except ImportError as e:
        raise ImportError('Approximate search needs faiss: pip install "distilframe[ann]" (faiss-cpu), or use '
                          "approximate=False (exact).") from e
    return faiss


class InvertedFile:
    """An inverted file of the valid unit rows of ``matrix`` (inner product = cosine)."""

    def __init__(self, matrix: np.ndarray, valid: np.ndarray, *, threads: int | None = None, seed: int = 0) -> None:
        faiss = _faiss()
        if threads:
            faiss.omp_set_num_threads(int(threads))
        self.matrix = matrix
        self.rows = np.flatnonzero(np.asarray(valid, dtype=bool))
        n, dim = len(self.rows), matrix.shape[1]
        # about 4 sqrt(n) clusters, with at least 39 training rows each (faiss's own minimum)
        self.lists = max(1, min(int(4 * np.sqrt(n)), n // 39))
        self.probes = min(self.lists, max(MIN_PROBES, self.lists // 8))
        if self.lists == 1:  # under 78 rows: one cluster is a flat index, with no k-means to train (faiss warned)
            self.index = faiss.IndexFlatIP(dim)
            self.index.add(np.ascontiguousarray(matrix[self.rows], dtype=np.float32))
            return
        self.index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, self.lists, faiss.METRIC_INNER_PRODUCT)
        if n:
            rng = np.random.default_rng(seed)
            sample = np.sort(rng.choice(n, size=min(n, SAMPLE_PER_LIST * self.lists), replace=False))
            self.index.train(np.ascontiguousarray(matrix[self.rows[sample]], dtype=np.float32))
            for start in range(0, n, PIECE):
                self.index.add(np.ascontiguousarray(matrix[self.rows[start:start + PIECE]], dtype=np.float32))

    def _search(self, queries: np.ndarray, k: int, probes: int) -> np.ndarray:
        """faiss's row positions; the probes are this call's (not the index's nprobe, which another thread's
        search would share)."""
        if self.lists == 1:
            return self.index.search(queries, k)[1]
        return self.index.search(queries, k, params=_faiss().SearchParametersIVF(nprobe=int(probes)))[1]

    def top_k(self, queries: np.ndarray, k: int, probes: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(row numbers, exact cosines) of about the ``k`` best rows per query, best first, ties by row number:
        ``min(k, rows)`` of them, as exact search gives (more clusters are probed where the first hold fewer)."""
        k = min(int(k), len(self.rows))
        if k == 0:
            return np.empty((len(queries), 0), dtype=np.int64), np.empty((len(queries), 0), dtype=np.float32)
        queries32 = np.ascontiguousarray(queries, dtype=np.float32)
        probes = min(self.lists, int(probes or self.probes))
        found = self._search(queries32, k, probes)
        # A query whose probed clusters hold fewer than k rows probes twice as many, until k are found (as
        # many rows as exact search gives), or every cluster is probed.
        short = np.flatnonzero((found < 0).any(axis=1))
        while len(short) and probes < self.lists:
            probes = min(self.lists, 2 * probes)
            found[short] = self._search(queries32[short], k, probes)
            short = short[(found[short] < 0).any(axis=1)]
        rows = np.where(found >= 0, self.rows[np.maximum(found, 0)], -1)
        picked = self.matrix[np.maximum(rows, 0)].astype(np.float64)  # as _search: exact in float64, 6 decimals
        scores = np.round(np.einsum("qd,qkd->qk", np.asarray(queries, dtype=np.float64), picked), 6)
        scores[rows < 0] = -np.inf
        order = np.lexsort((rows, -scores), axis=1)
        return np.take_along_axis(rows, order, axis=1), np.take_along_axis(scores, order, axis=1)
