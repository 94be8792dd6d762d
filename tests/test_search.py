"""Search, near-duplicates and zero-shot labels: the blocked numpy core against brute force, and the accessors."""

import warnings

import numpy as np
import pandas as pd
import pytest

import distilframe
from distilframe import _search
from distilframe._manager import get_model
from distilframe.testing import write_checkpoint, write_sentence_checkpoint

TEXTS = ["the cat is happy", "a good film", "the dog was sad", None, "", "i love the movie", "a bad film",
         "the cat is happy", "hello world", "thanks ok bye"]


@pytest.fixture(scope="module")
def sentence(tmp_path_factory):
    return write_sentence_checkpoint(tmp_path_factory.mktemp("st") / "model", seed=31)


def brute_top_k(corpus, valid, queries, k):
    scores = np.round(queries.astype(np.float64) @ corpus.T.astype(np.float64), 6)  # as top_k
    scores[:, ~valid] = -np.inf
    rows = [sorted(np.flatnonzero(valid), key=lambda j: (-scores[i, j], j))[:k] for i in range(len(queries))]
    return np.array(rows), np.take_along_axis(scores, np.array(rows), axis=1)


@pytest.mark.parametrize("block", [1, 7, 64, _search.BLOCK])
def test_top_k_is_exact_whatever_the_block(block):
    rng = np.random.default_rng(0)
    corpus = _search.unit(rng.normal(size=(300, 16)))
    corpus[50] = corpus[10]  # a tie: the lower row number first
    valid = rng.random(300) > 0.2
    valid[[10, 50]] = True
    queries = _search.unit(rng.normal(size=(5, 16)))
    queries[0] = corpus[10]
    rows, scores = _search.top_k(corpus, valid, queries, 12, block=block)
    want_rows, want_scores = brute_top_k(corpus, valid, queries, 12)
    np.testing.assert_array_equal(rows, want_rows)
    np.testing.assert_allclose(scores, want_scores, atol=1.5e-6)
    assert rows[0, 0] == 10 and rows[0, 1] == 50
    few = np.zeros(300, dtype=bool)
    few[[3, 4]] = True
    assert _search.top_k(corpus, few, queries, 10, block=block)[0].shape == (5, 2)  # k beyond the valid rows


def test_copies_of_one_vector_tie_and_the_first_row_wins_whatever_the_query():
    # float32 products of the same vector differ in their last bits with its position: ties must not
    rng = np.random.default_rng(0)
    for _ in range(2000):
        corpus = np.repeat(_search.unit(rng.normal(size=(1, 384))), 5, axis=0)
        rows, scores = _search.top_k(corpus, np.ones(5, dtype=bool), _search.unit(rng.normal(size=(1, 384))), 2)
        assert list(rows[0]) == [0, 1] and scores[0, 0] == scores[0, 1]


def first_fit(matrix, valid, threshold):
    """The grouping rule, one row at a time."""
    leaders, leader, score = [], np.full(len(matrix), -1), np.full(len(matrix), np.nan)
    for i in range(len(matrix)):
        if not valid[i]:
            continue
        for head in leaders:
            s = float(matrix[i] @ matrix[head])
            if s >= threshold - 1e-6:
                leader[i], score[i] = head, s
                break
        else:
            leaders.append(i)
    for head in leaders:
        if (leader == head).any():
            leader[head], score[head] = head, 1.0
    return leader, score


@pytest.mark.parametrize("block", [1, 5, 32, _search.DUP_BLOCK])
def test_duplicate_groups_follow_the_first_fit_rule_whatever_the_block(block):
    rng = np.random.default_rng(1)
    centres = rng.normal(size=(12, 8))
    matrix = _search.unit(centres[rng.integers(0, 12, 200)] + rng.normal(scale=0.25, size=(200, 8)))
    valid = rng.random(200) > 0.1
    leader, score = _search.duplicate_groups(matrix, valid, 0.9, block=block)
    want_leader, want_score = first_fit(matrix, valid, 0.9)
    np.testing.assert_array_equal(leader, want_leader)
    np.testing.assert_allclose(score, want_score, rtol=1e-5)
    assert (leader[~valid] == -1).all() and 0 < (leader >= 0).sum() < valid.sum()
    assert (score[leader >= 0] >= 0.9 - 1e-6).all()


