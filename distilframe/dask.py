"""The ``.distil`` accessor on Dask DataFrames and Series: the pandas accessor, partition by partition.

    ddf.distil.embed("text")  ─► map_partitions(part.distil.embed("text", ...))  ─► a lazy frame
    ddf.distil.to_parquet(path) ─► one Parquet part per partition, with the file pipeline's metadata

* Each partition runs the pipeline as the pandas accessor does (same options object, row rules and
  output schema), so a Dask result equals the pandas result on the same rows, in the same order,
  with the same index; ``meta`` comes from the same schema.
* The model is never in a task: tasks carry its name, and each worker process loads it on first use
  through its process-wide :mod:`~distilframe._manager` and reuses it for every later partition.
* ``meta`` (the output columns and dtypes) comes from one small task that reads the checkpoint's
  config where the work runs (on a worker, under ``dask.distributed``), so the client needs no copy
  of the model; it does not load the model.
* Threads: a model uses the cores given by ``num_threads=``, else the worker's ``OMP_NUM_THREADS``,
  which Dask's nanny sets to 1 per worker process by default (one core per worker process).

Importing distilframe registers this accessor as soon as ``dask.dataframe`` is imported (before or
after distilframe); ``import distilframe.dask`` does it explicitly.
"""

from __future__ import annotations

import os
import shutil
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

try:
    import dask
    import dask.dataframe as dd
    from dask.dataframe.extensions import register_dataframe_accessor, register_series_accessor
except ImportError as e:  # pragma: no cover - depends on the environment
    raise ImportError('distilframe.dask needs Dask: pip install "distilframe[dask]"', name=e.name) from e

from ._defaults import default_model
from ._frame import (OutputSchema, file_metadata, out_name, output_target, parquet_table, step_to_write, with_columns,
                     with_step)
from ._options import DEFAULTS, RunOptions
from ._pipeline import describe, load, pandas_result
from ._registry import find, no_head_message
from ._text import select_column, string_columns
from .errors import UnsupportedTaskError

__all__ = ["DaskDistilDataFrameAccessor", "DaskDistilSeriesAccessor"]



# ------------------------------------------------------------------------------------------ tasks

def _run_frame(part: pd.DataFrame, task: str, column: Any, model: Any, options: RunOptions) -> pd.DataFrame:
    return with_columns(part, pandas_result(task, select_column(part, column), model, options))


def _run_series(part: pd.Series, task: str, model: Any, options: RunOptions) -> pd.Series | pd.DataFrame:
    added = pandas_result(task, part, model, options)
    return added.iloc[:, 0] if task == "embed" and not options.return_status else added


def _search_part(part: pd.DataFrame, attrs: dict[str, Any], column: Any, queries: list[str], k: int, model: Any,
                 embeddings: Any, options: RunOptions, fallback: Any
                 ) -> tuple[pd.DataFrame, np.ndarray, np.ndarray, np.ndarray]:
    """One partition's k best rows per query: (those rows, their positions, row positions and scores per query)."""
    from ._similarity import frame_embeddings, top_rows

    part = part.copy(deep=False)
    part.attrs = attrs  # the steps the client's frame records: which model made an existing embedding column
    # quiet: an unrecorded embedding column is said once, on the client (DaskDistilDataFrameAccessor.search)
    embedded = frame_embeddings(part, select_column(part, column), model, options, embeddings, fallback, quiet=True)
    rows, scores = top_rows(embedded, queries, k)
    picked = np.unique(rows)
    return part.iloc[picked], picked, rows, scores


def _zero_shot_frame(part: pd.DataFrame, column: Any, model: Any, options: RunOptions, labels: list[str],
                     template: str) -> pd.DataFrame:
    from ._similarity import added_columns

    return with_columns(part, added_columns("classify", select_column(part, column), model, options, labels=labels,
                                            template=template))


