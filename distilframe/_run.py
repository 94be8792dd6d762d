"""Run a model over a list of texts: the one executor behind every entry point, in stages that
follow the data flow.

    texts ─► dedupe ─► cache lookup ─► per chunk: tokenize ─► plan (sort, pack, budget) ─► engine
          ─► pool / softmax ─► combine windows, normalise ─► cache store ─► expand ─► status

A text with no tokens at all (None, empty, whitespace, or only characters the
tokenizer drops, such as zero-width spaces and control characters) gives a NaN row.

Memory is bounded by the chunk: token ids and hidden states exist for one chunk
(and one batch) at a time; only the float32 results grow with the input.

Tokenizing is not overlapped with inference: the Rust tokenizer handles about
50,000 sentences/s, the model about 300/s (bf16, 2 cores), so tokenizing is well
under 1% of a run and a second thread would only add contention.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np

from . import _batches as batches
from . import _config as config
from . import _pool as pool
from ._checkpoint import content_hash
from ._options import DEFAULTS, RunOptions, check_task
from ._sentence import output_dim
from ._version import __version__
from .errors import TruncationWarning, warn

if TYPE_CHECKING:
    from ._manager import LoadedModel
    from ._result_cache import ResultCache

__all__ = ["AUTO_PROGRESS_MIN_TEXTS", "STATUSES", "Result", "run"]

AUTO_PROGRESS_MIN_TEXTS = 512  # progress=None shows a bar from this many distinct texts on
STATUSES = ("ok", "null", "empty", "truncated", "chunked")


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


def run(texts: Sequence[str | None], model: "LoadedModel", task: str = "embed", options: RunOptions = DEFAULTS, *,
        cache: "ResultCache | None" = None, on_progress: "Callable[[int, int], None] | None" = None,
        warn_long: bool = True, **changes: Any) -> Result:
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
    options
        A :class:`~distilframe._options.RunOptions` (checked when it was made). A long text with
        ``long_text="chunk"`` is cut into windows of ``max_length`` tokens overlapping by ``stride``;
        its row is the token-weighted mean of the windows' pooled embeddings (normalised afterwards),
        or the mean of their class probabilities. ``max_length`` is capped at the model's positions.
    cache
        A :class:`~distilframe._result_cache.ResultCache`: texts it holds for these settings skip the
        model, and new results are stored after each chunk.
    on_progress
        Called as ``on_progress(done, total)`` in distinct texts, at the start and after every
        batch (the notebook panel's progress bar). An exception it raises stops the run there
        and propagates (chunks already finished stay in the cache).
    warn_long
        Warn (TruncationWarning) when texts were truncated; the notebook panel reports them itself.
    **changes
        Options changed for this call only (``options.replace(**changes)``).

    Examples
    --------
    >>> r = run(["a cat", None, "a cat"], get_model("uncased"))  # doctest: +SKIP
    >>> r.values.shape, r.valid.tolist(), r.status.tolist()  # doctest: +SKIP
    ((3, 768), [True, False, True], ['ok', 'null', 'ok'])
    """
    check_task(task)
    if changes:
        options = options.replace(**changes)
    options = model.fill(options)  # the model's own pooling, normalize, max_length and prompt where not given
    # A model cannot read past its position table: the limit is the smaller of the two.
    max_length = min(options.max_length, model.checkpoint.max_positions)
    if task == "embed":
        texts = _as_the_model_reads(texts, model, options)
    unique = batches.dedupe(texts)
    width = model.dim_for(options) if task == "embed" else len(model.labels)
    out = np.full((len(unique.texts), width), np.nan, dtype=np.float32)
    n_tokens = np.zeros(len(unique.texts), dtype=np.int64)
    # int8's near-tie classifications are made again in fp32 (_recheck), by the model's margin (read when it was
    # got from the manager: one value for the run, its result-cache key and its file's metadata).
    recheck = model.recheck if task == "classify" else 0.0
    # The key's checkpoint hash is read once: files changed during the run must not re-key what the loaded model
    # computed. An int8 model's fp32 twin is foreseen in it until built (_recheck_settings), then re-keyed once.
    digest = content_hash(model.checkpoint) if cache is not None else ""
    settings = _settings(model, task, options, max_length, recheck, digest) if cache is not None else b""
    rekey = bool(recheck) and model.twin is not None and model.twin.built is None
    todo, keys, cache = _lookup(cache, settings, unique.texts, out, n_tokens)
    prompt_skip, prompt_only = _prompt_tokens(model, options) if task == "embed" else (0, 2)
    if prompt_skip and options.long_text == "chunk":
        raise ValueError("Got long_text='chunk' with a prompt that this model's pooling leaves out "
                         "(include_prompt=false): only a text's first window holds the prompt. Use "
                         "long_text='truncate', or no prompt.")
    chunk_size = options.chunk_size or batches.DEFAULT_CHUNK_SIZE
    with _progress_bar(options.progress, len(unique.texts), len(todo), f"{task} ({model.name})", on_progress) as bar:
        for start in range(0, len(todo), chunk_size):
            where = todo[start:start + chunk_size]
            out[where], n_tokens[where] = _run_chunk(model, task, options, max_length,
                                                     [unique.texts[i] for i in where], bar, prompt_skip,
                                                     prompt_only, recheck)
            if cache is not None:  # stored chunk by chunk: an interrupted run keeps what it finished
                if rekey and model.twin.built is not None:  # the fp32 model that rechecked is known now
                    rekey = False
                    now = _settings(model, task, options, max_length, recheck, digest)
                    if now != settings:
                        settings, keys = now, cache.keys(now, unique.texts)
                cache.put([keys[i] for i in where], out[where], n_tokens[where])
    if warn_long and options.long_text == "truncate":
        _warn_truncated(n_tokens, max_length)
    return _result(unique, out, n_tokens, max_length, options.long_text, prompt_only)