def test_search_rows_index_columns_and_scores(sentence):
    df = pd.DataFrame({"text": TEXTS, "n": range(len(TEXTS))}, index=pd.Index(list("abcdefghij"), name="key"))
    out = df.distil.search("the cat is happy", "text", k=4, model=sentence)
    embedded = df.distil.embed("text", model=sentence)
    matrix = distilframe.to_numpy(embedded["text_embedding"])
    valid = ~np.isnan(matrix).any(axis=1)
    query = distilframe.to_numpy(pd.Series(["the cat is happy"]).distil.embed(model=sentence))
    rows, scores = brute_top_k(_search.unit(matrix, valid), valid, _search.unit(query), 4)
    assert list(out.index) == list(df.index[rows[0]]) and out.index.name == "key"
    assert list(out.columns) == ["text", "n", "score"] and out["score"].dtype == np.float32
    np.testing.assert_allclose(out["score"], scores[0], rtol=1e-5)
    assert out["score"].is_monotonic_decreasing and out["score"].iloc[0] == pytest.approx(1.0, abs=1e-5)
    assert set(out.index[:2]) == {"a", "h"}  # both rows of the query's own text
    everything = df.distil.search("a film", "text", k=100, model=sentence)
    assert len(everything) == 8 and not everything["text"].isin(["", None]).any()  # null, empty: never
    many = df.distil.search(["a good film", "hello world"], "text", k=2, model=sentence)
    assert list(many["query"]) == ["a good film"] * 2 + ["hello world"] * 2
    assert many["text"].iloc[0] == "a good film" and many["text"].iloc[2] == "hello world"
    series = df["text"].distil.search("hello world", k=1, model=sentence)
    assert list(series.index) == ["i"] and list(series.columns) == ["text", "score"]


def test_a_second_search_runs_the_model_only_on_the_query(sentence, count_runs, tmp_path, monkeypatch):
    monkeypatch.setenv("DISTILFRAME_HOME", str(tmp_path / "home"))
    seen = count_runs(get_model(sentence))
    df = pd.DataFrame({"text": [f"the cat {i}" for i in range(30)]})
    df.distil.search("a cat", model=sentence)
    assert sum(seen) == 31
    seen.clear()
    df.distil.search("a dog", model=sentence)
    assert seen == [1]


def test_an_existing_embedding_column_is_used_when_its_model_and_settings_match(sentence, count_runs, tmp_path):
    df = pd.DataFrame({"text": ["the cat", "a dog", "hello"]})
    embedded = df.distil.embed("text", model=sentence, cache=False)
    seen = count_runs(get_model(sentence))
    found = embedded.distil.search("the cat", k=1, cache=False)  # model=None: the column's own model
    assert seen == [1] and found["text"].iloc[0] == "the cat"
    seen.clear()
    embedded.distil.search("the cat", k=1, cache=False, pooling="cls")  # other settings: computed afresh
    assert sum(seen) == 4
    other = write_checkpoint(tmp_path / "other", seed=5)
    with pytest.raises(ValueError, match="made by .* with other settings"):
        embedded.distil.search("the cat", embeddings="text_embedding", model=other)
    plain = embedded.copy()
    plain.attrs = {}  # no record of what made the column: only its dimension can be checked
    wide = write_checkpoint(tmp_path / "wide", seed=5, hidden=48)
    with pytest.raises(ValueError, match="holds 32-dimensional vectors but .* makes 48-dimensional"):
        plain.distil.search("the cat", embeddings="text_embedding", model=wide)
    seen = count_runs(get_model(sentence))  # loaded again: two other models were loaded since
    with pytest.warns(distilframe.DistilFrameWarning, match=r"'text_embedding' but no record of the model that made"
                      r" it .* computed again with .*embeddings='text_embedding' and model="):
        found = plain.distil.search("the cat", k=1, model=sentence, cache=False)  # found by name, not used
    assert sum(seen) == 4 and found["text"].iloc[0] == "the cat"
    with pytest.raises(KeyError, match="Did you mean 'text_embedding'"):
        embedded.distil.search("the cat", embeddings="text_embeding")


