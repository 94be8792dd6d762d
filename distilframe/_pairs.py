"""Which (text, vector) rows embed made, so that a column changed since can be told.

pandas carries a frame's ``attrs``, and so the record of the step that made ``<column>_embedding``, through
every copy and edit: after ``df["text"] = other_texts``, ``df["text_embedding"] = other_vectors`` or one edited
cell, the record still says which model made the vectors, but they are no longer the embeddings of their
rows' texts. A step keeps :class:`RowPairs`: 64-bit hashes of the (text, vector) pairs that embed made with
its model and settings in this process. A frame that was filtered, sorted, sliced or concatenated holds
such pairs only; a changed row does not.
"""

from __future__ import annotations

import threading
import weakref
from typing import Sequence

import numpy as np
import pandas as pd

__all__ = ["RowPairs"]

_MIX = np.uint64(0x100000001B3)  # FNV-1a's 64-bit prime: folds the hashes of a row's dimensions into one
_DIMS = 16  # dimensions hashed per vector: a vector of another text differs in every one
_PARTS = 8  # sorted arrays kept before they are merged into one

_LIVE: "weakref.WeakValueDictionary[str, RowPairs]" = weakref.WeakValueDictionary()
_LOCK = threading.Lock()


class RowPairs(str):
    """The hashes of the (text, vector) pairs embed made with one model and its settings, and of the texts it
    gave no vector (a text of no token): one object per process and settings, shared by the records of every
    frame embedded with them (8 bytes a row embedded), kept while one of those frames is.

    A ``str``, the settings' name ("distilframe rows <key>"): the records of two results embedded alike are
    equal, so ``pd.concat`` keeps the record, as it keeps equal ``attrs``; and pandas' and pyarrow's writers,
    which store ``attrs`` as JSON, can write it. Written to a file or pickled (a Dask worker's partition or
    result), it is that name alone, and checks nothing: the check holds within the process that embedded.
    Copied as itself (pandas deep-copies ``attrs`` at every step).

    A vector is told by the bits of its first 16 dimensions: a vector of another text, or one normalised,
    scaled or cast to another precision, differs in all of them; one edited past them is not told."""

    _made: list[np.ndarray]
    _empty: list[np.ndarray]

    @classmethod
    def record(cls, key: str, texts: Sequence[str | None], matrix: np.ndarray, valid: np.ndarray) -> "RowPairs":
        """The process's pairs for the settings ``key``, with the rows of one embed result added: ``texts`` as
        embedded, their vectors, which rows have one."""
        valid = np.asarray(valid, dtype=bool)
        text = _text_hashes(texts)
        has_text = np.array([t is not None for t in texts], dtype=bool)
        made = _unique((text ^ _vector_hashes(matrix))[valid])
        return _joined(f"distilframe rows {key}", made, _unique(text[~valid & has_text]))

    def __deepcopy__(self, memo: dict) -> "RowPairs":
        return self

    def __copy__(self) -> "RowPairs":
        return self

    def __reduce__(self):
        # Pickled (to_pickle, a Dask or multiprocessing worker), it is its name alone, as read from a file:
        # the hashes are the process's for every frame embedded alike, not the frame's, and would travel
        # with every copy (8 MB for a million rows).
        return str, (str(self),)

    def __repr__(self) -> str:
        made, empty = self._sets()
        return f"RowPairs({str(self)!r}: {len(made)} rows with a vector, {len(empty)} texts without)"

    def _sets(self) -> tuple[np.ndarray, np.ndarray]:
        with _LOCK:
            self._made[:] = [_union(self._made)]
            self._empty[:] = [_union(self._empty)]
            return self._made[0], self._empty[0]

    def changed(self, texts: Sequence[str | None], matrix: np.ndarray, has_vector: np.ndarray) -> int:
        """How many rows of ``texts`` (as embedded) and ``matrix`` (their vectors; ``has_vector``: the rows that
        have one) embed did not make: a (text, vector) pair it did not make, or a text without a vector that it
        gave one. A row without text, or blank, is not counted (it matches nothing, whatever its vector)."""
        has_vector = np.asarray(has_vector, dtype=bool)
        has_text = np.array([t is not None for t in texts], dtype=bool)
        text = _text_hashes(texts)
        made, empty = self._sets()  # merged once: later searches look up one array
        bad = _missing((text ^ _vector_hashes(matrix))[has_vector & has_text], made)
        lost = [i for i in np.flatnonzero(has_text & ~has_vector) if texts[i].strip()]  # a blank never has one
        return bad + _missing(text[lost], empty)


def _joined(name: str, made: np.ndarray, empty: np.ndarray) -> RowPairs:
    """The process's :class:`RowPairs` called ``name`` (made if there is none), with ``made`` and ``empty``."""
    with _LOCK:
        pairs = _LIVE.get(name)
        if pairs is None:
            pairs = str.__new__(RowPairs, name)
            pairs._made, pairs._empty = [], []
            _LIVE[name] = pairs
        for kept, added in ((pairs._made, made), (pairs._empty, empty)):
            if len(added):
                kept.append(added)
            if len(kept) > _PARTS:
                kept[:] = [_union(kept)]
        return pairs


def _union(parts: list[np.ndarray]) -> np.ndarray:
    if len(parts) == 1:
        return parts[0]
    return _unique(np.concatenate(parts)) if parts else np.zeros(0, dtype=np.uint64)


def _unique(values: np.ndarray) -> np.ndarray:
    """Sorted and without repeats (np.unique's hash table is 10x slower on a million distinct uint64)."""
    ordered = np.sort(values)
    if len(ordered) < 2:
        return ordered
    return ordered[np.concatenate(([True], ordered[1:] != ordered[:-1]))]


def _missing(values: np.ndarray, known: np.ndarray) -> int:
    """How many of ``values`` are not in the sorted array ``known`` (looked up in order: 3x faster)."""
    if not len(values):
        return 0
    if not len(known):
        return len(values)
    values = np.sort(values)
    return int(np.count_nonzero(known[np.minimum(np.searchsorted(known, values), len(known) - 1)] != values))


def _text_hashes(texts: Sequence[str | None]) -> np.ndarray:
    values = np.array(["" if t is None else t for t in texts], dtype=object)
    # categorize=False: texts are mostly distinct, and factorizing them first costs 8x the hashing
    return pd.util.hash_array(values, categorize=False) if len(values) else np.zeros(0, dtype=np.uint64)


def _vector_hashes(matrix: np.ndarray) -> np.ndarray:
    """One hash per row, of the bits of its first 16 dimensions (FNV-1a over the 32-bit words, then pandas'
    hash of the result)."""
    n, dim = matrix.shape
    if not n or not dim:
        return np.zeros(n, dtype=np.uint64)
    bits = np.ascontiguousarray(matrix[:, :_DIMS], dtype=np.float32).view(np.uint32)  # one cache line a row
    out = np.full(n, 0xCBF29CE484222325, dtype=np.uint64)  # FNV-1a's offset basis
    for j in range(bits.shape[1]):
        out ^= bits[:, j]
        out *= _MIX
    return pd.util.hash_array(out, categorize=False)
