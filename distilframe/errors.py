"""Exceptions and warnings raised by distilframe.

Every error derives from :class:`DistilFrameError`, and also from the built-in
exception a Python user would expect, so ``except KeyError`` keeps working::

    DistilFrameError
    ├── UnknownModelError      (ValueError)   a model name that is not registered
    ├── ColumnNotFoundError    (KeyError)     a column that is not in the frame
    ├── CheckpointError        (ValueError)   files on disk that are not a usable DistilBERT
    ├── ModelNotAvailableError (OSError)      weights that are not on disk and cannot be fetched
    ├── UnsupportedTaskError   (ValueError)   classify() on a model without a classification head
    └── FileError              (ValueError)   a file that cannot be read or written as asked

    DistilFrameWarning         (UserWarning)
    ├── TruncationWarning                     texts cut at max_length
    ├── TestModelWarning                      a test-size model whose outputs carry no meaning
    ├── CasingWarning                         a checkpoint that does not say whether it lower-cases
    ├── CacheWarning                          the result cache cannot be used; work runs without it
    ├── EngineWarning                         the fast engine could not be used; the slow one runs
    └── PrecisionWarning                      a precision asked for that is slower than fp32 on this CPU

Messages say what came in and what to do about it.
"""

from __future__ import annotations

import os
import sys
import warnings
from typing import Any

__all__ = [
    "CacheWarning",
    "CasingWarning",
    "CheckpointError",
    "ColumnNotFoundError",
    "DistilFrameError",
    "DistilFrameWarning",
    "EngineWarning",
    "FileError",
    "ModelNotAvailableError",
    "PrecisionWarning",
    "TestModelWarning",
    "TruncationWarning",
    "UnknownModelError",
    "UnsupportedTaskError",
    "warn",
]


class DistilFrameError(Exception):
    """Base class of every error distilframe raises."""


class UnknownModelError(DistilFrameError, ValueError):
    """A model name that is neither registered nor a checkpoint directory."""


class ColumnNotFoundError(DistilFrameError, KeyError):
    """A column name that is not in the DataFrame."""

    def __str__(self) -> str:  # KeyError would wrap the message in quotes
        return str(self.args[0]) if self.args else ""


class CheckpointError(DistilFrameError, ValueError):
    """Files on disk that are not a usable DistilBERT checkpoint."""


class ModelNotAvailableError(DistilFrameError, OSError):
    """Model files that are not on disk and could not be downloaded."""


class UnsupportedTaskError(DistilFrameError, ValueError):
    """A task the chosen model cannot do, such as classify() with a base model."""


class FileError(DistilFrameError, ValueError):
    """A file that cannot be read or written as asked: wrong extension, unreadable, already there."""


class DistilFrameWarning(UserWarning):
    """Base class of distilframe's warnings."""


class TruncationWarning(DistilFrameWarning):
    """Some texts were longer than max_length tokens and were truncated."""


class CasingWarning(DistilFrameWarning):
    """A checkpoint does not say whether its tokenizer lower-cases, and its vocabulary looks cased."""


class CacheWarning(DistilFrameWarning):
    """The result cache cannot be used (read-only, full, damaged); results are computed without it."""


class EngineWarning(DistilFrameWarning):
    """Paddle Inference could not be used for a model; PaddleNLP's slower dygraph model runs it instead."""


class PrecisionWarning(DistilFrameWarning):
    """The precision asked for runs, but slower than fp32 would on this CPU (bf16 on Intel without AMX)."""


class TestModelWarning(DistilFrameWarning):
    """The model is a test-size model: its outputs carry no meaning."""

    __test__ = False  # not a pytest test class


_PACKAGE = os.path.dirname(os.path.abspath(__file__)) + os.sep


def warn(message: str, category: type[Warning]) -> None:
    """Warn at the first caller outside distilframe, so the warning names the user's line."""
    frame = sys._getframe(1)  # the caller of warn(), which stacklevel=2 would name
    level = 2
    while frame is not None and frame.f_code.co_filename.startswith(_PACKAGE):
        frame = frame.f_back
        level += 1
    warnings.warn(message, category, stacklevel=level)


def check_finite(array: Any, what: str, where: Any) -> None:
    """Refuse weights holding NaN or infinite values: a NaN passes through ReLU as 0 and an infinity turns rows
    to NaN, outputs that look like results (one label for every text; NaN vectors as of missing texts). A sum is
    finite exactly when every value is, but for an overflow, which the count then rules out (16 ms for
    distilbert-base's weights)."""
    import numpy as np

    if getattr(array, "dtype", None) is None or array.dtype.kind != "f":
        return
    with np.errstate(over="ignore", invalid="ignore"):
        if np.isfinite(np.sum(array)):
            return
    bad = int(np.size(array) - np.isfinite(array).sum())
    if bad:
        raise CheckpointError(f"The weights of {what} hold {bad:,} values that are NaN or infinite in {where}: the "
                              "file is damaged, or the model diverged when it was trained. Replace it with a good copy "
                              "of the checkpoint.")
