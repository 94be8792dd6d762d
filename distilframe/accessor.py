"""The ``.distil`` accessor on pandas DataFrames and Series.

Thin and stateless: validate the input, call the executor, and wrap the result
with the original index (whatever its shape: default, non-unique, MultiIndex).

Row rules, for embed and classify alike:

* a missing value (None, NaN, pd.NA), an empty string or a whitespace-only
  string gives a null result in its row: never an error, never a shifted row;
* a value that is not a string raises TypeError (``errors="raise"``, the
  default), or is converted (``errors="coerce"``): bytes are decoded as UTF-8,
  anything else goes through ``str()``;
* a string that is not valid Unicode (lone surrogates, as ``surrogateescape``
  decoding leaves) raises ValueError naming its rows, or has those characters
  replaced by U+FFFD with ``errors="coerce"``;
* a text longer than ``max_length`` tokens is truncated, with one warning per call.

Output columns are named after the input column (``text`` -> ``text_embedding``;
``("a", "text")`` -> ``("a", "text_embedding")``). A column of that name is
replaced in the returned frame; the input frame is never modified.
"""

from __future__ import annotations

import difflib
import os
from typing import Any

import numpy as np
import pandas as pd

from . import executor
from .errors import ColumnNotFoundError, UnsupportedTaskError
from .registry import DEFAULT_CLASSIFIER, DEFAULT_EMBEDDER, find

__all__ = ["DistilDataFrameAccessor", "DistilSeriesAccessor"]

ERRORS = ("raise", "coerce")


def _check(task: str, errors: str, flags: dict[str, object], **options: Any) -> None:
    """Reject bad options before any model is loaded or any text is read."""
    if errors not in ERRORS:
        raise ValueError(f"Got errors={errors!r} but expected 'raise' or 'coerce'.")
    for flag, value in flags.items():
        if not isinstance(value, (bool, np.bool_)):
            raise ValueError(f"Got {flag}={value!r} but expected True or False.")
    executor.check_options(task=task, **options)


def _embed(series: pd.Series, name: Any, *, model: Any, pooling: str, normalize: bool, max_length: int,
           long_text: str, stride: int, batch_size: int | None, errors: str, progress: bool | None,
           return_status: bool) -> pd.DataFrame:
    from .arrow import embedding_array
    from .manager import get_model

    _check("embed", errors, {"normalize": normalize, "return_status": return_status}, pooling=pooling, max_length=max_length,
           long_text=long_text, stride=stride, batch_size=batch_size)
    texts = _texts(series, errors)
    loaded = get_model(model)
    result = executor.run(texts, loaded, task="embed", pooling=pooling, normalize=normalize,
                          max_length=max_length, long_text=long_text, stride=stride, batch_size=batch_size,
                          progress=progress)
    columns = {_out_name(name, "embedding"): embedding_array(result.values, result.valid)}
    if return_status:
        columns.update(_status_columns(result, name))
    return _frame(columns, series.index, name)


def _status_columns(result: executor.Result, name: Any) -> dict[Any, Any]:
    n_tokens = pd.array(np.where(result.n_tokens < 0, 0, result.n_tokens), dtype="Int64")
    n_tokens[result.n_tokens < 0] = pd.NA
    return {
        _out_name(name, "n_tokens"): n_tokens,
        _out_name(name, "status"): pd.Categorical(result.status, categories=list(executor.STATUSES)),
    }


def _frame(columns: dict[Any, Any], index: pd.Index, name: Any) -> pd.DataFrame:
    out = pd.DataFrame(dict(enumerate(columns.values())), index=index)
    out.columns = pd.MultiIndex.from_tuples(list(columns)) if isinstance(name, tuple) else list(columns)
    return out