def test_duplicates_groups_near_and_exact_copies(sentence):
    texts = ["the cat is happy", "the cat is happy!", "a bad film", None, "a bad film", "", "hello world",
             "the cat is happy"]
    df = pd.DataFrame({"text": texts}, index=[10, 11, 12, 13, 14, 15, 16, 17])
    out = df.distil.duplicates("text", threshold=1.0, model=sentence)
    group, score = out["text_dup_group"], out["text_dup_score"]
    assert group.dtype == "Int64" and score.dtype == np.float32
    assert group[10] == group[17] and group[12] == group[14] and group[10] != group[12]  # exact copies
    assert group[[13, 15, 16]].isna().all() and score[[13, 15, 16]].isna().all()
    assert list(group.dropna().unique()) == [0, 1]  # numbered in order of the groups' first rows
    pd.testing.assert_frame_equal(df.distil.duplicates("text", threshold=np.int64(1), model=sentence), out)  # as k
    loose = df.distil.duplicates("text", threshold=0.05, model=sentence)["text_dup_group"]
    assert loose[10] == loose[11] == 0  # near: every text with one first row
    assert list(df.columns) == ["text"]  # the input is not changed


def test_zero_shot_labels(sentence):
    df = pd.DataFrame({"review": ["the cat is happy", None, "a bad film"]})
    out = df.distil.classify("review", labels=["cat", "film"], model=sentence, all_scores=True)
    assert list(out.columns) == ["review", "review_label", "review_score", "review_score_cat", "review_score_film"]
    probs = out[["review_score_cat", "review_score_film"]].to_numpy()
    np.testing.assert_allclose(np.nansum(probs, axis=1)[[0, 2]], 1.0, rtol=1e-5)
    assert out["review_label"].isna()[1] and np.isnan(out["review_score"][1])
    rows = distilframe.to_numpy(pd.Series(["the cat is happy", "a bad film"]).distil.embed(model=sentence))
    labels = distilframe.to_numpy(pd.Series(["about cat", "about film"]).distil.embed(model=sentence))
    cos = _search.unit(rows) @ _search.unit(labels).T
    templated = df.distil.classify("review", labels=["cat", "film"], template="about {}", model=sentence)
    want = np.exp(cos / 0.05) / np.exp(cos / 0.05).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(templated["review_score"].to_numpy()[[0, 2]], want.max(axis=1), rtol=1e-4)
    assert list(templated["review_label"][[0, 2]]) == [["cat", "film"][j] for j in cos.argmax(axis=1)]


