"""The Dask accessor: same results as pandas, one model per worker process, Parquet with the file metadata."""

import subprocess
import sys
import warnings

import dask.dataframe as dd
import distributed
import numpy as np
import pandas as pd
import pytest

import distilframe
from conftest import SST2, TINY_SST2
from distilframe.cli import main
from distilframe.errors import ColumnNotFoundError, UnsupportedTaskError
from distilframe.files import FileError, embed_file, read_metadata

TEXTS = ["the cat is happy", "a bad movie", None, "hello world", "the cat is happy", "   ", "good film, i love it",
         "a dog", "the weather is nice today", "bad", "", "i love it"]
MODEL = "distilbert-base-uncased"


@pytest.fixture
def frame():
    # A non-default index: results must keep it, partition by partition.
    return pd.DataFrame({"id": np.arange(len(TEXTS)) * 10, "text": TEXTS, "n": np.arange(len(TEXTS), dtype="float64")},
                        index=pd.Index(np.arange(len(TEXTS))[::-1] + 100, name="row"))


@pytest.fixture(scope="module")
def client(seeded_home):
    """A local cluster of 2 worker processes (1 thread each), as a user would start one."""
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None)
    c = distributed.Client(cluster)
    yield c
    c.close()
    cluster.close()


def builds(client) -> dict[str, dict[str, int]]:
    """Models built so far in each worker process, by name."""
    return client.run(lambda: dict(__import__("distilframe._manager")._manager.manager.builds))


def pandas(ddf) -> pd.DataFrame:
    """The same rows as pandas (Dask stores text as Arrow strings: compare like with like)."""
    return ddf.compute(scheduler="sync")


def assert_same(got: pd.DataFrame, want: pd.DataFrame) -> None:
    assert list(got.columns) == list(want.columns)
    assert got.index.equals(want.index)
    for name in want.columns:
        if str(want[name].dtype).startswith("fixed_size_list"):
            assert got[name].dtype == want[name].dtype
            a, b = distilframe.to_numpy(got[name]), distilframe.to_numpy(want[name])
            np.testing.assert_array_equal(np.isnan(a), np.isnan(b))
            np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)
        else:
            pd.testing.assert_series_equal(got[name], want[name], check_exact=False, atol=1e-6, rtol=0)


# ------------------------------------------------------------------------------------- registration

@pytest.mark.parametrize("order", ["distilframe first", "dask first"])
def test_accessor_is_registered_whichever_is_imported_first(order):
    imports = ["import distilframe", "import dask.dataframe as dd"]
    if order == "dask first":
        imports.reverse()
    code = "; ".join(imports) + "; print(hasattr(dd.DataFrame, 'distil'), hasattr(dd.Series, 'distil'))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["True", "True"]


def test_import_distilframe_does_not_import_dask():
    code = "import sys, distilframe; print(any(m == 'dask' or m.startswith('dask.') for m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


# ------------------------------------------------------------------------- same results as pandas

def test_embed_equals_pandas_with_lazy_meta(frame):
    ddf = dd.from_pandas(frame, npartitions=3, sort=False)
    lazy = ddf.distil.embed("text", model=MODEL, return_status=True)
    got = lazy.compute(scheduler="sync")
    want = pandas(ddf).distil.embed("text", model=MODEL, return_status=True)
    assert_same(got, want)
    assert lazy.dtypes.to_dict() == got.dtypes.to_dict()  # meta was right before anything ran
    assert got["text_embedding"].isna().tolist() == [t is None or not t.strip() for t in TEXTS]


def test_classify_and_series_equal_pandas(frame):
    ddf = dd.from_pandas(frame, npartitions=4, sort=False)
    lazy = ddf.distil.classify("text", model=SST2, all_scores=True)
    got = lazy.compute(scheduler="sync")
    assert_same(got, pandas(ddf).distil.classify("text", model=SST2, all_scores=True))
    assert lazy.dtypes.to_dict() == got.dtypes.to_dict()
    assert "text_score_POSITIVE" in got.columns

    series = ddf["text"].distil.embed(model=MODEL, pooling="cls", normalize=False)
    want = pandas(ddf)["text"].distil.embed(model=MODEL, pooling="cls", normalize=False)
    got_series = series.compute(scheduler="sync")
    assert got_series.name == want.name == "text_embedding" and series.dtype == want.dtype
    np.testing.assert_allclose(distilframe.to_numpy(got_series), distilframe.to_numpy(want), atol=1e-6)


