import json
import warnings

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

import distilframe
from conftest import SST2
from distilframe import _run as executor
from distilframe.errors import ColumnNotFoundError, TestModelWarning, TruncationWarning, UnsupportedTaskError
from distilframe._manager import get_model

pytestmark = pytest.mark.filterwarnings("ignore::distilframe.TestModelWarning")

TEXTS = ["the cat is happy", "a bad movie", "hello world", "the cat is happy", "ok, bye"]


def expected(texts, model="distilbert-base-uncased", **options):
    """Row-by-row results through the executor, one text at a time (no batching, no dedupe)."""
    loaded = get_model(model)
    rows = [executor.run([t], loaded, **options).values[0] for t in texts]
    return np.vstack(rows)


def embeddings(series):
    return distilframe.to_numpy(series)


INDEXES = {
    "default": pd.RangeIndex(5),
    "strings": pd.Index(list("vwxyz")),
    "non-unique": pd.Index([3, 1, 3, 1, 2]),
    "multi": pd.MultiIndex.from_tuples([("a", 1), ("a", 2), ("b", 1), ("b", 1), ("c", 9)], names=["k", "n"]),
}


@pytest.mark.parametrize("kind", list(INDEXES))
def test_embed_keeps_index_columns_and_row_alignment(kind):
    df = pd.DataFrame({"text": TEXTS, "n": range(5)}, index=INDEXES[kind])
    before = df.copy()
    out = df.distil.embed("text")
    assert out.index.equals(df.index)
    assert list(out.columns) == ["text", "n", "text_embedding"]
    pd.testing.assert_frame_equal(out[["text", "n"]], df)
    pd.testing.assert_frame_equal(df, before)  # the input is not modified
    assert out["text_embedding"].dtype == pd.ArrowDtype(pa.list_(pa.float32(), 32))
    np.testing.assert_allclose(embeddings(out["text_embedding"]), expected(TEXTS), atol=1e-5)


def test_series_embed_returns_a_named_series_with_the_same_index():
    s = pd.Series(TEXTS, index=INDEXES["non-unique"], name="body")
    out = s.distil.embed(pooling="cls", normalize=False)
    assert out.name == "body_embedding" and out.index.equals(s.index)
    np.testing.assert_allclose(embeddings(out), expected(TEXTS, pooling="cls", normalize=False), atol=1e-5)
    assert pd.Series(["a"]).distil.embed().name == "text_embedding"  # unnamed series


@pytest.mark.parametrize("dtype", [object, "string", "str"])
def test_missing_values_and_blanks_give_null_rows(dtype):
    values = ["the cat", None, np.nan, pd.NA, "", "  \t", "the dog"]
    if dtype != object:
        values = [None if v is pd.NA or v is np.nan else v for v in values]
    df = pd.DataFrame({"text": pd.Series(values, dtype=dtype)})
    out = df.distil.embed()
    col = out["text_embedding"]
    assert col.isna().tolist() == [False, True, True, True, True, True, False]
    X = embeddings(col)
    assert np.isnan(X[1:6]).all()
    np.testing.assert_allclose(X[[0, 6]], expected(["the cat", "the dog"]), atol=1e-5)


def test_non_strings_raise_with_their_labels_or_are_coerced():
    df = pd.DataFrame({"text": ["the cat", 7, 2.5, True, b"x", ("a",), None, 9]}, index=list("abcdefgh"))
    with pytest.raises(TypeError) as e:
        df.distil.embed("text")
    message = str(e.value)
    assert "6 non-string values" in message
    assert "'b' (int)" in message and "'c' (float)" in message and "'d' (bool)" in message
    assert "'e' (bytes)" in message and "'f' (tuple)" in message and "and 1 more" in message
    assert "errors='coerce'" in message
    out = df.distil.embed("text", errors="coerce")
    X = embeddings(out["text_embedding"])
    np.testing.assert_allclose(X[1], expected(["7"])[0], atol=1e-5)
    np.testing.assert_allclose(X[3], expected(["True"])[0], atol=1e-5)
    assert np.isnan(X[6]).all()
    with pytest.raises(ValueError, match="errors='ignore'"):
        df.distil.embed("text", errors="ignore")


