"""Hugging Face folders: conversion to PaddleNLP format, caching, and refusals."""

import json
import os
import sys

import numpy as np
import pandas as pd
import pytest

import distilframe
from distilframe import checkpoints
from distilframe.errors import CheckpointError
from distilframe.manager import ModelManager
from distilframe.testing import write_checkpoint, write_hf_checkpoint

TEXTS = ["the cat is happy", "a bad movie", None, "hello world", "the cat is happy", "   "]


def run(folder, task="embed", **options):
    from distilframe import executor

    return executor.run(TEXTS, ModelManager().get(folder), task=task, **options)


def test_a_hugging_face_folder_gives_what_its_paddlenlp_twin_gives(tmp_path):
    hf = write_hf_checkpoint(tmp_path / "hf", seed=40, num_labels=3, labels=["neg", "mid", "pos"])
    pd_twin = write_checkpoint(tmp_path / "pd", seed=40, num_labels=3, labels=["neg", "mid", "pos"])
    for task in ("embed", "classify"):
        a, b = run(hf, task).values, run(pd_twin, task).values
        np.testing.assert_array_equal(np.isnan(a), np.isnan(b))
        np.testing.assert_allclose(a, b, atol=1e-6, equal_nan=True)
    ckpt = checkpoints.resolve(hf)
    assert ckpt.name == str(hf.resolve()) and ckpt.labels == ("neg", "mid", "pos")
    assert ckpt.path.parent == distilframe.config.converted_dir()


def test_conversion_happens_once_and_again_when_the_files_change(tmp_path):
    hf = write_hf_checkpoint(tmp_path / "hf", seed=41)
    first = checkpoints.resolve(hf).path
    stamp = (first / "model_state.pdparams").stat().st_mtime_ns
    assert checkpoints.resolve(hf).path == first
    assert (first / "model_state.pdparams").stat().st_mtime_ns == stamp  # not rewritten
    write_hf_checkpoint(hf, seed=42)  # new weights, same folder
    second = checkpoints.resolve(hf).path
    assert second != first
    cfg = json.loads((second / "config.json").read_text())
    assert cfg["distilframe_source"]["path"] == str(hf.resolve()) and len(cfg["distilframe_source"]["sha256"]) == 32
    assert not [p for p in first.parent.iterdir() if p.name.startswith(".")]  # no temporary folder left


def test_convert_to_a_chosen_folder_writes_a_paddlenlp_checkpoint(tmp_path):
    hf = write_hf_checkpoint(tmp_path / "hf", seed=43, cased=True)
    out = distilframe.convert(hf, tmp_path / "paddle")
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "model_state.pdparams", "tokenizer_config.json",
                                                      "vocab.txt"]
    assert json.loads((out / "tokenizer_config.json").read_text())["do_lower_case"] is False
    np.testing.assert_allclose(run(out).values, run(hf).values, atol=1e-6, equal_nan=True)


def test_vocabulary_from_tokenizer_json(tmp_path):
    from tokenizers import Tokenizer, normalizers, pre_tokenizers
    from tokenizers.models import WordPiece

    hf = write_hf_checkpoint(tmp_path / "hf", seed=44)
    vocab = (hf / "vocab.txt").read_text(encoding="utf-8").splitlines()
    tok = Tokenizer(WordPiece({t: i for i, t in enumerate(vocab)}, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.save(str(hf / "tokenizer.json"))
    want = run(hf).values
    (hf / "vocab.txt").unlink()
    (hf / "tokenizer_config.json").unlink()  # casing then comes from tokenizer.json's normalizer
    ckpt = checkpoints.resolve(hf)
    assert (ckpt.path / "vocab.txt").read_text(encoding="utf-8").splitlines() == vocab
    assert ckpt.do_lower_case is True
    np.testing.assert_allclose(run(hf).values, want, atol=1e-6, equal_nan=True)


def test_pytorch_bin_needs_torch_and_says_so(tmp_path, monkeypatch):
    torch = pytest.importorskip("torch")
    from safetensors.numpy import load_file

    hf = write_hf_checkpoint(tmp_path / "hf", seed=45)
    want = run(hf).values
    state = {k: torch.from_numpy(v) for k, v in load_file(str(hf / "model.safetensors")).items()}
    torch.save(state, str(hf / "pytorch_model.bin"))
    (hf / "model.safetensors").unlink()
    np.testing.assert_allclose(run(hf).values, want, atol=1e-6, equal_nan=True)

    hf2 = write_hf_checkpoint(tmp_path / "hf2", seed=46)  # other weights: not in the conversion cache
    own = {k: torch.from_numpy(v) for k, v in load_file(str(hf2 / "model.safetensors")).items()}
    torch.save(own, str(hf2 / "pytorch_model.bin"))
    (hf2 / "model.safetensors").unlink()
    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(ImportError, match="pytorch_model.bin is a PyTorch pickle, and reading it needs torch"):
        checkpoints.resolve(tmp_path / "hf2")


def test_unsupported_checkpoints_are_refused_with_what_was_found(tmp_path):
    hf = write_hf_checkpoint(tmp_path / "bert", seed=47)
    cfg = json.loads((hf / "config.json").read_text())
    (hf / "config.json").write_text(json.dumps({**cfg, "model_type": "bert"}))
    with pytest.raises(CheckpointError, match="describes a 'bert' model.*DistilBERT checkpoints only"):
        checkpoints.resolve(hf)

    shapes = write_hf_checkpoint(tmp_path / "shapes", seed=48)
    (shapes / "config.json").write_text(json.dumps({**cfg, "dim": 64}))
    with pytest.raises(CheckpointError, match="shape mismatches"):
        ModelManager().get(shapes)

    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="not a PaddleNLP DistilBERT checkpoint.*Hugging Face one"):
        checkpoints.resolve(empty)

    novocab = write_hf_checkpoint(tmp_path / "novocab", seed=49)
    (novocab / "vocab.txt").unlink()
    with pytest.raises(CheckpointError, match="no vocabulary"):
        checkpoints.resolve(novocab)

    broken = write_hf_checkpoint(tmp_path / "broken", seed=50)
    (broken / "model.safetensors").write_bytes(b"\x00" * 16)
    with pytest.raises(CheckpointError, match="Could not read .*model.safetensors"):
        checkpoints.resolve(broken)


def test_multi_label_heads_score_with_sigmoids(tmp_path):
    hf = write_hf_checkpoint(tmp_path / "ml", seed=51, num_labels=3, labels=["a", "b", "c"])
    cfg = json.loads((hf / "config.json").read_text())
    (hf / "config.json").write_text(json.dumps({**cfg, "problem_type": "multi_label_classification"}))
    loaded = ModelManager().get(hf)
    assert loaded.multi_label
    out = pd.Series(["the cat", "a dog"]).distil.classify(model=hf, all_scores=True)
    scores = out[["text_score_a", "text_score_b", "text_score_c"]].to_numpy()
    ids = loaded.tokenizer.encode(["the cat"], max_length=512).ids[0].astype(np.int64)[None]
    logits = loaded.engine.logits(ids, np.ones_like(ids))[0]
    np.testing.assert_allclose(scores[0], 1 / (1 + np.exp(-logits)), atol=1e-6)
    assert not np.allclose(scores.sum(axis=1), 1.0)
    assert os.fspath(hf)  # the folder path works as model=