def test_a_local_checkpoint_gets_its_meta_from_a_task(classifier_dir, frame):
    ddf = dd.from_pandas(frame, npartitions=2, sort=False)
    lazy = ddf.distil.classify("text", model=classifier_dir, all_scores=True)
    assert [c for c in lazy.columns if c.startswith("text_score_")] == [
        "text_score_negative", "text_score_neutral", "text_score_positive"]
    assert_same(lazy.compute(scheduler="sync"), pandas(ddf).distil.classify("text", model=classifier_dir,
                                                                            all_scores=True))


# ------------------------------------------------------------------------------ a real local cluster

def test_cluster_results_equal_pandas_and_each_worker_loads_the_model_once(client, frame):
    # Defined here, not at module level: cloudpickle sends it by value, so workers never import this
    # module (importing it would run conftest on a worker and point it at a new, empty cache).
    def _count_forward_calls():  # run on each worker: count the batches its model runs
        from distilframe import _run as executor

        if not hasattr(executor, "_test_calls"):
            real = executor._forward

            def counted(*args, **kwargs):
                executor._test_calls += 1
                return real(*args, **kwargs)

            executor._test_calls = 0
            executor._forward = counted
        return executor._test_calls

    # Texts no other test ran, and no result cache: the workers must run the model themselves.
    big = pd.concat([frame] * 5, ignore_index=True)
    big["text"] = [f"{t} cluster {i}" if isinstance(t, str) and t.strip() else t for i, t in enumerate(big["text"])]
    ddf = dd.from_pandas(big, npartitions=8, sort=False)
    before_calls = client.run(_count_forward_calls)
    before = builds(client)
    got = ddf.distil.embed("text", model=MODEL, cache=False).compute()
    again = ddf.distil.classify("text", model=TINY_SST2, cache=False).compute()  # a second model, then the first
    got2 = ddf.distil.embed("text", model=MODEL, cache=False).compute()
    after = builds(client)
    calls = {w: n - before_calls[w] for w, n in client.run(_count_forward_calls).items()}

    assert_same(got, pandas(ddf).distil.embed("text", model=MODEL, cache=False))
    assert_same(got2, got)
    assert_same(again, pandas(ddf).distil.classify("text", model=TINY_SST2, cache=False))
    assert len(after) == 2 and sum(calls.values()) > 0, calls
    for worker, counts in after.items():
        new = {name: n - before[worker].get(name, 0) for name, n in counts.items()}
        assert all(n <= 1 for n in new.values()), (worker, new)  # loaded on first use, then reused
        if calls[worker]:  # a worker that ran batches loaded each model it used exactly once
            assert new.get(MODEL) == 1, (worker, new)


def test_workers_run_one_thread_each_by_default(client):
    # Dask's nanny gives each worker process OMP_NUM_THREADS=1; distilframe honours it (no oversubscription).
    threads = client.run(lambda: __import__("distilframe._config")._config.num_threads())
    assert set(threads.values()) == {1}


def test_parquet_round_trip_keeps_the_file_pipeline_metadata(client, frame, tmp_path):
    source = tmp_path / "in.parquet"
    frame.reset_index(drop=True).to_parquet(source, index=False)
    ddf = dd.read_parquet(source).repartition(npartitions=3)
    out = ddf.distil.embed("text", model=MODEL).distil.to_parquet(tmp_path / "out")

    reference = embed_file(source, tmp_path / "file.parquet", column="text", model=MODEL, progress=False)
    want, got = read_metadata(reference.output), read_metadata(out)
    assert want.pop("job_hash")  # the file job's own (for --resume), not a description of the result
    assert sorted(got) == sorted(want)
    for key in want:
        if key != "created_at":
            assert got[key] == want[key], key
    back = dd.read_parquet(out, dtype_backend="pyarrow").compute().reset_index(drop=True)
    file_rows = pd.read_parquet(reference.output, dtype_backend="pyarrow")
    np.testing.assert_allclose(distilframe.to_numpy(back["text_embedding"]),
                               distilframe.to_numpy(file_rows["text_embedding"]), atol=1e-6)
    assert pd.read_parquet(out)["text"].tolist() == pd.read_parquet(source)["text"].tolist()  # plain read works
    assert main(["info", str(out)]) == 0

    with pytest.raises(FileError, match="already exists"):
        ddf.distil.embed("text", model=MODEL).distil.to_parquet(out)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out.tmp")]


def test_to_parquet_writes_a_named_index(frame, tmp_path):
    ddf = dd.from_pandas(frame, npartitions=2, sort=False).distil.embed("text", model=MODEL)
    with sync_scheduler():
        path = ddf.distil.to_parquet(tmp_path / "out")
    back = pd.read_parquet(path)
    assert sorted(back["row"]) == sorted(frame.index)


