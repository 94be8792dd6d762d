"""The ``.distil`` accessor on pandas DataFrames and Series.

Thin and stateless: validate the input, call the executor, and wrap the result
with the original index (whatever its shape: default, non-unique, MultiIndex).

The row rules (missing values, non-strings, invalid Unicode) and the names of
output columns are those of ``distilframe.columns``, shared with the file
pipeline. A text longer than ``max_length`` tokens is truncated, with one
warning per call, unless ``long_text="chunk"``. An output column replaces a
column of that name in the returned frame; the input frame is never modified.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import pandas as pd

from . import columns, executor
from .defaults import default_model

__all__ = ["DistilDataFrameAccessor", "DistilSeriesAccessor"]

def _embed(series: pd.Series, name: Any, *, model: Any, pooling: str, normalize: bool, max_length: int,
           long_text: str, stride: int, batch_size: int | None, errors: str, progress: bool | None,
           return_status: bool, precision: str, num_threads: int | None, cache: bool,
           on_progress: Any = None, warn_long: bool = True) -> pd.DataFrame:
    from .arrow import embedding_array
    from .manager import load_for

    columns.check_options("embed", errors, {"normalize": normalize, "return_status": return_status, "cache": cache},
                          pooling=pooling, max_length=max_length, long_text=long_text, stride=stride,
                          batch_size=batch_size)
    texts = columns.texts(series, errors)
    loaded = load_for("embed", default_model("embed") if model is None else model, precision=precision, num_threads=num_threads)
    result = executor.run(texts, loaded, task="embed", pooling=pooling, normalize=normalize,
                          max_length=max_length, long_text=long_text, stride=stride, batch_size=batch_size,
                          progress=progress, cache=_cache(cache), on_progress=on_progress, warn_long=warn_long)
    added: dict[Any, Any] = {columns.out_name(name, "embedding"): embedding_array(result.values, result.valid)}
    if return_status:
        added.update(_pandas_status(columns.status(result, name)))
    return _frame(added, series.index, name)


def _classify(series: pd.Series, name: Any, *, model: Any, max_length: int, long_text: str, stride: int,
              batch_size: int | None, all_scores: bool, errors: str, progress: bool | None,
              return_status: bool, precision: str, num_threads: int | None, cache: bool,
              on_progress: Any = None, warn_long: bool = True) -> pd.DataFrame:
    from .manager import load_for

    columns.check_options("classify", errors, {"all_scores": all_scores, "return_status": return_status,
                                               "cache": cache},
                          max_length=max_length, long_text=long_text, stride=stride, batch_size=batch_size)
    texts = columns.texts(series, errors)
    loaded = load_for("classify", default_model("classify") if model is None else model, precision=precision, num_threads=num_threads)
    result = executor.run(texts, loaded, task="classify", max_length=max_length, long_text=long_text,
                          stride=stride, batch_size=batch_size, progress=progress, cache=_cache(cache),
                          on_progress=on_progress, warn_long=warn_long)
    added: dict[Any, Any] = columns.classification(result, loaded.labels, name, all_scores)
    label = columns.out_name(name, "label")
    added[label] = pd.array(added[label], dtype=pd.StringDtype())
    if return_status:
        added.update(_pandas_status(columns.status(result, name)))
    return _frame(added, series.index, name)


def _cache(enabled: bool):
    from .cache import default_cache

    return default_cache() if enabled else None


def _pandas_status(status: dict[Any, np.ndarray]) -> dict[Any, Any]:
    (n_name, n_tokens), (s_name, codes) = status.items()
    counts = pd.array(np.where(n_tokens < 0, 0, n_tokens), dtype="Int64")
    counts[n_tokens < 0] = pd.NA
    return {n_name: counts, s_name: pd.Categorical(codes, categories=list(executor.STATUSES))}


def _frame(added: dict[Any, Any], index: pd.Index, name: Any) -> pd.DataFrame:
    out = pd.DataFrame(dict(enumerate(added.values())), index=index)
    out.columns = pd.MultiIndex.from_tuples(list(added)) if isinstance(name, tuple) else list(added)
    return out


def _is_text(series: pd.Series) -> bool:
    dtype = series.dtype
    if isinstance(dtype, pd.CategoricalDtype):
        return _is_text(pd.Series(dtype.categories))
    if isinstance(dtype, pd.StringDtype):
        return True
    if isinstance(dtype, pd.ArrowDtype):
        import pyarrow as pa

        t = dtype.pyarrow_dtype
        return pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t)
    if dtype == object:
        sample = series.dropna().iloc[:100]
        return len(sample) > 0 and all(isinstance(v, str) for v in sample)
    return False


def _string_columns(df: pd.DataFrame) -> list[Any]:
    return [name for i, name in enumerate(df.columns) if _is_text(df.iloc[:, i])]


def _column(df: pd.DataFrame, column: Any) -> pd.Series:
    if column is None:
        candidates = _string_columns(df)
        if len(candidates) == 1:
            return _column(df, candidates[0])
        listed = ", ".join(map(repr, candidates)) or "none"
        raise ValueError(
            f"column= is needed: the frame has {len(candidates)} string columns ({listed}). "
            "Name the text column, e.g. df.distil.embed('text')."
        )
    try:
        present = column in df.columns
    except TypeError:  # unhashable: a list, a dict...
        raise TypeError(
            f"Got column={column!r} ({type(column).__name__}) but expected one column name. "
            "Run embed once per column."
        ) from None
    if not present:
        raise columns.missing_column(column, list(df.columns))
    selected = df[column]
    if isinstance(selected, pd.DataFrame):
        found = ", ".join(map(repr, selected.columns[:5]))
        if isinstance(df.columns, pd.MultiIndex) and not isinstance(column, tuple):
            raise ValueError(f"{column!r} selects {selected.shape[1]} columns under it ({found}): "
                             "pass the full tuple of the text column.")
        raise ValueError(f"Column name {column!r} appears {selected.shape[1]} times; rename the duplicates first.")
    return selected


_OPTIONS_DOC = """
        model
            A registered name or alias (``distilframe.models()``), ``hf:<owner>/<repo>`` for a
            DistilBERT on the Hugging Face hub, or a local checkpoint folder (PaddleNLP or
            Hugging Face format). None: the session's default for the task
            (``distilframe.set_default_model``; at first distilbert-base-uncased for embed and
            the SST-2 sentiment model for classify).
        max_length
            Tokens per model input, [CLS] and [SEP] included (capped at the model's positions).
        long_text
            ``"truncate"`` (default): a longer text keeps its beginning, and one warning counts
            them. ``"chunk"``: it is cut into windows of ``max_length`` tokens overlapping by
            ``stride`` tokens, every window is run, and the row combines them (token-weighted
            mean of the windows' embeddings; mean of their class probabilities).
        stride
            Overlap of consecutive windows, in tokens, with ``long_text="chunk"`` (capped at
            half a window).
        batch_size
            Model rows per batch at most (default 64; batches also stay under 2048 tokens). When
            embedding, short texts share rows of 128 tokens, each attending only to itself.
        errors
            Non-string values: ``"raise"`` TypeError naming them, or ``"coerce"`` (bytes decoded
            as UTF-8, others with ``str()``).
        progress
            Show a progress bar; None shows one for large inputs in a terminal or a notebook.
        return_status
            Also add ``<column>_n_tokens`` (tokens before truncation, [CLS] and [SEP] included;
            null for missing values) and ``<column>_status`` (ok, null, empty, truncated, chunked).
        precision
            ``"auto"`` (bf16 on a CPU with native bf16, else fp32; ``DISTILFRAME_PRECISION`` can
            set it), ``"fp32"`` (exact), or ``"bf16"`` (about 3-4x faster on such CPUs; cosine to
            fp32 about 0.9999).
        num_threads
            CPU threads for the model (default: every core available to the process).
        cache
            Reuse results computed before for the same text, model and settings, and store new ones
            (``<DISTILFRAME_HOME>/results.sqlite``, capped by ``DISTILFRAME_CACHE_SIZE``).
"""


@pd.api.extensions.register_dataframe_accessor("distil")
class DistilDataFrameAccessor:
    """DistilBERT on a DataFrame: ``df.distil.embed("text")``, ``df.distil.classify("review")``."""

    def __init__(self, obj: pd.DataFrame) -> None:
        self._obj = obj

    def embed(
        self,
        column: Any = None,
        *,
        model: str | os.PathLike | None = None,
        pooling: str = "mean",
        normalize: bool = True,
        max_length: int = 512,
        batch_size: int | None = None,
        errors: str = "raise",
        progress: bool | None = None,
        long_text: str = "truncate",
        stride: int = 128,
        return_status: bool = False,
        precision: str = "auto",
        num_threads: int | None = None,
        cache: bool = True,
    ) -> pd.DataFrame:
        """Embed a text column; return a new frame with ``<column>_embedding`` added.

        Parameters
        ----------
        column
            The text column; may be omitted when the frame has exactly one string column.
        pooling
            ``"mean"`` (average of the token states) or ``"cls"`` (the [CLS] state).
        normalize
            Scale each vector to unit length, so that a dot product is a cosine similarity.
        {options}
        Returns
        -------
        DataFrame
            Every original column, same index, plus ``<column>_embedding``: fixed-size lists of
            float32 (``pd.ArrowDtype``), null where the text is missing, empty, blank, or has no
            token. Read a Parquet file of it back with ``pd.read_parquet(path, dtype_backend="pyarrow")``.

        Examples
        --------
        >>> df = pd.DataFrame({{"text": ["a happy cat", None]}})
        >>> out = df.distil.embed("text")  # doctest: +SKIP
        >>> distilframe.to_numpy(out["text_embedding"]).shape  # doctest: +SKIP
        (2, 768)
        """
        series = _column(self._obj, column)
        added = _embed(series, series.name, model=model, pooling=pooling, normalize=normalize,
                       max_length=max_length, long_text=long_text, stride=stride, batch_size=batch_size,
                       errors=errors, progress=progress, return_status=return_status,
                       precision=precision, num_threads=num_threads, cache=cache)
        return _with_columns(self._obj, added)

    def classify(
        self,
        column: Any = None,
        *,
        model: str | os.PathLike | None = None,
        max_length: int = 512,
        all_scores: bool = False,
        errors: str = "raise",
        progress: bool | None = None,
        batch_size: int | None = None,
        long_text: str = "truncate",
        stride: int = 128,
        return_status: bool = False,
        precision: str = "auto",
        num_threads: int | None = None,
        cache: bool = True,
    ) -> pd.DataFrame:
        """Classify a text column; return a new frame with ``<column>_label`` and ``<column>_score`` added.

        The model must have a trained sequence-classification head; base models are refused.
        The default is ``distilbert-base-uncased-finetuned-sst-2-english`` (English sentiment:
        NEGATIVE / POSITIVE).

        Parameters
        ----------
        column
            The text column; may be omitted when the frame has exactly one string column.
        all_scores
            Also add one probability column per label, ``<column>_score_<LABEL>``.
        {options}
        Returns
        -------
        DataFrame
            Every original column, same index, plus ``<column>_label`` (string, the most probable
            label) and ``<column>_score`` (float32, its probability: softmax over the labels, or a
            sigmoid for multi-label models); null where the text is missing, empty or blank.

        Examples
        --------
        >>> df = pd.DataFrame({{"review": ["great!", "awful."]}})
        >>> df.distil.classify("review")  # doctest: +SKIP
        """
        series = _column(self._obj, column)
        added = _classify(series, series.name, model=model, max_length=max_length, long_text=long_text,
                          stride=stride, batch_size=batch_size, all_scores=all_scores, errors=errors,
                          progress=progress, return_status=return_status, precision=precision,
                          num_threads=num_threads, cache=cache)
        return _with_columns(self._obj, added)

    def panel(self, *, slice_rows: int = 1024) -> Any:
        """Open the notebook run panel on this frame (extra ``widgets``: ipywidgets).

        Pick a text column, the task, the model and options; Run works on a background thread with a
        progress bar (rows/s, ETA) and a Stop button; the output frame is then ``panel.result``.
        See :class:`distilframe.widgets.RunPanel`.

        Examples
        --------
        >>> panel = df.distil.panel()  # doctest: +SKIP
        >>> panel  # in a notebook cell: shows it  # doctest: +SKIP
        >>> panel.result  # after Run  # doctest: +SKIP
        """
        try:
            from .widgets import RunPanel
        except ImportError as e:
            if e.name != "ipywidgets":
                raise
            raise ImportError('df.distil.panel() needs ipywidgets: pip install "distilframe[widgets]"') from e
        return RunPanel(self._obj, slice_rows=slice_rows)

    embed.__doc__ = embed.__doc__.format(options=_OPTIONS_DOC.strip("\n").lstrip())
    classify.__doc__ = classify.__doc__.format(options=_OPTIONS_DOC.strip("\n").lstrip())


def _with_columns(df: pd.DataFrame, added: pd.DataFrame) -> pd.DataFrame:
    out = df.copy(deep=False)
    for name in added.columns:
        out[name] = added[name].array  # positional: any index shape is kept
    return out


@pd.api.extensions.register_series_accessor("distil")
class DistilSeriesAccessor:
    """DistilBERT on a Series of texts: ``s.distil.embed()``, ``s.distil.classify()``."""

    def __init__(self, obj: pd.Series) -> None:
        self._obj = obj

    def embed(
        self,
        *,
        model: str | os.PathLike | None = None,
        pooling: str = "mean",
        normalize: bool = True,
        max_length: int = 512,
        batch_size: int | None = None,
        errors: str = "raise",
        progress: bool | None = None,
        long_text: str = "truncate",
        stride: int = 128,
        return_status: bool = False,
        precision: str = "auto",
        num_threads: int | None = None,
        cache: bool = True,
    ) -> pd.Series | pd.DataFrame:
        """Embed the texts; return a Series named ``<name>_embedding`` with the same index.

        With ``return_status=True``, a DataFrame of that column, ``<name>_n_tokens`` and
        ``<name>_status``. Options and row rules as :meth:`DistilDataFrameAccessor.embed`.

        Examples
        --------
        >>> pd.Series(["a cat", "a dog"], name="text").distil.embed().name  # doctest: +SKIP
        'text_embedding'
        """
        added = _embed(self._obj, self._obj.name, model=model, pooling=pooling, normalize=normalize,
                       max_length=max_length, long_text=long_text, stride=stride, batch_size=batch_size,
                       errors=errors, progress=progress, return_status=return_status,
                       precision=precision, num_threads=num_threads, cache=cache)
        return added if return_status else added.iloc[:, 0]

    def classify(
        self,
        *,
        model: str | os.PathLike | None = None,
        max_length: int = 512,
        all_scores: bool = False,
        errors: str = "raise",
        progress: bool | None = None,
        batch_size: int | None = None,
        long_text: str = "truncate",
        stride: int = 128,
        return_status: bool = False,
        precision: str = "auto",
        num_threads: int | None = None,
        cache: bool = True,
    ) -> pd.DataFrame:
        """Classify the texts; return a DataFrame of ``<name>_label`` and ``<name>_score`` with the same index.

        Options and row rules as :meth:`DistilDataFrameAccessor.classify`.
        """
        return _classify(self._obj, self._obj.name, model=model, max_length=max_length, long_text=long_text,
                         stride=stride, batch_size=batch_size, all_scores=all_scores, errors=errors,
                         progress=progress, return_status=return_status, precision=precision,
                         num_threads=num_threads, cache=cache)
