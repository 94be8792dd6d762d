"""Hugging Face hub names, downloaded with huggingface_hub from a local stand-in of the hub."""

import numpy as np
import pandas as pd
import pytest

import distilframe
from conftest import SST2
from distilframe import _resolve as checkpoints
from distilframe.errors import ModelNotAvailableError
from distilframe._manager import ModelManager
from distilframe.testing import write_hf_checkpoint
from servers import HubServer

REPO = "distilbert/" + SST2


@pytest.fixture
def hub(tmp_path, monkeypatch):
    root = tmp_path / "hub"
    write_hf_checkpoint(root / REPO, seed=60, num_labels=2, labels=["NEGATIVE", "POSITIVE"])
    server = HubServer(root)
    monkeypatch.setenv("DISTILFRAME_HF_ENDPOINT", server.url)
    monkeypatch.setenv("DISTILFRAME_HOME", str(tmp_path / "home"))
    yield root, server
    server.close()


def test_the_default_classifier_downloads_converts_and_classifies(hub, tmp_path, monkeypatch):
    root, server = hub
    ckpt = checkpoints.resolve("sst2")
    folder = tmp_path / "home/models" / SST2
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "distilframe_manifest.json", "model.safetensors",
                                                       "tokenizer_config.json", "vocab.txt"]
    assert (folder / "model.safetensors").read_bytes() == (root / REPO / "model.safetensors").read_bytes()
    assert ckpt.name == SST2 and ckpt.labels == ("NEGATIVE", "POSITIVE")
    assert ckpt.path.parent == tmp_path / "home/converted"
    assert any("/resolve/main/model.safetensors" in r for r in server.requests)

    monkeypatch.setattr("distilframe._manager.manager", ModelManager())
    texts = pd.Series(["a great film", "an awful film", None])
    by_name = texts.distil.classify(all_scores=True)  # the default classifier
    local = texts.distil.classify(model=root / REPO, all_scores=True)  # the same files, as a local folder
    pd.testing.assert_frame_equal(by_name, local)
    assert by_name["text_label"].iloc[:2].isin(["NEGATIVE", "POSITIVE"]).all()

    n = len(server.requests)
    checkpoints.resolve(SST2)
    assert len(server.requests) == n  # on disk: no network call
    assert not any((tmp_path / "home/tmp").iterdir())


