"""Every run option, its default, its allowed values and its check: once.

Each front end (pandas and Dask accessors, files, CLI, notebook panel) keeps explicit
keyword arguments in its signature, for ``help()`` and IDEs, with defaults that refer to
:data:`DEFAULTS`; it builds one :class:`RunOptions` from them (:meth:`RunOptions.pick`) and
passes it down. The check runs when the options object is made, before any model is loaded
or any text is read; nothing below re-validates.

>>> RunOptions(stride=0).stride
0
>>> RunOptions(max_length=2)
Traceback (most recent call last):
...
ValueError: Got max_length=2 but expected an integer of at least 3, such as 512.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

__all__ = ["CHOICES", "DEFAULTS", "ERRORS", "LONG_TEXT", "POOLINGS", "PRECISIONS", "TASKS", "RunOptions", "check_task"]

TASKS = ("embed", "classify")
# sentence-transformers' pooling modes; a model's own pooling may join several with "+" (e.g. "cls+mean").
POOLINGS = ("mean", "cls", "max", "mean_sqrt_len_tokens", "weightedmean", "lasttoken")
LONG_TEXT = ("truncate", "chunk")
ERRORS = ("raise", "coerce")
PRECISIONS = ("auto", "fp32", "bf16", "int8")
CHOICES: dict[str, tuple[str, ...]] = {"long_text": LONG_TEXT, "errors": ERRORS, "precision": PRECISIONS}
_FLAGS = ("all_scores", "return_status", "cache")


def _quoted(values: tuple[str, ...]) -> str:
    quoted = [repr(v) for v in values]
    return ", ".join(quoted[:-1]) + f" or {quoted[-1]}" if len(quoted) > 1 else quoted[0]


def check_task(task: object) -> str:
    """``task`` if it is one of :data:`TASKS`, else a ValueError that lists them."""
    if task not in TASKS:
        raise ValueError(f"Got task={task!r} but expected {_quoted(TASKS)}.")
    return task  # type: ignore[return-value]


@dataclass(frozen=True)
class RunOptions:
    """How to run a model over texts (the same for every entry point).

    Parameters
    ----------
    pooling, normalize
        Embeddings: the pooling mode (one of :data:`POOLINGS`, or several joined by ``+``) and scaling
        to unit length. None: the model's own (a sentence-transformers model's Pooling and Normalize
        modules; mean and unit length for a plain DistilBERT).
    max_length
        Tokens per model input, [CLS] and [SEP] included (capped at the model's positions). None: the
        model's own (a sentence-transformers model's max_seq_length, else 512).
    prompt, prompt_name
        Embeddings: text put before every text (sentence-transformers' ``prompt=``), or the name of one
        of the model's prompts (``prompt_name=``). None: the model's default prompt, if it has one.
    long_text, stride
        ``"truncate"`` or ``"chunk"`` (windows overlapping by ``stride`` tokens, at most half a window:
        a larger one runs and is recorded as half a window).
    batch_size, token_budget, chunk_size
        Model rows and padded tokens per batch, distinct texts tokenized at once; None: the
        executor's measured defaults.
    all_scores
        Classification: one probability column per label.
    errors
        Non-string values: ``"raise"`` or ``"coerce"``.
    progress
        A progress bar: True, False, or None (for large inputs in a terminal or a notebook).
    return_status
        Add ``<column>_n_tokens`` and ``<column>_status``.
    precision
        ``"auto"``, ``"fp32"``, ``"bf16"`` (refused where the CPU has no native bf16; a warning where it is
        slower than fp32) or ``"int8"`` (ONNX Runtime, extra ``int8``; opt-in: its error is larger).
    num_threads
        CPU threads for the model; None: every core available to the process.
    cache
        Use the result cache.
    """

    pooling: str | None = None
    normalize: bool | None = None
    max_length: int | None = None
    prompt: str | None = None
    prompt_name: str | None = None
    long_text: str = "truncate"
    stride: int = 128
    batch_size: int | None = None
    token_budget: int | None = None
    chunk_size: int | None = None
    all_scores: bool = False
    errors: str = "raise"
    progress: bool | None = None
    return_status: bool = False
    precision: str = "auto"
    num_threads: int | None = None
    cache: bool = True

    def __post_init__(self) -> None:
        for name, allowed in CHOICES.items():
            value = getattr(self, name)
            if value not in allowed:
                expected = f"one of {', '.join(map(repr, allowed))}" if name == "pooling" else _quoted(allowed)
                raise ValueError(f"Got {name}={value!r} but expected {expected}.")
        for name in _FLAGS:
            if not _is_bool(getattr(self, name)):
                raise ValueError(f"Got {name}={getattr(self, name)!r} but expected True or False.")
        if self.pooling is not None and (not isinstance(self.pooling, str)
                                         or any(m not in POOLINGS for m in self.pooling.split("+"))):
            raise ValueError(f"Got pooling={self.pooling!r} but expected one of {', '.join(map(repr, POOLINGS))} "
                             "(several may be joined by '+'), or None for the model's own.")
        if self.pooling is not None and len(set(self.pooling.split("+"))) != len(self.pooling.split("+")):
            raise ValueError(f"Got pooling={self.pooling!r}, which names a mode twice: name each mode once (they "
                             "are concatenated in sentence-transformers' order).")
        if self.normalize is not None and not _is_bool(self.normalize):
            raise ValueError(f"Got normalize={self.normalize!r} but expected True or False, or None for the model's "
                             "own.")
        for name in ("prompt", "prompt_name"):
            if getattr(self, name) is not None and not isinstance(getattr(self, name), str):
                raise ValueError(f"Got {name}={getattr(self, name)!r} but expected a string, or None.")
        if self.progress is not None and not _is_bool(self.progress):
            raise ValueError(f"Got progress={self.progress!r} but expected True, False or None (automatic).")
        if self.max_length is not None and (not _is_int(self.max_length) or self.max_length < 3):
            raise ValueError(f"Got max_length={self.max_length!r} but expected an integer of at least 3, such as 512.")
        if not _is_int(self.stride) or self.stride < 0:
            raise ValueError(f"Got stride={self.stride!r} but expected a non-negative integer of tokens, such as 128.")
        for name in ("batch_size", "token_budget", "chunk_size", "num_threads"):
            value = getattr(self, name)
            if value is not None and (not _is_int(value) or value < 1):
                raise ValueError(f"Got {name}={value!r} but expected a positive integer, or None for the default.")
        cores = os.cpu_count() or 1
        if self.num_threads is not None and self.num_threads > cores:
            raise ValueError(f"Got num_threads={self.num_threads!r} but this machine has {cores} cores: pass at most "
                             f"{cores}, or None for every core this process may use.")

    @classmethod
    def names(cls) -> tuple[str, ...]:
        """The option names, in definition order."""
        return tuple(f.name for f in dataclasses.fields(cls))

    @classmethod
    def pick(cls, values: Mapping[str, Any]) -> "RunOptions":
        """The options among ``values`` (a front end passes its ``locals()``); other keys are ignored."""
        names = cls.names()
        return cls(**{k: v for k, v in values.items() if k in names})

    def replace(self, **changes: Any) -> "RunOptions":
        """A copy with ``changes`` (checked again)."""
        return dataclasses.replace(self, **changes)

    def filled(self, **model_defaults: Any) -> "RunOptions":
        """These options with the model's own settings (``pooling``, ``normalize``, ``max_length``,
        ``prompt``) where they are None: what a run uses."""
        given = {k: v for k, v in model_defaults.items() if getattr(self, k) is None and v is not None}
        return self.replace(**given) if given else self

    def for_task(self, task: str) -> dict[str, Any]:
        """The options that shape a ``task`` result (what result files record): the model's input
        options, and pooling and normalize for embed or all_scores for classify."""
        check_task(task)
        shaped = {"pooling": self.pooling, "normalize": self.normalize} if task == "embed" else {
            "all_scores": self.all_scores}
        if task == "embed" and self.prompt:
            shaped["prompt"] = self.prompt
        return {**shaped, "max_length": self.max_length, "long_text": self.long_text, "stride": self.stride}



def _is_bool(value: object) -> bool:
    return isinstance(value, (bool, np.bool_))


def _is_int(value: object) -> bool:
    return isinstance(value, (int, np.integer)) and not _is_bool(value)


DEFAULTS = RunOptions()  # the one definition of every default: signatures refer to it
