"""scikit-learn front end: :class:`DistilEmbedder`, text columns to embedding features.

    Pipeline([("embed", DistilEmbedder(model="sentence-transformers/all-MiniLM-L6-v2")),
              ("clf", LogisticRegression())]).fit(df[["review"]], df["label"])

    X (a pandas or Polars frame of text columns, a Series, a 1-D or 2-D array of strings)
        ─► each column ─► the pipeline (``_pipeline.pandas_result``, the options of the pandas accessor)
        ─► one float32 matrix: the columns' embeddings side by side, ``<column>_0 ... <column>_<dim-1>``

* The estimator holds its parameters and, once fitted, the input's columns, the model's name and the
  embedding's dimension: never the model. It is cloned and pickled as plain data; ``transform`` gets the
  model from the process-wide model manager (loaded once per process, on first use).
* ``fit`` learns nothing from the texts: it checks the options and the columns, resolves ``model=None`` to
  the session default *of the process that fits* (recorded as ``model_``, so that a later change of the
  default, or another process, cannot change the features), and reads the dimension from the checkpoint.
* A missing text (None, NaN) gives a row of NaN: put ``SimpleImputer`` after it, or use an estimator that
  takes NaN (``HistGradientBoostingClassifier``). The result is never silently a zero vector.
* With ``n_jobs>1`` (``cross_val_score``, ``GridSearchCV``), joblib runs folds in worker processes: each
  worker unpickles the estimator without a model, loads the model once through its own manager and
  reuses it for every later fold it runs; joblib limits each worker's threads to cores / n_jobs. The
  result cache (on disk, shared) means a text embedded in one fold is not run again in another.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import pandas as pd

try:
    from sklearn.base import BaseEstimator, TransformerMixin
    from sklearn.utils.validation import check_is_fitted, validate_data
except ImportError as e:  # pragma: no cover - depends on the environment
    raise ImportError('distilframe.sklearn needs scikit-learn 1.6 or newer: pip install "distilframe[sklearn]"',
                      name=e.name) from e

from . import _text
from ._defaults import default_model
from ._frame import to_numpy
from ._options import DEFAULTS, RunOptions
from ._pipeline import describe, pandas_result

__all__ = ["DistilEmbedder"]

_FITTED = ("n_features_in_", "feature_names_in_", "model_", "dim_")


class DistilEmbedder(TransformerMixin, BaseEstimator):
    """Embed text columns for scikit-learn: one float32 feature per embedding dimension and column.

    Parameters
    ----------
    model
        As for ``df.distil.embed``: a registered name or alias, ``hf:<owner>/<repo>``, or a checkpoint
        folder. None: the session's default embedding model when ``fit`` runs (``distilframe.set_default_model``);
        with ``n_jobs>1`` the workers are fresh processes, so name the model.
    pooling, normalize, max_length, prompt, prompt_name, long_text, stride, batch_size, errors, progress
        As for ``df.distil.embed``. ``errors="coerce"`` reads non-string values (numbers) as text.
    precision, num_threads, cache
        As for ``df.distil.embed``.

    Attributes
    ----------
    n_features_in_, feature_names_in_
        The input's number of columns, and their names when the input is a frame with string column names.
    model_
        The model's name or path used by ``transform``.
    dim_
        The embedding's dimension: ``transform`` returns ``n_features_in_ * dim_`` columns.

    Examples
    --------
    >>> from sklearn.pipeline import make_pipeline  # doctest: +SKIP
    >>> from sklearn.linear_model import LogisticRegression  # doctest: +SKIP
    >>> clf = make_pipeline(DistilEmbedder(model="all-MiniLM-L6-v2"), LogisticRegression())  # doctest: +SKIP
    >>> clf.fit(df[["review"]], df["label"]).predict(new[["review"]])  # doctest: +SKIP
    """

    def __init__(
        self,
        model: str | os.PathLike | None = None,
        *,
        pooling: str | None = DEFAULTS.pooling,
        normalize: bool | None = DEFAULTS.normalize,
        max_length: int | None = DEFAULTS.max_length,
        prompt: str | None = DEFAULTS.prompt,
        prompt_name: str | None = DEFAULTS.prompt_name,
        long_text: str = DEFAULTS.long_text,
        stride: int = DEFAULTS.stride,
        batch_size: int | None = DEFAULTS.batch_size,
        errors: str = DEFAULTS.errors,
        progress: bool | None = DEFAULTS.progress,
        precision: str = DEFAULTS.precision,
        num_threads: int | None = DEFAULTS.num_threads,
        cache: bool = DEFAULTS.cache,
    ) -> None:
        # scikit-learn's rule: store the parameters as given; they are checked in fit.
        self.model = model
        self.pooling = pooling
        self.normalize = normalize
        self.max_length = max_length
        self.prompt = prompt
        self.prompt_name = prompt_name
        self.long_text = long_text
        self.stride = stride
        self.batch_size = batch_size
        self.errors = errors
        self.progress = progress
        self.precision = precision
        self.num_threads = num_threads
        self.cache = cache

    def _options(self) -> RunOptions:
        return RunOptions.pick(self.get_params())

    def fit(self, X: Any, y: Any = None) -> "DistilEmbedder":
        """Check the options and the input's columns, and record the model and its dimension (no text is run, no
        model is loaded). A failed fit leaves the estimator unfitted."""
        for name in _FITTED:  # a refit starts from nothing: a failure must not leave the old model with new columns
            if hasattr(self, name):
                delattr(self, name)
        try:
            options = self._options()
            columns = _columns(X, self, reset=True)
            shape = (len(columns[0]) if columns else len(X), len(columns))
            for size, what in ((shape[0], "sample(s)"), (shape[1], "feature(s)")):
                if size == 0:  # scikit-learn's own wording, then what to do
                    raise ValueError(f"Found array with 0 {what} (shape={shape}) while a minimum of 1 is required: "
                                     "fit needs at least one row of one text column.")
            for series in columns:
                _text.texts(series, options.errors)  # non-strings and invalid Unicode are refused here, not later
            model = default_model("embed") if self.model is None else self.model
            model = os.fspath(model) if isinstance(model, os.PathLike) else model
            dim = describe("embed", model, options)[0]
        except BaseException:
            for name in _FITTED:
                if hasattr(self, name):
                    delattr(self, name)
            raise
        self.model_, self.dim_ = model, dim
        return self

    def transform(self, X: Any) -> np.ndarray:
        """The embeddings of every column, side by side: a float32 array of shape (rows, columns * dim_); a row of
        NaN for a missing text."""
        check_is_fitted(self)
        options = self._options()
        columns = _columns(X, self, reset=False)
        blocks = [to_numpy(pandas_result("embed", series, self.model_, options).iloc[:, 0]) for series in columns]
        out = np.hstack(blocks) if len(blocks) > 1 else blocks[0]
        if out.shape[1] != self.n_features_in_ * self.dim_:
            raise ValueError(f"{self.model_!r} now makes {out.shape[1] // max(len(blocks), 1)}-dimensional vectors "
                             f"but made {self.dim_}-dimensional ones when this embedder was fitted: fit it again.")
        return out

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        """``<column>_0`` ... ``<column>_<dim_-1>`` for each input column (``x0``, ``x1``... without names)."""
        check_is_fitted(self)
        names = getattr(self, "feature_names_in_", None)
        if input_features is not None:
            given = [input_features] if isinstance(input_features, str) else [str(f) for f in input_features]
            if len(given) != self.n_features_in_ or (names is not None and list(names) != given):
                raise ValueError(f"input_features={given!r} are not the {self.n_features_in_} columns this embedder "
                                 f"was fitted on ({list(names) if names is not None else 'unnamed'}).")
            names = given
        if names is None:
            names = [f"x{i}" for i in range(self.n_features_in_)]
        return np.asarray([f"{name}_{j}" for name in names for j in range(self.dim_)], dtype=object)

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.input_tags.string = True
        tags.input_tags.allow_nan = True  # a missing text gives a row of NaN
        tags.transformer_tags.preserves_dtype = ["float32"]  # the output is float32, whatever the input
        return tags


def _columns(X: Any, estimator: DistilEmbedder, *, reset: bool) -> list[pd.Series]:
    """The input's text columns as pandas Series (the pipeline's input), with the input's row labels.

    Frames and 2-D arrays go through scikit-learn's own check of the column count and names; a 1-D input
    (a Series, a list, a 1-D array) is one column."""
    one_d = _one_d(X)
    if one_d is not None:
        if reset:  # a named Series names its features (``review_0``...), as a one-column frame would
            estimator.n_features_in_ = 1
            if isinstance(one_d.name, str) and one_d.name:
                estimator.feature_names_in_ = np.asarray([one_d.name], dtype=object)
            elif hasattr(estimator, "feature_names_in_"):
                del estimator.feature_names_in_
        elif estimator.n_features_in_ != 1:
            raise ValueError(f"X has 1 feature (a 1-D input), but DistilEmbedder is expecting "
                             f"{estimator.n_features_in_} features as input. Reshape your data: pass a frame or a "
                             f"2-D array of the {estimator.n_features_in_} text columns it was fitted on.")
        else:
            fitted = getattr(estimator, "feature_names_in_", None)
            if fitted is not None and isinstance(one_d.name, str) and one_d.name and one_d.name != fitted[0]:
                raise ValueError(f"The feature names should match those that were passed during fit: got a column "
                                 f"named {one_d.name!r}, fitted on {fitted[0]!r}.")
        return [one_d]
    if hasattr(X, "tocsr") or hasattr(X, "toarray"):
        raise TypeError(f"Got a sparse {type(X).__name__} but DistilEmbedder embeds text: pass a frame or an array of "
                        "strings (errors='coerce' reads numbers as text).")
    if _is_polars(X):
        validate_data(estimator, X, reset=reset, skip_check_array=True)
        return [_text.from_polars(X.to_series(i)) for i in range(X.width)]
    if isinstance(X, pd.DataFrame):
        validate_data(estimator, X, reset=reset, skip_check_array=True)
        return [X.iloc[:, i] for i in range(X.shape[1])]
    array = np.asarray(X, dtype=object)
    if array.ndim == 1:  # a pandas Index or array, an Arrow array...: one column
        return _columns(pd.Series(array, dtype=object), estimator, reset=reset)
    if array.ndim != 2:
        raise ValueError(f"Got an input of {array.ndim} dimensions (shape {array.shape}) but expected a frame of text "
                         "columns, a Series, or a 1-D or 2-D array of strings.")
    validate_data(estimator, array, reset=reset, skip_check_array=True)
    return [pd.Series(array[:, i], dtype=object) for i in range(array.shape[1])]


def _one_d(X: Any) -> pd.Series | None:
    """A 1-D input (a pandas or Polars Series, a list or a 1-D array of texts) as a Series; None for a 2-D one."""
    if isinstance(X, pd.Series):
        return X
    if _is_polars(X):
        return None if hasattr(X, "columns") else _text.from_polars(X)
    if isinstance(X, (str, bytes)):
        raise ValueError(f"Got the string {X[:40]!r} but expected a list, array or column of texts: wrap one text "
                         "in a list.")
    if isinstance(X, np.ndarray):
        return pd.Series(X, dtype=object) if X.ndim == 1 else None
    if isinstance(X, (list, tuple)) and not any(isinstance(v, (list, tuple, np.ndarray)) for v in X):
        return pd.Series(list(X), dtype=object)
    return None


def _is_polars(X: Any) -> bool:
    return type(X).__module__.split(".")[0] == "polars" and hasattr(X, "to_arrow")
