"""The .distil namespace on Polars DataFrames, LazyFrames and Series: equal to the pandas accessor, Polars types."""

from __future__ import annotations

import subprocess
import sys
import warnings

import numpy as np
import pandas as pd
import polars as pl
import pyarrow.parquet as pq
import pytest

import distilframe
import distilframe.polars as dfp
from distilframe.files import read_metadata
from distilframe.testing import write_sentence_checkpoint

TINY_SST2 = "renmada/sshleifer-tiny-distilbert-base-uncase-finetuned-sst-2-english"
TEXTS = ["a happy cat", None, "the dog barked at night", "", "a happy cat", "rain again today", "   ", "ok"]


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return str(write_sentence_checkpoint(tmp_path_factory.mktemp("pl") / "st", seed=51))


@pytest.fixture()
def df():
    return pl.DataFrame({"id": list(range(len(TEXTS))), "text": TEXTS})


def assert_equal_to_pandas(got: pl.DataFrame, want: pd.DataFrame) -> None:
    """Every column equal, row for row; pandas' NaN scores are Polars nulls, its categories an Enum."""
    assert got.columns == list(want.columns)
    for name in want.columns:
        column, expected = got[name], want[name]
        if isinstance(column.dtype, pl.Array):
            rows = [np.full(column.dtype.size, np.nan) if v is None else v for v in column.to_list()]
            np.testing.assert_array_equal(np.array(rows, dtype=np.float32).reshape(len(rows), column.dtype.size),
                                          distilframe.to_numpy(expected), err_msg=name)
        else:
            assert column.to_list() == [None if pd.isna(v) else v for v in expected.tolist()], name


def test_embed_equals_pandas_row_for_row_with_polars_types(df, model):
    got = df.distil.embed("text", model=model, return_status=True)
    want = df.to_pandas().distil.embed("text", model=model, return_status=True)
    assert_equal_to_pandas(got, want)
    dim = got["text_embedding"].dtype.size
    assert got.schema["text_embedding"] == pl.Array(pl.Float32, dim)
    assert got.schema["text_n_tokens"] == pl.Int64 and isinstance(got.schema["text_status"], pl.Enum)
    assert got["text_embedding"].is_null().to_list() == [t is None or not t.strip() for t in TEXTS]
    assert got["id"].to_list() == list(range(len(TEXTS)))  # order kept


def test_classify_and_zero_shot_equal_pandas_with_nulls_not_nan(df, model):
    got = df.distil.classify("text", model=TINY_SST2, all_scores=True)
    assert_equal_to_pandas(got, df.to_pandas().distil.classify("text", model=TINY_SST2, all_scores=True))
    assert got.schema["text_label"] == pl.String and got.schema["text_score"] == pl.Float32
    assert got["text_score"].null_count() == 3 and not got["text_score"].is_nan().any()
    labels = ["animals", "weather"]
    zero = df.distil.classify("text", model=model, labels=labels, template="It is about {}.")
    assert_equal_to_pandas(zero, df.to_pandas().distil.classify("text", model=model, labels=labels,
                                                                template="It is about {}."))


def test_series_namespace(df, model):
    s = df["text"]
    embedded = s.distil.embed(model=model)
    assert embedded.name == "text_embedding" and isinstance(embedded.dtype, pl.Array)
    assert_equal_to_pandas(embedded.to_frame(), s.to_pandas().distil.embed(model=model).to_frame())
    assert s.distil.classify(model=TINY_SST2).columns == ["text_label", "text_score"]
    unnamed = pl.Series(["a cat", "a dog"]).distil.embed(model=model)
    assert unnamed.name == "text_embedding"
    found = s.distil.search("a happy cat", model=model, k=2)
    assert found.columns == ["text", "score"] and found["text"].to_list() == ["a happy cat", "a happy cat"]


def test_text_dtypes_and_coerce(model):
    frame = pl.DataFrame({"cat": pl.Series(["x y", None, "x y"], dtype=pl.Categorical),
                          "enum": pl.Series(["x y", "z", None], dtype=pl.Enum(["x y", "z"])),
                          "empty": pl.Series([None, None, None], dtype=pl.Null),
                          "n": pl.Series([1, None, 30], dtype=pl.Int64)})
    for column in ("cat", "enum", "empty"):
        got = frame.distil.embed(column, model=model)
        assert_equal_to_pandas(got.select(f"{column}_embedding"),
                               pd.DataFrame({column: frame[column].to_list()}).distil.embed(column, model=model)[
                                   [f"{column}_embedding"]])
    with pytest.raises(TypeError, match="dtype Int64, not text.*errors='coerce'"):
        frame.distil.embed("n", model=model)
    got = frame.distil.embed("n", model=model, errors="coerce")  # 1 and 30, not 1.0 and 30.0
    want = pd.DataFrame({"n": ["1", None, "30"]}).distil.embed("n", model=model)
    assert_equal_to_pandas(got.select("n_embedding"), want[["n_embedding"]])


