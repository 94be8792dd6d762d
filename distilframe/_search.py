"""Exact nearest neighbours, near-duplicate groups and label similarity over an embedding matrix (numpy only).

Everything here is blocked, so that memory stays bounded whatever the number of rows:

* :func:`top_k`: the k rows most similar to each query. The corpus is read ``block`` rows at a time;
  each block's scores (queries x block, float32) are cut to their k best with ``np.argpartition`` and
  merged into the running k best. Memory beyond the matrix: queries x block x 4 bytes (100 queries x
  65,536 rows: 26 MB) and queries x 2k candidates.
* :func:`duplicate_groups`: groups formed in row order (first fit): a row joins the first earlier group
  whose first row is at least ``threshold`` similar to it, else it starts a group. Every member is thus
  within ``threshold`` of its group's first row (no chains of ever less similar rows). Compared
  block against block (``block`` x ``block`` scores at a time); exact, O(n^2 d) arithmetic.

Similarity is the dot product of unit vectors (:func:`unit`): cosine. Rows that are not valid (a missing
or empty text) never match: their scores are -inf.
"""

from __future__ import annotations

import numpy as np

__all__ = ["BLOCK", "DUP_BLOCK", "duplicate_groups", "top_k", "unit"]

BLOCK = 65_536  # corpus rows scored at once by top_k
DUP_BLOCK = 2_048  # rows compared at once by duplicate_groups (block x block scores: 16 MB)
TOLERANCE = 1e-6  # a cosine this close below the threshold counts (1.0 for identical vectors can be 0.9999999)


def unit(matrix: np.ndarray, valid: np.ndarray | None = None, *, copy: bool = True) -> np.ndarray:
    """Rows scaled to unit length, float32; a row that is not valid, or of length zero, is all zeros.
    ``copy=False`` scales a float32 matrix in place (no second copy of a large table)."""
    out = np.array(matrix, dtype=np.float32, copy=copy or matrix.dtype != np.float32)
    if valid is not None:
        out[~np.asarray(valid, dtype=bool)] = 0.0
    out = np.nan_to_num(out, nan=0.0, posinf=0.0, neginf=0.0, copy=False)
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    np.divide(out, norms, out=out, where=norms > 0)
    return out


def _exact(rows: np.ndarray, query: np.ndarray) -> np.ndarray:
    """Cosines rounded to 6 decimals, computed in float64: products of float32 values are exact there, so
    the same vectors score the same whatever the matrix shape (float32 products differ in the last bits)."""
    return np.round(rows.astype(np.float64) @ query.astype(np.float64), 6)


def top_k(corpus: np.ndarray, valid: np.ndarray, queries: np.ndarray, k: int,
          block: int = BLOCK) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` valid rows of ``corpus`` most similar to each query: (row numbers, scores), each of shape
    (queries, min(k, valid rows)), best first; ties go to the lower row number.

    ``corpus`` and ``queries`` are unit rows (:func:`unit`); ``valid`` marks the rows that may match.
    Each block is scored in float32; the candidates within 1e-5 of its k-th best score are scored again in
    float64 and rounded to 6 decimals (:func:`_exact`), so results are the same in any block, on any
    partition, and ties are exact.
    """
    valid = np.asarray(valid, dtype=bool)
    k = min(int(k), int(valid.sum()))
    q = len(queries)
    if k == 0 or q == 0:
        return np.empty((q, 0), dtype=np.int64), np.empty((q, 0), dtype=np.float32)
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    best_rows = [np.empty(0, dtype=np.int64) for _ in range(q)]
    best_scores = [np.empty(0, dtype=np.float64) for _ in range(q)]
    for start in range(0, len(corpus), block):
        rows = corpus[start:start + block]
        ok = valid[start:start + block]
        if not ok.any():
            continue
        scores = queries @ rows.T  # (q, block) float32
        scores[:, ~ok] = -np.inf
        m = min(k, int(ok.sum()))
        kth = -np.partition(-scores, m - 1, axis=1)[:, m - 1]
        for i in range(q):
            cand = np.flatnonzero(scores[i] >= kth[i] - 1e-5)
            cand = cand[ok[cand]]
            merged_rows = np.concatenate([best_rows[i], cand + start])
            merged = np.concatenate([best_scores[i], _exact(rows[cand], queries[i])])
            order = np.lexsort((merged_rows, -merged))[:k]
            best_rows[i], best_scores[i] = merged_rows[order], merged[order]
    return np.stack(best_rows), np.stack(best_scores).astype(np.float32)


def duplicate_groups(matrix: np.ndarray, valid: np.ndarray, threshold: float,
                     block: int = DUP_BLOCK) -> tuple[np.ndarray, np.ndarray]:
    """Near-duplicate groups of the unit rows of ``matrix``, in row order (first fit, module docstring).

    Returns (leader, score): for each row, the row number of its group's first row (-1 for a row in no
    group of two or more, and for rows that are not valid), and its cosine to that first row (NaN
    where leader is -1; 1.0 for the first row itself).
    """
    valid = np.asarray(valid, dtype=bool)
    n = len(matrix)
    leader = np.full(n, -1, dtype=np.int64)
    score = np.full(n, np.nan, dtype=np.float32)
    is_leader = np.zeros(n, dtype=bool)
    bar = np.float32(threshold - TOLERANCE)
    for start in range(0, n, block):
        stop = min(n, start + block)
        rows = matrix[start:stop]
        todo = valid[start:stop].copy()  # rows of this block not placed yet
        # 1. the first earlier group whose first row is similar enough, block by block of earlier rows
        for before in range(0, start, block):
            if not todo.any():
                break
            heads = np.flatnonzero(is_leader[before:min(start, before + block)])
            if len(heads) == 0:
                continue
            scores = rows[todo] @ matrix[before + heads].T  # (todo, heads)
            hit = scores >= bar
            found = hit.any(axis=1)
            if found.any():
                first = hit.argmax(axis=1)[found]
                placed = np.flatnonzero(todo)[found]
                leader[start + placed] = before + heads[first]
                score[start + placed] = scores[found, first]
                todo[placed] = False
        # 2. the rest, in order: each starts a group that later rows of the block may join
        left = np.flatnonzero(todo)
        if len(left):
            scores = rows[left] @ rows[left].T
            free = np.ones(len(left), dtype=bool)
            for i in range(len(left)):
                if not free[i]:
                    continue
                free[i] = False
                head = start + left[i]
                is_leader[head] = True
                join = free & (scores[i] >= bar)
                join[:i] = False
                if join.any():
                    leader[start + left[join]] = head
                    score[start + left[join]] = scores[i, join]
                    free &= ~join
    members = leader >= 0
    leader[is_leader & np.isin(np.arange(n), leader[members])] = -2  # first rows of groups of two or more
    firsts = leader == -2
    leader[firsts] = np.flatnonzero(firsts)
    score[firsts] = 1.0
    return leader, score
