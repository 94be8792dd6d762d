"""From texts to model batches and back: dedupe, length-sorted packing into token-budget batches,
and the one padding rule.

    texts ─► dedupe (codes, unique texts) ─► ... ─► plan(lengths): rows of inputs, batches of rows
                                                 ─► pad(batch): ids and a mask that numbers the inputs
    unique results ─► expand(codes) ─► one row per text, in input order

One batcher serves both tasks. When embedding, short inputs share rows of ``PACK_WIDTH`` tokens (the
engine's ``pack_width``: ``INT8_PACK_WIDTH`` in int8),
each attending only to itself (the engine's mask numbers them): on the 512-sentence benchmark
(median 16 tokens) one text per row left 23% of the computed tokens as padding; packed rows of
128, about 1%. Classification keeps one input per row where the engine's head reads the row's first token
(Paddle's exported graphs), and packs too where it reads each sequence's (``packs_logits``: int8).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

__all__ = ["DEFAULT_BATCH_SIZE", "DEFAULT_CHUNK_SIZE", "DEFAULT_TOKEN_BUDGET", "EMPTY", "INT8_PACK_WIDTH",
           "INT8_TOKEN_BUDGET", "NULL", "PACK_WIDTH", "PAD_MULTIPLE", "Unique", "dedupe", "expand", "pad", "plan",
           "round_up"]

# Measured on 2 cores with a distilbert-base-sized model (benchmarks/throughput.py): batches of
# ~2k padded tokens run fastest; 8k-token batches were ~45% slower (activations leave the cache).
DEFAULT_BATCH_SIZE = 64  # rows per batch at most
DEFAULT_TOKEN_BUDGET = 2048  # padded tokens per batch at most (one long text may exceed it alone)
# The int8 engine's default (``token_budget`` of ONNX Runtime's engine): its per-token activations stay in
# cache. Over the 512 benchmark sentences, 512 tokens ran 1.11-1.25x faster than 2,048 at distilbert-base size
# and 1.15x on all-MiniLM-L6-v2, 384-768 alike (VNNI/bf16 EPYC, 2 cores); Paddle's fp32 and bf16 gained no
# more than the noise (README, Performance).
INT8_TOKEN_BUDGET = 512
DEFAULT_CHUNK_SIZE = 4096  # distinct texts tokenized and sorted together
PAD_MULTIPLE = 8  # padded lengths are rounded up to this, so the engine sees few distinct shapes
# Tokens per packed row: texts up to this long share rows; a longer one opens a row of its own length
# (which shorter ones may fill). Attention costs grow with the row: at 128 they add ~3% to the
# matrix products of distilbert-base, against ~23% of padding without packing (benchmark above).
PACK_WIDTH = 128
# The int8 engine's (``pack_width`` of ONNX Runtime's engine): its integer GEMMs are 3-4x faster than fp32's, so
# the attention a token pays over the whole packed row (masked, but computed) weighs more. Over the 512 benchmark
# sentences (best of 3 rounds, widths in turn, Intel Xeon with AMX, 2 cores): at distilbert-base size 32, 48 and
# 64 ran 485, 480 and 470 sentences/s against 407 at 128 (432 unpacked); on all-MiniLM-L6-v2 873, 870 and 809
# against 640 (790). 48 sits within the noise of 32 and 64 (measured on that CPU only). Paddle's fp32 and bf16
# keep 128: there 64 ran 0.95x and 0.87x of it.
INT8_PACK_WIDTH = 48
NULL, EMPTY = -1, -2  # codes of rows without a result: a missing value, a text with no token


@dataclass
class Unique:
    """The distinct texts of an input and, per input row, the index of its text (or NULL / EMPTY)."""

    codes: np.ndarray
    texts: list[str]


def dedupe(texts: Sequence[str | None]) -> Unique:
    """Distinct non-blank texts in first-seen order; None is NULL, a blank string EMPTY."""
    codes = np.full(len(texts), NULL, dtype=np.int64)
    uniques: list[str] = []
    seen: dict[str, int] = {}
    for i, text in enumerate(texts):
        if text is None:
            continue
        if not text.strip():
            codes[i] = EMPTY
            continue
        code = seen.get(text)
        if code is None:
            code = seen[text] = len(uniques)
            uniques.append(text)
        codes[i] = code
    return Unique(codes=codes, texts=uniques)


def expand(unique: Unique, values: np.ndarray, runs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(codes, values per input row): a distinct text that did not run (``runs`` False) becomes EMPTY,
    and the rows without a result are NaN. No copy when every row is its own distinct text."""
    codes = unique.codes.copy()
    known = codes >= 0
    codes[known] = np.where(runs[codes[known]], codes[known], EMPTY)
    valid = codes >= 0
    n = len(codes)
    if n == len(unique.texts) and valid.all() and np.array_equal(codes, np.arange(n)):
        return codes, values
    out = np.full((n, values.shape[1]), np.nan, dtype=np.float32)
    out[valid] = values[codes[valid]]
    return codes, out