def _write_part(part: pd.DataFrame, path: str, step: dict[str, Any], created_at: str, write_index: bool) -> int:
    import pyarrow.parquet as pq

    if step.get("labels") is not None:  # zero-shot: the sentence model embeds, and the labels are recorded
        from ._similarity import zero_shot_metadata

        loaded = load("embed", step["model"], step["options"])
        meta = zero_shot_metadata(step["column"], loaded.fill(step["options"]), loaded, step["labels"],
                                  step["template"])
    else:
        loaded = load(step["task"], step["model"], step["options"])
        meta = file_metadata(step["task"], step["column"], step["options"], loaded)
    meta["created_at"] = created_at
    pq.write_table(parquet_table(part, meta, write_index), path)
    return len(part)


# ------------------------------------------------------------------------------------------ accessors

class _Base:
    def __init__(self, obj: Any) -> None:
        self._obj = obj

    def _prepare(self, task: str, series_meta: pd.Series, name: Any, model: Any, options: RunOptions
                 ) -> tuple[pd.DataFrame, dict[str, Any]]:
        """Check the options on the client, and the output columns' meta; returns (meta, step)."""
        if options.progress:
            raise ValueError("progress=True does not apply to Dask: partitions run without bars. Watch the "
                             "Dask dashboard, or wrap compute() in dask.diagnostics.ProgressBar() "
                             "(distributed.progress() on a cluster).")
        text_like = pd.api.types.is_string_dtype(series_meta.dtype) or isinstance(series_meta.dtype,
                                                                                  pd.CategoricalDtype)
        if not text_like and options.errors != "coerce":
            raise TypeError(f"Column {name!r} has dtype {series_meta.dtype}, not text: pick a string column, or "
                            "pass errors='coerce' to read its values as text.")
        spec = find(model) if isinstance(model, str) else None
        if task == "classify" and spec is not None and not spec.can_classify:
            raise UnsupportedTaskError(no_head_message(spec.name))
        # Read where the work runs: the client may have no copy of the model.
        described = dask.delayed(describe, pure=False)(task, _portable(model), options)
        dim, labels = dask.compute(described)[0]
        meta = OutputSchema.of(task, name, options, dim=dim, labels=labels).empty_pandas()
        step = {"task": task, "column": name, "model": _portable(model), "options": options,
                "outputs": list(meta.columns)}
        return meta, step


def _model(task: str, model: Any) -> Any:
    """The session default (set on the client, e.g. by the model picker) made explicit for the workers."""
    return _portable(default_model(task) if model is None else model)


def _portable(model: Any) -> Any:
    """A model argument that pickles into tasks: a name, or a path as a string (never a loaded model)."""
    return os.fspath(model) if isinstance(model, os.PathLike) else model


def _with_attrs(source: Any, result: Any, step: dict[str, Any]) -> Any:
    """Record the step on the result's meta (pandas carries ``attrs`` along); earlier steps are kept."""
    with_step(result._meta, source._meta, step)
    return result


