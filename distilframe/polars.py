"""The ``.distil`` namespace on Polars DataFrames, LazyFrames and Series: the pandas accessor's pipeline.

    df.distil.embed("text")              a DataFrame with ``text_embedding``: pl.Array(pl.Float32, dim)
    df.distil.classify("review")         ``review_label`` (String) and ``review_score`` (Float32)
    df.distil.search("late parcel", "review", k=5)
    lf.distil.embed("text")              a LazyFrame: the model runs batch by batch when it is streamed
    lf.distil.sink_parquet(path)         streamed to one Parquet file with the file pipeline's metadata

* Each column goes through the same pipeline, options object, row rules and output schema as the pandas
  accessor, so results are equal row for row; missing texts give nulls (not NaN), row order is kept.
  ``n_tokens`` is Int64 and ``status`` a ``pl.Enum`` of the statuses.
* LazyFrames: the outputs are one ``map_batches`` expression, elementwise, so the streaming engine runs
  it on each batch of the query (about 75,000 rows at a time, measured with Polars 2.1):
  ``sink_parquet`` never holds the whole table, and ``collect(engine="streaming")`` runs the model batch
  by batch (``collect(engine="in-memory")`` passes the whole column in one call). The output schema (the
  embedding's dimension, the labels) is read from the checkpoint when the query is built; the model is
  loaded then only for a classifier whose config names no labels. ``search`` needs every row at once
  and is not offered on a LazyFrame: collect first.
* Polars frames carry no metadata, so the step that made a result is recorded beside the frame that
  ``embed``/``classify`` returned (until it is garbage collected): ``write_parquet`` / ``sink_parquet``
  on that frame write the file pipeline's ``distilframe.*`` metadata. A frame derived from it by any
  other Polars operation has no record; write the result first, or use ``distilframe.embed_file``.

Importing distilframe registers these namespaces as soon as ``polars`` is imported (before or after
distilframe); ``import distilframe.polars`` does it explicitly.
"""

from __future__ import annotations

import os
import weakref
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import pandas as pd

try:
    import polars as pl
except ImportError as e:  # pragma: no cover - depends on the environment
    raise ImportError('distilframe.polars needs Polars: pip install "distilframe[polars]"', name=e.name) from e

from . import _fs as fs
from . import _text
from ._defaults import default_model
from ._frame import META_PREFIX, STEPS_KEY, OutputSchema, file_metadata, output_target, step_to_write, with_step
from ._options import DEFAULTS, RunOptions
from ._pipeline import describe, load
from ._run import STATUSES
from ._similarity import (added_columns, check_k, check_label_prompts, check_labels, check_queries, check_threshold,
                          duplicates, embedded_column, frame_embeddings, result_names, top_rows, zero_shot_metadata)

__all__ = ["DistilLazyFrameNamespace", "DistilPolarsFrameNamespace", "DistilPolarsSeriesNamespace"]

_STRUCT = "__distilframe_outputs"  # the one struct column a LazyFrame's outputs travel in, then unnested


# ------------------------------------------------------------------------------ records of what made a frame

class _Record:
    """The ``attrs`` a pandas frame would carry: the steps whose output columns a Polars frame holds."""

    def __init__(self, attrs: dict[str, Any] | None = None) -> None:
        self.attrs = dict(attrs or {})


_RECORDS: dict[int, tuple[weakref.ref, _Record]] = {}


def _record_of(frame: Any) -> _Record:
    entry = _RECORDS.get(id(frame))
    return entry[1] if entry is not None and entry[0]() is frame else _Record()


def _remember(frame: Any, source: Any, step: dict[str, Any]) -> Any:
    """Record ``step`` for ``frame``, after the steps recorded for ``source`` whose columns it does not replace."""
    record = _Record()
    with_step(record, _record_of(source), step)
    return _store(frame, record)


def _kept(frame: Any, source: Any) -> Any:
    """``frame``, a copy of ``source`` with columns added that no step made, with ``source``'s record (as pandas
    keeps ``attrs``): its embedding column is still known to be its model's, and it can still be written."""
    record = _record_of(source)
    return _store(frame, record) if record.attrs else frame


def _store(frame: Any, record: _Record) -> Any:
    key = id(frame)
    _RECORDS[key] = (weakref.ref(frame, lambda _, key=key: _RECORDS.pop(key, None)), record)
    return frame