def test_to_parquet_writes_the_index_pandas_would_by_its_dtype(frame, tmp_path):
    # As pandas' to_parquet of the same frame: string labels written as "index"; the row numbers of a filtered
    # frame (integers, unnamed) not, whatever values the partitions hold.
    labelled = frame.set_axis([f"r{i}" for i in range(len(frame))])
    numbered = frame.reset_index(drop=True)
    with sync_scheduler():
        for source, names in ((labelled, ["index"]), (numbered, [])):
            ddf = dd.from_pandas(source, npartitions=2, sort=False)
            ddf = ddf[ddf.id != 10].distil.embed("text", model=MODEL)
            back = pd.read_parquet(ddf.distil.to_parquet(tmp_path / f"out{len(names)}"))
            want = pd.read_parquet(ddf.compute().distil.to_parquet(tmp_path / f"pandas{len(names)}.parquet"))
            assert list(back.columns) == list(want.columns) == ["id", "text", "n", "text_embedding", *names]
            assert not names or back["index"].tolist() == want["index"].tolist()


def sync_scheduler():
    import dask

    return dask.config.set(scheduler="sync")


# ------------------------------------------------------------------------------------------- errors

def test_bad_input_fails_on_the_client_with_the_pandas_messages(frame):
    ddf = dd.from_pandas(frame, npartitions=2, sort=False)
    with pytest.raises(ColumnNotFoundError, match="Did you mean 'text'"):
        ddf.distil.embed("txt", model=MODEL)
    with pytest.raises(TypeError, match="not text"):
        ddf.distil.embed("n", model=MODEL)
    with pytest.raises(ValueError, match="pooling"):
        ddf.distil.embed("text", model=MODEL, pooling="avg")
    with pytest.raises(ValueError, match="dask.diagnostics.ProgressBar"):
        ddf.distil.embed("text", model=MODEL, progress=True)
    with pytest.raises(UnsupportedTaskError, match="no trained classification head"):
        ddf.distil.classify("text", model=MODEL)
    with pytest.raises(ValueError, match="no distilframe result"):
        ddf.distil.to_parquet("unused")
    assert ddf.distil.embed(model=MODEL).columns[-1] == "text_embedding"  # the only string column


def test_a_failing_partition_leaves_no_output_folder(tmp_path):
    import dask

    frame = pd.DataFrame({"text": ["fine", "also fine", "ok", 42]}, dtype=object)
    with dask.config.set({"dataframe.convert-string": False}):  # else Dask itself turns 42 into "42"
        ddf = dd.from_pandas(frame, npartitions=2, sort=False).distil.embed("text", model=MODEL)
    with sync_scheduler(), pytest.raises(TypeError, match="has 1 non-string value, at index 3"):
        ddf.distil.to_parquet(tmp_path / "out")
    assert list(tmp_path.iterdir()) == []  # neither the output nor the hidden parts folder


def test_to_parquet_takes_any_column_name_and_refuses_results_it_cannot_describe(tmp_path):
    frame = pd.DataFrame({0: ["a cat", "a dog", None, "a bird"], "text": ["x", "y", "z", "w"]})
    ddf = dd.from_pandas(frame, npartitions=2, sort=False)
    with sync_scheduler():
        embedded = ddf.distil.embed(0, model=MODEL)
        meta = read_metadata(embedded.distil.to_parquet(tmp_path / "int-name"))
        assert meta["column"] == "0" and "0_embedding" in meta["columns"]

        with pytest.raises(ValueError, match="no distilframe result"):
            embedded.drop(columns="0_embedding").distil.to_parquet(tmp_path / "dropped")
        both = embedded.distil.classify("text", model=SST2)
        with pytest.raises(ValueError, match="results of 2 distilframe steps"):
            both.distil.to_parquet(tmp_path / "both")
        only = both.drop(columns=["0_embedding"])
        assert read_metadata(only.distil.to_parquet(tmp_path / "labels"))["task"] == "classify"

        series = ddf["text"].distil.embed(model=MODEL)  # a Series result writes as a one-column frame
        assert read_metadata(series.distil.to_parquet(tmp_path / "series"))["columns"] == ["text_embedding"]

        first = embedded.distil.to_parquet(tmp_path / "again")
        embedded.distil.to_parquet(first, overwrite=True)  # replaced, and nothing left beside it
    assert sorted(p.name for p in tmp_path.iterdir()) == ["again", "int-name", "labels", "series"]


def test_coerce_reads_a_numeric_column_as_text_like_pandas():
    frame = pd.DataFrame({"n": [1, 2, 3, 2]})
    ddf = dd.from_pandas(frame, npartitions=2, sort=False)
    got = ddf.distil.embed("n", model=MODEL, errors="coerce").compute(scheduler="sync")
    assert_same(got, frame.distil.embed("n", model=MODEL, errors="coerce"))