def test_bytes_are_decoded_and_invalid_unicode_is_named_or_replaced():
    s = pd.Series([b"caf\xc3\xa9", "ok"], index=["x", "y"], name="t")
    X = embeddings(s.distil.embed(errors="coerce"))
    np.testing.assert_allclose(X[0], expected(["café"])[0], atol=1e-5)

    bad = pd.Series(["ok", "bad \udcff end", "fine"], index=["a", "b", "c"], name="t", dtype=object)
    with pytest.raises(ValueError, match=r"has 1 string that is not valid Unicode .*at index 'b' \(str\).*errors='coerce'"):
        bad.distil.embed()
    X = embeddings(bad.distil.embed(errors="coerce"))
    np.testing.assert_allclose(X[1], expected(["bad \ufffd end"])[0], atol=1e-5)


def test_unnamed_series_and_bad_column_arguments_have_clear_messages():
    with pytest.raises(TypeError, match="The Series has 1 non-string"):
        pd.Series(["a", 1]).distil.embed()
    with pytest.raises(TypeError, match=r"column=\['text'\] \(list\) but expected one column name"):
        pd.DataFrame({"text": ["a"]}).distil.embed(["text"])
    with pytest.raises(ValueError, match="normalize='no'"):
        pd.DataFrame({"text": ["a"]}).distil.embed(normalize="no")


def test_multiindex_columns_keep_their_levels():
    df = pd.DataFrame({("in", "text"): TEXTS, ("in", "n"): range(5)})
    out = df.distil.embed(("in", "text"))
    assert ("in", "text_embedding") in out.columns
    np.testing.assert_allclose(embeddings(out[("in", "text_embedding")]), expected(TEXTS), atol=1e-5)
    labelled = df.distil.classify(("in", "text"))
    assert ("in", "text_label") in labelled.columns and ("in", "text_score") in labelled.columns
    with pytest.raises(ValueError, match="selects 2 columns under it .*full tuple"):
        df.distil.embed("in")


def test_categorical_text_is_a_string_column():
    df = pd.DataFrame({"n": range(5), "text": pd.Categorical(TEXTS)})
    out = df.distil.embed()
    np.testing.assert_allclose(embeddings(out["text_embedding"]), expected(TEXTS), atol=1e-5)


def test_missing_column_is_a_key_error_with_the_closest_match():
    df = pd.DataFrame({"review_text": ["a"], "stars": [5]})
    with pytest.raises(KeyError) as e:
        df.distil.embed("review_txt")
    assert isinstance(e.value, ColumnNotFoundError)
    assert "Did you mean 'review_text'?" in str(e.value) and "'stars'" in str(e.value)


def test_column_is_inferred_only_when_one_string_column_exists():
    out = pd.DataFrame({"id": [1, 2], "body": ["a cat", None]}).distil.embed()
    assert "body_embedding" in out.columns
    with pytest.raises(ValueError, match="2 string columns .*'a', 'b'"):
        pd.DataFrame({"a": ["x"], "b": ["y"]}).distil.embed()
    with pytest.raises(ValueError, match="0 string columns"):
        pd.DataFrame({"a": [1]}).distil.embed()


def test_empty_frame_gives_empty_result_with_the_right_dtypes():
    df = pd.DataFrame({"text": pd.Series([], dtype=object), "n": pd.Series([], dtype="int64")})
    out = df.distil.embed("text")
    assert len(out) == 0 and list(out.columns) == ["text", "n", "text_embedding"]
    assert out["text_embedding"].dtype == pd.ArrowDtype(pa.list_(pa.float32(), 32))
    assert embeddings(out["text_embedding"]).shape == (0, 32)
    c = df.distil.classify("text", all_scores=True)
    assert list(c.columns) == ["text", "n", "text_label", "text_score", "text_score_NEGATIVE", "text_score_POSITIVE"]
    assert c["text_label"].dtype == pd.StringDtype() and c["text_score"].dtype == np.float32


