"""distilframe.sklearn.DistilEmbedder: equal to the pandas accessor; scikit-learn's checks, pipelines, workers,
pickles."""

from __future__ import annotations

import pickle
import subprocess
import sys

import numpy as np
import pandas as pd
import polars as pl
import pytest
from sklearn.base import clone
from sklearn.compose import ColumnTransformer
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.utils.estimator_checks import check_estimator

import distilframe
from distilframe.sklearn import DistilEmbedder
from distilframe.testing import write_sentence_checkpoint

# scikit-learn's checks that cannot apply to an embedder of text, and why (the test asserts they still fail, so
# the list stays exact).
NOT_APPLICABLE = {
    "check_complex_data": "errors='coerce' reads any value as text, complex numbers included ('(1+2j)'); with "
                          "errors='raise' they are refused with TypeError, as every non-string is.",
    "check_fit1d": "a 1-D input (a Series, a list of texts) is one text column by design, not an error.",
}
# Checks that pass or fail by the CPU: they ask for equality to rtol 1e-7.
LAST_BIT = {
    "check_methods_sample_order_invariance": "a row's float32 result can depend on its batch neighbours at the "
                                             "last bit (about 3e-8 in fp32 on an AVX2 CPU; none seen in bf16 on an "
                                             "AVX512-BF16 one): equal to rtol 1e-6, not always 1e-7. With the "
                                             "result cache on (the default) it is exact.",
}


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return str(write_sentence_checkpoint(tmp_path_factory.mktemp("sk") / "st", seed=41))


@pytest.fixture(scope="module")
def frame():
    reviews = ["great phone, fast delivery", "the screen cracked on day two", None, "refund took a month",
               "love it", "  ", "arrived late and broken", "works as described"] * 3
    titles = [f"order {i}" for i in range(len(reviews))]
    return pd.DataFrame({"review": reviews, "title": titles}, index=pd.Index(range(100, 100 + len(reviews)),
                                                                             name="id"))


def test_features_equal_the_pandas_accessor_row_for_row(model, frame):
    embedder = DistilEmbedder(model=model)
    features = embedder.fit_transform(frame)
    dim = embedder.dim_
    assert features.dtype == np.float32 and features.shape == (len(frame), 2 * dim)
    for i, column in enumerate(["review", "title"]):
        want = distilframe.to_numpy(frame.distil.embed(column, model=model)[f"{column}_embedding"])
        np.testing.assert_array_equal(features[:, i * dim:(i + 1) * dim], want)
    missing = frame["review"].isna().to_numpy() | (frame["review"].str.strip() == "").to_numpy()
    assert np.isnan(features[missing, :dim]).all() and not np.isnan(features[~missing]).any()
    assert list(embedder.get_feature_names_out()[[0, dim - 1, dim]]) == ["review_0", f"review_{dim - 1}", "title_0"]
    assert list(embedder.feature_names_in_) == ["review", "title"] and embedder.n_features_in_ == 2


def test_inputs_of_every_kind_give_the_same_features(model, frame):
    want = DistilEmbedder(model=model).fit_transform(frame[["review"]])
    for X in (frame["review"], frame["review"].tolist(), frame["review"].to_numpy(),
              frame[["review"]].to_numpy(), pl.from_pandas(frame[["review"]].reset_index(drop=True)),
              pl.from_pandas(frame["review"].reset_index(drop=True))):
        np.testing.assert_array_equal(DistilEmbedder(model=model).fit_transform(X), want, err_msg=type(X).__name__)
    assert list(DistilEmbedder(model=model).fit(frame[["review"]].to_numpy()).get_feature_names_out()[:1]) == ["x0_0"]
    assert list(DistilEmbedder(model=model).fit(frame["review"]).get_feature_names_out()[:1]) == ["review_0"]


