"""Values to texts: the row rules and the column choice, shared by every entry point (pandas and
Dask accessors, files, panel).

From a column of values to the texts the executor takes (output columns: ``_frame``):

* a missing value (None, NaN, pd.NA) gives a null result in its row, and so does
  a string with no token (empty, whitespace only, zero-width characters...);
* a value that is not a string raises TypeError naming up to five of them
  (``errors="raise"``), or is converted (``errors="coerce"``): bytes are decoded
  as UTF-8, anything else goes through ``str()``;
* a string that is not valid Unicode (lone surrogates) raises ValueError naming
  its rows, or has those characters replaced by U+FFFD with ``errors="coerce"``.

The text column may be omitted when a frame has exactly one string column.
"""

from __future__ import annotations

import difflib
from typing import Any

import pandas as pd

from .errors import ColumnNotFoundError

__all__ = ["from_polars", "is_text", "missing_column", "select_column", "string_columns", "texts"]


def texts(series: pd.Series, errors: str, *, subject: str | None = None, unit: str = "index",
          coerce: str = "errors='coerce'") -> list[str | None]:
    """Python strings, with None for missing values; other values per ``errors``.

    The errors name the rows by their index labels: ``subject`` (default "Column 'name'"), ``unit`` and
    ``coerce`` let a caller whose labels are other numbers (a file's row numbers) say so in its own words."""
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
    if subject is None:
        subject = f"Column {series.name!r}" if series.name is not None else "The Series"
    if bad:
        one = len(bad) == 1
        raise TypeError(
            f"{subject} has {len(bad)} non-string value{'' if one else 's'}, {_row_labels(series, values, bad, unit)}. "
            f"Pass {coerce} to convert {'it' if one else 'them'} (bytes are decoded as UTF-8, others use str()), "
            "or clean the column first."
        )
    _check_unicode(texts, series, errors, subject, unit, coerce)
    return texts


def from_polars(series: Any) -> pd.Series:
    """A Polars column as the pandas Series :func:`texts` takes (without importing Polars): Arrow-backed, so nulls
    stay nulls and numbers keep their own text (an integer column with nulls does not become floats); a float
    NaN is missing, as in pandas, not the text "nan". An unnamed column stays unnamed."""
    if series.dtype.is_float():
        series = series.fill_nan(None)
    return series.to_pandas(use_pyarrow_extension_array=True).rename(series.name or None)


def _check_unicode(texts: list[str | None], series: pd.Series, errors: str, what: str, unit: str,
                   coerce: str) -> None:
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
        one = len(bad) == 1
        raise ValueError(
            f"{what} has {len(bad)} {'string that is' if one else 'strings that are'} not valid Unicode (lone "
            f"surrogates, as left by bytes decoded with errors='surrogateescape'), "
            f"{_row_labels(series, texts, bad, unit)}. Pass {coerce} to replace those characters with U+FFFD, "
            "or decode the data correctly."
        )


def _row_labels(series: pd.Series, values: Any, rows: list[int], unit: str = "index") -> str:
    """"at index 4 (int), 'b' (bytes)" by index labels, or "in row 6 (int)" / "in rows 6 (int), 9 (float)"
    for another ``unit`` (a file's row or line numbers)."""
    shown = ", ".join(f"{series.index[i]!r} ({type(values[i]).__name__})" for i in rows[:5])
    shown += f" and {len(rows) - 5} more" if len(rows) > 5 else ""
    if unit == "index":
        return f"at index {shown}"
    return f"in {unit}{'' if len(rows) == 1 else 's'} {shown}"


def missing_column(column: Any, names: list[Any]) -> ColumnNotFoundError:
    """The error for a column that is not there, with the closest match and the columns that are."""
    shown = [str(c) for c in names]
    close = difflib.get_close_matches(str(column), shown, n=1, cutoff=0.5)
    hint = f" Did you mean {names[shown.index(close[0])]!r}?" if close else ""
    listing = ", ".join(map(repr, names[:50])) + (" ..." if len(names) > 50 else "")
    return ColumnNotFoundError(f"Column {column!r} not found.{hint} Columns: {listing}")


def is_text(series: pd.Series) -> bool:
    """A column of strings: a string, Arrow string or categorical-of-strings dtype, or objects that are all
    strings (in the first 100 non-missing values)."""
    dtype = series.dtype
    if isinstance(dtype, pd.CategoricalDtype):
        return is_text(pd.Series(dtype.categories))
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


def string_columns(df: pd.DataFrame) -> list[Any]:
    """The names of ``df``'s text columns, in order."""
    return [name for i, name in enumerate(df.columns) if is_text(df.iloc[:, i])]


def select_column(df: pd.DataFrame, column: Any, example: str = "df.distil.embed('text')") -> pd.Series:
    """The one text column ``column`` names (or the frame's only string column when it is None), with errors
    that say what is wrong: a missing name (and the closest one), an ambiguous or a duplicated name; ``example``
    is the call that names it, for the message."""
    if column is None:
        candidates = string_columns(df)
        if len(candidates) == 1:
            return select_column(df, candidates[0])
        listed = ", ".join(map(repr, candidates)) or "none"
        raise ValueError(
            f"column= is needed: the frame has {len(candidates)} string columns ({listed}). "
            f"Name the text column, e.g. {example}."
        )
    try:
        present = column in df.columns
    except TypeError:  # unhashable: a list, a dict...
        raise TypeError(
            f"Got column={column!r} ({type(column).__name__}) but expected one column name. "
            "Run embed once per column."
        ) from None
    if not present:
        raise missing_column(column, list(df.columns))
    selected = df[column]
    if isinstance(selected, pd.DataFrame):
        found = ", ".join(map(repr, selected.columns[:5]))
        if isinstance(df.columns, pd.MultiIndex) and not isinstance(column, tuple):
            raise ValueError(f"{column!r} selects {selected.shape[1]} columns under it ({found}): "
                             "pass the full tuple of the text column.")
        raise ValueError(f"Column name {column!r} appears {selected.shape[1]} times; rename the duplicates first.")
    return selected