def test_long_cell_is_truncated_with_a_warning():
    df = pd.DataFrame({"text": [" ".join(["movie"] * 2000), "ok"]})
    with pytest.warns(TruncationWarning, match="1 of 2 distinct texts"):
        out = df.distil.embed(max_length=64)
    assert not out["text_embedding"].isna().any()


def test_model_is_loaded_once_across_calls(fresh_manager):
    df = pd.DataFrame({"text": TEXTS})
    df.distil.embed()
    df["text"].distil.embed(pooling="cls")
    df.distil.embed(model="uncased")
    assert fresh_manager.builds == {"distilbert-base-uncased": 1}


def test_options_are_checked_before_any_model_loads(fresh_manager):
    df = pd.DataFrame({"text": TEXTS})
    with pytest.raises(ValueError, match="pooling='avg'"):
        df.distil.embed(pooling="avg")
    with pytest.raises(ValueError, match="batch_size=0"):
        df.distil.embed(batch_size=0)
    with pytest.raises(distilframe.UnknownModelError, match="Did you mean"):
        df.distil.embed(model="distilbert-base-uncasd")
    assert fresh_manager.builds == {}


# ------------------------------------------------------------------------------------------ classify

def test_classify_adds_label_and_score_in_row_order():
    df = pd.DataFrame({"review": TEXTS + [None]}, index=INDEXES["strings"].append(pd.Index(["n"])))
    out = df.distil.classify("review", all_scores=True)
    probs = expected(TEXTS, model=SST2, task="classify")  # the default classifier
    assert out.index.equals(df.index)
    assert out["review_label"].dtype == pd.StringDtype()
    labels = np.array(["NEGATIVE", "POSITIVE"])[probs.argmax(axis=1)]
    assert out["review_label"].iloc[:5].tolist() == labels.tolist()
    assert out["review_label"].isna().tolist() == [False] * 5 + [True]
    np.testing.assert_allclose(out["review_score"].iloc[:5], probs.max(axis=1), atol=1e-5)
    np.testing.assert_allclose(out["review_score_NEGATIVE"].iloc[:5], probs[:, 0], atol=1e-5)
    np.testing.assert_allclose(out["review_score_POSITIVE"].iloc[:5], probs[:, 1], atol=1e-5)
    assert np.isnan(out["review_score"].iloc[5])


def test_series_classify_returns_two_columns(classifier_dir):
    s = pd.Series(TEXTS, name="review", index=INDEXES["multi"])
    out = s.distil.classify(model=classifier_dir)
    assert list(out.columns) == ["review_label", "review_score"] and out.index.equals(s.index)
    assert set(out["review_label"]) <= {"negative", "neutral", "positive"}
    assert (out["review_score"] >= 1 / 3).all()


def test_only_the_tiny_test_classifier_warns(monkeypatch):
    from distilframe import _manager as manager_mod

    monkeypatch.setattr(manager_mod, "_warned", set())
    monkeypatch.setattr(manager_mod, "manager", manager_mod.ModelManager())
    df = pd.DataFrame({"text": ["a"]})
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        df.distil.classify()  # the default: distilbert-base-uncased-finetuned-sst-2-english
    assert not any(issubclass(w.category, TestModelWarning) for w in record)
    with pytest.warns(TestModelWarning, match="carry no meaning"):
        df.distil.classify(model="sst2-tiny")


def test_base_models_are_refused_for_classify(checkpoint_dir, fresh_manager):
    df = pd.DataFrame({"text": ["a cat"]})
    with pytest.raises(UnsupportedTaskError, match=r"no trained classification head.*embed\(\)"):
        df.distil.classify(model="distilbert-base-uncased")
    assert fresh_manager.builds == {}  # refused from the registry, before loading
    with pytest.raises(UnsupportedTaskError, match="embed"):
        df.distil.classify(model=checkpoint_dir)