def _classify(series: pd.Series, name: Any, *, model: Any, max_length: int, long_text: str, stride: int,
              batch_size: int | None, all_scores: bool, errors: str, progress: bool | None,
              return_status: bool) -> pd.DataFrame:
    from .manager import get_model

    _check("classify", errors, {"all_scores": all_scores, "return_status": return_status}, max_length=max_length, long_text=long_text,
           stride=stride, batch_size=batch_size)
    spec = find(model) if isinstance(model, str) else None
    if spec is not None and not spec.can_classify:
        raise UnsupportedTaskError(_no_head_message(spec.name))
    texts = _texts(series, errors)
    loaded = get_model(model)
    if not loaded.engine.has_classifier:
        raise UnsupportedTaskError(_no_head_message(loaded.name))
    result = executor.run(texts, loaded, task="classify", max_length=max_length, long_text=long_text,
                          stride=stride, batch_size=batch_size, progress=progress)
    probs = result.values
    best = np.argmax(np.nan_to_num(probs, nan=-1.0), axis=1)  # NaN rows (invalid input) are masked below
    labels = np.where(result.valid, np.asarray(loaded.labels, dtype=object)[best], None)
    columns: dict[Any, Any] = {
        _out_name(name, "label"): pd.array(labels, dtype=pd.StringDtype()),
        _out_name(name, "score"): probs[np.arange(len(probs)), best],
    }
    if all_scores:
        for j, label in enumerate(loaded.labels):
            columns[_out_name(name, f"score_{label}")] = probs[:, j]
    if return_status:
        columns.update(_status_columns(result, name))
    return _frame(columns, series.index, name)


def _no_head_message(name: str) -> str:
    return (
        f"Model {name!r} has no trained classification head, so it cannot classify. "
        "Use embed() with it, or pass a fine-tuned sequence-classification checkpoint as model= "
        f"(for example {DEFAULT_CLASSIFIER!r}, a test model)."
    )


def _texts(series: pd.Series, errors: str) -> list[str | None]:
    """Python strings, with None for missing values; other values per ``errors``."""
    missing = series.isna().to_numpy()
    values = series.to_numpy(dtype=object, na_value=None)
    texts: list[str | None] = [None] * len(values)
    bad: list[int] = []
    for i, (value, is_missing) in enumerate(zip(values, missing)):
        if is_missing:
            continue
        if isinstance(value, str):
            text = value
        elif errors == "raise":
            bad.append(i)
            continue
        elif isinstance(value, (bytes, bytearray)):
            text = bytes(value).decode("utf-8", errors="replace")
        else:
            text = str(value)
        texts[i] = text
    what = "Column" if series.name is not None else "The Series"
    name = f" {series.name!r}" if series.name is not None else ""
    if bad:
        raise TypeError(
            f"{what}{name} has {len(bad)} non-string values, at index {_labels(series, values, bad)}. "
            "Pass errors='coerce' to convert them (bytes are decoded as UTF-8, others use str()), "
            "or clean the column first."
        )
    _check_unicode(texts, series, errors, f"{what}{name}")
    return texts


def _check_unicode(texts: list[str | None], series: pd.Series, errors: str, what: str) -> None:
    """Find strings the tokenizer cannot take (lone surrogates); one C-level encode when all is well."""
    try:
        "\n".join(t for t in texts if t is not None).encode("utf-8")
        return
    except UnicodeEncodeError:
        pass
    bad = []
    for i, text in enumerate(texts):
        if text is None:
            continue
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            if errors == "coerce":  # each lone surrogate becomes U+FFFD
                texts[i] = text.encode("utf-16", errors="surrogatepass").decode("utf-16", errors="replace")
            else:
                bad.append(i)
    if bad:
        raise ValueError(
            f"{what} has {len(bad)} strings that are not valid Unicode (lone surrogates, as left by bytes "
            f"decoded with errors='surrogateescape'), at index {_labels(series, texts, bad)}. "
            "Pass errors='coerce' to replace those characters with U+FFFD, or decode the data correctly."
        )