def test_column_errors_say_what_to_do(df, model):
    with pytest.raises(distilframe.ColumnNotFoundError, match="Did you mean 'text'"):
        df.distil.embed("txt", model=model)
    assert df.distil.embed(model=model).columns == ["id", "text", "text_embedding"]  # the only text column
    with pytest.raises(ValueError, match="column= is needed: the frame has 2 string columns"):
        df.with_columns(other=pl.col("text")).distil.embed(model=model)
    with pytest.raises(TypeError, match="one column name"):
        df.distil.embed(["text"], model=model)


def test_search_equals_pandas(df, model):
    queries = ["a happy cat", "weather"]
    got = df.distil.search(queries, "text", model=model, k=3)
    want = df.to_pandas().distil.search(queries, "text", model=model, k=3)
    assert got.columns == ["id", "text", "score", "query"]
    assert got["id"].to_list() == want["id"].tolist() and got["query"].to_list() == want["query"].tolist()
    np.testing.assert_array_equal(got["score"].to_numpy(), want["score"].to_numpy())
    embedded = df.distil.embed("text", model=model)  # the recorded embedding column is reused
    assert embedded.distil.search(queries, "text", k=3)["id"].to_list() == want["id"].tolist()
    topics = pl.Series("topic", ["cat", "weather"])  # labels and queries as a Polars Series, as numpy's
    assert df.distil.classify("text", labels=topics, model=model)["text_label"].to_list() == df.distil.classify(
        "text", labels=["cat", "weather"], model=model)["text_label"].to_list()
    assert df.distil.search(pl.Series(queries), "text", model=model, k=3)["id"].to_list() == want["id"].tolist()
    # A filtered frame has no record of the column's model: said, and computed with the model asked for
    filtered = embedded.filter(pl.col("id") >= 0)
    with pytest.warns(distilframe.DistilFrameWarning, match="no record of the model that made it"):
        assert filtered.distil.search(queries, "text", k=3, model=model)["id"].to_list() == want["id"].tolist()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        reused = filtered.distil.search(queries, "text", k=3, model=model, embeddings="text_embedding")
    assert reused["id"].to_list() == want["id"].tolist()
    with pytest.raises(distilframe.ColumnNotFoundError):
        df.distil.search("cat", "text", model=model, embeddings="vectors")
    two = embedded.with_columns(pl.lit("x").alias("note"))  # two text columns: the embedded one is searched
    with pytest.warns(distilframe.DistilFrameWarning, match="no record"):  # with_columns made a new frame
        assert two.distil.search(queries, k=3, model=model)["id"].to_list() == want["id"].tolist()
    with pytest.raises(ValueError, match=r"2 string columns .*df\.distil\.search\('a query', 'text'\)"):
        two.drop("text_embedding").distil.search(queries, model=model)


