import warnings

import numpy as np
import pytest

from reference import reference_forward
from conftest import TINY_SST2
from distilframe import _batches as batches
from distilframe import _run as executor
from distilframe.errors import TestModelWarning, TruncationWarning
from distilframe._manager import get_model
from distilframe._options import RunOptions

TEXTS = [
    "the cat is happy",
    "a very very bad movie, i hate it",
    "hello world",
    "ok",
    "the story was good and the actor was great, so we love this film",
    "the dog",
    "bye",
    "no",
]


@pytest.fixture(scope="module")
def model():
    return get_model("distilbert-base-uncased")


@pytest.fixture(scope="module")
def classifier():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TestModelWarning)
        return get_model(TINY_SST2)


def reference_embedding(model, text, pooling="mean", normalize=True):
    ids = model.tokenizer.encode([text], max_length=512).ids[0].astype(np.int64)[None]
    mask = np.ones_like(ids)
    hidden, _ = reference_forward(model.checkpoint.path, ids, mask)
    v = hidden[0].mean(axis=0) if pooling == "mean" else hidden[0, 0]
    return v / np.linalg.norm(v) if normalize else v


@pytest.mark.parametrize("pooling,normalize", [("mean", True), ("cls", True), ("mean", False)])
def test_embeddings_match_the_reference_in_input_order(model, pooling, normalize):
    result = executor.run(TEXTS, model, pooling=pooling, normalize=normalize)
    assert result.values.shape == (len(TEXTS), 32) and result.values.dtype == np.float32
    for row, text in zip(result.values, TEXTS):
        np.testing.assert_allclose(row, reference_embedding(model, text, pooling, normalize), atol=1e-5)


def test_results_do_not_depend_on_batching_chunking_or_order(model):
    texts = TEXTS * 3 + [t.upper() for t in TEXTS]
    base = executor.run(texts, model).values
    for options in (dict(batch_size=1), dict(batch_size=3), dict(chunk_size=1), dict(chunk_size=5, batch_size=2),
                    dict(token_budget=16)):
        np.testing.assert_allclose(executor.run(texts, model, **options).values, base, atol=1e-5, rtol=0)
    perm = np.random.default_rng(0).permutation(len(texts))
    shuffled = executor.run([texts[i] for i in perm], model).values
    np.testing.assert_allclose(shuffled, base[perm], atol=1e-5, rtol=0)


def test_duplicates_run_once_and_nulls_and_blanks_give_nan_rows(model, count_runs):
    seen = count_runs(model)
    texts = ["the cat", None, "the cat", "", "   \n", "the dog", "the cat"]
    result = executor.run(texts, model)
    assert sum(seen) == 2  # two distinct texts
    assert result.valid.tolist() == [True, False, True, False, False, True, True]
    assert np.isnan(result.values[~result.valid]).all()
    np.testing.assert_array_equal(result.values[0], result.values[2])
    np.testing.assert_array_equal(result.values[0], result.values[6])
    assert result.n_tokens.tolist() == [4, -1, 4, 0, 0, 4, 4]
    assert result.status.tolist() == ["ok", "null", "ok", "empty", "empty", "ok", "ok"]


def test_batches_respect_the_budget_and_pad_to_multiples_of_8(model, monkeypatch):
    shapes, texts_run = [], []
    real = model.engine.hidden_states

    def spy(ids, mask):
        shapes.append(ids.shape)
        assert (mask.max(axis=1) >= 1).all()
        texts_run.append(int(mask.max(axis=1).sum()))
        return real(ids, mask)

    monkeypatch.setattr(model.engine, "hidden_states", spy)
    texts = [" ".join(["cat"] * n) for n in range(1, 60)]
    executor.run(texts, model, batch_size=7, token_budget=64)
    assert sum(texts_run) == len(texts)
    for rows, width in shapes:
        assert width % 8 == 0 and rows <= 7
        assert rows * width <= 64 or rows == 1
    widths = [w for _, w in shapes]
    assert widths == sorted(widths, reverse=True)  # longest first: little padding