# ----------------------------------------------------------------------------- Arrow and Parquet

def test_to_numpy_handles_slices_chunks_and_parquet(tmp_path):
    df = pd.DataFrame({"text": ["the cat", None, "the dog", "hello"]}).distil.embed()
    col = df["text_embedding"]
    X = embeddings(col)
    np.testing.assert_array_equal(embeddings(col.iloc[1:3]), X[1:3])  # sliced Arrow array (offset)
    both = pd.concat([col, col.iloc[2:]])  # several chunks
    np.testing.assert_array_equal(embeddings(both), np.vstack([X, X[2:]]))

    path = tmp_path / "out.parquet"
    df.to_parquet(path)
    back = pd.read_parquet(path, dtype_backend="pyarrow")
    np.testing.assert_array_equal(embeddings(back["text_embedding"]), X)
    assert pa.types.is_fixed_size_list(pa.parquet.read_schema(path).field("text_embedding").type)
    # Plain pd.read_parquet cannot rebuild Arrow list dtypes from pandas' metadata (pandas-dev/pandas#59738):
    # the README says to read with dtype_backend="pyarrow". Object columns of arrays still convert:
    objects = pd.Series([X[0], None, X[2], list(X[3])], dtype=object, name="e")
    np.testing.assert_array_equal(embeddings(objects), X)
    np.testing.assert_array_equal(embeddings(col.astype(object)), X)  # nulls are pd.NA there
    np.testing.assert_array_equal(embeddings(pd.Series(col.tolist())), X)

    with pytest.raises(TypeError, match="not lists of floats"):
        embeddings(pd.Series(["a"], dtype=pd.ArrowDtype(pa.string())))


def test_to_numpy_of_variable_lists():
    s = pd.Series([[1.0, 2.0], None, [3.0, 4.0]], dtype=pd.ArrowDtype(pa.list_(pa.float64())))
    X = embeddings(s)
    assert X.dtype == np.float32
    np.testing.assert_array_equal(X[[0, 2]], [[1, 2], [3, 4]])
    assert np.isnan(X[1]).all()
    with pytest.raises(ValueError, match="different lengths"):
        embeddings(pd.Series([[1.0], [1.0, 2.0]], dtype=pd.ArrowDtype(pa.list_(pa.float64()))))


def test_return_status_reports_tokens_and_what_happened():
    long = " ".join(["movie"] * 40)
    df = pd.DataFrame({"text": ["the cat", None, "  ", long, "\u200b"]}, index=list("abcde"))
    with pytest.warns(TruncationWarning):
        out = df.distil.embed(max_length=16, return_status=True)
    assert out["text_n_tokens"].dtype == "Int64"
    assert out["text_n_tokens"].tolist() == [4, pd.NA, 0, 42, 0]
    assert out["text_status"].tolist() == ["ok", "null", "empty", "truncated", "empty"]
    assert list(out["text_status"].cat.categories) == ["ok", "null", "empty", "truncated", "chunked"]
    chunked = df["text"].distil.embed(max_length=16, long_text="chunk", return_status=True)
    assert list(chunked.columns) == ["text_embedding", "text_n_tokens", "text_status"]
    assert chunked["text_status"].tolist() == ["ok", "null", "empty", "chunked", "empty"]
    labelled = df.distil.classify(max_length=16, long_text="chunk", return_status=True, all_scores=True)
    assert labelled["text_status"].tolist() == ["ok", "null", "empty", "chunked", "empty"]
    assert labelled["text_label"].isna().tolist() == [False, True, True, False, True]
    with pytest.raises(ValueError, match="return_status='yes'"):
        df.distil.embed(return_status="yes")
    with pytest.raises(ValueError, match="long_text='split'"):
        df.distil.classify(long_text="split")