def round_up(length: int) -> int:
    """``length`` rounded up to a multiple of PAD_MULTIPLE."""
    return int(math.ceil(length / PAD_MULTIPLE) * PAD_MULTIPLE)


def plan(lengths: np.ndarray, *, pack: bool, batch_size: int, token_budget: int,
         skip: np.ndarray | None = None, pack_width: int = PACK_WIDTH) -> list[list[list[int]]]:
    """Batches of rows of inputs (by index into ``lengths``): each batch at most ``batch_size`` rows and
    ``token_budget`` tokens (padded to its fullest row), every input but ``skip`` in exactly one row.

    Inputs go longest first. With ``pack``, best fit decreasing: each input goes to the row with the least
    room that still fits it; a new row holds ``pack_width`` tokens, or the input's own length rounded up if
    longer. Without, each input has a row of its own.
    """
    order = np.argsort(-lengths, kind="stable")
    if skip is not None and len(skip):
        order = order[~np.isin(order, skip)]
    if pack:
        rows, fill = _best_fit(lengths, order, min(pack_width, token_budget))
    else:
        rows, fill = [[i] for i in order.tolist()], lengths[order].tolist()
    batches: list[list[list[int]]] = []
    start = 0
    while start < len(rows):  # rows were opened longest input first: their widths do not grow
        width = round_up(fill[start])
        end = start + 1
        while end < len(rows) and end - start < batch_size:
            width = max(width, round_up(fill[end]))
            if (end + 1 - start) * width > token_budget:
                break
            end += 1
        batches.append(rows[start:end])
        start = end
    return batches


def _best_fit(lengths: np.ndarray, order: np.ndarray, width: int) -> tuple[list[list[int]], list[int]]:
    rows: list[list[int]] = []
    fill: list[int] = []
    room: dict[int, list[int]] = {}  # free tokens -> rows with that much room left
    for i in order.tolist():
        n = int(lengths[i])
        free = next((f for f in sorted(room) if f >= n and room[f]), None)
        if free is None:
            row, free = len(rows), max(width, round_up(n))
            rows.append([])
            fill.append(0)
        else:
            row = room[free].pop()
        rows[row].append(i)
        fill[row] += n
        room.setdefault(free - n, []).append(row)
    return rows, fill


def pad(batch: list[list[int]], inputs: Sequence[np.ndarray], pad_id: int,
        max_positions: int) -> tuple[np.ndarray, np.ndarray]:
    """Token ids of one batch, its rows' inputs end to end, and the mask that numbers each row's inputs
    1, 2, ... (0: padding; a row of one input has the usual 0/1 mask).

    The one padding rule: the fullest row, rounded up to a multiple of PAD_MULTIPLE, but never past the
    model's positions when the row fits in them (a one-input row is read with positions 0..width-1; a
    packed row longer than the positions restarts them at each input and is rounded up as any other).
    """
    fills = [sum(len(inputs[i]) for i in row) for row in batch]
    longest = max(fills)
    width = round_up(longest)
    if longest <= max_positions < width:
        width = max_positions
    ids = np.full((len(batch), width), pad_id, dtype=np.int64)
    mask = np.zeros(ids.shape, dtype=np.int64)
    for r, row in enumerate(batch):
        at = 0
        for k, i in enumerate(row, start=1):
            n = len(inputs[i])
            ids[r, at:at + n] = inputs[i]
            mask[r, at:at + n] = k
            at += n
    return ids, mask