# ------------------------------------------------------------------------------ columns and types

def _is_text_dtype(dtype: Any, *, named: bool = True) -> bool:
    """A column of texts: String, Categorical or Enum; an all-null column too when named (never picked alone,
    as pandas never picks an all-missing column)."""
    return dtype == pl.String or isinstance(dtype, (pl.Categorical, pl.Enum)) or (named and dtype == pl.Null)


def _column(schema: Any, column: Any, errors: str, example: str = "df.distil.embed('text')", *,
            vectors: bool = False) -> str:
    """The text column ``column`` names (or the only text column; with ``vectors``, for search, else the one
    whose ``<column>_embedding`` the frame holds), with the pandas accessor's errors."""
    names = list(schema.names())
    if column is None:
        texts = [n for n in names if _is_text_dtype(schema[n], named=False)]
        held = embedded_column(names, texts) if vectors else None
        if len(texts) != 1 and held is None:
            listed = ", ".join(map(repr, texts)) or "none"
            raise ValueError(f"column= is needed: the frame has {len(texts)} string columns ({listed}). Name the "
                             f"text column, e.g. {example}.")
        column = texts[0] if held is None else held
    if not isinstance(column, str):
        raise TypeError(f"Got column={column!r} ({type(column).__name__}) but expected one column name. Run embed "
                        "once per column.")
    if column not in names:
        raise _text.missing_column(column, names)
    if not _is_text_dtype(schema[column]) and errors != "coerce":
        raise TypeError(f"Column {column!r} has dtype {schema[column]}, not text: pick a string column, or pass "
                        "errors='coerce' to read its values as text.")
    return column


def _dtypes(schema: OutputSchema) -> dict[str, Any]:
    """The Polars dtype of each output column."""
    kinds = {"embedding": pl.Array(pl.Float32, schema.dim), "label": pl.String, "score": pl.Float32,
             "n_tokens": pl.Int64, "status": pl.Enum(list(STATUSES))}
    return {name: kinds[kind] for name, kind in schema.kinds.items()}


