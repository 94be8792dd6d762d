"""The row rules, shared by every entry point (pandas accessor, files, Dask).

From a column of values to texts for the executor, and from the executor's
result to output columns, as plain numpy arrays that each entry point wraps in
its own container (pandas, Arrow):

* a missing value (None, NaN, pd.NA) gives a null result in its row, and so does
  a string with no token (empty, whitespace only, zero-width characters...);
* a value that is not a string raises TypeError naming up to five of them
  (``errors="raise"``), or is converted (``errors="coerce"``): bytes are decoded
  as UTF-8, anything else goes through ``str()``;
* a string that is not valid Unicode (lone surrogates) raises ValueError naming
  its rows, or has those characters replaced by U+FFFD with ``errors="coerce"``.

Output columns are named after the input column: ``text`` -> ``text_embedding``,
``text_label``, ``text_score``, ``text_score_<LABEL>``, ``text_n_tokens``,
``text_status``; a MultiIndex column ``("a", "text")`` -> ``("a", "text_embedding")``.
"""

from __future__ import annotations

import difflib
from typing import Any

import numpy as np
import pandas as pd

from . import executor
from .errors import ColumnNotFoundError

__all__ = ["ERRORS", "check_options", "classification", "missing_column", "out_name", "status", "texts"]

ERRORS = ("raise", "coerce")


def check_options(task: str, errors: str, flags: dict[str, object], **options: Any) -> None:
    """Reject bad options before any model is loaded or any text is read."""
    if errors not in ERRORS:
        raise ValueError(f"Got errors={errors!r} but expected 'raise' or 'coerce'.")
    for flag, value in flags.items():
        if not isinstance(value, (bool, np.bool_)):
            raise ValueError(f"Got {flag}={value!r} but expected True or False.")
    executor.check_options(task=task, **options)


def texts(series: pd.Series, errors: str) -> list[str | None]:
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
            f"{what}{name} has {len(bad)} non-string values, at index {_row_labels(series, values, bad)}. "
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
            f"decoded with errors='surrogateescape'), at index {_row_labels(series, texts, bad)}. "
            "Pass errors='coerce' to replace those characters with U+FFFD, or decode the data correctly."
        )


def _row_labels(series: pd.Series, values: Any, rows: list[int]) -> str:
    shown = ", ".join(f"{series.index[i]!r} ({type(values[i]).__name__})" for i in rows[:5])
    return shown + (f" and {len(rows) - 5} more" if len(rows) > 5 else "")


def out_name(name: Any, suffix: str) -> Any:
    """``text`` -> ``text_<suffix>``; a MultiIndex column keeps its levels: ``("a", "text_<suffix>")``."""
    if isinstance(name, tuple) and name:
        return (*name[:-1], f"{name[-1]}_{suffix}")
    return f"{'text' if name is None else name}_{suffix}"


def classification(result: executor.Result, labels: tuple[str, ...], name: Any,
                   all_scores: bool) -> dict[Any, np.ndarray]:
    """Label (object array, None where there is no result), its score, and optionally every score."""
    probs = result.values
    best = np.argmax(np.nan_to_num(probs, nan=-1.0), axis=1)  # NaN rows (no result) are masked below
    columns: dict[Any, np.ndarray] = {
        out_name(name, "label"): np.where(result.valid, np.asarray(labels, dtype=object)[best], None),
        out_name(name, "score"): probs[np.arange(len(probs)), best],
    }
    if all_scores:
        for j, label in enumerate(labels):
            columns[out_name(name, f"score_{label}")] = probs[:, j]
    return columns


def status(result: executor.Result, name: Any) -> dict[Any, np.ndarray]:
    """Tokens before truncation (-1 where the value is missing) and what happened to each row."""
    return {out_name(name, "n_tokens"): result.n_tokens, out_name(name, "status"): result.status}


def missing_column(column: Any, names: list[Any]) -> ColumnNotFoundError:
    """The error for a column that is not there, with the closest match and the columns that are."""
    shown = [str(c) for c in names]
    close = difflib.get_close_matches(str(column), shown, n=1, cutoff=0.5)
    hint = f" Did you mean {names[shown.index(close[0])]!r}?" if close else ""
    listing = ", ".join(map(repr, names[:50])) + (" ..." if len(names) > 50 else "")
    return ColumnNotFoundError(f"Column {column!r} not found.{hint} Columns: {listing}")