def _lookup(cache: "ResultCache | None", settings: bytes, texts: list[str], out: np.ndarray,
            n_tokens: np.ndarray) -> tuple[np.ndarray, list[bytes], Any]:
    """Fill ``out`` and ``n_tokens`` with what the cache holds for ``settings`` (``_settings``); return (the texts
    still to run, their keys, the cache, or None when it cannot be used)."""
    todo = np.arange(len(texts))
    if cache is None or not texts:
        return todo, [], None
    keys = cache.keys(settings, texts)
    looked_up = cache.get(keys, out.shape[1])  # None when the cache cannot be used: then everything runs
    if looked_up is None:
        return todo, keys, None
    found, values, tokens = looked_up
    out[found], n_tokens[found] = values[found], tokens[found]
    return np.flatnonzero(~found), keys, cache


def _settings(model: "LoadedModel", task: str, options: RunOptions, max_length: int, recheck: float = 0.0,
              checkpoint_hash: str | None = None) -> bytes:
    """What determines a result besides the text: the result cache's key prefix (``checkpoint_hash``: the
    checkpoint's content hash, read now if not given)."""
    from ._engine import GRAPH_VERSION
    from ._result_cache import settings_key

    ckpt = model.checkpoint
    embed = task == "embed"
    return settings_key(checkpoint=checkpoint_hash or content_hash(ckpt), task=task, distilframe=__version__,
                        engine=type(model.engine).__name__, paddle=getattr(model.engine, "paddle_version", ""),
                        graph=getattr(model.engine, "graph_version", GRAPH_VERSION),
                        do_lower_case=ckpt.do_lower_case, strip_accents=ckpt.strip_accents,
                        tokenize_chinese_chars=ckpt.tokenize_chinese_chars, added_tokens=list(ckpt.added_tokens),
                        pooling=options.pooling if embed else None,
                        normalize=bool(options.normalize) if embed else None, max_length=int(max_length),
                        long_text=options.long_text,
                        stride=int(options.stride) if options.long_text == "chunk" else None,
                        precision=model.precision, multi_label=model.multi_label if not embed else None,
                        **({"prompt": options.prompt} if embed and options.prompt else {}),  # keys as before without
                        **(_recheck_settings(model, recheck) if recheck else {}))


def _recheck_settings(model: "LoadedModel", margin: float) -> dict[str, str]:
    """What else determines a rechecked classification: the margin, and the fp32 model that rechecks: its engine
    once it is built, else the one it will be (the configured engine and the installed Paddle, read from its
    metadata: nothing is imported to look up a result)."""
    from importlib import metadata

    from ._engine import GRAPH_VERSION

    twin = model.twin.built if model.twin is not None else None
    if twin is not None:
        engine, paddle = type(twin.engine).__name__, getattr(twin.engine, "paddle_version", "")
        graph = getattr(twin.engine, "graph_version", GRAPH_VERSION)
    else:
        engine, paddle, graph = "PaddleEngine" if config.engine() == "dygraph" else "PredictorEngine", "", GRAPH_VERSION
        for dist in ("paddlepaddle", "paddlepaddle-gpu"):
            try:
                paddle = metadata.version(dist)  # what paddle.__version__ says
                break
            except metadata.PackageNotFoundError:
                pass
    return {"int8_recheck": repr(float(margin)), "fp32_engine": engine, "fp32_paddle": str(paddle),
            "fp32_graph": str(graph)}