def _outputs(task: str, series: Any, model: Any, options: RunOptions, labels: Any, template: Any,
             dtypes: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
    """The output columns for a Polars Series of texts, as a Polars frame of ``dtypes`` (default: the pandas
    result's columns), and the step the pandas result records."""
    added = added_columns(task, _text.from_polars(series), model, options, labels=labels, template=template)
    out = pl.from_pandas(added, nan_to_null=True)  # a score without a result is null, as its label
    if dtypes is None:
        dtypes = {name: pl.Enum(list(STATUSES)) if isinstance(out[name].dtype, pl.Categorical) else out[name].dtype
                  for name in out.columns}
    return out.select(pl.col(name).cast(dtype) for name, dtype in dtypes.items()), added.attrs[STEPS_KEY][0]


def _model(task: str, model: Any, labels: Any, template: Any) -> Any:
    """The session default (set now, e.g. by the model picker) made explicit, as a name or a path string."""
    if model is None:
        model = default_model("search" if task == "classify" and (labels is not None or template is not None)
                              else task)
    return os.fspath(model) if isinstance(model, os.PathLike) else model


# ------------------------------------------------------------------------------ writing results

def _write(frame: Any, path: str | os.PathLike, overwrite: bool, kind: str,
           write: Callable[[Any, Path, dict[str, str]], None]) -> Path:
    record = _record_of(frame)
    columns = frame.collect_schema().names() if isinstance(frame, pl.LazyFrame) else frame.columns
    if not record.attrs.get(STEPS_KEY):
        raise ValueError(f"This {kind} has no record of a distilframe step: Polars frames carry no metadata, so only "
                         f"the frame .distil.embed(...) or .distil.classify(...) returned can be written with its "
                         f"metadata. Write it before other operations (or use distilframe.embed_file), or use "
                         f"Polars' own {'sink_parquet' if isinstance(frame, pl.LazyFrame) else 'write_parquet'} for "
                         "a file without it.")
    step = step_to_write(record.attrs, columns, kind)
    target, _ = output_target(path, overwrite, pd.RangeIndex(0), False)  # refused before the model is loaded
    metadata = step["metadata"] if "metadata" in step else _lazy_metadata(step)
    meta = {**metadata, "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    with fs.staged_file(target) as tmp:
        write(frame, tmp, {f"{META_PREFIX}{k}": v for k, v in meta.items()})
    return target


def _lazy_metadata(step: dict[str, Any]) -> dict[str, str]:
    """A LazyFrame step's file metadata: what the run will use (the model is loaded, as the run needs it)."""
    options = step["options"]
    if step["labels"] is not None:
        loaded = load("embed", step["model"], options)
        return zero_shot_metadata(step["column"], loaded.fill(options), loaded, step["labels"], step["template"])
    return file_metadata(step["task"], step["column"], options, load(step["task"], step["model"], options))


# ------------------------------------------------------------------------------ the namespaces

class _Eager:
    """What the DataFrame and Series namespaces share: one column's outputs, and search."""

    def _run(self, task: str, series: Any, arguments: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        options = RunOptions.pick(arguments)
        labels, template = arguments.get("labels"), arguments.get("template")
        model = _model(task, arguments["model"], labels, template)
        return _outputs(task, series, model, options, labels, template)

    def _search(self, frame: Any, name: str, arguments: dict[str, Any]) -> Any:
        queries, k = check_queries(arguments["query"]), check_k(arguments["k"])
        embedded = self._embedded(frame, name, arguments)
        rows, scores = top_rows(embedded, queries, k)
        score_name, query_name = result_names(pd.DataFrame(columns=frame.columns))
        parts = []
        for r, s, q in zip(rows, scores, queries):
            part = frame[r[r >= 0]].with_columns(pl.Series(score_name, s[r >= 0], dtype=pl.Float32))
            parts.append(part.with_columns(pl.lit(q, dtype=pl.String).alias(query_name)) if len(queries) > 1
                         else part)
        return pl.concat(parts) if len(parts) > 1 else parts[0]

    def _embedded(self, frame: Any, name: str, arguments: dict[str, Any]) -> Any:
        """The text column ``name``'s embeddings for search and duplicates: ``embeddings=``, the frame's
        recorded ``<name>_embedding``, or the pipeline's (``_similarity.frame_embeddings``, on a pandas copy)."""
        options = RunOptions.pick(arguments)
        embeddings = arguments["embeddings"]
        if isinstance(embeddings, str) and embeddings not in frame.columns:
            raise _text.missing_column(embeddings, frame.columns)
        table = pd.DataFrame({name: _text.from_polars(frame.get_column(name))})
        table.attrs = _record_of(frame).attrs  # which model made an existing embedding column
        wanted = embeddings if isinstance(embeddings, str) else f"{name}_embedding"
        if wanted in frame.columns:
            table[wanted] = _text.from_polars(frame.get_column(wanted))
        if isinstance(embeddings, pl.Series):  # no index to align by: it must be this frame's rows, in order
            if len(embeddings) != len(frame):
                raise ValueError(f"Got embeddings= a Series of {len(embeddings)} rows for a frame of {len(frame)}: "
                                 "pass a column of this frame (its name, or the Series in the same row order).")
            embeddings = pd.Series(_text.from_polars(embeddings).array, index=table.index, name=embeddings.name)
        return frame_embeddings(table, table[name], arguments["model"], options, embeddings)


@pl.api.register_dataframe_namespace("distil")
class DistilPolarsFrameNamespace(_Eager):
    """DistilBERT on a Polars DataFrame: ``df.distil.embed("text")``, ``df.distil.classify("review")``.

    Arguments and results as the pandas accessor's (``pandas.DataFrame.distil``), as Polars columns.
    """

    def __init__(self, df: Any) -> None:
        self._df = df

    def embed(self, column: str | None = None, *, model: str | os.PathLike | None = None,
              pooling: str | None = DEFAULTS.pooling, normalize: bool | None = DEFAULTS.normalize,
              max_length: int | None = DEFAULTS.max_length, prompt: str | None = DEFAULTS.prompt,
              prompt_name: str | None = DEFAULTS.prompt_name, batch_size: int | None = DEFAULTS.batch_size,
              errors: str = DEFAULTS.errors, progress: bool | None = DEFAULTS.progress,
              long_text: str = DEFAULTS.long_text, stride: int = DEFAULTS.stride,
              return_status: bool = DEFAULTS.return_status, precision: str = DEFAULTS.precision,
              num_threads: int | None = DEFAULTS.num_threads, cache: bool = DEFAULTS.cache) -> Any:
        """A new frame with ``<column>_embedding`` (``pl.Array(pl.Float32, dim)``, null for a missing text)
        added, or replaced where it exists; arguments as ``pandas.DataFrame.distil.embed``."""
        return self._with("embed", column, locals())

    def classify(self, column: str | None = None, *, model: str | os.PathLike | None = None,
                 labels: list[str] | None = None, template: str | None = None,
                 max_length: int | None = DEFAULTS.max_length, all_scores: bool = DEFAULTS.all_scores,
                 errors: str = DEFAULTS.errors, progress: bool | None = DEFAULTS.progress,
                 batch_size: int | None = DEFAULTS.batch_size, long_text: str = DEFAULTS.long_text,
                 stride: int = DEFAULTS.stride, return_status: bool = DEFAULTS.return_status,
                 precision: str = DEFAULTS.precision, num_threads: int | None = DEFAULTS.num_threads,
                 cache: bool = DEFAULTS.cache) -> Any:
        """A new frame with ``<column>_label`` (String) and ``<column>_score`` (Float32) added; arguments (zero-shot
        ``labels=`` included) as ``pandas.DataFrame.distil.classify``."""
        return self._with("classify", column, locals())

    def search(self, query: str | list[str], column: str | None = None, *, k: int = 10,
               model: str | os.PathLike | None = None, embeddings: Any = None,
               pooling: str | None = DEFAULTS.pooling, normalize: bool | None = DEFAULTS.normalize,
               max_length: int | None = DEFAULTS.max_length, prompt: str | None = DEFAULTS.prompt,
               errors: str = DEFAULTS.errors, progress: bool | None = DEFAULTS.progress,
               precision: str = DEFAULTS.precision, num_threads: int | None = DEFAULTS.num_threads,
               cache: bool = DEFAULTS.cache) -> Any:
        """The ``k`` rows nearest to the query (or to each of several): every column, plus ``score`` (Float32
        cosine), best first, and ``query`` for several queries (``search_score``/``search_query`` where the frame
        has those names). Call ``df.with_row_index()`` first to keep row numbers. ``embeddings``: a column
        name or a Series of vectors. As ``pandas.DataFrame.distil.search``."""
        options = RunOptions.pick(locals())
        name = _column(self._df.schema, column, options.errors, "df.distil.search('a query', 'text')",
                       vectors=embeddings is None)
        return self._search(self._df, name, locals())

    def duplicates(self, column: str | None = None, *, threshold: float = 0.95,
                   model: str | os.PathLike | None = None, embeddings: Any = None,
                   pooling: str | None = DEFAULTS.pooling, normalize: bool | None = DEFAULTS.normalize,
                   max_length: int | None = DEFAULTS.max_length, prompt: str | None = DEFAULTS.prompt,
                   errors: str = DEFAULTS.errors, progress: bool | None = DEFAULTS.progress,
                   precision: str = DEFAULTS.precision, num_threads: int | None = DEFAULTS.num_threads,
                   cache: bool = DEFAULTS.cache) -> Any:
        """Near-duplicate groups: a new frame with ``<column>_dup_group`` (Int64, null for a row in no group) and
        ``<column>_dup_score`` (Float32 cosine to the group's first row, null for a row in no group) added. As
        ``pandas.DataFrame.distil.duplicates`` (the same groups, in row order)."""
        options = RunOptions.pick(locals())
        threshold = check_threshold(threshold)
        name = _column(self._df.schema, column, options.errors, "df.distil.duplicates('text')",
                       vectors=embeddings is None)
        embedded = self._embedded(self._df, name, locals())
        texts = pd.Series(_text.from_polars(self._df.get_column(name)), name=name)
        added = pl.from_pandas(duplicates(texts, embedded, threshold), nan_to_null=True)
        return _kept(self._df.with_columns(added.get_columns()), self._df)

    def write_parquet(self, path: str | os.PathLike, *, overwrite: bool = False) -> Path:
        """Write a result of :meth:`embed` or :meth:`classify` to one Parquet file with the file pipeline's
        ``distilframe.*`` metadata (``distilframe.files.read_metadata`` reads it). The file appears complete
        or not at all. Only the frame ``embed``/``classify`` returned has the record this needs."""
        return _write(self._df, path, overwrite, "Polars DataFrame",
                      lambda frame, tmp, meta: frame.write_parquet(tmp, metadata=meta))

    def _with(self, task: str, column: Any, arguments: dict[str, Any]) -> Any:
        name = _column(self._df.schema, column, arguments["errors"])
        out, step = self._run(task, self._df.get_column(name), arguments)
        return _remember(self._df.with_columns(out.get_columns()), self._df, step)


@pl.api.register_series_namespace("distil")
class DistilPolarsSeriesNamespace(_Eager):
    """DistilBERT on a Polars Series of texts: ``s.distil.embed()``, ``s.distil.classify()``."""

    def __init__(self, series: Any) -> None:
        self._s = series

    def embed(self, *, model: str | os.PathLike | None = None, pooling: str | None = DEFAULTS.pooling,
              normalize: bool | None = DEFAULTS.normalize, max_length: int | None = DEFAULTS.max_length,
              prompt: str | None = DEFAULTS.prompt, prompt_name: str | None = DEFAULTS.prompt_name,
              batch_size: int | None = DEFAULTS.batch_size, errors: str = DEFAULTS.errors,
              progress: bool | None = DEFAULTS.progress, long_text: str = DEFAULTS.long_text,
              stride: int = DEFAULTS.stride, return_status: bool = DEFAULTS.return_status,
              precision: str = DEFAULTS.precision, num_threads: int | None = DEFAULTS.num_threads,
              cache: bool = DEFAULTS.cache) -> Any:
        """A Series ``<name>_embedding`` (a frame with ``return_status=True``); as ``pandas.Series.distil.embed``."""
        out, _ = self._run("embed", self._checked(errors), locals())
        return out if return_status else out.to_series(0)

    def classify(self, *, model: str | os.PathLike | None = None, labels: list[str] | None = None,
                 template: str | None = None, max_length: int | None = DEFAULTS.max_length,
                 all_scores: bool = DEFAULTS.all_scores, errors: str = DEFAULTS.errors,
                 progress: bool | None = DEFAULTS.progress, batch_size: int | None = DEFAULTS.batch_size,
                 long_text: str = DEFAULTS.long_text, stride: int = DEFAULTS.stride,
                 return_status: bool = DEFAULTS.return_status, precision: str = DEFAULTS.precision,
                 num_threads: int | None = DEFAULTS.num_threads, cache: bool = DEFAULTS.cache) -> Any:
        """A frame of ``<name>_label`` and ``<name>_score``; as ``pandas.Series.distil.classify``."""
        return self._run("classify", self._checked(errors), locals())[0]

    def search(self, query: str | list[str], *, k: int = 10, model: str | os.PathLike | None = None,
               embeddings: Any = None, pooling: str | None = DEFAULTS.pooling,
               normalize: bool | None = DEFAULTS.normalize, max_length: int | None = DEFAULTS.max_length,
               prompt: str | None = DEFAULTS.prompt, errors: str = DEFAULTS.errors,
               progress: bool | None = DEFAULTS.progress, precision: str = DEFAULTS.precision,
               num_threads: int | None = DEFAULTS.num_threads, cache: bool = DEFAULTS.cache) -> Any:
        """The ``k`` texts nearest to the query: a frame of the Series and ``score``; as the DataFrame's."""
        series = self._checked(errors)
        return self._search(series.to_frame(), series.name, locals())

    def duplicates(self, *args: Any, **kwargs: Any) -> None:
        """Not offered on a Series: group the frame's column."""
        raise NotImplementedError("s.distil.duplicates is not offered on a Polars Series: group it as a frame's "
                                  "column, s.to_frame().distil.duplicates(...).")

    def _checked(self, errors: str) -> Any:
        series = self._s if self._s.name else self._s.alias("text")
        _column(series.to_frame().schema, series.name, errors)
        return series


@pl.api.register_lazyframe_namespace("distil")
class DistilLazyFrameNamespace:
    """DistilBERT on a Polars LazyFrame: ``lf.distil.embed("text")`` is a LazyFrame whose model runs batch by
    batch in the streaming engine (``lf.distil.sink_parquet(path)``, ``collect(engine="streaming")``)."""

    def __init__(self, lf: Any) -> None:
        self._lf = lf

    def embed(self, column: str | None = None, *, model: str | os.PathLike | None = None,
              pooling: str | None = DEFAULTS.pooling, normalize: bool | None = DEFAULTS.normalize,
              max_length: int | None = DEFAULTS.max_length, prompt: str | None = DEFAULTS.prompt,
              prompt_name: str | None = DEFAULTS.prompt_name, batch_size: int | None = DEFAULTS.batch_size,
              errors: str = DEFAULTS.errors, progress: bool | None = DEFAULTS.progress,
              long_text: str = DEFAULTS.long_text, stride: int = DEFAULTS.stride,
              return_status: bool = DEFAULTS.return_status, precision: str = DEFAULTS.precision,
              num_threads: int | None = DEFAULTS.num_threads, cache: bool = DEFAULTS.cache) -> Any:
        """Lazily add ``<column>_embedding``; arguments as ``pandas.DataFrame.distil.embed``."""
        return self._with("embed", column, locals())

    def classify(self, column: str | None = None, *, model: str | os.PathLike | None = None,
                 labels: list[str] | None = None, template: str | None = None,
                 max_length: int | None = DEFAULTS.max_length, all_scores: bool = DEFAULTS.all_scores,
                 errors: str = DEFAULTS.errors, progress: bool | None = DEFAULTS.progress,
                 batch_size: int | None = DEFAULTS.batch_size, long_text: str = DEFAULTS.long_text,
                 stride: int = DEFAULTS.stride, return_status: bool = DEFAULTS.return_status,
                 precision: str = DEFAULTS.precision, num_threads: int | None = DEFAULTS.num_threads,
                 cache: bool = DEFAULTS.cache) -> Any:
        """Lazily add ``<column>_label`` and ``<column>_score``; arguments as ``pandas.DataFrame.distil.classify``."""
        return self._with("classify", column, locals())

    def duplicates(self, *args: Any, **kwargs: Any) -> None:
        """Not offered on a LazyFrame: grouping compares every pair of rows."""
        raise NotImplementedError("lf.distil.duplicates is not offered: grouping compares every pair of rows. "
                                  "Collect first: lf.collect().distil.duplicates(...).")

    def search(self, *args: Any, **kwargs: Any) -> None:
        """Not offered on a LazyFrame: a search scores every row at once."""
        raise NotImplementedError("lf.distil.search is not offered: a search scores every row at once. Collect the "
                                  "text column first: lf.collect().distil.search(...), or lf.distil.embed(...) then "
                                  "sink_parquet, and search the collected frame with embeddings='<column>_embedding' "
                                  "and the model= that made it.")

    def sink_parquet(self, path: str | os.PathLike, *, overwrite: bool = False) -> Path:
        """Run the query streaming into one Parquet file with the file pipeline's ``distilframe.*`` metadata.
        The file appears complete or not at all. Only the LazyFrame ``embed``/``classify`` returned has the
        record this needs."""
        return _write(self._lf, path, overwrite, "Polars LazyFrame",
                      lambda frame, tmp, meta: frame.sink_parquet(tmp, metadata=meta))

    def _with(self, task: str, column: Any, arguments: dict[str, Any]) -> Any:
        options = RunOptions.pick(arguments)
        if options.progress:
            raise ValueError("progress=True does not apply to a LazyFrame: its batches run without bars. Collect "
                             "first (lf.collect().distil...) for one bar.")
        options = options.replace(progress=False)
        labels, template = arguments.get("labels"), arguments.get("template")
        if labels is not None or template is not None:
            labels, template = check_labels(labels, template)
        name = _column(self._lf.collect_schema(), column, options.errors)
        model = _model(task, arguments["model"], labels, template)
        if labels is not None:  # the model and the labels are checked now, not at collect(), as eagerly
            check_label_prompts(model, options, labels, template)
            schema = OutputSchema.of("classify", name, options, labels=labels)
        else:
            dim, found = describe(task, model, options)
            schema = OutputSchema.of(task, name, options, dim=dim, labels=found)
        dtypes = _dtypes(schema)

        def run_batch(series: Any) -> Any:
            return _outputs(task, series, model, options, labels, template, dtypes)[0].to_struct(_STRUCT)

        outputs = pl.col(name).map_batches(run_batch, return_dtype=pl.Struct(dtypes), is_elementwise=True)
        lf = self._lf.with_columns(outputs.alias(_STRUCT))
        lf = lf.with_columns(pl.col(_STRUCT).struct.field(n).alias(n) for n in dtypes).drop(_STRUCT)
        step = {"task": task, "column": name, "model": model, "options": options, "labels": labels,
                "template": template, "outputs": list(dtypes)}
        return _remember(lf, self._lf, step)