def test_lazyframe_equals_eager_runs_in_batches_and_sinks_parquet_with_metadata(df, model, tmp_path, monkeypatch):
    lazy = df.lazy().distil.embed("text", model=model, return_status=True)
    assert isinstance(lazy, pl.LazyFrame)
    eager = df.distil.embed("text", model=model, return_status=True)
    assert lazy.collect_schema() == eager.schema
    assert lazy.collect().equals(eager)

    sizes = []
    real = dfp._outputs
    monkeypatch.setattr(dfp, "_outputs", lambda task, series, *a, **k: (sizes.append(len(series)),
                                                                          real(task, series, *a, **k))[1])
    rows = 200_000
    big = pl.LazyFrame({"text": [f"text {i % 9}" for i in range(rows)]}).distil.embed("text", model=model)
    path = big.distil.sink_parquet(tmp_path / "big.parquet")
    assert sum(sizes) == rows and len(sizes) > 1 and max(sizes) < rows, sizes  # never the whole table at once
    assert pq.read_schema(path).field("text_embedding").type.list_size == eager["text_embedding"].dtype.size

    written = eager.distil.write_parquet(tmp_path / "eager.parquet")
    pandas = df.to_pandas().distil.embed("text", model=model, return_status=True).distil.to_parquet(
        tmp_path / "pandas.parquet")
    metas = [read_metadata(p) for p in (written, pandas)]
    for m in metas:
        m.pop("created_at")
    assert metas[0] == metas[1]
    lazy_meta = read_metadata(path)
    assert lazy_meta["model"] == metas[0]["model"] and lazy_meta["checkpoint_hash"] == metas[0]["checkpoint_hash"]
    assert lazy_meta["rows"] == rows and lazy_meta["dim"] == metas[0]["dim"]
    zero = df.lazy().distil.classify("text", model=model, labels=["cats", "rain"]).distil.sink_parquet(
        tmp_path / "zero.parquet")
    assert read_metadata(zero)["zero_shot_template"] == "{}"
    assert pl.read_parquet(zero)["text_label"].to_list() == df.distil.classify(
        "text", model=model, labels=["cats", "rain"])["text_label"].to_list()


def test_lazyframe_refusals(df, model, tmp_path):
    lazy = df.lazy()
    with pytest.raises(NotImplementedError, match="collect"):
        lazy.distil.search("cat", "text")
    with pytest.raises(ValueError, match="progress=True does not apply"):
        lazy.distil.embed("text", model=model, progress=True)
    with pytest.raises(distilframe.ColumnNotFoundError):
        lazy.distil.embed("txt", model=model)
    # Zero-shot labels: the model and the labels are checked when the query is built, not at collect().
    with pytest.raises(distilframe.CheckpointError):
        lazy.distil.classify("text", model=str(tmp_path / "nonexistent"), labels=["a", "b"])
    with pytest.raises(ValueError, match="reads as the same tokens"):
        lazy.distil.classify("text", model=model, labels=["Food", "food"])
    out = lazy.distil.embed("text", model=model)
    out.distil.sink_parquet(tmp_path / "a.parquet")
    with pytest.raises(distilframe.FileError, match="already exists"):
        out.distil.sink_parquet(tmp_path / "a.parquet")


def test_a_derived_frame_has_no_record_and_the_error_says_so(df, model, tmp_path):
    derived = df.distil.embed("text", model=model).filter(pl.col("id") > 1)
    with pytest.raises(ValueError, match="Polars frames carry no metadata"):
        derived.distil.write_parquet(tmp_path / "x.parquet")
    assert not (tmp_path / "x.parquet").exists()


def test_steps_are_merged_as_pandas_merges_them(df, model, tmp_path):
    both = df.distil.embed("text", model=model).distil.classify("text", model=TINY_SST2)
    with pytest.raises(ValueError, match="results of 2 distilframe steps"):
        both.distil.write_parquet(tmp_path / "x.parquet")
    again = df.distil.embed("text", model=model).distil.embed("text", model=model, max_length=16)
    again.distil.write_parquet(tmp_path / "y.parquet")
    assert read_metadata(tmp_path / "y.parquet")["max_length"] == "16"