def test_to_parquet_writes_a_file_plain_pandas_reads_with_the_file_pipelines_metadata(tmp_path, checkpoint_dir):
    from distilframe.errors import FileError
    from distilframe.files import read_metadata

    df = pd.DataFrame({"id": [3, 1, 2, 9], "text": ["the cat", None, "the dog", "hello"]},
                      index=pd.Index([10, 11, 12, 13], name="row"))
    out = df.distil.embed("text", model=checkpoint_dir)
    X = embeddings(out["text_embedding"])
    path = out.distil.to_parquet(tmp_path / "out.parquet")
    plain = pd.read_parquet(path)  # DataFrame.to_parquet's file raises NotImplementedError here (pandas#59738)
    assert list(plain.columns) == ["id", "text", "text_embedding", "row"] or plain.index.name == "row"
    np.testing.assert_array_equal(embeddings(plain["text_embedding"]), X)
    arrow = pd.read_parquet(path, dtype_backend="pyarrow")
    np.testing.assert_array_equal(embeddings(arrow["text_embedding"]), X)
    meta = read_metadata(path)
    assert meta["task"] == "embed" and meta["model"] == str(checkpoint_dir) and meta["dim"] == "32"
    assert meta["pooling"] == "mean" and meta["rows"] == 4 and "created_at" in meta
    with pytest.raises(FileError, match="already exists"):
        out.distil.to_parquet(path)
    out.distil.to_parquet(path, overwrite=True)

    series = df["text"].distil.embed(model=checkpoint_dir)  # a Series result writes too
    assert read_metadata(series.distil.to_parquet(tmp_path / "series.parquet"))["column"] == "text"
    labelled = df.distil.classify("text", model=SST2, cache=False)
    meta = read_metadata(labelled.distil.to_parquet(tmp_path / "labels.parquet"))
    assert meta["task"] == "classify" and json.loads(meta["labels"]) == ["NEGATIVE", "POSITIVE"]

    # The index is written when named or not integers (by names and dtypes, never by values: every chunk and
    # partition alike), named as reset_index() names it; an unnamed integer index is row numbers.
    two_level = pd.MultiIndex.from_tuples([("a", 1), ("a", 2), ("b", 1), ("b", 2)], names=[None, "n"])
    for index, names, values in [(pd.Index(["x", "y", "z", "w"]), ["index"], ["x", "y", "z", "w"]),
                                 (pd.date_range("2026-01-01", periods=4), ["index"], None),
                                 (pd.Index([1, 1, 5, 9], name="row"), ["row"], [1, 1, 5, 9]),
                                 (two_level, ["level_0", "n"], ["a", "a", "b", "b"]),
                                 (pd.Index([1, 1, 5, 9]), [], None), (pd.RangeIndex(5, 9), [], None),
                                 (pd.RangeIndex(4), [], None)]:
        written = out.set_axis(index).distil.to_parquet(tmp_path / "index.parquet", overwrite=True)
        back = pd.read_parquet(written)
        assert list(back.columns) == ["id", "text", "text_embedding", *names]
        assert values is None or back[names[0]].tolist() == values
    taken = out.assign(index=0, level_0=1).set_axis(pd.Index(list("abcd")))  # the next free name
    written = taken.distil.to_parquet(tmp_path / "index.parquet", overwrite=True)
    assert list(pd.read_parquet(written).columns)[3:] == ["index", "level_0", "level_1"]
    unwritten = out.set_axis(list("abcd")).distil.to_parquet(tmp_path / "none.parquet", write_index=False)
    assert list(pd.read_parquet(unwritten).columns) == ["id", "text", "text_embedding"]

    with pytest.raises(ValueError, match="holds no distilframe result"):
        df.distil.to_parquet(tmp_path / "plain.parquet")
    with pytest.raises(ValueError, match="holds no distilframe result"):
        out.drop(columns="text_embedding").distil.to_parquet(tmp_path / "dropped.parquet")
    both = out.distil.classify("text", model=SST2, cache=False)
    with pytest.raises(ValueError, match="results of 2 distilframe steps"):
        both.distil.to_parquet(tmp_path / "both.parquet")
    assert not (tmp_path / "both.parquet").exists()