@register_dataframe_accessor("distil")
class DaskDistilDataFrameAccessor(_Base):
    """DistilBERT on a Dask DataFrame: ``ddf.distil.embed("text")``, ``ddf.distil.classify("review")``.

    The same arguments and results as the pandas accessor, computed partition by partition (lazily:
    call ``.compute()``, ``.persist()`` or :meth:`to_parquet`).
    """

    def embed(self, column: Any = None, *, model: str | os.PathLike | None = None,
              pooling: str | None = DEFAULTS.pooling,
              normalize: bool | None = DEFAULTS.normalize, max_length: int | None = DEFAULTS.max_length,
              prompt: str | None = DEFAULTS.prompt, prompt_name: str | None = DEFAULTS.prompt_name,
              batch_size: int | None = DEFAULTS.batch_size, errors: str = DEFAULTS.errors,
              progress: bool | None = DEFAULTS.progress, long_text: str = DEFAULTS.long_text,
              stride: int = DEFAULTS.stride, return_status: bool = DEFAULTS.return_status,
              precision: str = DEFAULTS.precision, num_threads: int | None = DEFAULTS.num_threads,
              cache: bool = DEFAULTS.cache) -> dd.DataFrame:
        """Lazily add ``<column>_embedding``; arguments as ``pandas.DataFrame.distil.embed``."""
        return self._map("embed", column, model, RunOptions.pick(locals()))

    def classify(self, column: Any = None, *, model: str | os.PathLike | None = None,
                 labels: list[str] | None = None, template: str | None = None,
                 max_length: int | None = DEFAULTS.max_length,
                 all_scores: bool = DEFAULTS.all_scores, errors: str = DEFAULTS.errors,
                 progress: bool | None = DEFAULTS.progress, batch_size: int | None = DEFAULTS.batch_size,
                 long_text: str = DEFAULTS.long_text, stride: int = DEFAULTS.stride,
                 return_status: bool = DEFAULTS.return_status, precision: str = DEFAULTS.precision,
                 num_threads: int | None = DEFAULTS.num_threads, cache: bool = DEFAULTS.cache) -> dd.DataFrame:
        """Lazily add ``<column>_label`` and ``<column>_score``; arguments as ``pandas.DataFrame.distil.classify``
        (zero-shot ``labels=`` included)."""
        if labels is not None or template is not None:
            return self._zero_shot(column, model, RunOptions.pick(locals()), labels, template)
        return self._map("classify", column, model, RunOptions.pick(locals()))

    def _zero_shot(self, column: Any, model: Any, options: RunOptions, labels: Any, template: Any) -> dd.DataFrame:
        from ._similarity import check_label_prompts, check_labels

        labels, template = check_labels(labels, template)
        ddf = self._obj
        name = select_column(ddf._meta_nonempty, column).name
        name = name.item() if isinstance(name, np.generic) else name
        self._prepare("embed", ddf._meta[name], name, _model("search", model), options)  # the client's checks
        # Labels the model reads as the same tokens are refused now, not at compute(): read where the work runs.
        dask.compute(dask.delayed(check_label_prompts, pure=False)(_model("search", model), options, labels,
                                                                   template))
        added = OutputSchema.of("classify", name, options, labels=labels).empty_pandas()
        result = ddf.map_partitions(_zero_shot_frame, name, _model("search", model), options.replace(progress=False),
                                    labels, template, meta=with_columns(ddf._meta, added), align_dataframes=False)
        step = {"task": "classify", "column": name, "model": _portable(_model("search", model)), "options": options,
                "labels": labels, "template": template, "outputs": list(added.columns)}
        return _with_attrs(ddf, result, step)  # so that to_parquet writes it, with the zero-shot metadata

    def search(self, query: str | list[str], column: Any = None, *, k: int = 10,
               model: str | os.PathLike | None = None, embeddings: str | None = None,
               pooling: str | None = DEFAULTS.pooling, normalize: bool | None = DEFAULTS.normalize,
               max_length: int | None = DEFAULTS.max_length, prompt: str | None = DEFAULTS.prompt,
               errors: str = DEFAULTS.errors, precision: str = DEFAULTS.precision,
               num_threads: int | None = DEFAULTS.num_threads, cache: bool = DEFAULTS.cache) -> pd.DataFrame:
        """The ``k`` rows nearest to the query (or queries), computed now: a pandas DataFrame, the same rows,
        index, columns and order as ``pandas.DataFrame.distil.search`` on the whole frame.

        Each partition finds its own k best rows (with its embeddings, computed where it runs); the client
        merges them (by score, then by row order). ``embeddings`` is a column name.
        """
        from ._similarity import (check_k, check_queries, embedded_column, recorded_step, result_names, results_frame,
                                  warn_unrecorded)

        ddf = self._obj
        queries, k = check_queries(query), check_k(k)
        options = RunOptions.pick(locals()).replace(progress=False)
        sample = ddf._meta_nonempty
        if column is None and embeddings is None:  # as pandas: the one whose <column>_embedding the frame holds
            column = embedded_column(list(sample.columns), string_columns(sample))
        series = select_column(sample, column, "ddf.distil.search('a query', 'text')")
        name = series.name.item() if isinstance(series.name, np.generic) else series.name
        result_names(ddf._meta)
        attrs = dict(ddf._meta.attrs)
        fallback = _model("search", None)  # the client's session default, for workers where no record names one
        if embeddings is None and out_name(name, "embedding") in ddf._meta.columns and not recorded_step(
                ddf._meta, out_name(name, "embedding")):
            warn_unrecorded(out_name(name, "embedding"), fallback if model is None else model)
        shared = dask.delayed(attrs, traverse=False)  # one node: the record's row hashes travel once, not per part
        tasks = [dask.delayed(_search_part)(part, shared, name, queries, k, _portable(model), embeddings, options,
                                            fallback) for part in ddf.to_delayed()]
        parts = dask.compute(*tasks)
        found, scores = [], []
        for i in range(len(queries)):
            candidates = [(-float(s), p, int(r)) for p, (_, _, rows, sc) in enumerate(parts)
                          for r, s in zip(rows[i], sc[i])]
            best = sorted(candidates)[:k]
            found.append(pd.concat([parts[p][0].iloc[[int(np.searchsorted(parts[p][1], r))]] for _, p, r in best])
                         if best else ddf._meta)
            scores.append(np.array([-s for s, _, _ in best], dtype=np.float32))
        return results_frame(found, scores, queries, attrs)

    def duplicates(self, *args: Any, **kwargs: Any) -> None:
        """Not supported on Dask: grouping compares every pair of rows across partitions."""
        raise NotImplementedError(
            "ddf.distil.duplicates is not supported: near-duplicate groups compare every pair of rows across "
            "partitions. Embed with ddf.distil.embed(...), then run .compute().distil.duplicates(...) on a "
            "pandas frame (it uses the existing embedding column, in blocks of bounded memory).")

    def _map(self, task: str, column: Any, model: Any, options: RunOptions) -> dd.DataFrame:
        ddf = self._obj
        model = _model(task, model)
        sample = ddf._meta_nonempty
        series = select_column(sample, column)  # the pandas rules: missing, ambiguous, duplicated names
        name = series.name.item() if isinstance(series.name, np.generic) else series.name
        added, step = self._prepare(task, ddf._meta[name], name, model, options)
        meta = with_columns(ddf._meta, added)
        result = ddf.map_partitions(_run_frame, task, name, model, options.replace(progress=False), meta=meta,
                                    align_dataframes=False)
        return _with_attrs(ddf, result, step)

    def to_parquet(self, path: str | os.PathLike, *, overwrite: bool = False, write_index: bool | None = None) -> Path:
        """Write a result of :meth:`embed` or :meth:`classify` as a folder of Parquet parts, one per partition.

        Each part carries the file pipeline's ``distilframe.*`` metadata (model, checkpoint hash, options,
        dim or labels, precision) and no pandas metadata, so ``pd.read_parquet`` and ``dd.read_parquet``
        read it back as is (add ``dtype_backend="pyarrow"`` to get the fixed-size list dtype rather than
        numpy arrays). ``distilframe.files.read_metadata(path)`` reads the metadata.

        The folder appears complete or not at all: parts go to a hidden folder beside it, renamed into
        place once every part is written. On a cluster, ``path`` must be reachable from every worker.

        write_index
            Write the index as columns, named as ``reset_index`` names them (``index`` when unnamed); by
            default when it is named or its labels are not integers (an unnamed integer index, a range
            or what filtering left of one, is row numbers): by dtype, so every chunk writes the same.
        """
        ddf = self._obj
        step = step_to_write(ddf._meta.attrs, list(ddf.columns), "Dask frame")
        target, write_index = output_target(path, overwrite, ddf._meta.index, write_index)
        tmp = target.with_name(f".{target.name}.tmp-{uuid.uuid4().hex[:8]}")
        tmp.mkdir()
        created_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
        try:
            parts = ddf.to_delayed()
            writes = [dask.delayed(_write_part, pure=False)(part, str(tmp / f"part.{i:05d}.parquet"), step,
                                                             created_at, write_index)
                      for i, part in enumerate(parts)]
            dask.compute(*writes)
            old = target.with_name(f".{target.name}.old-{uuid.uuid4().hex[:8]}")
            if target.exists():
                os.replace(target, old)  # set aside, not deleted, until the new output is in place
            try:
                os.replace(tmp, target)
            except OSError:
                if old.exists():
                    os.replace(old, target)
                raise
            if old.exists():
                shutil.rmtree(old) if old.is_dir() else old.unlink()
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        return target