def test_short_texts_are_packed_and_give_the_same_embeddings(model, count_runs):
    texts = [" ".join(["cat", "dog"][i % 2:] * (1 + i % 5)) + f" {i}" for i in range(40)]
    alone = np.vstack([executor.run([t], model).values for t in texts])  # one text per call: no packing
    calls = count_runs(model)
    packed = executor.run(texts, model)
    assert sum(calls) == len(texts) and len(calls) == 1  # all 40 in one call, several per row
    np.testing.assert_allclose(packed.values, alone, atol=1e-6)
    assert (np.sum(packed.values * alone, axis=1) >= 0.999999).all()
    cls = executor.run(texts, model, pooling="cls", normalize=False).values
    cls_alone = np.vstack([executor.run([t], model, pooling="cls", normalize=False).values for t in texts])
    np.testing.assert_allclose(cls, cls_alone, atol=1e-5)


def test_packed_batches_cover_every_input_once_within_the_budget():
    lengths = np.random.default_rng(0).integers(3, 300, 500)
    planned = batches.plan(lengths, pack=True, batch_size=64, token_budget=2048, skip=np.array([0, 5]))
    seen = sorted(i for batch in planned for row in batch for i in row)
    assert seen == sorted(set(range(500)) - {0, 5})
    for batch in planned:
        width = max(batches.round_up(int(sum(lengths[row]))) for row in batch)
        assert len(batch) <= 64 and (len(batch) * width <= 2048 or len(batch) == 1)
        assert all(sum(lengths[row]) <= max(batches.PACK_WIDTH, batches.round_up(int(lengths[row[0]])))
                   for row in batch)


def test_long_texts_are_truncated_with_one_warning(model):
    long = " ".join(["cat"] * 2000)
    with pytest.warns(TruncationWarning, match=r"2 of 3 distinct texts .* max_length=16") as record:
        result = executor.run([long, long + " dog", "dog"], model, max_length=16)
    assert len(record) == 1
    assert result.n_tokens.tolist() == [2002, 2003, 3]
    assert result.truncated.tolist() == [True, True, False]
    np.testing.assert_allclose(result.values[0], result.values[1], atol=1e-6)  # same first 15 tokens


def test_classify_returns_probabilities(classifier):
    result = executor.run(TEXTS + [None], classifier, task="classify")
    assert result.values.shape == (len(TEXTS) + 1, 2)
    np.testing.assert_allclose(result.values[:-1].sum(axis=1), 1.0, atol=1e-6)
    ids = classifier.tokenizer.encode([TEXTS[0]], max_length=512).ids[0].astype(np.int64)[None]
    _, logits = reference_forward(classifier.checkpoint.path, ids, np.ones_like(ids))
    want = np.exp(logits[0] - logits[0].max())
    np.testing.assert_allclose(result.values[0], want / want.sum(), atol=1e-5)
    assert np.isnan(result.values[-1]).all()


def test_progress_bar_only_when_asked_or_large(model, capsys):
    executor.run(TEXTS, model, progress=True)
    assert "embed" in capsys.readouterr().err
    executor.run(TEXTS, model)
    assert capsys.readouterr().err == ""
    executor.run([f"cat {i}" for i in range(executor.AUTO_PROGRESS_MIN_TEXTS)], model, progress=False)
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("progress", [False, True])
def test_the_progress_callback_counts_with_or_without_a_bar(model, progress):
    # The notebook panel runs with progress=False and draws its own bar from these reports (in distinct texts).
    texts = [f"cat number {i}" for i in range(30)] + [None, ""]
    reports = []
    executor.run(texts, model, progress=progress, batch_size=1, token_budget=16,
                 on_progress=lambda d, t: reports.append((d, t)))
    done = [d for d, _ in reports]
    assert {t for _, t in reports} == {30} and done == sorted(done) and done[-1] == 30 and len(set(done)) > 5