def test_set_output_keeps_the_index_and_names_the_columns(model, frame):
    embedder = DistilEmbedder(model=model).set_output(transform="pandas")
    out = embedder.fit_transform(frame[["review"]])
    assert out.index.equals(frame.index) and list(out.columns) == list(embedder.get_feature_names_out())
    assert (out.dtypes == np.float32).all()
    polars_out = DistilEmbedder(model=model).set_output(transform="polars").fit_transform(frame[["review"]])
    assert isinstance(polars_out, pl.DataFrame) and polars_out.columns == list(embedder.get_feature_names_out())


def test_parameters_clone_and_pickle_without_the_model(model, frame):
    embedder = DistilEmbedder(model=model, max_length=64, cache=False)
    assert clone(embedder).get_params() == embedder.get_params()
    assert embedder.set_params(max_length=32).max_length == 32
    fitted = embedder.fit(frame[["review"]])
    blob = pickle.dumps(fitted)
    assert len(blob) < 4000, "a pickled embedder holds parameters and names, never the model"
    np.testing.assert_array_equal(pickle.loads(blob).transform(frame[["review"]]), fitted.transform(frame[["review"]]))


def test_fit_records_the_session_default_so_a_later_change_cannot_change_the_features(model, frame, tmp_path):
    other = write_sentence_checkpoint(tmp_path / "other", seed=42)
    distilframe.set_default_model(model)
    try:
        embedder = DistilEmbedder().fit(frame[["review"]])
        distilframe.set_default_model(other)
        features = embedder.transform(frame[["review"]])
    finally:
        distilframe.reset_default_models()
    assert embedder.model_ == model
    np.testing.assert_array_equal(features, DistilEmbedder(model=model).fit_transform(frame[["review"]]))


def test_bad_input_and_options_say_what_to_do(model, frame):
    with pytest.raises(NotFittedError):
        DistilEmbedder(model=model).transform(frame[["review"]])
    with pytest.raises(ValueError, match="max_length=2"):
        DistilEmbedder(model=model, max_length=2).fit(frame[["review"]])
    with pytest.raises(TypeError, match="non-string values.*errors='coerce'"):
        DistilEmbedder(model=model).fit(pd.DataFrame({"n": [1, 2]}))
    with pytest.raises(ValueError, match="wrap one text in a list"):
        DistilEmbedder(model=model).fit("just one text")
    fitted = DistilEmbedder(model=model).fit(frame)
    with pytest.raises(ValueError, match="(?s)feature names should match.*missing:\n- title"):
        fitted.transform(frame[["review"]])
    with pytest.raises(ValueError, match="X has 1 features, but DistilEmbedder is expecting 2 features"):
        DistilEmbedder(model=model).fit(frame.to_numpy()).transform(frame[["review"]].to_numpy())
    with pytest.raises(ValueError, match="feature names should match"):
        fitted.transform(frame.rename(columns={"title": "heading"}))
    with pytest.raises(ValueError, match="Reshape your data"):
        fitted.transform(frame["review"])
    from scipy import sparse

    with pytest.raises(TypeError, match="embeds text"):
        DistilEmbedder(model=model).fit(sparse.csr_matrix(np.eye(3)))


def test_scikit_learn_checks_pass_where_they_apply(model):
    results = check_estimator(DistilEmbedder(model=model, errors="coerce", cache=False), on_fail=None)
    failed = {r["check_name"] for r in results if r["status"] == "failed"}
    passed = {r["check_name"] for r in results if r["status"] == "passed"}
    assert set(NOT_APPLICABLE) <= failed <= set(NOT_APPLICABLE) | set(LAST_BIT), {
        r["check_name"]: str(r["exception"])[:200] for r in results if r["status"] == "failed"}
    assert len(passed) > 30 and {"check_estimators_pickle", "check_transformer_general", "check_fit_idempotent",
                                 "check_n_features_in_after_fitting", "check_estimators_empty_data_messages",
                                 "check_methods_subset_invariance"} <= passed


def _labelled(n=40):
    texts = [f"{'good great fine' if i % 2 else 'bad awful poor'} item number {i}" for i in range(n)]
    return pd.DataFrame({"review": texts, "title": [f"t{i % 3}" for i in range(n)]}), np.arange(n) % 2