@register_series_accessor("distil")
class DaskDistilSeriesAccessor(_Base):
    """DistilBERT on a Dask Series of texts: ``ddf["text"].distil.embed()``."""

    def embed(self, *, model: str | os.PathLike | None = None, pooling: str | None = DEFAULTS.pooling,
              normalize: bool | None = DEFAULTS.normalize, max_length: int | None = DEFAULTS.max_length,
              prompt: str | None = DEFAULTS.prompt, prompt_name: str | None = DEFAULTS.prompt_name,
              batch_size: int | None = DEFAULTS.batch_size, errors: str = DEFAULTS.errors,
              progress: bool | None = DEFAULTS.progress, long_text: str = DEFAULTS.long_text,
              stride: int = DEFAULTS.stride, return_status: bool = DEFAULTS.return_status,
              precision: str = DEFAULTS.precision, num_threads: int | None = DEFAULTS.num_threads,
              cache: bool = DEFAULTS.cache) -> dd.Series | dd.DataFrame:
        """Lazily embed the texts: a Series ``<name>_embedding`` (a frame with ``return_status=True``)."""
        return self._map("embed", model, RunOptions.pick(locals()))

    def classify(self, *, model: str | os.PathLike | None = None, max_length: int | None = DEFAULTS.max_length,
                 labels: Any = None, template: Any = None, all_scores: bool = DEFAULTS.all_scores,
                 errors: str = DEFAULTS.errors,
                 progress: bool | None = DEFAULTS.progress, batch_size: int | None = DEFAULTS.batch_size,
                 long_text: str = DEFAULTS.long_text, stride: int = DEFAULTS.stride,
                 return_status: bool = DEFAULTS.return_status, precision: str = DEFAULTS.precision,
                 num_threads: int | None = DEFAULTS.num_threads, cache: bool = DEFAULTS.cache) -> dd.DataFrame:
        """Lazily classify the texts: a frame of ``<name>_label`` and ``<name>_score`` (zero-shot ``labels=`` on
        the frame only)."""
        if labels is not None or template is not None:
            raise NotImplementedError("Zero-shot labels are not offered on a Dask Series: classify the frame, "
                                      "ddf.distil.classify('text', labels=[...]) (or ddf['text'].to_frame()).")
        return self._map("classify", model, RunOptions.pick(locals()))

    def search(self, *args: Any, **kwargs: Any) -> None:
        """Not offered on a Dask Series: search the frame."""
        raise NotImplementedError("ddf['text'].distil.search is not offered: search the frame, "
                                  "ddf.distil.search('a query', 'text') (or ddf['text'].to_frame().distil.search).")

    def to_parquet(self, path: str | os.PathLike, *, overwrite: bool = False, write_index: bool | None = None) -> Path:
        """Write a result of :meth:`embed` as a folder of Parquet parts (see the DataFrame accessor's)."""
        return self._obj.to_frame().distil.to_parquet(path, overwrite=overwrite, write_index=write_index)

    def _map(self, task: str, model: Any, options: RunOptions) -> Any:
        series = self._obj
        model = _model(task, model)
        meta, step = self._prepare(task, series._meta, series.name, model, options)
        meta.index = series._meta.index
        if task == "embed" and not options.return_status:
            meta = meta.iloc[:, 0]
        return _with_attrs(series, series.map_partitions(_run_series, task, model, options.replace(progress=False),
                                                         meta=meta), step)