def _as_the_model_reads(texts: Sequence[str | None], model: "LoadedModel", options: RunOptions) -> list[str | None]:
    """As sentence-transformers feeds its Transformer: the prompt before each text, then lower-cased when the
    model's sentence_bert_config says do_lower_case. A missing or blank text stays one (no result)."""
    head = model.checkpoint.sentence
    lower = head is not None and head.do_lower_case
    if not options.prompt and not lower:
        return list(texts)
    prompt = options.prompt or ""
    out: list[str | None] = []
    for text in texts:
        if text is None or not text.strip():
            out.append(text)
        else:
            text = prompt + text
            out.append(text.lower() if lower else text)
    return out


def _prompt_tokens(model: "LoadedModel", options: RunOptions) -> tuple[int, int]:
    """(tokens at the start of each input that pooling leaves out: [CLS] and the prompt's when the model's
    Pooling module says include_prompt=false, as sentence-transformers counts them, else 0; the tokens of an
    input that holds the prompt and no text: a text of no token of its own stays empty with a prompt)."""
    if not options.prompt:
        return 0, 2
    head = model.checkpoint.sentence
    prompt = options.prompt.lower() if head is not None and head.do_lower_case else options.prompt
    ids = model.tokenizer.encode([prompt], max_length=model.checkpoint.max_positions).ids[0]
    skip = 0 if head is None or head.include_prompt else len(ids) - 1  # without the final [SEP]
    return skip, len(ids)