def test_a_broken_accessor_module_never_breaks_importing_dask():
    code = ("import sys, warnings; import distilframe; sys.modules['distilframe.dask'] = None\n"
            "with warnings.catch_warnings(record=True) as seen:\n"
            "    warnings.simplefilter('always')\n"
            "    import dask.dataframe as dd\n"
            "print(hasattr(dd, 'from_pandas'), [str(w.message)[:60] for w in seen if 'distilframe' in str(w.message)])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.startswith("True ['distilframe could not give Dask DataFrames the .distil")


def test_search_equals_pandas_and_duplicates_say_what_to_do(tmp_path):
    from distilframe.testing import write_sentence_checkpoint

    model = write_sentence_checkpoint(tmp_path / "st", seed=32)
    texts = [f"the cat {i % 7}" if i % 5 else None for i in range(60)] + ["a good film"] * 3
    df = pd.DataFrame({"text": texts, "n": range(63)}, index=[f"r{i}" for i in range(63)])
    ddf = dd.from_pandas(df, npartitions=4, sort=False)  # the frame's row order (sort=True would sort the index)
    for query in ("the cat 3", ["a good film", "the cat 1"]):
        want = df.distil.search(query, "text", k=7, model=model)
        got = ddf.distil.search(query, "text", k=7, model=model)
        assert list(got.index) == list(want.index) and list(got.columns) == list(want.columns)
        np.testing.assert_allclose(got["score"], want["score"], rtol=1e-5)
    embedded = ddf.distil.embed("text", model=model)
    found = embedded.distil.search("the cat 3", k=3)  # the existing column and its model, on every partition
    assert list(found.index) == list(df.distil.search("the cat 3", "text", k=3, model=model).index)
    noted = embedded.assign(note="x")  # two text columns: the one whose embeddings the frame holds
    assert list(noted.distil.search("the cat 3", k=3).index) == list(found.index)
    with pytest.raises(NotImplementedError, match=r"\.compute\(\)\.distil\.duplicates"):
        ddf.distil.duplicates("text")
    # Read back from Parquet the column has no record of its model: said once, on the client, at this line
    read = dd.read_parquet(embedded.distil.to_parquet(tmp_path / "embedded"))
    filters = list(warnings.filters)
    with pytest.warns(distilframe.DistilFrameWarning, match="no record of the model that made it") as record:
        again = read.distil.search("the cat 3", "text", k=3, model=model)
    ours = [r for r in record if issubclass(r.category, distilframe.DistilFrameWarning)]  # not Dask's own
    assert len(ours) == 1 and ours[0].filename == __file__ and list(again["n"]) == list(found["n"])
    assert warnings.filters == filters  # the partitions are quiet without touching the process's filters


def test_zero_shot_labels_equal_pandas(tmp_path):
    from distilframe.testing import write_sentence_checkpoint

    model = write_sentence_checkpoint(tmp_path / "st", seed=33)
    df = pd.DataFrame({"text": ["the cat is happy", None, "a bad film", "hello"] * 3})
    want = df.distil.classify("text", labels=["cat", "film"], template="about {}", model=model, all_scores=True)
    got = dd.from_pandas(df, npartitions=3, sort=False).distil.classify(
        "text", labels=["cat", "film"], template="about {}", model=model, all_scores=True).compute()
    assert list(got.columns) == list(want.columns) and list(got.index) == list(want.index)
    assert list(got["text_label"].astype(object)) == list(want["text_label"].astype(object))
    np.testing.assert_allclose(got["text_score"], want["text_score"], rtol=1e-5)
    # Written as pandas writes it: the zero-shot metadata (labels, template), the same rows
    ddf = dd.from_pandas(df, npartitions=3, sort=False).distil.classify("text", labels=["cat", "film"],
                                                                       template="about {}", model=model)
    folder = ddf.distil.to_parquet(tmp_path / "zs")
    written = df.distil.classify("text", labels=["cat", "film"], template="about {}", model=model).distil.to_parquet(
        tmp_path / "zs.parquet")
    got, want = read_metadata(folder), read_metadata(written)
    assert got.pop("created_at") and want.pop("created_at") and got == want and "labels" in got
    with pytest.raises(ValueError, match=r"labels 'Film' and 'film', which .* reads as the same tokens"):
        dd.from_pandas(df, npartitions=3, sort=False).distil.classify("text", labels=["Film", "cat", "film"],
                                                                      model=model)  # at the call, not at compute()
    labels = pd.read_parquet(written)["text_label"].astype(object)
    assert len(labels) == len(df) and list(pd.read_parquet(folder)["text_label"].astype(object)) == list(labels)