@pytest.mark.parametrize(("call", "message"), [
    (lambda df, m: df.distil.search("", model=m), "empty query"),
    (lambda df, m: df.distil.search([], model=m), "non-empty list"),
    (lambda df, m: df.distil.search("a", k=0, model=m), "k=0"),
    (lambda df, m: df.distil.search("a", k=2.5, model=m), "k=2.5"),
    (lambda df, m: df.distil.duplicates(threshold=0, model=m), "threshold=0"),
    (lambda df, m: df.distil.duplicates(threshold=1.5, model=m), "threshold=1.5"),
    (lambda df, m: df.distil.classify(labels=[], model=m), "labels=\\[\\]"),
    (lambda df, m: df.distil.classify(labels="price", model=m), "labels='price'"),
    (lambda df, m: df.distil.classify(labels=["a", "b", "a"], model=m), "more than once"),
    (lambda df, m: df.distil.classify(labels=["a", ""], model=m), "non-empty string"),
    (lambda df, m: df.distil.classify(labels=["a", "b"], template="about", model=m),
     "one '\\{\\}' for the label \\(write '\\{\\{' and '\\}\\}' for braces\\)"),
    (lambda df, m: df.distil.classify(labels=["a", "b"], template="about {} ({x})", model=m), "one '\\{\\}'"),
    (lambda df, m: df.distil.classify(labels=["a"], model=m), "at least two"),
    (lambda df, m: df.distil.classify(labels=["\u200b", "a"], model=m), r"Got the label '\\u200b', in which .* reads "
     r"no token .*Give each label a word"),
    (lambda df, m: df.distil.duplicates(threshold=np.bool_(True), model=m), "threshold=np.True_"),
    (lambda df, m: df["text"].distil.duplicates(embeddings="foo", model=m), r"Got embeddings='foo', a column "
     r"name, but a Series has no other columns: pass embeddings= the Series of vectors itself"),
    (lambda df, m: df["text"].distil.search("a", embeddings="text_embedding", model=m), r"Got "
     r"embeddings='text_embedding', a column name, but a Series has no other columns"),
    (lambda df, m: df["text"].distil.search("a", embeddings=df["text"].iloc[:1], model=m),
     r"pass the vectors of the same rows, with the same index \(a column of the same frame, or its name\)"),
])
def test_bad_arguments_are_clear_errors(sentence, call, message):
    with pytest.raises(ValueError, match=message):
        call(pd.DataFrame({"text": ["a cat", "a dog"]}), sentence)


def test_a_column_named_score_is_not_overwritten(sentence):
    df = pd.DataFrame({"text": ["a cat", "a dog"], "score": [1, 2], "query": ["x", "y"]})
    out = df.distil.search(["cat", "dog"], "text", model=sentence, k=1)
    assert list(out.columns) == ["text", "score", "query", "search_score", "search_query"]
    assert list(out["score"]) == [1, 2] or sorted(out["score"]) == [1, 2]
    with pytest.raises(ValueError, match="columns 'score' and 'search_score'"):
        df.assign(search_score=0).distil.search("cat", "text", model=sentence)


def test_the_default_search_model_is_a_sentence_model():
    assert distilframe.default_model("search") == "sentence-transformers/all-MiniLM-L6-v2"
    df = pd.DataFrame({"text": ["the cat is happy", "a bad film", "hello world"]})
    assert df.distil.search("the cat is happy", k=1)["text"].iloc[0] == "the cat is happy"
    try:
        multi_qa = "sentence-transformers/multi-qa-distilbert-cos-v1"
        assert distilframe.set_default_model("multi-qa")["search"] == multi_qa
        assert distilframe.set_default_model("uncased")["search"] == multi_qa  # not a sentence model: unchanged
    finally:
        distilframe.reset_default_models()


def test_a_search_index_gives_the_exact_results_or_approximate_ones_with_exact_scores(sentence):
    texts = [f"the cat {i}" for i in range(40)] + [None, ""] + [f"a good film {i}" for i in range(40)]
    df = pd.DataFrame({"text": texts}, index=np.arange(82) * 3)
    exact = df.distil.search_index("text", model=sentence)
    assert len(exact) == 80 and "exact" in repr(exact)
    for query in ("the cat 7", ["a good film 3", "the cat 1"]):
        pd.testing.assert_frame_equal(exact.search(query, k=5), df.distil.search(query, "text", k=5, model=sentence))
    approximate = df.distil.search_index("text", model=sentence, approximate=True)
    found = approximate.search("the cat 7", k=10)
    want = df.distil.search("the cat 7", "text", k=10, model=sentence)
    assert len(set(found.index) & set(want.index)) >= 9  # recall@10 on 80 rows: 1 of 2 clusters probed
    assert found["score"].is_monotonic_decreasing and found["text"].notna().all() and "" not in set(found["text"])
    np.testing.assert_allclose(found.loc[want.index.intersection(found.index), "score"],
                               want.loc[want.index.intersection(found.index), "score"], atol=2e-6)  # exact cosines
    with pytest.raises(ValueError, match="approximate='yes'"):
        df.distil.search_index("text", model=sentence, approximate="yes")


