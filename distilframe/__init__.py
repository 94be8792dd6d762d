"""distilframe: DistilBERT embeddings and sentiment for pandas DataFrames, on PaddlePaddle.

>>> import pandas as pd, distilframe
>>> df = pd.DataFrame({"text": ["a happy cat", "a sad dog"]})
>>> df = df.distil.embed("text")  # doctest: +SKIP

Importing this package imports pandas and numpy only; Paddle and PaddleNLP are
imported when a model is first loaded.
"""

from __future__ import annotations

from . import _dask_hook
from . import accessor as _accessor  # noqa: F401  (registers the .distil accessors)
from .arrow import to_numpy
from .convert import convert
from .defaults import default_model, reset_default_models, set_default_model
from .errors import (
    CasingWarning,
    CheckpointError,
    ColumnNotFoundError,
    DistilFrameError,
    DistilFrameWarning,
    ModelNotAvailableError,
    TestModelWarning,
    TruncationWarning,
    UnknownModelError,
    UnsupportedTaskError,
)
from .manager import models


def embed_file(*args, **kwargs):  # noqa: D103 - documented in distilframe.files
    from .files import embed_file as run

    return run(*args, **kwargs)


def classify_file(*args, **kwargs):  # noqa: D103 - documented in distilframe.files
    from .files import classify_file as run

    return run(*args, **kwargs)
from .registry import DEFAULT_CLASSIFIER, DEFAULT_EMBEDDER

_dask_hook.install()  # ddf.distil once dask.dataframe is imported (without importing it here)

__version__ = "0.1.0"

__all__ = [
    "CasingWarning",
    "DEFAULT_CLASSIFIER",
    "DEFAULT_EMBEDDER",
    "CheckpointError",
    "ColumnNotFoundError",
    "DistilFrameError",
    "DistilFrameWarning",
    "ModelNotAvailableError",
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