def _labels(series: pd.Series, values: Any, rows: list[int]) -> str:
    shown = ", ".join(f"{series.index[i]!r} ({type(values[i]).__name__})" for i in rows[:5])
    return shown + (f" and {len(rows) - 5} more" if len(rows) > 5 else "")


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
        names = [str(c) for c in df.columns]
        close = difflib.get_close_matches(str(column), names, n=1, cutoff=0.5)
        hint = f" Did you mean {df.columns[names.index(close[0])]!r}?" if close else ""
        raise ColumnNotFoundError(
            f"Column {column!r} not found.{hint} Columns: {', '.join(map(repr, df.columns[:50]))}"
            + (" ..." if len(df.columns) > 50 else "")
        )
    selected = df[column]
    if isinstance(selected, pd.DataFrame):
        found = ", ".join(map(repr, selected.columns[:5]))
        if isinstance(df.columns, pd.MultiIndex) and not isinstance(column, tuple):
            raise ValueError(f"{column!r} selects {selected.shape[1]} columns under it ({found}): "
                             "pass the full tuple of the text column.")
        raise ValueError(f"Column name {column!r} appears {selected.shape[1]} times; rename the duplicates first.")
    return selected


def _out_name(name: Any, suffix: str) -> Any:
    """``text`` -> ``text_<suffix>``; a MultiIndex column keeps its levels: ``("a", "text_<suffix>")``."""
    if isinstance(name, tuple) and name:
        return (*name[:-1], f"{name[-1]}_{suffix}")
    return f"{'text' if name is None else name}_{suffix}"


_OPTIONS_DOC = """
        model
            A registered name or alias (``distilframe.models()``), ``hf:<owner>/<repo>`` for a
            DistilBERT on the Hugging Face hub, or a local checkpoint folder (PaddleNLP or
            Hugging Face format).
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
            Inputs per batch at most (default 64; batches also stay under 2048 padded tokens).
        errors
            Non-string values: ``"raise"`` TypeError naming them, or ``"coerce"`` (bytes decoded
            as UTF-8, others with ``str()``).
        progress
            Show a progress bar; None shows one for large inputs in a terminal or a notebook.
        return_status
            Also add ``<column>_n_tokens`` (tokens before truncation, [CLS] and [SEP] included;
            null for missing values) and ``<column>_status`` (ok, null, empty, truncated, chunked).
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
        model: str | os.PathLike = DEFAULT_EMBEDDER,
        pooling: str = "mean",
        normalize: bool = True,
        max_length: int = 512,
        batch_size: int | None = None,
        errors: str = "raise",
        progress: bool | None = None,
        long_text: str = "truncate",
        stride: int = 128,
        return_status: bool = False,
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
                       errors=errors, progress=progress, return_status=return_status)
        return _with_columns(self._obj, added)

    def classify(
        self,
        column: Any = None,
        *,
        model: str | os.PathLike = DEFAULT_CLASSIFIER,
        max_length: int = 512,
        all_scores: bool = False,
        errors: str = "raise",
        progress: bool | None = None,
        batch_size: int | None = None,
        long_text: str = "truncate",
        stride: int = 128,
        return_status: bool = False,
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
                          progress=progress, return_status=return_status)
        return _with_columns(self._obj, added)

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
        model: str | os.PathLike = DEFAULT_EMBEDDER,
        pooling: str = "mean",
        normalize: bool = True,
        max_length: int = 512,
        batch_size: int | None = None,
        errors: str = "raise",
        progress: bool | None = None,
        long_text: str = "truncate",
        stride: int = 128,
        return_status: bool = False,
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
                       errors=errors, progress=progress, return_status=return_status)
        return added if return_status else added.iloc[:, 0]

    def classify(
        self,
        *,
        model: str | os.PathLike = DEFAULT_CLASSIFIER,
        max_length: int = 512,
        all_scores: bool = False,
        errors: str = "raise",
        progress: bool | None = None,
        batch_size: int | None = None,
        long_text: str = "truncate",
        stride: int = 128,
        return_status: bool = False,
    ) -> pd.DataFrame:
        """Classify the texts; return a DataFrame of ``<name>_label`` and ``<name>_score`` with the same index.

        Options and row rules as :meth:`DistilDataFrameAccessor.classify`.
        """
        return _classify(self._obj, self._obj.name, model=model, max_length=max_length, long_text=long_text,
                         stride=stride, batch_size=batch_size, all_scores=all_scores, errors=errors,
                         progress=progress, return_status=return_status)