def test_empty_and_all_null_input(model):
    assert executor.run([], model).values.shape == (0, 32)
    result = executor.run([None, " "], model)
    assert result.values.shape == (2, 32) and not result.valid.any()


@pytest.mark.parametrize("options,match", [
    (dict(task="summarize"), "task='summarize'"),
    (dict(pooling="avg"), "pooling='avg'"),
    (dict(pooling="mean+mean"), "pooling='mean\\+mean', which names a mode twice"),
    (dict(max_length=2), "max_length=2"),
    (dict(long_text="split"), "long_text='split'"),
    (dict(stride=-1), "stride=-1"),
    (dict(max_length=8.5), "max_length=8.5"),
    (dict(batch_size=0), "batch_size=0"),
    (dict(batch_size=True), "batch_size=True"),
    (dict(chunk_size=-1), "chunk_size=-1"),
    (dict(token_budget="8"), "token_budget='8'"),
])
def test_bad_options_are_refused(model, options, match):
    with pytest.raises(ValueError, match=match):
        executor.run(["the cat"], model, **options)


def test_work_is_done_in_bounded_chunks(model, monkeypatch):
    sizes = []
    real = model.tokenizer.encode

    def spy(texts, **kwargs):
        sizes.append(len(texts))
        return real(texts, **kwargs)

    monkeypatch.setattr(model.tokenizer, "encode", spy)
    texts = [f"cat {i}" for i in range(25)] + ["cat 0"] * 10
    result = executor.run(texts, model, chunk_size=10)
    assert sizes == [10, 10, 5]  # distinct texts only, never more than a chunk at a time
    assert result.valid.all()


def test_max_length_is_capped_at_the_models_positions(tmp_path):
    from distilframe._manager import ModelManager
    from distilframe.testing import write_checkpoint

    short = ModelManager().get(write_checkpoint(tmp_path / "short", seed=30, positions=16))
    with pytest.warns(TruncationWarning, match="max_length=16"):
        result = executor.run([" ".join(["cat"] * 40), "cat"], short)  # default max_length=512
    assert result.valid.all() and result.n_tokens.tolist() == [42, 3]
    # An explicit max_length the model cannot read is said once per process, though no text is long (fill runs
    # for every chunk, partition, slice and search step); the model's own default is capped without a word.
    with pytest.warns(TruncationWarning, match=r"max_length=100 is more than .* 16 positions, so 16 tokens") as record:
        executor.run(["cat"], short, max_length=100)
        executor.run(["dog"], short, max_length=100)
        short.fill(RunOptions(max_length=100))
    assert len(record) == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        executor.run(["cat"], short)
        executor.run(["cat"], short, max_length=16)
        executor.run(["cat"], short, max_length=100)


def test_texts_without_any_token_give_nan_rows(model):
    texts = ["the cat", "\u200b", "\x00\x01", "\ufeff \u200b", "the cat"]
    result = executor.run(texts, model)
    assert result.valid.tolist() == [True, False, False, False, True]
    assert np.isnan(result.values[1:4]).all() and not np.isnan(result.values[[0, 4]]).any()
    assert result.n_tokens.tolist() == [4, 0, 0, 0, 4]  # nothing between [CLS] and [SEP]: empty
    assert result.status.tolist() == ["ok", "empty", "empty", "empty", "ok"]


def test_no_progress_bar_into_a_log_file_unless_asked(model, capsys, monkeypatch):
    many = [f"cat {i}" for i in range(executor.AUTO_PROGRESS_MIN_TEXTS)]
    executor.run(many, model)  # stderr is captured here, not a terminal
    assert capsys.readouterr().err == ""
    monkeypatch.setattr(executor, "_interactive", lambda: True)
    executor.run(many, model)
    assert "embed" in capsys.readouterr().err


def test_warnings_point_at_the_callers_line(model):
    with pytest.warns(TruncationWarning) as record:
        executor.run([" ".join(["cat"] * 30)], model, max_length=8)
    assert record[0].filename == __file__