def _run_chunk(model: "LoadedModel", task: str, options: RunOptions, max_length: int, texts: list[str],
               bar: "_Progress", prompt_skip: int = 0, prompt_only: int = 2,
               recheck: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Results and token counts of one chunk of distinct texts (NaN rows for texts without a token)."""
    encoded = model.tokenizer.encode(texts, max_length=max_length, long_text=options.long_text,
                                     stride=options.stride)
    # A text of [CLS] [SEP] and nothing else has no result: it is not run.
    skip = np.flatnonzero(encoded.n_tokens[encoded.owner] <= prompt_only)
    bar.update(int(np.count_nonzero(encoded.n_tokens <= prompt_only)))
    remaining = np.bincount(encoded.owner, minlength=len(texts))  # windows left per text
    # A sentence-transformers model's Dense modules run once per chunk, after its batches: numpy's BLAS
    # threads keep spinning after a product and slowed the engine's next batch (int8 2x on 2 cores: README).
    head = model.checkpoint.sentence
    dense = head if task == "embed" and head is not None and head.dense else None
    width = (len(model.labels) if task == "classify" else
             output_dim(model.engine.hidden_size, None, options.pooling) if dense else model.dim_for(options))
    items = np.full((len(encoded.ids), width), np.nan, dtype=np.float32)
    logits = np.full_like(items, np.nan) if recheck else None  # what near-ties are judged on
    plan = batches.plan(encoded.lengths, pack=task == "embed" or model.engine.packs_logits, skip=skip,
                        batch_size=options.batch_size or batches.DEFAULT_BATCH_SIZE,
                        token_budget=_token_budget(model, options),
                        pack_width=model.engine.pack_width or batches.PACK_WIDTH)
    for batch in plan:
        rows = np.fromiter((r for row in batch for r in row), dtype=np.int64)
        out = _forward(model, task, batch, encoded.ids, options.pooling, prompt_skip)
        if logits is not None:
            logits[rows] = out
        items[rows] = _scores(model, out) if task == "classify" else out
        np.subtract.at(remaining, encoded.owner[rows], 1)
        bar.update(int(np.count_nonzero(remaining[np.unique(encoded.owner[rows])] == 0)))
    if dense is not None:
        pooled, items = items, np.full((len(items), model.dim_for(options)), np.nan, dtype=np.float32)
        done = np.setdiff1d(np.arange(len(items)), skip)
        items[done] = dense.apply_dense(pooled[done])
    if logits is not None:
        _recheck(model, options, recheck, encoded, logits, items, skip, bar)
    # A chunked text: the token-weighted mean of its windows' embeddings, the plain mean of their probabilities.
    weights = encoded.lengths if task == "embed" else None
    combined = pool.combine(items, encoded.owner, len(texts), weights)
    # Normalised after windows are combined, so that a chunked row is a unit vector too.
    return (pool.l2_normalize(combined) if options.normalize and task == "embed" else combined), encoded.n_tokens


def _recheck(model: "LoadedModel", options: RunOptions, margin: float, encoded: Any, logits: np.ndarray,
             items: np.ndarray, skip: np.ndarray, bar: "_Progress") -> None:
    """Put the fp32 model's scores in ``items`` for every window of the texts whose int8 logits decide a label
    by less than ``margin`` (``pool.near_ties``, per text: a chunked text on its windows' mean): a label can
    flip under int8 only where its margin is under twice int8's logit error (README, Precisions). Each batch
    reports progress (a stop asked for by the callback ends the run there)."""
    doubtful = np.flatnonzero(pool.near_ties(logits, encoded.owner, len(encoded.n_tokens), margin,
                                             sigmoid=model.multi_label))
    if not len(doubtful):
        return
    fp32 = model.fp32()
    others = np.flatnonzero(~np.isin(encoded.owner, doubtful))
    plan = batches.plan(encoded.lengths, pack=False, skip=np.union1d(skip, others),
                        batch_size=options.batch_size or batches.DEFAULT_BATCH_SIZE,
                        token_budget=_token_budget(fp32, options))
    for batch in plan:
        rows = np.fromiter((r for row in batch for r in row), dtype=np.int64)
        items[rows] = _scores(fp32, _forward(fp32, "classify", batch, encoded.ids, options.pooling))
        bar.update(0)


def _token_budget(model: "LoadedModel", options: RunOptions) -> int:
    """Padded tokens per batch: the options', else the engine's own (int8: smaller), else the default."""
    return options.token_budget or model.engine.token_budget or batches.DEFAULT_TOKEN_BUDGET


def _forward(model: "LoadedModel", task: str, batch: list[list[int]], inputs: list[np.ndarray],
             pooling: str, prompt_skip: int = 0) -> np.ndarray:
    """Pooled embeddings (before any Dense module) or logits of one batch, one row per input, in the batch's
    order (row by row, then along each row)."""
    ids, mask = batches.pad(batch, inputs, model.tokenizer.pad_id, model.checkpoint.max_positions)
    if task == "classify":
        logits = model.engine.logits(ids, mask)
        if len(logits) != sum(map(len, batch)):  # never attach one text's logits to another's row
            raise RuntimeError(f"{type(model.engine).__name__}.logits gave {len(logits)} rows for a batch of "
                               f"{sum(map(len, batch))} inputs (packed: {model.engine.packs_logits}).")
        return logits
    return pool.pool_packed(model.engine.hidden_states(ids, mask), mask, pooling, skip_first=prompt_skip)


def _scores(model: "LoadedModel", logits: np.ndarray) -> np.ndarray:
    """Class probabilities: sigmoids for multi-label and single-output heads, else a softmax."""
    return pool.sigmoid(logits) if model.multi_label else pool.softmax(logits)


def _warn_truncated(n_tokens: np.ndarray, max_length: int) -> None:
    long = int(np.count_nonzero(n_tokens > max_length))
    if long:
        warn(
            f"{long} of {len(n_tokens)} distinct texts were longer than max_length={max_length} tokens "
            "and were truncated (only their beginning was used). Pass long_text='chunk' to read them whole.",
            TruncationWarning,
        )


def _result(unique: batches.Unique, out: np.ndarray, n_tokens: np.ndarray, max_length: int,
            long_text: str, prompt_only: int = 2) -> Result:
    """One row per input text, in input order, with token counts and a status per row."""
    codes, values = batches.expand(unique, out, n_tokens > prompt_only)
    valid = codes >= 0
    row_tokens = np.where(codes == batches.NULL, -1, 0)
    row_tokens[valid] = n_tokens[codes[valid]]
    status = np.where(codes == batches.NULL, "null", "empty").astype(object)
    status[valid] = np.where(row_tokens[valid] > max_length, "chunked" if long_text == "chunk" else "truncated", "ok")
    return Result(values=values, valid=valid, n_tokens=row_tokens, status=status, max_length=max_length)


class _Progress:
    """A tqdm bar that also reports to a callback (done, total) after every update."""

    def __init__(self, bar: Any, callback: "Callable[[int, int], None] | None", done: int, total: int) -> None:
        self._bar = bar
        self._callback = callback
        self._done, self._total = done, total  # counted here: a disabled tqdm bar counts nothing
        self._report()

    def update(self, n: int) -> None:
        self._done += n
        self._bar.update(n)
        self._report()

    def _report(self) -> None:
        if self._callback is not None:
            self._callback(self._done, self._total)

    def __enter__(self) -> "_Progress":
        return self

    def __exit__(self, *exc: object) -> None:
        self._bar.close()


def _progress_bar(progress: bool | None, total: int, todo: int, desc: str,
                  on_progress: "Callable[[int, int], None] | None") -> _Progress:
    from tqdm.auto import tqdm

    show = progress if progress is not None else todo >= AUTO_PROGRESS_MIN_TEXTS and _interactive()
    return _Progress(tqdm(total=total, initial=total - todo, disable=not show, unit="text", desc=desc,
                          dynamic_ncols=True), on_progress, total - todo, total)


def _interactive() -> bool:
    """A terminal or a notebook: where a progress bar is read, not logged."""
    import sys

    if "ipykernel" in sys.modules:
        return True
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False
