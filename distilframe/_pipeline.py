"""The one pipeline every front end calls: texts + model + options -> result.

    texts, model (None: the session default), RunOptions
        ─► model manager (load once per process, refuse a model that cannot do the task)
        ─► result cache (when options.cache) ─► executor (``_run.run``) ─► Result, LoadedModel

A front end turns its input into texts (``_text``), builds one :class:`~distilframe._options.RunOptions`
from its keyword arguments, calls :func:`run` (or :func:`pandas_result` for a pandas Series), and wraps
the result with its schema (``_frame.OutputSchema``). Nothing else.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Sequence

from . import _text
from ._defaults import default_model
from ._frame import STEPS_KEY, OutputSchema, file_metadata, shaping
from ._manager import LoadedModel, load_for, refuse_early
from ._options import RunOptions, check_task
from ._run import Result
from ._run import run as execute

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["Outcome", "describe", "load", "pandas_result", "run"]


@dataclass(frozen=True)
class Outcome:
    """A run's result, and the loaded model that made it (its name, dimension, labels, precision)."""

    result: Result
    model: LoadedModel

    def schema(self, task: str, column: Any, options: RunOptions) -> OutputSchema:
        return OutputSchema.for_model(task, column, options, self.model)


def load(task: str, model: str | os.PathLike | None, options: RunOptions) -> LoadedModel:
    """The loaded model for ``task`` (``model=None``: the session default), refused early if it cannot do it."""
    check_task(task)
    return load_for(task, default_model(task) if model is None else model, precision=options.precision,
                    num_threads=options.num_threads)


def describe(task: str, model: str | os.PathLike, options: RunOptions) -> tuple[int, tuple[str, ...]]:
    """The output's dimension and label names for ``task``, read from the checkpoint's files without loading
    the model (it is loaded only for label names its config does not give): what a lazy front end (Dask,
    Polars LazyFrames) declares before any row is run, and scikit-learn's feature names."""
    from ._resolve import resolve
    from ._sentence import output_dim

    check_task(task)
    refuse_early(task, model)
    checkpoint = resolve(model)
    labels = checkpoint.labels
    if task == "classify" and not labels:  # the head's labels; a model without a head is refused here
        labels = load(task, model, options).labels
    head = checkpoint.sentence
    pooling = options.pooling or (head.pooling if head is not None else "mean")
    return output_dim(checkpoint.hidden_size, head, pooling), tuple(labels)


def run(task: str, texts: Sequence[str | None], model: str | os.PathLike | LoadedModel | None, options: RunOptions,
        *, on_progress: "Callable[[int, int], None] | None" = None, warn_long: bool = True) -> Outcome:
    """Embed or classify ``texts``: the model loaded (or given loaded), the result cache when the options ask."""
    loaded = model if isinstance(model, LoadedModel) else load(task, model, options)
    cache = None
    if options.cache:
        from ._result_cache import default_cache

        cache = default_cache()
    result = execute(texts, loaded, task, options, cache=cache, on_progress=on_progress, warn_long=warn_long)
    return Outcome(result=result, model=loaded)


def pandas_result(task: str, series: "pd.Series", model: str | os.PathLike | None, options: RunOptions, *,
                  name: Any = None, on_progress: "Callable[[int, int], None] | None" = None,
                  warn_long: bool = True) -> "pd.DataFrame":
    """The output columns for a Series of texts, with its index (named after ``name``, default the Series').

    The frame's ``attrs`` record the step (its output columns and the metadata a result file gets), so that
    ``df.distil.to_parquet`` can write a file that describes itself."""
    texts = _text.texts(series, options.errors)
    outcome = run(task, texts, model, options, on_progress=on_progress, warn_long=warn_long)
    column = series.name if name is None else name
    schema = outcome.schema(task, column, options)
    frame = schema.to_pandas(outcome.result, series.index)
    step = {"task": task, "column": column, "outputs": schema.names,
            "metadata": file_metadata(task, column, options, outcome.model)}
    if task == "embed":  # which (text, vector) rows it made: a column changed since is not taken for its own
        import hashlib
        import json

        from ._pairs import RowPairs

        key = hashlib.sha256(json.dumps(shaping(step["metadata"]), sort_keys=True).encode()).hexdigest()[:16]
        step["rows"] = RowPairs.record(key, texts, outcome.result.values, outcome.result.valid)
    frame.attrs[STEPS_KEY] = [step]
    return frame
