"""distilframe: DistilBERT embeddings and sentiment for pandas DataFrames, on PaddlePaddle.

>>> import pandas as pd, distilframe
>>> df = pd.DataFrame({"text": ["a happy cat", "a sad dog"]})
>>> df = df.distil.embed("text")  # doctest: +SKIP

Importing this package imports pandas and numpy only; Paddle and PaddleNLP are
imported when a model is first loaded.
"""

from __future__ import annotations

from . import _hooks
from . import accessor as _accessor  # noqa: F401  (registers the .distil accessors)
from ._convert import convert
from ._defaults import default_model, reset_default_models, set_default_model
from ._frame import to_numpy
from ._manager import models
from ._options import RunOptions
from ._registry import DEFAULT_CLASSIFIER, DEFAULT_EMBEDDER
from ._version import __version__
from .errors import (
    CacheWarning,
    CasingWarning,
    CheckpointError,
    ColumnNotFoundError,
    DistilFrameError,
    DistilFrameWarning,
    EngineWarning,
    FileError,
    ModelNotAvailableError,
    PrecisionWarning,
    TestModelWarning,
    TruncationWarning,
    UnknownModelError,
    UnsupportedTaskError,
)
from .files import classify_file, embed_file

_hooks.install()  # ddf.distil and pl.DataFrame.distil once Dask or Polars is imported (not imported here)

__all__ = [
    "CacheWarning",
    "CasingWarning",
    "CheckpointError",
    "ColumnNotFoundError",
    "DEFAULT_CLASSIFIER",
    "DEFAULT_EMBEDDER",
    "DistilFrameError",
    "DistilFrameWarning",
    "EngineWarning",
    "FileError",
    "ModelNotAvailableError",
    "PrecisionWarning",
    "RunOptions",
    "TestModelWarning",
    "TruncationWarning",
    "UnknownModelError",
    "UnsupportedTaskError",
    "__version__",
    "classify_file",
    "convert",
    "default_model",
    "embed_file",
    "models",
    "reset_default_models",
    "set_default_model",
    "to_numpy",
]