def test_inverted_file_recall_on_clustered_vectors():
    pytest.importorskip("faiss")
    from distilframe._ann import InvertedFile

    rng = np.random.default_rng(3)
    matrix = _search.unit(rng.normal(size=(50, 32))[rng.integers(0, 50, 5000)] + rng.normal(size=(5000, 32)) * 0.5)
    valid = rng.random(5000) > 0.05
    queries = _search.unit(rng.normal(size=(20, 32)))
    index = InvertedFile(matrix, valid)
    assert index.lists == min(int(4 * np.sqrt(valid.sum())), valid.sum() // 39)  # about 4 sqrt(n)
    rows, _ = index.top_k(queries, 10, probes=index.lists // 2)
    want, _ = _search.top_k(matrix, valid, queries, 10)
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(rows, want)])
    assert recall >= 0.95 and valid[rows].all()


def test_a_small_inverted_file_is_one_flat_list_exact_and_quiet(capfd):
    pytest.importorskip("faiss")
    from distilframe._ann import InvertedFile

    rng = np.random.default_rng(4)
    capfd.readouterr()
    for n in (0, 5, 77):  # fewer than 2 x 39 rows: one cluster, no k-means (faiss printed a warning to stderr)
        matrix, valid = _search.unit(rng.normal(size=(n, 16))), rng.random(n) > 0.2
        queries = _search.unit(rng.normal(size=(3, 16)))
        index = InvertedFile(matrix, valid)
        rows, scores = index.top_k(queries, 4)
        want_rows, want_scores = _search.top_k(matrix, valid, queries, 4)
        assert index.lists == 1 and rows.tolist() == want_rows.tolist()
        np.testing.assert_allclose(scores, want_scores, atol=1e-6)
    assert "WARNING" not in capfd.readouterr().err


def test_rows_without_text_never_match_even_with_vectors_of_their_own(sentence):
    df = pd.DataFrame({"t": [None, None, "a cat", "", "a dog"]})
    df["e"] = list(np.random.default_rng(0).normal(size=(5, 32)).astype("float32"))
    found = df.distil.search("a", "t", embeddings="e", k=5, model=sentence)
    assert sorted(found.index) == [2, 4]
    groups = df.distil.duplicates("t", embeddings="e", threshold=0.99, model=sentence)["t_dup_group"]
    assert groups.isna().all()  # two missing texts are not copies of one text


def test_a_search_index_is_a_snapshot_of_the_frame(sentence):
    df = pd.DataFrame({"text": ["the cat", "a dog", "hello world"]})
    index = df.distil.search_index("text", model=sentence)
    df.drop(index=0, inplace=True)
    df.sort_values("text", inplace=True)
    assert index.search("the cat", k=1).index[0] == 0


def test_a_template_may_hold_escaped_braces(sentence):
    out = pd.DataFrame({"text": ["the cat"]}).distil.classify(labels=["cat", "dog"], template="{{x}} {}",
                                                               model=sentence)
    assert out["text_label"].iloc[0] in ("cat", "dog")