def test_pipeline_column_transformer_and_cross_validation_in_worker_processes(model):
    X, y = _labelled()
    columns = ColumnTransformer([("review", DistilEmbedder(model=model), "review"),
                                 ("title", DistilEmbedder(model=model), ["title"])])
    pipe = make_pipeline(columns, LogisticRegression(max_iter=1000))
    pipe.fit(X, y)
    names = pipe[0].get_feature_names_out()
    assert names[0] == "review__review_0" and names[-1].startswith("title__title_")
    serial = cross_val_score(pipe, X, y, cv=4, n_jobs=1)
    parallel = cross_val_score(pipe, X, y, cv=4, n_jobs=2)  # loky worker processes: each loads the model itself
    np.testing.assert_allclose(parallel, serial)


def test_a_pickled_pipeline_predicts_the_same_in_a_fresh_process(model, tmp_path):
    import joblib

    X, y = _labelled()
    pipe = make_pipeline(DistilEmbedder(model=model, cache=False), LogisticRegression(max_iter=1000))
    pipe.fit(X[["review"]], y)
    joblib.dump(pipe, tmp_path / "pipe.joblib")
    X[["review"]].to_parquet(tmp_path / "X.parquet")
    code = ("import joblib, numpy as np, pandas as pd, sys\n"
            f"pipe = joblib.load({str(tmp_path / 'pipe.joblib')!r})\n"
            f"X = pd.read_parquet({str(tmp_path / 'X.parquet')!r})\n"
            "print('loaded' if 'paddle' not in sys.modules else 'paddle imported by unpickling')\n"
            f"np.save({str(tmp_path / 'p.npy')!r}, pipe.predict_proba(X))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "loaded"
    np.testing.assert_allclose(np.load(tmp_path / "p.npy"), pipe.predict_proba(X[["review"]]), rtol=0, atol=1e-6)


def test_import_distilframe_imports_neither_sklearn_nor_polars():
    code = "import sys, distilframe; print([m for m in ('sklearn', 'polars') if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_without_scikit_learn_the_error_says_what_to_install():
    code = ("import sys; sys.modules['sklearn'] = None\n"
            "try:\n    import distilframe.sklearn\nexcept ImportError as e:\n    print(e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert 'pip install "distilframe[sklearn]"' in out


def test_fit_loads_no_model_and_a_failed_fit_leaves_it_unfitted(model, frame, tmp_path):
    from distilframe._manager import manager

    manager.clear()
    embedder = DistilEmbedder(model=model).fit(frame[["review"]])
    assert distilframe.models().query("loaded").empty and embedder.dim_ == 32
    other = write_sentence_checkpoint(tmp_path / "other", seed=43)
    embedder.set_params(model=str(other))
    with pytest.raises(TypeError):
        embedder.fit(pd.DataFrame({"n": [1, 2]}))  # the old model_ must not survive with the new columns
    with pytest.raises(NotFittedError):
        embedder.transform(frame[["review"]])


def test_one_dimensional_inputs_are_one_column_and_names_are_checked(model, frame):
    want = DistilEmbedder(model=model).fit_transform(frame[["review"]])
    np.testing.assert_array_equal(DistilEmbedder(model=model).fit_transform(pd.Index(frame["review"])), want)
    fitted = DistilEmbedder(model=model).fit(frame[["review"]])
    with pytest.raises(ValueError, match="feature names should match.*'title'"):
        fitted.transform(frame["title"])
    out = DistilEmbedder(model=model).set_output(transform="pandas").fit_transform(frame["review"])
    assert out.index.equals(frame.index)


def test_a_polars_nan_is_missing_as_in_pandas(model):
    values = [1.5, float("nan"), None, 2.0]
    got = DistilEmbedder(model=model, errors="coerce").fit_transform(pl.DataFrame({"x": values}))
    want = DistilEmbedder(model=model, errors="coerce").fit_transform(pd.DataFrame({"x": values}))
    np.testing.assert_array_equal(got, want)
    assert np.isnan(got[1:3]).all() and not np.isnan(got[[0, 3]]).any()
