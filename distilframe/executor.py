"""Run a model over a list of texts: the one executor behind every entry point.

    texts ─► skip nulls/blanks ─► dedupe ─► per chunk: tokenize ─► sort by token length
          ─► token-budget batches ─► engine ─► pool / normalise / softmax ─► unique results
          ─► expand duplicates back, in input order (NaN rows for null input)

A text with no tokens at all (None, empty, whitespace, or only characters the
tokenizer drops, such as zero-width spaces and control characters) gives a NaN row.

Memory is bounded by the chunk: token ids and hidden states exist for one chunk
(and one batch) at a time; only the float32 results grow with the input.

Texts to embed are packed: several short texts share one model row, each attending
only to itself (the engine's mask numbers them, see engine.py), so that a batch of
short texts is not mostly padding. On the 512-sentence benchmark (median 16 tokens)
one text per row left 23% of the computed tokens as padding; packed rows of 128,
about 1%. Classification keeps one text per row (its head reads each row's first token).

Tokenizing is not overlapped with inference: the Rust tokenizer handles about
50,000 sentences/s, the model about 300/s (bf16, 2 cores), so tokenizing is well
under 1% of a run and a second thread would only add contention.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np

from . import pooling as pooling_mod
from .errors import TruncationWarning, warn
from .tokenize import LONG_TEXT

if TYPE_CHECKING:
    from .cache import ResultCache
    from .manager import LoadedModel

__all__ = ["DEFAULT_BATCH_SIZE", "DEFAULT_CHUNK_SIZE", "DEFAULT_TOKEN_BUDGET", "STATUSES", "Result", "check_options",
           "run"]

# Measured on 2 cores with a distilbert-base-sized model (benchmarks/throughput.py): batches of
# ~2k padded tokens run fastest; 8k-token batches were ~45% slower (activations leave the cache).
DEFAULT_BATCH_SIZE = 64  # rows per batch at most
DEFAULT_TOKEN_BUDGET = 2048  # padded tokens per batch at most (one long text may exceed it alone)
DEFAULT_CHUNK_SIZE = 4096  # distinct texts tokenized and sorted together
AUTO_PROGRESS_MIN_TEXTS = 512  # progress=None shows a bar from this many distinct texts on
PAD_MULTIPLE = 8  # padded lengths are rounded up to this, so the engine sees few distinct shapes
# Tokens per packed row: texts up to this long share rows; a longer one opens a row of its own length
# (which shorter ones may fill). Attention costs grow with the row: at 128 they add ~3% to the
# matrix products of distilbert-base, against ~23% of padding without packing (benchmark above).
PACK_WIDTH = 128
TASKS = ("embed", "classify")


STATUSES = ("ok", "null", "empty", "truncated", "chunked")
_NULL, _EMPTY = -1, -2  # codes of rows without a result


@dataclass
class Result:
    """What the executor returns, row for row with its input.

    ``values`` is (n, dim) embeddings or (n, n_labels) probabilities, float32,
    with NaN rows where there is no result (``valid`` is False there).
    ``n_tokens`` is each text's token count before truncation, [CLS] and [SEP]
    included (0 for empty texts, -1 for missing ones); ``status`` says what
    happened to each row: ok, null, empty, truncated or chunked.
    """

    values: np.ndarray
    valid: np.ndarray
    n_tokens: np.ndarray
    status: np.ndarray
    max_length: int

    @property
    def truncated(self) -> np.ndarray:
        return self.status == "truncated"


def run(
    texts: Sequence[str | None],
    model: "LoadedModel",
    *,
    task: str = "embed",
    pooling: str = "mean",
    normalize: bool = True,
    max_length: int = 512,
    long_text: str = "truncate",
    stride: int = 128,
    batch_size: int | None = None,
    token_budget: int | None = None,
    chunk_size: int | None = None,
    progress: bool | None = None,
    cache: "ResultCache | None" = None,
    on_progress: "Callable[[int, int], None] | None" = None,
    warn_long: bool = True,
) -> Result:
    """Embed or classify ``texts`` with ``model``; results come back in input order.

    Parameters
    ----------
    texts
        Strings, or None for a missing value. None gives status "null"; a string
        with no token (empty, whitespace, only characters the tokenizer drops)
        gives status "empty"; both give a NaN row and ``valid=False``.
    task
        ``"embed"`` (pooled last hidden states) or ``"classify"`` (class probabilities:
        softmax, or sigmoid for multi-label and single-output heads).
    pooling, normalize
        For embed: ``"mean"`` or ``"cls"``, and whether to scale rows to unit length.
    max_length
        Tokens per model input, [CLS] and [SEP] included. Capped at the model's positions.
    long_text, stride
        ``"truncate"``: a longer text keeps its beginning. ``"chunk"``: it is cut into
        windows of ``max_length`` tokens overlapping by ``stride``, each window is run,
        and the row combines them: the token-weighted mean of the windows' pooled
        embeddings (normalised afterwards), or the mean of their class probabilities.
    batch_size, token_budget
        At most ``batch_size`` model rows (several short texts share a row when embedding) and
        ``token_budget`` padded tokens per batch.
    chunk_size
        Distinct texts tokenized and sorted at once (bounds memory).
    progress
        Show a progress bar; None shows one for large inputs in a terminal or a notebook
        (not when stderr goes to a log file).
    cache
        A :class:`~distilframe.cache.ResultCache`: texts it holds for these settings skip the
        model, and new results are stored after each chunk.
    on_progress
        Called as ``on_progress(done, total)`` in distinct texts, at the start and after every
        batch (the notebook panel's progress bar). An exception it raises stops the run there
        and propagates (chunks already finished stay in the cache).
    warn_long
        Warn (TruncationWarning) when texts were truncated; the notebook panel reports them itself.

    Examples
    --------
    >>> from distilframe.manager import get_model
    >>> r = run(["a cat", None, "a cat"], get_model("uncased"))  # doctest: +SKIP
    >>> r.values.shape, r.valid.tolist(), r.status.tolist()  # doctest: +SKIP
    ((3, 768), [True, False, True], ['ok', 'null', 'ok'])
    """
    check_options(task=task, pooling=pooling, max_length=max_length, long_text=long_text, stride=stride,
                  batch_size=batch_size, token_budget=token_budget, chunk_size=chunk_size)
    # A model cannot read past its position table: the limit is the smaller of the two.
    max_length = min(max_length, model.checkpoint.max_positions)
    batch_size = batch_size or DEFAULT_BATCH_SIZE
    token_budget = token_budget or DEFAULT_TOKEN_BUDGET
    chunk_size = chunk_size or DEFAULT_CHUNK_SIZE

    n = len(texts)
    codes = np.full(n, _NULL, dtype=np.int64)
    uniques: list[str] = []
    seen: dict[str, int] = {}
    for i, text in enumerate(texts):
        if text is None:
            continue
        if not text.strip():
            codes[i] = _EMPTY
            continue
        code = seen.get(text)
        if code is None:
            code = seen[text] = len(uniques)
            uniques.append(text)
        codes[i] = code
    del seen

    width = model.dim if task == "embed" else len(model.labels)
    out = np.full((len(uniques), width), np.nan, dtype=np.float32)
    n_tokens = np.zeros(len(uniques), dtype=np.int64)
    todo = np.arange(len(uniques))
    keys: list[bytes] = []
    if cache is not None and uniques:
        keys = cache.keys(_settings(model, task, pooling, normalize, max_length, long_text, stride), uniques)
        looked_up = cache.get(keys, width)  # None when the cache cannot be used: then everything runs
        if looked_up is None:
            cache = None
        else:
            found, values, tokens = looked_up
            out[found], n_tokens[found] = values[found], tokens[found]
            todo = np.flatnonzero(~found)

    show = progress if progress is not None else len(todo) >= AUTO_PROGRESS_MIN_TEXTS and _interactive()
    from tqdm.auto import tqdm

    with _Progress(tqdm(total=len(uniques), initial=len(uniques) - len(todo), disable=not show, unit="text",
                        desc=f"{task} ({model.name})", dynamic_ncols=True), on_progress) as bar:
        for start in range(0, len(todo), chunk_size):
            where = todo[start:start + chunk_size]
            chunk = [uniques[i] for i in where]
            encoded = model.tokenizer.encode(chunk, max_length=max_length, long_text=long_text, stride=stride)
            n_tokens[where] = encoded.n_tokens
            # A text of [CLS] [SEP] and nothing else has no result: it is not run.
            skip = np.flatnonzero(encoded.n_tokens[encoded.owner] <= 2)
            bar.update(int(np.count_nonzero(encoded.n_tokens <= 2)))
            remaining = np.bincount(encoded.owner, minlength=len(chunk))  # windows left per text
            items = np.full((len(encoded.ids), width), np.nan, dtype=np.float32)
            if task == "embed":
                batches = _packed_batches(encoded.lengths, batch_size, token_budget, skip=skip)
            else:
                batches = [[[r] for r in rows] for rows in _batches(encoded.lengths, batch_size, token_budget,
                                                                     skip=skip)]
            for packed in batches:
                rows = np.fromiter((r for row in packed for r in row), dtype=np.int64)
                items[rows] = _forward(model, task, packed, encoded.ids, pooling)
                np.subtract.at(remaining, encoded.owner[rows], 1)
                bar.update(int(np.count_nonzero(remaining[np.unique(encoded.owner[rows])] == 0)))
            # Normalised after windows are combined, so that a chunked row is a unit vector too.
            out[where] = _combine(items, encoded, len(chunk), task, normalize and task == "embed")
            if cache is not None:  # stored chunk by chunk: an interrupted run keeps what it finished
                cache.put([keys[i] for i in where], out[where], n_tokens[where])

    long = int(np.count_nonzero(n_tokens > max_length))
    if long and long_text == "truncate" and warn_long:
        warn(
            f"{long} of {len(uniques)} distinct texts were longer than max_length={max_length} tokens "
            "and were truncated (only their beginning was used). Pass long_text='chunk' to read them whole.",
            TruncationWarning,
        )

    codes[codes >= 0] = np.where(n_tokens[codes[codes >= 0]] <= 2, _EMPTY, codes[codes >= 0])
    valid = codes >= 0
    row_tokens = np.where(codes == _NULL, -1, 0)
    row_tokens[valid] = n_tokens[codes[valid]]
    status = np.where(codes == _NULL, "null", "empty").astype(object)
    status[valid] = np.where(row_tokens[valid] > max_length,
                             "chunked" if long_text == "chunk" else "truncated", "ok")
    if n == len(uniques) and valid.all() and np.array_equal(codes, np.arange(n)):
        values = out  # no duplicates, no nulls: no copy needed
    else:
        values = np.full((n, width), np.nan, dtype=np.float32)
        values[valid] = out[codes[valid]]
    return Result(values=values, valid=valid, n_tokens=row_tokens, status=status, max_length=max_length)


class _Progress:
    """A tqdm bar that also reports to a callback (done, total) after every update."""

    def __init__(self, bar: Any, callback: "Callable[[int, int], None] | None") -> None:
        self._bar = bar
        self._callback = callback
        self._report()

    def update(self, n: int) -> None:
        self._bar.update(n)
        self._report()

    def _report(self) -> None:
        if self._callback is not None:
            self._callback(int(self._bar.n), int(self._bar.total))

    def __enter__(self) -> "_Progress":
        return self

    def __exit__(self, *exc: object) -> None:
        self._bar.close()


def _settings(model: "LoadedModel", task: str, pooling: str, normalize: bool, max_length: int, long_text: str,
              stride: int) -> bytes:
    """What determines a result besides the text: the result cache's key prefix."""
    from . import __version__
    from .cache import settings_key
    from .checkpoints import content_hash

    ckpt = model.checkpoint
    return settings_key(checkpoint=content_hash(ckpt), task=task, distilframe=__version__,
                        engine=type(model.engine).__name__, paddle=getattr(model.engine, "paddle_version", ""),
                        graph=_graph_version(),
                        do_lower_case=ckpt.do_lower_case, strip_accents=ckpt.strip_accents,
                        tokenize_chinese_chars=ckpt.tokenize_chinese_chars, added_tokens=list(ckpt.added_tokens),
                        pooling=pooling if task == "embed" else None,
                        normalize=bool(normalize) if task == "embed" else None, max_length=int(max_length),
                        long_text=long_text, stride=int(stride) if long_text == "chunk" else None,
                        precision=model.precision, multi_label=model.multi_label if task == "classify" else None)


def _graph_version() -> int:
    from .engine import _GRAPH_VERSION

    return _GRAPH_VERSION


def _combine(items: np.ndarray, encoded, n_texts: int, task: str, normalize: bool) -> np.ndarray:
    """One row per text from its inputs (the inputs themselves when each text has one), then,
    if asked, scaled to unit length. A text without a result keeps a NaN row."""
    if len(encoded.owner) == n_texts:  # one input per text, in order
        combined = items
    else:
        owner = encoded.owner
        if task == "embed":
            weights = encoded.lengths.astype(np.float64)  # token-weighted mean of the windows
        else:
            weights = np.ones(len(owner), dtype=np.float64)  # mean of the windows' probabilities
        run = ~np.isnan(items).any(axis=1)
        total = np.zeros((n_texts, items.shape[1]), dtype=np.float64)
        np.add.at(total, owner[run], items[run].astype(np.float64) * weights[run, None])
        norm = np.zeros(n_texts, dtype=np.float64)
        np.add.at(norm, owner[run], weights[run])
        with np.errstate(invalid="ignore", divide="ignore"):
            combined = (total / norm[:, None]).astype(np.float32)  # 0/0: NaN for texts not run
    return pooling_mod.l2_normalize(combined) if normalize else combined


def _forward(model: "LoadedModel", task: str, packed: list[list[int]], inputs: list[np.ndarray],
             pooling: str) -> np.ndarray:
    """Pooled embeddings or class probabilities of one batch, one row per input, in the batch's order
    (row by row, then along each row)."""
    if task == "classify":
        ids, mask = _pad([inputs[row[0]] for row in packed], model.tokenizer.pad_id, model.checkpoint.max_positions)
        logits = model.engine.logits(ids, mask)
        return pooling_mod.sigmoid(logits) if model.multi_label else pooling_mod.softmax(logits)
    ids, mask = _pack(packed, inputs, model.tokenizer.pad_id)
    return pooling_mod.pool_packed(model.engine.hidden_states(ids, mask), mask, pooling)


def _interactive() -> bool:
    """A terminal or a notebook: where a progress bar is read, not logged."""
    import sys

    if "ipykernel" in sys.modules:
        return True
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


def _batches(lengths: np.ndarray, batch_size: int, token_budget: int,
             skip: np.ndarray | None = None) -> list[np.ndarray]:
    """Group row numbers, longest first, so that each batch pads little and fits the budget."""
    order = np.argsort(-lengths, kind="stable")
    if skip is not None and len(skip):
        order = order[~np.isin(order, skip)]
    batches: list[np.ndarray] = []
    start = 0
    while start < len(order):
        padded = _round_up(int(lengths[order[start]]))  # the longest row of this batch comes first
        rows = max(1, min(batch_size, token_budget // padded))
        batches.append(order[start:start + rows])
        start += rows
    return batches


def _packed_batches(lengths: np.ndarray, batch_size: int, token_budget: int,
                    skip: np.ndarray | None = None) -> list[list[list[int]]]:
    """Batches of rows of inputs: each row holds inputs end to end, each batch at most ``batch_size`` rows
    and ``token_budget`` tokens (padded to its fullest row).

    Best fit decreasing: the inputs, longest first, each go to the row with the least room that still
    fits them; a new row holds PACK_WIDTH tokens, or the input's own length rounded up if longer.
    """
    order = np.argsort(-lengths, kind="stable")
    if skip is not None and len(skip):
        order = order[~np.isin(order, skip)]
    rows: list[list[int]] = []
    fill: list[int] = []
    room: dict[int, list[int]] = {}  # free tokens -> rows with that much room left
    for i in order.tolist():
        n = int(lengths[i])
        free = next((f for f in sorted(room) if f >= n and room[f]), None)
        if free is None:
            row, free = len(rows), max(min(PACK_WIDTH, token_budget), _round_up(n))
            rows.append([])
            fill.append(0)
        else:
            row = room[free].pop()
        rows[row].append(i)
        fill[row] += n
        room.setdefault(free - n, []).append(row)
    batches: list[list[list[int]]] = []
    start = 0
    while start < len(rows):  # rows were opened longest input first: their widths do not grow
        width = _round_up(fill[start])
        end = start + 1
        while end < len(rows) and end - start < batch_size:
            width = max(width, _round_up(fill[end]))
            if (end + 1 - start) * width > token_budget:
                break
            end += 1
        batches.append(rows[start:end])
        start = end
    return batches


def _pack(packed: list[list[int]], inputs: list[np.ndarray], pad_id: int) -> tuple[np.ndarray, np.ndarray]:
    """Token ids and the mask that numbers each row's inputs 1, 2, ... (0: padding)."""
    fills = [sum(len(inputs[i]) for i in row) for row in packed]
    ids = np.full((len(packed), _round_up(max(fills))), pad_id, dtype=np.int64)
    mask = np.zeros(ids.shape, dtype=np.int64)
    for r, row in enumerate(packed):
        at = 0
        for k, i in enumerate(row, start=1):
            n = len(inputs[i])
            ids[r, at:at + n] = inputs[i]
            mask[r, at:at + n] = k
            at += n
    return ids, mask


def _round_up(length: int) -> int:
    return int(math.ceil(length / PAD_MULTIPLE) * PAD_MULTIPLE)


def _pad(rows: list[np.ndarray], pad_id: int, max_positions: int) -> tuple[np.ndarray, np.ndarray]:
    longest = max(len(r) for r in rows)
    width = min(_round_up(longest), max_positions)
    ids = np.full((len(rows), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(rows), width), dtype=np.int64)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = r
        mask[i, : len(r)] = 1
    return ids, mask


def check_options(*, task: str = "embed", pooling: str = "mean", max_length: object = 512,
                  long_text: object = "truncate", stride: object = 128, batch_size: object = None,
                  token_budget: object = None, chunk_size: object = None) -> None:
    """Raise ValueError for an option no model could accept (called before any model is loaded)."""
    if task not in TASKS:
        raise ValueError(f"Got task={task!r} but expected one of {', '.join(map(repr, TASKS))}.")
    if task == "embed" and pooling not in pooling_mod.POOLINGS:
        raise ValueError(f"Got pooling={pooling!r} but expected one of {', '.join(map(repr, pooling_mod.POOLINGS))}.")
    if not _is_int(max_length) or max_length < 3:
        raise ValueError(f"Got max_length={max_length!r} but expected an integer of at least 3, such as 512.")
    if long_text not in LONG_TEXT:
        raise ValueError(f"Got long_text={long_text!r} but expected 'truncate' or 'chunk'.")
    if not _is_int(stride) or stride < 0:
        raise ValueError(f"Got stride={stride!r} but expected a non-negative integer of tokens, such as 128.")
    for name, value in (("batch_size", batch_size), ("token_budget", token_budget), ("chunk_size", chunk_size)):
        if value is not None and (not _is_int(value) or value < 1):
            raise ValueError(f"Got {name}={value!r} but expected a positive integer, or None for the default.")


def _is_int(value: object) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)