@pytest.mark.parametrize("order", ["distilframe first", "polars first"])
def test_namespaces_are_registered_whichever_is_imported_first(order):
    imports = ["import distilframe", "import polars as pl"]
    if order == "polars first":
        imports.reverse()
    code = "; ".join(imports) + ("; print(all(hasattr(c, 'distil') for c in (pl.DataFrame({'a': [1]}), "
                                 "pl.LazyFrame({'a': [1]}), pl.Series([1]))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "True", out.stderr


def test_a_broken_namespace_module_never_breaks_importing_polars():
    code = ("import sys, warnings; import distilframe; sys.modules['distilframe.polars'] = None\n"
            "with warnings.catch_warnings(record=True) as seen:\n"
            "    warnings.simplefilter('always')\n"
            "    import polars as pl\n"
            "print(hasattr(pl, 'DataFrame'), [str(w.message)[:50] for w in seen if 'distilframe' in str(w.message)])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.startswith("True ['distilframe could not give Polars DataFrames")


def test_without_polars_the_error_says_what_to_install():
    code = ("import sys; sys.modules['polars'] = None\n"
            "try:\n    import distilframe.polars\nexcept ImportError as e:\n    print(e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert 'pip install "distilframe[polars]"' in out


def test_nan_and_all_null_columns_as_pandas_reads_them(model):
    frame = pl.DataFrame({"x": [1.5, float("nan"), None], "text": ["a", "b", None], "none": [None, None, None]})
    got = frame.distil.embed("x", model=model, errors="coerce")
    assert got["x_embedding"].is_null().to_list() == [False, True, True]  # NaN is missing, not the text "nan"
    want = frame.to_pandas().distil.embed("x", model=model, errors="coerce")
    assert_equal_to_pandas(got.select("x_embedding"), want[["x_embedding"]])
    assert frame.distil.embed(model=model).columns[-1] == "text_embedding"  # the all-null column is not a candidate


def test_lazy_collect_streams_and_a_base_model_cannot_classify_lazily(df, model, monkeypatch):
    sizes = []
    real = dfp._outputs
    monkeypatch.setattr(dfp, "_outputs", lambda task, series, *a, **k: (sizes.append(len(series)),
                                                                          real(task, series, *a, **k))[1])
    rows = 200_000
    out = pl.LazyFrame({"text": [f"text {i % 5}" for i in range(rows)]}).distil.classify(
        "text", model=TINY_SST2, all_scores=True, return_status=True).collect(engine="streaming")
    assert len(out) == rows and len(sizes) > 1 and max(sizes) < rows
    assert out.columns[1:4] == ["text_label", "text_score", "text_score_NEGATIVE"]
    with pytest.raises(distilframe.UnsupportedTaskError):
        df.lazy().distil.classify("text", model="distilbert-base-uncased")  # refused when the query is built


def test_a_polars_series_of_embeddings_must_have_the_frames_rows(df, model):
    vectors = df.distil.embed("text", model=model)["text_embedding"]
    got = df.distil.search("a happy cat", "text", model=model, embeddings=vectors, k=2)
    assert got["text"].to_list() == ["a happy cat", "a happy cat"]
    with pytest.raises(ValueError, match="a Series of 3 rows for a frame of 8"):
        df.distil.search("a happy cat", "text", model=model, embeddings=vectors.head(3))


def test_duplicates_equal_pandas(model, tmp_path):
    frame = pl.DataFrame({"id": range(8), "text": ["the cat is happy", "the cat is happy!", "a bad film", None,
                                                    "a bad film", "", "hello world", "the cat is happy"]})
    want = frame.to_pandas().distil.duplicates("text", model=model, threshold=0.9)
    got = frame.distil.duplicates("text", model=model, threshold=0.9)
    assert got.columns == ["id", "text", "text_dup_group", "text_dup_score"]
    assert got.schema["text_dup_group"] == pl.Int64 and got.schema["text_dup_score"] == pl.Float32
    assert got["text_dup_group"].to_list() == [None if pd.isna(g) else g for g in want["text_dup_group"]]
    np.testing.assert_array_equal(got["text_dup_score"].to_numpy(), want["text_dup_score"].to_numpy())
    assert got["text_dup_score"].null_count() == 2  # no group for the missing and the empty text: null, not NaN
    embedded = frame.distil.embed("text", model=model)  # its recorded embedding column is used, again equal
    grouped = embedded.distil.duplicates(threshold=0.9)
    assert grouped["text_dup_group"].to_list() == got["text_dup_group"].to_list()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the record is kept, as pandas keeps attrs: no "no record" warning
        grouped.distil.search("a cat", k=1)
    assert grouped.distil.write_parquet(tmp_path / "grouped.parquet").is_file()
    with pytest.raises(NotImplementedError, match=r"lf\.collect\(\)\.distil\.duplicates"):
        frame.lazy().distil.duplicates("text")
    with pytest.raises(NotImplementedError, match=r"s\.to_frame\(\)\.distil\.duplicates"):
        frame["text"].distil.duplicates()
    with pytest.raises(ValueError, match="threshold"):
        frame.distil.duplicates("text", model=model, threshold=2)


def test_what_a_dask_series_does_not_offer_says_what_to_do(df):
    dd = pytest.importorskip("dask.dataframe")
    import distilframe.dask  # noqa: F401

    series = dd.from_pandas(df.to_pandas(), npartitions=2)["text"]
    with pytest.raises(NotImplementedError, match=r"ddf\.distil\.search\('a query', 'text'\)"):
        series.distil.search("a cat")
    with pytest.raises(NotImplementedError, match=r"ddf\.distil\.classify\('text', labels="):
        series.distil.classify(labels=["a", "b"])