def test_search_and_duplicates_find_the_text_column_of_the_frames_one_embedding_column(sentence, count_runs):
    # The README's example: out = df.distil.embed("review"); out.distil.search("late delivery") on a frame with
    # two text columns reads "review", whose review_embedding it holds.
    df = pd.DataFrame({"product": ["kettle", "kettle", "lamp"], "review": ["it broke", "late delivery", "it broke"]})
    with pytest.raises(ValueError, match=r"2 string columns \('product', 'review'\).*df.distil.search\('a query'"):
        df.distil.search("late", model=sentence)
    out = df.distil.embed("review", model=sentence, cache=False)
    seen = count_runs(get_model(sentence))
    found = out.distil.search("late delivery", k=1, cache=False)
    assert seen == [1] and found["review"].tolist() == ["late delivery"]
    groups = out.distil.duplicates(cache=False)["review_dup_group"]
    assert groups.tolist()[::2] == [0, 0] and pd.isna(groups.iloc[1])  # by review, not by product
    assert out.distil.search_index(cache=False).search("it broke", k=1)["review"].tolist() == ["it broke"]
    vectors = out.assign(vectors=out.distil.embed("product", model=sentence, cache=False)["product_embedding"])
    with pytest.raises(ValueError, match="column= is needed"):  # embeddings= of no known column: name its texts
        vectors.distil.search("lamp", embeddings="vectors", model=sentence)
    with pytest.raises(ValueError, match="column= is needed"):
        vectors.distil.duplicates(embeddings="vectors", model=sentence)
    both = out.distil.embed("product", model=sentence, cache=False)  # two embedding columns: name the one meant
    with pytest.raises(ValueError, match="column= is needed.*df.distil.duplicates\\('text'\\)"):
        both.distil.duplicates()
    with pytest.raises(ValueError, match="df.distil.classify\\('text'\\)"):
        df.distil.classify(model=sentence, labels=["a", "b"])


def test_labels_and_queries_as_arrays_bad_unicode_and_multiindex_columns(sentence):
    df = pd.DataFrame({"text": ["the cat is happy", "a good film", "the dog was sad"]})
    labels = ["animals", "films"]
    want = df.distil.classify("text", labels=labels, model=sentence)
    for given in (np.array(labels), pd.Index(labels), pd.Series(labels)):  # df["topic"].unique() and the like
        pd.testing.assert_frame_equal(df.distil.classify("text", labels=given, model=sentence), want)
    found = df.distil.search(["a cat", "a film"], "text", model=sentence, k=1)
    pd.testing.assert_frame_equal(df.distil.search(pd.Series(["a cat", "a film"]), "text", model=sentence, k=1), found)
    with pytest.raises(ValueError, match=r"Got query=a set of 300 items but expected a string or a non-empty"):
        df.distil.search({f"query {i}" for i in range(300)}, "text", model=sentence)  # named, not printed whole
    with pytest.raises(ValueError, match="Got query=a ndarray but expected"):
        df.distil.search(np.array("x" * 100), "text", model=sentence)  # 0-d: no length
    for call in (lambda: df.distil.search("bad \ud800", "text", model=sentence),
                 lambda: df.distil.classify("text", labels=["bad \ud800", "x"], model=sentence),
                 lambda: df.distil.classify("text", labels=["a", "b"], template="bad \ud800 {}", model=sentence)):
        with pytest.raises(ValueError, match="not valid Unicode .* lone surrogate at position 4"):
            call()
    with pytest.raises(ValueError, match=r"labels 'Films' and 'films', which .* reads as the same tokens"):
        df.distil.classify("text", labels=["Films", "animals", "films"], model=sentence)  # a model that lower-cases
    with pytest.raises(ValueError, match=r"labels 'cat' and 'dog', .* max_length=8 cuts the template"):
        df.distil.classify("text", labels=["cat", "dog"], model=sentence, max_length=8,
                           template="this is a very long sentence written before the label which is {}")
    chunked = df.distil.classify("text", labels=["cat", "dog"], model=sentence, max_length=8, long_text="chunk",
                                 template="this is a very long sentence written before the label which is {}")
    assert chunked["text_label"].notna().all()  # read whole in windows: the labels differ
    wide = pd.DataFrame({("a", "text"): df["text"], ("b", "n"): range(3)})
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no partial-tuple column keys (pandas deprecates them)
        out = wide.distil.search(["a cat", "a film"], ("a", "text"), model=sentence, k=1)
    assert list(out.columns)[-2:] == [("score", ""), ("query", "")]
    np.testing.assert_array_equal(out[("score", "")].to_numpy(), found["score"].to_numpy())
    wide[("score", "x")] = 1.0  # "score" taken at the first level: out["score"] would be two columns
    assert list(wide.distil.search("a cat", ("a", "text"), model=sentence, k=1).columns)[-1] == ("search_score", "")


