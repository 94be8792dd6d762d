"""The session's default models: what ``embed`` and ``classify`` use when no ``model=`` is given.

Out of the box: ``DEFAULT_EMBEDDER`` (distilbert-base-uncased) and ``DEFAULT_CLASSIFIER``
(the SST-2 sentiment model). :func:`set_default_model` changes them for this Python process (the
notebook model picker calls it); the pandas and Dask accessors and ``embed_file``/``classify_file``
read them at each call. The command line keeps its own ``--model`` defaults.
"""

from __future__ import annotations

import os
import threading
from typing import Any

from ._options import check_task
from ._registry import DEFAULT_CLASSIFIER, DEFAULT_EMBEDDER, find, hub_spec, no_head_message
from ._resolve import resolve
from .errors import UnsupportedTaskError

__all__ = ["default_model", "reset_default_models", "set_default_model"]

# search and zero-shot labels: a sentence model trained for similarity (README, Search)
DEFAULT_SEARCHER = "sentence-transformers/all-MiniLM-L6-v2"
_BUILTIN = {"embed": DEFAULT_EMBEDDER, "classify": DEFAULT_CLASSIFIER, "search": DEFAULT_SEARCHER}
_session: dict[str, Any] = {}
_lock = threading.Lock()


def default_model(task: str) -> str | os.PathLike:
    """The model ``task`` ("embed", "classify", or "search": search, duplicates and zero-shot labels) uses when
    none is given."""
    if task != "search":
        check_task(task)
    with _lock:
        return _session.get(task, _BUILTIN[task])


def set_default_model(model: str | os.PathLike, task: str | None = None) -> dict[str, Any]:
    """Make ``model`` this session's default for ``task``, or for every task it can do (``task=None``).

    Every model can embed; a model can classify when it has a trained classification head (a
    registered sentiment model, or a checkpoint whose config names its labels); ``task=None`` makes a
    sentence model (one with a pooling of its own, such as ``minilm``) the default for search too. The name is checked
    (an unknown name or a folder that is not a checkpoint raises), but nothing is downloaded or loaded.

    Returns the defaults now in force, by task.

    Examples
    --------
    >>> distilframe.set_default_model("sst2")  # doctest: +SKIP
    {'embed': 'distilbert-base-uncased-finetuned-sst-2-english', 'classify': '...sst-2-english', 'search': '...'}
    """
    if task is not None and task not in _BUILTIN:
        raise ValueError(f"Got task={task!r} but expected 'embed', 'classify', 'search' or None (every task it can "
                         "do).")
    name, can_classify, sentence = _check(model)
    if task == "classify" and not can_classify:
        raise UnsupportedTaskError(no_head_message(str(name)))
    tasks = [task] if task else ["embed"] + (["classify"] if can_classify else []) + (["search"] if sentence else [])
    with _lock:
        for t in tasks:
            _session[t] = name
        return {t: _session.get(t, _BUILTIN[t]) for t in _BUILTIN}


def reset_default_models() -> None:
    """Back to the built-in defaults."""
    with _lock:
        _session.clear()


def _check(model: str | os.PathLike) -> tuple[str | os.PathLike, bool, bool]:
    """The canonical name (or the path), whether it can classify and whether it is a sentence model, without
    downloading anything."""
    if isinstance(model, str) and model[:3].lower() == "hf:":
        hub_spec(model[3:])  # validates owner/repo
        return model, True, False  # known only once downloaded; classify() refuses a model without a head
    spec = find(model) if isinstance(model, str) else None
    if spec is not None:
        return spec.name, spec.can_classify, spec.is_sentence_model
    checkpoint = resolve(model)  # a folder: read its config (raises for unknown names)
    return model, bool(checkpoint.labels), checkpoint.sentence is not None
