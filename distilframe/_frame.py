"""One output schema: from a model's facts and the run options, the output columns and their types;
the pandas columns, the Arrow columns of result files and Dask's ``meta`` all come from it.

    Result (numpy) ─► OutputSchema.to_pandas(result, index)   accessors, panel, Dask partitions
                   ─► OutputSchema.to_arrow(result)           result files (Parquet, CSV, xlsx)
                      OutputSchema.empty_pandas()             Dask's meta (the same dtypes, no rows)

Columns are named after the input column: ``text`` -> ``text_embedding``, ``text_label``,
``text_score``, ``text_score_<LABEL>``, ``text_n_tokens``, ``text_status``; a MultiIndex column
``("a", "text")`` -> ``("a", "text_embedding")``.

An embedding column is an Arrow fixed-size list of float32 (``pd.ArrowDtype(pa.list_(pa.float32(),
dim))``): one vector per row in a single contiguous buffer; pandas holds it without a Python object
per row, and Parquet stores it natively. :func:`to_numpy` reads it back as an (n, dim) matrix.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from ._options import RunOptions, check_task
from ._run import STATUSES, Result
from ._version import __version__

if TYPE_CHECKING:
    from pathlib import Path

    import pandas as pd

    from ._manager import LoadedModel

__all__ = ["META_PREFIX", "SHAPING", "STEPS_KEY", "OutputSchema", "embedding_array", "embedding_arrow",
           "embedding_dtype", "file_metadata", "out_name", "output_target", "parquet_table", "shaping",
           "step_to_write", "to_numpy", "with_columns", "with_step"]

META_PREFIX = "distilframe."  # key-value metadata of result files: distilframe.<key>
# The metadata that shapes an embedding: a column is another's embeddings (reused, hashed alike) when these match.
SHAPING = ("checkpoint_hash", "pooling", "normalize", "max_length", "prompt", "dim")


def shaping(meta: dict[str, str]) -> dict[str, str]:
    """The settings of ``meta`` (an embed step's file metadata) that shape its vectors."""
    return {k: meta.get(k, "") for k in SHAPING}


def out_name(name: Any, suffix: str) -> Any:
    """``text`` -> ``text_<suffix>``; a MultiIndex column keeps its levels: ``("a", "text_<suffix>")``."""
    if isinstance(name, tuple) and name:
        return (*name[:-1], f"{name[-1]}_{suffix}")
    return f"{'text' if name is None else name}_{suffix}"


@dataclass(frozen=True)
class OutputSchema:
    """The output columns of one ``task`` on the input column ``column``.

    ``dim`` is the embedding's dimension, ``labels`` the classifier's label names (in output order).
    """

    task: str
    column: Any
    dim: int = 0
    labels: tuple[str, ...] = ()
    all_scores: bool = False
    return_status: bool = False

    @classmethod
    def of(cls, task: str, column: Any, options: RunOptions, *, dim: int = 0,
           labels: Sequence[str] = ()) -> "OutputSchema":
        """The schema of ``task`` with these options, for a model of that dimension and those labels."""
        check_task(task)
        return cls(task=task, column=column, dim=int(dim), labels=tuple(labels),
                   all_scores=bool(options.all_scores) and task == "classify",
                   return_status=bool(options.return_status))

    @classmethod
    def for_model(cls, task: str, column: Any, options: RunOptions, model: "LoadedModel") -> "OutputSchema":
        dim = model.dim_for(options) if task == "embed" else model.dim
        return cls.of(task, column, options, dim=dim, labels=model.labels)

    @property
    def kinds(self) -> dict[Any, str]:
        """Output column name -> what it holds: embedding, label, score, n_tokens or status."""
        out: dict[Any, str] = {}
        if self.task == "embed":
            out[out_name(self.column, "embedding")] = "embedding"
        else:
            out[out_name(self.column, "label")] = "label"
            out[out_name(self.column, "score")] = "score"
            if self.all_scores:
                for label in self.labels:
                    out[out_name(self.column, f"score_{label}")] = "score"
        if self.return_status:
            out[out_name(self.column, "n_tokens")] = "n_tokens"
            out[out_name(self.column, "status")] = "status"
        return out

    @property
    def names(self) -> list[Any]:
        return list(self.kinds)

    # -- numpy: the values of every column

    def values(self, result: Result) -> dict[Any, np.ndarray]:
        """Each output column as a numpy array: the embedding matrix; labels as an object array (None
        where there is no result); float32 scores; token counts (-1 for missing values); status codes."""
        out: dict[Any, np.ndarray] = {}
        if self.task == "embed":
            out[out_name(self.column, "embedding")] = result.values
        else:
            probs = result.values
            best = np.argmax(np.nan_to_num(probs, nan=-1.0), axis=1)  # NaN rows (no result) are masked below
            out[out_name(self.column, "label")] = np.where(result.valid, np.asarray(self.labels, dtype=object)[best],
                                                           None)
            out[out_name(self.column, "score")] = probs[np.arange(len(probs)), best]
            if self.all_scores:
                for j, label in enumerate(self.labels):
                    out[out_name(self.column, f"score_{label}")] = probs[:, j]
        if self.return_status:
            out[out_name(self.column, "n_tokens")] = result.n_tokens
            out[out_name(self.column, "status")] = result.status
        return out

    # -- pandas

    def pandas_dtypes(self) -> dict[Any, Any]:
        import pandas as pd

        dtypes = {"embedding": embedding_dtype(self.dim) if self.task == "embed" else None,
                  "label": pd.StringDtype(), "score": np.dtype("float32"), "n_tokens": pd.Int64Dtype(),
                  "status": pd.CategoricalDtype(list(STATUSES))}
        return {name: dtypes[kind] for name, kind in self.kinds.items()}

    def to_pandas(self, result: Result, index: "pd.Index") -> "pd.DataFrame":
        """The output columns as a DataFrame with ``index`` (a MultiIndex of columns for a tuple name)."""
        import pandas as pd

        arrays: list[Any] = []
        for (name, kind), values in zip(self.kinds.items(), self.values(result).values()):
            if kind == "embedding":
                arrays.append(embedding_array(values, result.valid))
            elif kind == "label":
                arrays.append(pd.array(values, dtype=pd.StringDtype()))
            elif kind == "n_tokens":
                counts = pd.array(np.where(values < 0, 0, values), dtype="Int64")
                counts[values < 0] = pd.NA
                arrays.append(counts)
            elif kind == "status":
                arrays.append(pd.Categorical(values, categories=list(STATUSES)))
            else:
                arrays.append(values)
        return self._frame(arrays, index)

    def empty_pandas(self) -> "pd.DataFrame":
        """No rows, the same columns and dtypes as :meth:`to_pandas` (Dask's ``meta``)."""
        import pandas as pd

        arrays = [pd.Series([], dtype=dtype).array for dtype in self.pandas_dtypes().values()]
        return self._frame(arrays, pd.RangeIndex(0))

    def _frame(self, arrays: list[Any], index: "pd.Index") -> "pd.DataFrame":
        import pandas as pd

        out = pd.DataFrame(dict(enumerate(arrays)), index=index)
        out.columns = pd.MultiIndex.from_tuples(self.names) if isinstance(self.column, tuple) else self.names
        return out

    # -- Arrow (result files)

    def to_arrow(self, result: Result) -> dict[Any, Any]:
        """The output columns as Arrow arrays: fixed-size lists of float32, strings, float32, int64."""
        import pyarrow as pa

        out: dict[Any, Any] = {}
        for (name, kind), values in zip(self.kinds.items(), self.values(result).values()):
            if kind == "embedding":
                out[name] = embedding_arrow(values, result.valid)
            elif kind in ("label", "status"):
                out[name] = pa.array(values, type=pa.string())
            elif kind == "n_tokens":
                out[name] = pa.array(values, type=pa.int64(), mask=values < 0)
            else:  # a score: null (an empty CSV or spreadsheet cell) in a row without a result, as its label
                out[name] = pa.array(values, type=pa.float32(), mask=~np.asarray(result.valid, dtype=bool))
        return out


def file_metadata(task: str, column: Any, options: RunOptions, model: "LoadedModel") -> dict[str, str]:
    """The key-value metadata of a result file (without the ``distilframe.`` prefix): what made it.

    Shared by the file pipeline and the Dask writer, so both kinds of output describe themselves alike.
    """
    from ._checkpoint import content_hash

    options = model.fill(options)  # what the run used: the model's own settings where none were given
    shaped = options.for_task(task)
    meta = {
        "task": task,
        "model": model.name,
        "checkpoint_hash": content_hash(model.checkpoint),  # SHA-256 of its files, first 32 hex digits
        "column": column if isinstance(column, str) else json.dumps(column, default=str),
        "distilframe_version": __version__,
        "precision": model.precision,
        **{k: json.dumps(v) if not isinstance(v, str) else v for k, v in shaped.items()},
    }
    meta["max_length"] = str(min(options.max_length, model.checkpoint.max_positions))
    if task == "embed":
        meta["dim"] = str(model.dim_for(options))
        if model.checkpoint.sentence is not None:
            meta["sentence_modules"] = json.dumps(model.checkpoint.sentence.describe(), sort_keys=True)
    else:
        meta["labels"] = json.dumps(list(model.labels))
        if model.recheck:  # int8: the margin under which labels were decided in fp32 (absent: never)
            meta["int8_recheck"] = repr(float(model.recheck))
    return meta


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


def with_columns(df: "pd.DataFrame", added: "pd.DataFrame") -> "pd.DataFrame":
    """A shallow copy of ``df`` with the columns of ``added`` set by position (any index shape is kept);
    a column of the same name is replaced. The steps ``added`` records follow those ``df`` records."""
    out = df.copy(deep=False)
    for name in added.columns:
        out[name] = added[name].array
    out.attrs[STEPS_KEY] = _merge(df.attrs.get(STEPS_KEY, []), added.attrs.get(STEPS_KEY, []))
    if not out.attrs[STEPS_KEY]:
        del out.attrs[STEPS_KEY]
    return out


# -- results that describe themselves: the steps a frame holds, written as one Parquet file

STEPS_KEY = "distilframe"  # a result frame's pandas ``attrs``: the steps whose output columns it holds


def with_step(result: Any, source: Any, step: dict[str, Any]) -> Any:
    """Record ``step`` (``outputs``: its column names, and what made them) in ``result.attrs``, after the steps
    ``source`` records. pandas carries ``attrs`` along through copies and column selections."""
    result.attrs[STEPS_KEY] = _merge(source.attrs.get(STEPS_KEY, []), [step])
    return result


def _merge(before: list[dict[str, Any]], added: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The earlier steps whose output columns the added ones do not overwrite, then the added ones."""
    written = {_hashable(c) for s in added for c in s["outputs"]}
    return [s for s in before if not written & {_hashable(c) for c in s["outputs"]}] + list(added)


def step_to_write(attrs: dict[str, Any], columns: Sequence[Any], kind: str = "frame") -> dict[str, Any]:
    """The one recorded step whose output columns ``columns`` still holds (refused if none or several)."""
    now = {_hashable(c) for c in columns}
    steps = [s for s in attrs.get(STEPS_KEY, []) if {_hashable(c) for c in s["outputs"]} <= now]
    if not steps:
        raise ValueError(f"This {kind} holds no distilframe result (its embed/classify output columns are not "
                         "there): call .distil.embed(...) or .distil.classify(...) first, or use to_parquet for "
                         "other frames.")
    if len(steps) > 1:
        kinds = ", ".join(f"{s['task']} of {s['column']!r}" for s in steps)
        raise ValueError(f"This {kind} holds the results of {len(steps)} distilframe steps ({kinds}), but a file "
                         "describes one: write each result with its own to_parquet, or drop the other's columns.")
    return steps[0]


def _hashable(name: Any) -> Any:
    return tuple(name) if isinstance(name, list) else name


def output_target(path: Any, overwrite: bool, index: "pd.Index", write_index: bool | None) -> tuple[Path, bool]:
    """Where a result goes and whether its index is written, refused before any work: an existing output
    without ``overwrite``, a missing folder. The index is written by default when it is named or holds other
    labels than integers (strings, dates...): decided by its names and dtypes, never by its values, so that
    every chunk of a job and every partition of a Dask frame writes the same columns. An unnamed integer index
    (a range, or what filtering and sorting leave of one) is row numbers, not data. The file has no pandas
    metadata to restore an index from: it comes back as columns (:func:`parquet_table`)."""
    from pathlib import Path  # noqa: F811 (at run time; the annotation's is for type checkers)

    from .errors import FileError

    target = Path(path).expanduser()
    if target.exists() and not overwrite:
        raise FileError(f"Output {str(target)!r} already exists. Pass overwrite=True to replace it.")
    if not target.parent.is_dir():
        raise FileError(f"The output folder {str(target.parent)!r} does not exist.")
    if write_index is None:
        import pandas as pd

        levels = [index.get_level_values(i) for i in range(index.nlevels)]
        write_index = any(n is not None for n in index.names) or not all(
            pd.api.types.is_integer_dtype(level.dtype) for level in levels)
    return target, bool(write_index)


def parquet_table(frame: "pd.DataFrame", metadata: dict[str, str], write_index: bool) -> Any:
    """An Arrow table of ``frame`` with the ``distilframe.*`` metadata and no pandas metadata: pandas cannot read
    a fixed-size list dtype back from its own metadata (pandas#59738), and plain ``pd.read_parquet`` reads this."""
    import pyarrow as pa

    if write_index and any(name is None for name in frame.index.names):  # named as reset_index() names them
        taken = {str(name) for name in [*frame.columns, *frame.index.names] if name is not None}
        names = []
        for i, name in enumerate(frame.index.names):
            if name is None:  # index (one level), else level_<i>; the next free level_<n> where taken
                candidates = (["index"] if frame.index.nlevels == 1 else []) + [f"level_{n}" for n in range(
                    i, i + len(taken) + 2)]
                name = next(c for c in candidates if c not in taken)
                taken.add(name)
            names.append(name)
        frame = frame.rename_axis(names)
    table = pa.Table.from_pandas(frame, preserve_index=write_index)
    return table.replace_schema_metadata({f"{META_PREFIX}{k}": v for k, v in metadata.items()})