def test_a_recorded_max_length_is_not_said_to_be_too_long_for_another_model(sentence, tmp_path):
    short = write_sentence_checkpoint(tmp_path / "short", seed=32, positions=16)  # max_seq_length 128 > 16
    embedded = pd.DataFrame({"text": ["the cat", "a dog"]}).distil.embed("text", model=sentence)  # records 128
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the recorded 128 is the column's, not the caller's
        embedded.distil.search("cat", k=1, model=short)
    with pytest.warns(distilframe.TruncationWarning, match="max_length=100 is more than"):
        embedded.distil.search("cat", k=1, model=short, max_length=100)


def test_labels_read_as_the_same_tokens_are_refused_before_any_text_is_embedded(sentence, monkeypatch):
    import distilframe._similarity as similarity

    df = pd.DataFrame({"text": [f"text number {i}" for i in range(50)]})

    def no_run(*args, **kwargs):
        raise AssertionError("the texts were embedded before the labels were checked")

    monkeypatch.setattr(similarity, "run", no_run)
    with pytest.raises(ValueError, match=r"labels 'Films' and 'films', which .* reads as the same tokens"):
        df.distil.classify("text", labels=["Films", "animals", "films"], model=sentence)
    with pytest.raises(AssertionError, match="embedded before"):  # the stand-in is what runs the texts
        df.distil.classify("text", labels=["films", "animals"], model=sentence)


def test_a_column_changed_since_embed_is_not_taken_for_its_embeddings(sentence, count_runs, tmp_path):
    import copy
    import pickle

    from distilframe._pairs import RowPairs

    texts = ["a happy cat", "a sad dog", "green tea", "cold coffee", None, "  "]
    out = pd.DataFrame({"t": texts}).distil.embed("t", model=sentence, cache=False)
    pairs = out.attrs["distilframe"][-1]["rows"]
    assert copy.deepcopy(pairs) is pairs and out.copy().attrs["distilframe"][-1]["rows"] is pairs  # shared
    assert isinstance(pairs, RowPairs)
    copied = pickle.loads(pickle.dumps(out))  # its name alone, as from a file: the process's hashes stay here
    assert copied.attrs == out.attrs and type(copied.attrs["distilframe"][-1]["rows"]) is str
    assert len(pickle.dumps(out)) < 4096
    seen = count_runs(get_model(sentence))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # filtered, sorted, concatenated: the same rows, reused
        kept = [out.iloc[[3, 2, 0]], out.sort_values("t"), pd.concat([out, out.iloc[:2]]), out.iloc[:0]]
        for frame in kept:
            frame.distil.search("green tea", k=1, cache=False)
        assert seen == [1] * 4  # the queries only
        seen.clear()
        pd.concat([out, out.iloc[:2]]).distil.duplicates(cache=False)
        # Embedded in two calls with the same model and settings, then concatenated: one record, both checked.
        more = pd.DataFrame({"t": ["hot soup", "a sad dog"]}, index=[10, 11]).distil.embed("t", model=sentence,
                                                                                          cache=False)
        assert more.attrs["distilframe"][-1]["rows"] is pairs
        both = pd.concat([out, more])
        assert both.distil.search("hot soup", k=1, cache=False).index.tolist() == [10]
        both.distil.to_parquet(tmp_path / "both.parquet")
    seen.clear()

    renamed = out.copy()
    renamed["t"] = ["zebra", "apple", "cat", "house", None, ""]  # the record is still there
    with pytest.warns(distilframe.DistilFrameWarning, match=r"^4 rows of 't_embedding' are not the embeddings that "
                      r"embed made of their 't' .* computed again"):
        found = renamed.distil.search("cat", k=1, cache=False)
    assert found["t"].tolist() == ["cat"] and found["score"].iloc[0] == pytest.approx(1.0, abs=1e-5)
    assert sum(seen) == 4 + 1  # the four texts, then the query

    edited = out.copy()
    edited.loc[2, "t"] = "cat"
    with pytest.warns(distilframe.DistilFrameWarning, match="^1 row of 't_embedding' is not the embedding"):
        assert edited.distil.search("cat", k=1, cache=False)["t"].tolist() == ["cat"]
    with pytest.warns(distilframe.DistilFrameWarning, match="^1 row of 't_embedding'"):
        groups = edited.distil.duplicates(threshold=0.999, cache=False)
    assert groups["t_dup_group"].isna().all()

    other = pd.DataFrame({"t": ["zebra", "apple", "house", "car", None, None]}).distil.embed("t", model=sentence)
    swapped = out.copy()
    swapped["t_embedding"] = other["t_embedding"]
    with pytest.warns(distilframe.DistilFrameWarning, match="^4 rows of 't_embedding'"):
        found = swapped.distil.search("green tea", k=1, cache=False)
    assert found["t"].tolist() == ["green tea"] and found["score"].iloc[0] == pytest.approx(1.0, abs=1e-5)
    elsewhere = pd.DataFrame({"t": ["zebra", "apple", "house", "car", None, None]})  # another result's vectors
    with pytest.warns(distilframe.DistilFrameWarning, match="^4 rows of 't_embedding'"):
        found = elsewhere.distil.search("house", k=1, embeddings=out["t_embedding"], cache=False)
    assert found["t"].tolist() == ["house"] and found["score"].iloc[0] == pytest.approx(1.0, abs=1e-5)
    with pytest.raises(ValueError, match=r"4 rows of 't_embedding' are not the embeddings .* the file would say they "
                       r"are\. Embed the column again"):
        swapped.distil.to_parquet(tmp_path / "out.parquet")
    assert not (tmp_path / "out.parquet").exists()
    out.iloc[::-1].distil.to_parquet(tmp_path / "out.parquet")  # reordered rows are still the model's