def windows_expected(model, text, max_length, stride, task):
    """Each window run on its own, combined as documented: token-weighted mean / mean of probabilities."""
    enc = model.tokenizer.encode([text], max_length=max_length, long_text="chunk", stride=stride)
    outs, weights = [], []
    for w in enc.ids:
        ids = w.astype(np.int64)[None]
        mask = np.ones_like(ids)
        if task == "embed":
            hidden = model.engine.hidden_states(ids, mask)
            outs.append(hidden[0].mean(axis=0))
            weights.append(len(w))
        else:
            logits = model.engine.logits(ids, mask)[0].astype(np.float64)
            e = np.exp(logits - logits.max())
            outs.append(e / e.sum())
            weights.append(1.0)
    v = np.average(np.vstack(outs), axis=0, weights=weights)
    return v / np.linalg.norm(v) if task == "embed" else v


@pytest.mark.parametrize("task", ["embed", "classify"])
def test_chunk_mode_reads_long_texts_whole_in_any_batch_order(model, classifier, task):
    loaded = model if task == "embed" else classifier
    rng = np.random.default_rng(3)
    long_texts = [" ".join(rng.choice(["cat", "dog", "the", "movie", "good", "bad"], size=n)) for n in (40, 75, 9)]
    texts = long_texts + [None, long_texts[0]]
    with warnings.catch_warnings():
        warnings.simplefilter("error", TruncationWarning)  # chunking truncates nothing
        result = executor.run(texts, loaded, task=task, max_length=16, long_text="chunk", stride=4)
    for i, text in enumerate(long_texts):
        np.testing.assert_allclose(result.values[i], windows_expected(loaded, text, 16, 4, task), atol=1e-5)
    assert result.status.tolist() == ["chunked", "chunked", "ok", "null", "chunked"]
    for options in (dict(batch_size=1), dict(batch_size=2, chunk_size=1), dict(token_budget=16)):
        again = executor.run(texts, loaded, task=task, max_length=16, long_text="chunk", stride=4, **options)
        np.testing.assert_allclose(again.values, result.values, atol=1e-5)
    perm = [2, 0, 4, 3, 1]
    shuffled = executor.run([texts[i] for i in perm], loaded, task=task, max_length=16, long_text="chunk", stride=4)
    np.testing.assert_allclose(shuffled.values, result.values[perm], atol=1e-5)


def test_packed_batches_keep_a_token_budget_below_the_row_width():
    lengths = np.full(40, 5)
    planned = batches.plan(lengths, pack=True, batch_size=64, token_budget=16)
    assert sorted(i for batch in planned for row in batch for i in row) == list(range(40))
    for batch in planned:
        widest = max(batches.round_up(int(sum(lengths[i] for i in row))) for row in batch)
        assert len(batch) * widest <= 16


def test_what_runs_is_what_is_recorded_a_stride_past_half_a_window_and_max_length_past_the_positions(model):
    from distilframe._frame import file_metadata
    from distilframe._options import RunOptions

    positions = model.checkpoint.max_positions
    filled = model.fill(RunOptions(max_length=16, long_text="chunk", stride=128))
    assert (filled.max_length, filled.stride) == (16, 7)  # windows of 14 tokens overlap by 7 at most
    assert model.fill(RunOptions(max_length=10 * positions)).max_length == positions
    assert model.fill(RunOptions(max_length=16, long_text="chunk", stride=3)).stride == 3
    assert model.fill(RunOptions(max_length=16)).stride == 128  # truncate mode reads none: kept as files record it
    meta = file_metadata("embed", "text", RunOptions(max_length=16, long_text="chunk", stride=128), model)
    assert (meta["stride"], meta["max_length"]) == ("7", "16")  # it recorded 128: what did not run
    long_text = " ".join(["cat", "dog", "movie"] * 20)
    asked, ran = (executor.run([long_text], model, max_length=16, long_text="chunk", stride=s)
                  for s in (128, 7))
    np.testing.assert_array_equal(asked.values, ran.values)