def test_any_hub_repository_by_hf_prefix_with_fallback_files(hub, tmp_path):
    root, server = hub
    from tokenizers import Tokenizer, normalizers, pre_tokenizers
    from tokenizers.models import WordPiece

    repo = root / "someone/tiny-distilbert"
    write_hf_checkpoint(repo, seed=61)
    vocab = (repo / "vocab.txt").read_text(encoding="utf-8").splitlines()
    tok = Tokenizer(WordPiece({t: i for i, t in enumerate(vocab)}, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.save(str(repo / "tokenizer.json"))
    (repo / "vocab.txt").unlink()  # the repository has only tokenizer.json
    (repo / "tokenizer_config.json").unlink()

    ckpt = checkpoints.resolve("hf:someone/tiny-distilbert")
    folder = tmp_path / "home/models/hf/someone/tiny-distilbert"
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "distilframe_manifest.json", "model.safetensors",
                                                              "tokenizer.json"]
    assert ckpt.name == "hf:someone/tiny-distilbert" and ckpt.do_lower_case is True
    embedded = pd.Series(["hello world"]).distil.embed(model="hf:someone/tiny-distilbert")
    assert embedded.notna().all()


def test_a_file_missing_on_the_hub_is_reported_and_nothing_is_kept(hub, tmp_path):
    root, server = hub
    (root / REPO / "model.safetensors").unlink()
    with pytest.raises(ModelNotAvailableError) as e:
        checkpoints.resolve(SST2)
    message = str(e.value)
    assert f"{SST2!r}" in message and "model.safetensors" in message and "Hugging Face files" in message
    assert f"{server.url}/{REPO}/resolve/main/model.safetensors" in message
    folder = tmp_path / "home/models" / SST2
    assert not (folder / "model.safetensors").exists()
    assert not any((tmp_path / "home/tmp").iterdir())


def test_offline_and_unreachable_hub(hub, monkeypatch):
    root, server = hub
    monkeypatch.setenv("DISTILFRAME_OFFLINE", "1")
    with pytest.raises(ModelNotAvailableError, match="DISTILFRAME_OFFLINE=1"):
        checkpoints.resolve(SST2)
    assert server.requests == []
    monkeypatch.setenv("DISTILFRAME_OFFLINE", "0")
    monkeypatch.setenv("DISTILFRAME_HF_ENDPOINT", "http://127.0.0.1:9")
    with pytest.raises(ModelNotAvailableError, match="could not connect to http://127.0.0.1:9/"):
        checkpoints.resolve("hf:someone/else")


def test_hub_names_are_checked_before_any_download(hub, tmp_path):
    from distilframe.errors import UnknownModelError

    root, server = hub
    for bad in ("hf:../x", "hf:owner/repo@v1", "hf: owner/repo", "hf:owner/..", "hf:just-one-part"):
        with pytest.raises(UnknownModelError, match="hf:<owner>/<repo>"):
            checkpoints.resolve(bad)
    assert server.requests == []
    write_hf_checkpoint(root / "Someone/Tiny", seed=62)
    assert checkpoints.resolve("HF:Someone/Tiny").name == "hf:Someone/Tiny"  # the prefix in any case


def test_other_model_types_are_refused_before_the_weights_are_fetched(hub, tmp_path):
    import json

    from distilframe.errors import CheckpointError

    root, server = hub
    repo = write_hf_checkpoint(root / "someone/a-bert", seed=63)
    cfg = json.loads((repo / "config.json").read_text())
    (repo / "config.json").write_text(json.dumps({**cfg, "model_type": "roberta"}))
    with pytest.raises(CheckpointError, match="'roberta' model, not a DistilBERT or a BERT"):
        checkpoints.resolve("hf:someone/a-bert")
    assert not any("model.safetensors" in r for r in server.requests)
    assert not (tmp_path / "home/models/hf/someone/a-bert").exists()  # no empty folder left behind
    assert not (tmp_path / "home/models/hf").exists()  # nor its empty parents (models/hf/someone)


def test_a_sentence_transformers_repository_comes_with_its_module_folders(hub, tmp_path):
    from distilframe.testing import write_sentence_checkpoint

    root, server = hub
    source = write_sentence_checkpoint(root / "someone/st-model", seed=64, dense=((8, "Tanh"),), normalize=False)
    ckpt = checkpoints.resolve("hf:someone/st-model")
    folder = tmp_path / "home/models/hf/someone/st-model"
    assert (folder / "1_Pooling/config.json").is_file() and (folder / "2_Dense/model.safetensors").is_file()
    assert (folder / "2_Dense/config.json").read_bytes() == (source / "2_Dense/config.json").read_bytes()
    assert ckpt.sentence is not None and ckpt.output_dim == 8 and ckpt.sentence.pooling == "mean"
    texts = pd.Series(["a good film", "a bad film", None])
    hub_vectors = distilframe.to_numpy(texts.distil.embed(model="hf:someone/st-model", cache=False))
    local = distilframe.to_numpy(texts.distil.embed(model=source, cache=False))
    assert hub_vectors.shape == (3, 8)
    np.testing.assert_array_equal(hub_vectors, local)  # the same files: the same conversion
    requests = len(server.requests)
    checkpoints.resolve("hf:someone/st-model")
    assert len(server.requests) == requests  # on disk now: no network call


def test_a_registered_sentence_model_downloads_its_dense_module(hub, tmp_path):
    # distiluse: mean pooling, then a Dense (tanh); older hub repositories keep the Dense weights as
    # 2_Dense/pytorch_model.bin, which is fetched under that name when model.safetensors is not there.
    from distilframe._download import ensure_files, is_on_disk
    from distilframe._registry import find
    from distilframe.testing import write_sentence_checkpoint

    root, server = hub
    name = "sentence-transformers/distiluse-base-multilingual-cased-v2"
    source = write_sentence_checkpoint(root / name, seed=65, bert=False, dense=((12, "Tanh"),), normalize=False,
                                       cased=True)
    spec = find("distiluse")
    assert not is_on_disk(spec)
    texts = pd.Series(["a good film", "ein guter Film", None])
    got = distilframe.to_numpy(texts.distil.embed(model="distiluse", cache=False))
    np.testing.assert_array_equal(got, distilframe.to_numpy(texts.distil.embed(model=source, cache=False)))
    assert got.shape == (3, 12) and is_on_disk(spec)
    assert any("/2_Dense/model.safetensors" in r for r in server.requests)

    (source / "2_Dense/model.safetensors").rename(source / "2_Dense/pytorch_model.bin")
    import shutil

    shutil.rmtree(tmp_path / "home/models" / name)
    target = ensure_files(spec)
    assert (target / "2_Dense/pytorch_model.bin").read_bytes() == (source / "2_Dense/pytorch_model.bin").read_bytes()
    assert not (target / "2_Dense/model.safetensors").exists() and is_on_disk(spec)