def test_a_frame_with_row_pairs_is_written_by_pandas_with_its_record(sentence, tmp_path):
    out = pd.DataFrame({"t": ["a happy cat", "green tea"]}).distil.embed("t", model=sentence, cache=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # pyarrow writes attrs as JSON: no "Could not serialize" warning
        out.to_parquet(tmp_path / "plain.parquet")
        back = pd.read_parquet(tmp_path / "plain.parquet", dtype_backend="pyarrow")  # pandas#59738
        assert back.attrs["distilframe"][-1]["metadata"] == out.attrs["distilframe"][-1]["metadata"]
        found = back.distil.search("green tea", k=1, cache=False)  # its record read back: the column is used
    assert found["t"].tolist() == ["green tea"]


def test_approximate_search_returns_k_rows_as_exact_search_does():
    pytest.importorskip("faiss")
    from distilframe._ann import InvertedFile

    rng = np.random.default_rng(5)
    matrix = _search.unit(rng.normal(size=(2000, 32)))
    valid = np.ones(2000, dtype=bool)
    index = InvertedFile(matrix, valid)
    assert index.lists == 51 and index.probes == 6  # 2000 // 39 clusters (faiss's minimum of rows each); an eighth
    assert InvertedFile(matrix[:300], valid[:300]).probes == 4  # 1 of 7 was too few
    queries = _search.unit(rng.normal(size=(5, 32)))
    for k in (10, 150, 600, 2000):  # 6 clusters of about 39 rows hold fewer than 600: more are probed
        rows, scores = index.top_k(queries, k)
        assert rows.shape == (5, k) and (rows >= 0).all() and np.isfinite(scores).all()
        assert all(len(set(r)) == k for r in rows)
    want, _ = _search.top_k(matrix, valid, queries, 2000)
    assert [sorted(r) for r in index.top_k(queries, 2000)[0]] == [sorted(r) for r in want]  # every row
