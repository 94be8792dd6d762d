"""Pooling, window combining, normalisation and softmax: pure numpy, float32 in and out."""

from __future__ import annotations

import numpy as np

from ._options import POOLINGS

__all__ = ["POOLINGS", "combine", "l2_normalize", "pool", "pool_packed", "sigmoid", "softmax"]


def pool(hidden: np.ndarray, mask: np.ndarray, method: str) -> np.ndarray:
    """Pool token states (batch, length, dim) into one vector per row.

    ``mean`` averages the states of every attended token, [CLS] and [SEP]
    included (as sentence-transformers does); ``cls`` takes the first token.

    Examples
    --------
    >>> h = np.ones((1, 3, 2), np.float32); m = np.array([[1, 1, 0]])
    >>> pool(h, m, "mean")
    array([[1., 1.]], dtype=float32)
    """
    if method == "cls":
        return np.ascontiguousarray(hidden[:, 0, :], dtype=np.float32)
    if method == "mean":
        weights = mask.astype(np.float32)[:, :, None]
        summed = np.einsum("bld,bl->bd", hidden, weights[:, :, 0], dtype=np.float32)
        counts = np.maximum(weights.sum(axis=1), 1.0)
        return (summed / counts).astype(np.float32)
    raise ValueError(f"Got pooling={method!r} but expected one of {', '.join(map(repr, POOLINGS))}.")


def pool_packed(hidden: np.ndarray, mask: np.ndarray, method: str) -> np.ndarray:
    """Pool the sequences packed in rows: ``mask`` numbers each row's sequences 1, 2, ... (0: padding);
    one vector per sequence, row by row, in number order; as :func:`pool` does for a row of its own.

    Examples
    --------
    >>> h = np.arange(8, dtype=np.float32).reshape(1, 4, 2); m = np.array([[1, 1, 2, 0]])
    >>> pool_packed(h, m, "mean")
    array([[1., 2.],
           [4., 5.]], dtype=float32)
    """
    if method not in POOLINGS:
        raise ValueError(f"Got pooling={method!r} but expected one of {', '.join(map(repr, POOLINGS))}.")
    flat_mask = mask.reshape(-1)
    tokens = np.flatnonzero(flat_mask)  # row-major: sequences come out row by row, in number order
    sequence = (tokens // mask.shape[1]) * (int(flat_mask.max()) + 1) + flat_mask[tokens]  # row and number
    starts = np.flatnonzero(np.r_[True, sequence[1:] != sequence[:-1]])
    flat = hidden.reshape(-1, hidden.shape[-1])
    if method == "cls":
        return np.ascontiguousarray(flat[tokens[starts]], dtype=np.float32)
    sums = np.add.reduceat(flat[tokens].astype(np.float32, copy=False), starts, axis=0)
    counts = np.diff(np.r_[starts, len(tokens)]).astype(np.float32)
    return (sums / counts[:, None]).astype(np.float32)


def combine(items: np.ndarray, owner: np.ndarray, n_texts: int, weights: np.ndarray | None = None) -> np.ndarray:
    """One row per text from the rows of its inputs (``owner[j]`` is input j's text): the inputs themselves
    when each text has one, else their weighted mean (``weights``, default equal). Inputs with NaN rows
    (not run) are left out; a text without any keeps a NaN row.

    Examples
    --------
    >>> combine(np.array([[1., 1.], [3., 3.]], np.float32), np.array([0, 0]), 1, np.array([1, 3]))
    array([[2.5, 2.5]], dtype=float32)
    """
    if len(owner) == n_texts:  # one input per text, in order
        return items
    w = np.ones(len(owner), dtype=np.float64) if weights is None else np.asarray(weights, dtype=np.float64)
    run = ~np.isnan(items).any(axis=1)
    total = np.zeros((n_texts, items.shape[1]), dtype=np.float64)
    np.add.at(total, owner[run], items[run].astype(np.float64) * w[run, None])
    norm = np.zeros(n_texts, dtype=np.float64)
    np.add.at(norm, owner[run], w[run])
    with np.errstate(invalid="ignore", divide="ignore"):
        return (total / norm[:, None]).astype(np.float32)  # 0/0: NaN for texts not run


def l2_normalize(x: np.ndarray) -> np.ndarray:
    """Scale each row to unit length (a zero row stays zero)."""
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.maximum(norms, 1e-12)).astype(np.float32)


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax, computed stably in float64 and returned as float32."""
    z = logits.astype(np.float64)
    z -= z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)


def sigmoid(logits: np.ndarray) -> np.ndarray:
    """Element-wise logistic function (multi-label and single-output heads), float32."""
    z = logits.astype(np.float64)
    return (0.5 * (1.0 + np.tanh(0.5 * z))).astype(np.float32)
