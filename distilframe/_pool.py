"""Pooling, window combining, normalisation and softmax: pure numpy, float32 in and out."""

from __future__ import annotations

import numpy as np

from ._options import POOLINGS

POOLING_ORDER = ("cls", "max", "mean", "mean_sqrt_len_tokens", "weightedmean", "lasttoken")  # as concatenated

__all__ = ["POOLINGS", "POOLING_ORDER", "combine", "first_tokens", "l2_normalize", "near_ties", "pool", "pool_packed",
           "sigmoid", "softmax"]


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
    raise ValueError(f"Got pooling={method!r} but expected one of 'mean', 'cls' (pool_packed computes the other "
                     "modes).")


def _sequences(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The flat indices of ``mask``'s tokens, row by row (each sequence's tokens are contiguous in its row), and
    where in them each sequence starts."""
    flat_mask = mask.reshape(-1)
    tokens = np.flatnonzero(flat_mask)  # row-major: sequences come out row by row, in number order
    sequence = (tokens // mask.shape[1]) * (int(flat_mask.max(initial=0)) + 1) + flat_mask[tokens]  # row, number
    return tokens, np.flatnonzero(np.r_[True, sequence[1:] != sequence[:-1]]) if len(tokens) else tokens


def first_tokens(mask: np.ndarray) -> np.ndarray:
    """Each packed sequence's first token, as an index into ``mask.reshape(-1)``, in :func:`pool_packed`'s order
    (row by row, in number order).

    >>> first_tokens(np.array([[1, 1, 2, 0], [0, 1, 1, 1]]))
    array([0, 2, 5])
    """
    tokens, starts = _sequences(np.asarray(mask))
    return tokens[starts].astype(np.int64)


def pool_packed(hidden: np.ndarray, mask: np.ndarray, method: str, skip_first: int = 0) -> np.ndarray:
    """Pool the sequences packed in rows: ``mask`` numbers each row's sequences 1, 2, ... (0: padding);
    one vector per sequence, row by row, in number order; as :func:`pool` does for a row of its own.

    ``method`` is one mode or several joined by ``+`` (concatenated in sentence-transformers' order:
    cls, max, mean, mean_sqrt_len_tokens, weightedmean, lasttoken), computed as sentence-transformers'
    Pooling module does, per sequence: ``max`` over tokens (-1e9 where none is left), ``mean`` and
    ``mean_sqrt_len_tokens`` (sum over count and over its square root), ``weightedmean`` (token i of a
    sequence weighs i + 1), ``lasttoken`` (the last token; zero if none is left). ``skip_first`` tokens of
    each sequence (a prompt with its [CLS], when the model's pooling excludes it) take part in none but cls.

    Examples
    --------
    >>> h = np.arange(8, dtype=np.float32).reshape(1, 4, 2); m = np.array([[1, 1, 2, 0]])
    >>> pool_packed(h, m, "mean")
    array([[1., 2.],
           [4., 5.]], dtype=float32)
    >>> pool_packed(h, m, "cls+max")
    array([[0., 1., 2., 3.],
           [4., 5., 4., 5.]], dtype=float32)
    """
    modes = method.split("+")
    if not modes or any(m not in POOLINGS for m in modes):
        raise ValueError(f"Got pooling={method!r} but expected one of {', '.join(map(repr, POOLINGS))} "
                         "(or several joined by '+').")
    tokens, starts = _sequences(mask)
    counts = np.diff(np.r_[starts, len(tokens)])
    position = np.arange(len(tokens)) - np.repeat(starts, counts)  # within its sequence, from 0
    flat = hidden.reshape(-1, hidden.shape[-1])[tokens].astype(np.float32, copy=False)
    keep = (position >= skip_first).astype(np.float32)
    kept = np.add.reduceat(keep, starts)
    out = []
    for mode in (m for m in POOLING_ORDER if m in modes):
        if mode == "cls":
            out.append(flat[starts])
        elif mode == "max":
            out.append(np.maximum.reduceat(np.where(keep[:, None] > 0, flat, np.float32(-1e9)), starts, axis=0))
        elif mode in ("mean", "mean_sqrt_len_tokens"):
            sums = np.add.reduceat(flat * keep[:, None], starts, axis=0)
            n = np.maximum(kept, 1e-9)[:, None]
            out.append(sums / (n if mode == "mean" else np.sqrt(n)))
        elif mode == "weightedmean":
            weights = keep * (position + 1)
            sums = np.add.reduceat(flat * weights[:, None], starts, axis=0)
            out.append(sums / np.maximum(np.add.reduceat(weights, starts), 1e-9)[:, None])
        else:  # lasttoken
            last = flat[starts + counts - 1] * (kept > 0)[:, None]
            out.append(last)
    return np.ascontiguousarray(np.concatenate(out, axis=1), dtype=np.float32)


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
    run = ~np.isnan(items).any(axis=1)
    return _group_mean(items[run].astype(np.float64), owner[run], n_texts,
                       None if weights is None else np.asarray(weights, dtype=np.float64)[run]).astype(np.float32)


def near_ties(logits: np.ndarray, owner: np.ndarray, n_texts: int, margin: float, *, sigmoid: bool) -> np.ndarray:
    """Texts whose labels the model's ``logits`` (one row per input; ``owner[j]`` is input j's text) decide by
    less than ``margin`` in logits, judged on what labels them:

    * the highest score: the top two logits closer than ``margin`` (softmax log-probabilities, and sigmoid
      log-odds, differ as the logits do);
    * sigmoid heads (multi-label, single output) also say yes or no to each label at 0.5: a logit within
      ``margin`` of 0.

    A text read in windows is judged on the mean of its windows' probabilities (what labels it), in float64:
    their log-probabilities or log-odds. Logits are used as they are, so that scores float32 rounds to 1
    (sigmoids of logits above about 17) are judged too; a mean that even float64 cannot tell apart counts as
    a tie. A text without a result (NaN in its rows) is never one.

    Examples
    --------
    >>> near_ties(np.array([[2.0, 1.5, -3.0], [4.0, 1.0, 0.0]], np.float32), np.arange(2), 2, 1.0, sigmoid=False)
    array([ True, False])
    """
    z = logits.astype(np.float64)
    if not len(z) or not margin or not z.shape[1]:
        return np.zeros(n_texts, dtype=bool)
    ran = ~np.isnan(z).any(axis=1)  # inputs with a result
    per_text = np.full((n_texts, z.shape[1]), np.nan)
    single = ran & (np.bincount(owner, minlength=n_texts)[owner] == 1)
    per_text[owner[single]] = z[single]
    chunked = ran & ~single
    if chunked.any():  # windows: the mean of their probabilities, back in logit units
        texts = np.unique(owner[chunked])
        if sigmoid:  # the means of p and of 1 - p, each computed stably: their log ratio is the log-odds
            yes, no = (_group_mean(_sigmoid64(s * z[chunked]), owner[chunked], n_texts)[texts] for s in (1.0, -1.0))
            with np.errstate(divide="ignore", invalid="ignore"):
                per_text[texts] = np.log(yes) - np.log(no)
        else:
            with np.errstate(divide="ignore"):
                per_text[texts] = np.log(_group_mean(_softmax64(z[chunked]), owner[chunked], n_texts)[texts])
    run = ~np.isnan(per_text).any(axis=1)
    gap = np.full(n_texts, np.inf)
    with np.errstate(invalid="ignore"):
        if z.shape[1] >= 2:
            top = np.sort(per_text[run], axis=1)[:, -2:]
            gap[run] = np.nan_to_num(top[:, 1] - top[:, 0], nan=0.0)  # inf - inf: beyond float64, a tie
        if sigmoid:
            gap[run] = np.minimum(gap[run], np.abs(per_text[run]).min(axis=1))
    return gap < margin


def _group_mean(values: np.ndarray, owner: np.ndarray, n_texts: int, weights: np.ndarray | None = None) -> np.ndarray:
    """float64 (n_texts, d): the (weighted) mean of each text's rows of ``values``; NaN for a text with none."""
    w = np.ones(len(owner)) if weights is None else weights
    total = np.zeros((n_texts, values.shape[1]))
    np.add.at(total, owner, values * w[:, None])
    norm = np.zeros(n_texts)
    np.add.at(norm, owner, w)
    with np.errstate(invalid="ignore", divide="ignore"):
        return total / norm[:, None]  # 0/0: NaN


def _softmax64(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _sigmoid64(z: np.ndarray) -> np.ndarray:
    """1 / (1 + exp(-z)) without overflow, and without rounding 1 - p to 0 (use -z for 1 - p)."""
    return np.exp(-np.logaddexp(0.0, -z))


def l2_normalize(x: np.ndarray) -> np.ndarray:
    """Scale each row to unit length (a zero row stays zero)."""
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.maximum(norms, 1e-12)).astype(np.float32)


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax, computed stably in float64 and returned as float32."""
    return _softmax64(logits.astype(np.float64)).astype(np.float32)


def sigmoid(logits: np.ndarray) -> np.ndarray:
    """Element-wise logistic function (multi-label and single-output heads), computed in float64, float32."""
    return _sigmoid64(logits.astype(np.float64)).astype(np.float32)
