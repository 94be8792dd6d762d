"""Embedding columns as Arrow fixed-size lists of float32, and back to numpy.

A fixed-size list column (``pd.ArrowDtype(pa.list_(pa.float32(), dim))``) keeps
one vector per row in a single contiguous buffer: pandas holds it without a
Python object per row, and ``to_parquet`` writes it natively.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["embedding_array", "embedding_arrow", "embedding_dtype", "to_numpy"]


def embedding_dtype(dim: int) -> "pd.ArrowDtype":
    """The pandas dtype of an embedding column of ``dim`` float32 values."""
    import pandas as pd
    import pyarrow as pa

    return pd.ArrowDtype(pa.list_(pa.float32(), dim))


def embedding_arrow(values: np.ndarray, valid: np.ndarray):
    """An Arrow fixed-size list of float32 from an (n, dim) matrix; null where not ``valid``."""
    import pyarrow as pa

    values = np.ascontiguousarray(values, dtype=np.float32)
    n, dim = values.shape
    mask = None if valid.all() else pa.array(~valid)
    return pa.FixedSizeListArray.from_arrays(pa.array(values.reshape(-1)), dim, mask=mask)


def embedding_array(values: np.ndarray, valid: np.ndarray) -> "pd.api.extensions.ExtensionArray":
    """A pandas Arrow array of fixed-size float32 lists from an (n, dim) matrix; null where not ``valid``."""
    import pandas as pd

    return pd.arrays.ArrowExtensionArray(embedding_arrow(values, valid))


def to_numpy(series: "pd.Series") -> np.ndarray:
    """An (n, dim) float32 matrix from a column of embeddings; null rows become NaN rows.

    Works without a Python loop on Arrow list columns (what ``embed`` returns, and
    what ``pd.read_parquet(..., dtype_backend="pyarrow")`` gives); object columns of
    arrays or lists (plain ``pd.read_parquet``) are stacked row by row.

    Examples
    --------
    >>> import distilframe
    >>> X = distilframe.to_numpy(df["text_embedding"])  # doctest: +SKIP
    >>> X.shape  # doctest: +SKIP
    (1000, 768)
    """
    import pandas as pd
    import pyarrow as pa

    if not isinstance(series, pd.Series):
        raise TypeError(f"Got {type(series).__name__} but expected a pandas Series of embeddings.")
    if isinstance(series.dtype, pd.ArrowDtype):
        arr = _combined(series)
        if pa.types.is_fixed_size_list(arr.type):
            dim = arr.type.list_size
            flat = arr.values.slice(arr.offset * dim, len(arr) * dim)
            out = flat.to_numpy(zero_copy_only=False).astype(np.float32, copy=True).reshape(len(arr), dim)
        elif pa.types.is_list(arr.type) or pa.types.is_large_list(arr.type):
            out = _from_variable_lists(arr, series.name)
        else:
            raise TypeError(f"Column {series.name!r} holds {arr.type}, not lists of floats (embeddings).")
        if arr.null_count:
            out[np.asarray(arr.is_null())] = np.nan
        return out
    return _from_objects(series)


def _combined(series: "pd.Series"):
    import pyarrow as pa

    data = pa.array(series.array)
    return data.combine_chunks() if isinstance(data, pa.ChunkedArray) else data


def _from_variable_lists(arr, name) -> np.ndarray:
    import pyarrow.compute as pc

    dims = np.unique(pc.list_value_length(arr).drop_null().to_numpy())
    if len(dims) > 1:
        raise ValueError(f"Column {name!r} holds lists of different lengths ({', '.join(map(str, dims[:5]))}): "
                         "not one embedding per row.")
    dim = int(dims[0]) if len(dims) else 0
    out = np.full((len(arr), dim), np.nan, dtype=np.float32)
    valid = ~np.asarray(arr.is_null())
    out[valid] = arr.flatten().to_numpy(zero_copy_only=False).astype(np.float32).reshape(-1, dim)
    return out


def _from_objects(series: "pd.Series") -> np.ndarray:
    rows = series.to_list()
    present = [np.asarray(r, dtype=np.float32) for r in rows if r is not None and not _is_missing(r)]
    dims = {r.shape for r in present}
    if len(dims) > 1 or any(len(d) != 1 for d in dims):
        raise ValueError(f"Column {series.name!r} does not hold one 1-D vector per row (shapes {sorted(dims)[:5]}).")
    dim = next(iter(dims))[0] if dims else 0
    out = np.full((len(rows), dim), np.nan, dtype=np.float32)
    it = iter(present)
    for i, r in enumerate(rows):
        if r is not None and not _is_missing(r):
            out[i] = next(it)
    return out


def _is_missing(value: object) -> bool:
    import pandas as pd

    return value is pd.NA or (isinstance(value, float) and np.isnan(value))
