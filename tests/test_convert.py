"""Hugging Face folders: conversion to PaddleNLP format, caching, and refusals."""

import json
import os
import sys

import numpy as np
import pandas as pd
import pytest

import distilframe
from distilframe import _resolve as checkpoints
from distilframe.errors import CheckpointError
from distilframe._manager import ModelManager
from distilframe.testing import write_checkpoint, write_hf_checkpoint

TEXTS = ["the cat is happy", "a bad movie", None, "hello world", "the cat is happy", "   "]


def run(folder, task="embed", **options):
    from distilframe import _run as executor

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
    assert ckpt.path.parent == distilframe._config.converted_dir()


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
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "distilframe_manifest.json", "model_state.pdparams",
                                                      "tokenizer_config.json", "vocab.txt"]
    assert json.loads((out / "tokenizer_config.json").read_text())["do_lower_case"] is False
    np.testing.assert_allclose(run(out).values, run(hf).values, atol=1e-6, equal_nan=True)


def test_paddlenlp_loads_the_conversion(tmp_path):
    """The weights file is written without Paddle; PaddleNLP's own loader reads it."""
    from paddlenlp.transformers import DistilBertModel

    from distilframe._paddle import load_state

    out = distilframe.convert(write_hf_checkpoint(tmp_path / "hf", seed=45), tmp_path / "paddle")
    model = DistilBertModel.from_pretrained(str(out))
    ours = load_state(out / "model_state.pdparams")
    theirs = model.state_dict()
    assert len(theirs) == len(ours)
    for key, value in theirs.items():
        np.testing.assert_array_equal(value.numpy(), ours["distilbert." + key])


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


@pytest.mark.reference
def test_pytorch_bin_needs_torch_and_says_so(tmp_path, monkeypatch):
    from conftest import reference_module

    torch = reference_module("torch")
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
    hf = write_hf_checkpoint(tmp_path / "roberta", seed=47)
    cfg = json.loads((hf / "config.json").read_text())
    (hf / "config.json").write_text(json.dumps({**cfg, "model_type": "roberta"}))
    with pytest.raises(CheckpointError, match="describes a 'roberta' model.*RoPE and relative-position"):
        checkpoints.resolve(hf)
    bert = write_hf_checkpoint(tmp_path / "bert", seed=47)  # DistilBERT weights under a BERT config
    (bert / "config.json").write_text(json.dumps({**cfg, "model_type": "bert", "hidden_size": cfg["dim"]}))
    with pytest.raises(CheckpointError, match="BERT weights in .* have no embeddings.token_type_embeddings"):
        checkpoints.resolve(bert)

    shapes = write_hf_checkpoint(tmp_path / "shapes", seed=48)
    (shapes / "config.json").write_text(json.dumps({**cfg, "dim": 64}))
    with pytest.raises(CheckpointError, match="shape mismatches") as e:
        ModelManager().get(shapes)
    message = str(e.value)  # in the user's files' terms, not the converted copy's
    assert message.startswith(f"The weights in {shapes / 'model.safetensors'} do not fit the DistilBERT described by "
                              f"{shapes / 'config.json'} (converted into ")
    assert "embeddings.LayerNorm.weight: file (32,) vs config (64,)" in message and "layer_norm" not in message
    (shapes / "config.json").write_text(json.dumps({**cfg, "hidden_dim": cfg["hidden_dim"] + 3}))
    with pytest.raises(CheckpointError) as e:
        ModelManager().get(shapes)
    ffn = cfg["hidden_dim"]  # Hugging Face's Linear is [out, in]; PaddleNLP's [in, out]
    assert f"e.g. distilbert.transformer.layer.0.ffn.lin1.weight: file ({ffn}, 32) vs config ({ffn + 3}, 32)" in \
        str(e.value)
    assert "linear1" not in str(e.value) and "encoder.layers" not in str(e.value)
    from safetensors.numpy import load_file, save_file

    from distilframe._convert import _BERT_RENAMES

    state = load_file(str(shapes / "model.safetensors"))  # an encoder saved alone: no distilbert. prefix
    save_file({k[len("distilbert."):]: v for k, v in state.items()}, str(shapes / "model.safetensors"))
    with pytest.raises(CheckpointError, match=r"\(e.g. transformer\.layer\.0\.ffn\.lin1\.weight: file"):
        ModelManager().get(shapes)
    bert = {}  # a BERT's weights are named as its file names them, not as folded into DistilBERT
    for key, value in state.items():
        key = key.replace("distilbert.", "bert.")
        for old, new in reversed(_BERT_RENAMES):
            key = key.replace(new, old)
        bert[key] = value
    bert["bert.embeddings.token_type_embeddings.weight"] = np.zeros((2, 32), np.float32)
    save_file(bert, str(shapes / "model.safetensors"))
    (shapes / "config.json").write_text(json.dumps({
        "model_type": "bert", "vocab_size": cfg["vocab_size"], "hidden_size": 32, "num_hidden_layers": 2,
        "num_attention_heads": 4, "intermediate_size": ffn + 3, "max_position_embeddings": 512}))
    with pytest.raises(CheckpointError, match=rf"\(e.g. bert\.encoder\.layer\.0\.intermediate\.dense\.weight: file "
                                              rf"\({ffn}, 32\) vs config \({ffn + 3}, 32\)"):
        ModelManager().get(shapes)
    bert_cfg = json.loads((shapes / "config.json").read_text())
    (shapes / "config.json").write_text(json.dumps({**bert_cfg, "intermediate_size": ffn, "num_hidden_layers": 3}))
    with pytest.raises(CheckpointError, match=r"missing weights \(e.g. bert\.encoder\.layer\.2\.attention\.self\."
                                              r"query\.weight"):  # named as the file's other weights are
        ModelManager().get(shapes)
    from distilframe._convert import source_style

    (shapes / "model.safetensors").write_bytes(b"\xff" * 8 + b"{}")  # a damaged header: the config's model_type
    assert source_style(shapes, shapes / "model.safetensors") == (True, "bert.")
    layers = write_hf_checkpoint(tmp_path / "layers", seed=48)
    (layers / "config.json").write_text(json.dumps({**cfg, "n_layers": 1}))
    with pytest.raises(CheckpointError, match=r"encoder weights the config does not describe \(e.g. distilbert\."
                                              r"transformer\.layer\.1\.attention\."):
        ModelManager().get(layers)

    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="not a DistilBERT checkpoint: missing model_state.pdparams \\(PaddleNLP"
                                              "\\) or model.safetensors or pytorch_model.bin \\(Hugging Face\\)"):
        checkpoints.resolve(empty)  # a Hugging Face config without its weights

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


def test_convert_never_deletes_or_reuses_a_foreign_folder(tmp_path):
    project = tmp_path / "project"
    (project / "data").mkdir(parents=True)
    (project / "data" / "train.csv").write_text("keep me")
    a = write_hf_checkpoint(project / "model-a", seed=52)
    b = write_hf_checkpoint(project / "model-b", seed=53, num_labels=2)
    for target in (project, a):  # a non-empty folder, the source itself
        with pytest.raises(CheckpointError, match="exists and is not empty"):
            distilframe.convert(a, target)
    assert (project / "data" / "train.csv").read_text() == "keep me" and (a / "model.safetensors").is_file()
    out = distilframe.convert(a, tmp_path / "out")
    assert distilframe.convert(a, tmp_path / "out") == out  # the same conversion: reused
    with pytest.raises(CheckpointError, match="exists and is not empty"):
        distilframe.convert(b, tmp_path / "out")  # another model: refused, not silently the old one
    (tmp_path / "empty").mkdir()
    assert (distilframe.convert(b, tmp_path / "empty") / "model_state.pdparams").is_file()


def test_an_edited_vocabulary_is_a_new_conversion(tmp_path):
    hf = write_hf_checkpoint(tmp_path / "hf", seed=54)
    first = checkpoints.resolve(hf)
    vocab = (hf / "vocab.txt").read_text(encoding="utf-8").replace("\ncat\n", "\nkitten\n")
    (hf / "vocab.txt").write_text(vocab, encoding="utf-8")
    second = checkpoints.resolve(hf)
    assert second.path != first.path and "kitten" in (second.path / "vocab.txt").read_text(encoding="utf-8")


def test_single_output_heads_score_with_a_sigmoid(tmp_path):
    hf = write_hf_checkpoint(tmp_path / "reg", seed=55, num_labels=1, labels=["score"])
    cfg = json.loads((hf / "config.json").read_text())
    for problem in ("regression", "single_label_classification", None):
        (hf / "config.json").write_text(json.dumps({**cfg, "problem_type": problem}))
        loaded = ModelManager().get(hf)
        ids = loaded.tokenizer.encode(["the cat"], max_length=512).ids[0].astype(np.int64)[None]
        logit = loaded.engine.logits(ids, np.ones_like(ids))[0, 0]
        out = pd.Series(["the cat"]).distil.classify(model=hf)
        assert out["text_label"].tolist() == ["score"]
        np.testing.assert_allclose(out["text_score"].iloc[0], 1 / (1 + np.exp(-logit)), atol=1e-6)


def test_bfloat16_weights_are_read(tmp_path):
    from safetensors.numpy import load_file, save_file

    hf = write_hf_checkpoint(tmp_path / "hf", seed=56)
    state = load_file(str(hf / "model.safetensors"))
    # bfloat16 keeps the high 16 bits of a float32; write those by hand (numpy has no bfloat16 type).
    truncated = {k: (v.view(np.uint32) & 0xFFFF0000).view(np.float32) for k, v in state.items()}
    save_file(truncated, str(hf / "model.safetensors"))
    want = run(hf).values
    header_hack = tmp_path / "bf16"
    write_hf_checkpoint(header_hack, seed=56)
    import struct

    raw = {k: (v.view(np.uint32) >> 16).astype(np.uint16) for k, v in state.items()}
    header, blobs, offset = {}, [], 0
    for name, value in raw.items():
        blob = value.tobytes()
        header[name] = {"dtype": "BF16", "shape": list(value.shape), "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    head = json.dumps(header).encode()
    (header_hack / "model.safetensors").write_bytes(struct.pack("<Q", len(head)) + head + b"".join(blobs))
    np.testing.assert_allclose(run(header_hack).values, want, atol=1e-6, equal_nan=True)


def test_leftovers_of_killed_conversions_are_swept_and_folders_are_shareable(tmp_path):
    import time

    cache = distilframe._config.converted_dir()
    cache.mkdir(parents=True, exist_ok=True)
    stale = cache / ".deadbeef.abcdef"
    stale.mkdir()
    (stale / "model_state.pdparams").write_bytes(b"partial")
    old = time.time() - 2 * 24 * 3600
    os.utime(stale, (old, old))
    converted = checkpoints.resolve(write_hf_checkpoint(tmp_path / "hf", seed=57)).path
    assert not stale.exists()
    umask = os.umask(0)
    os.umask(umask)
    assert converted.stat().st_mode & 0o777 == 0o777 & ~umask


def test_the_conversion_key_is_the_bytes_it_always_was(tmp_path):
    # The conversion cache is keyed by this digest: a change to it would orphan every cached conversion
    # (and change every converted checkpoint's identity, so every result-cache key and export).
    import hashlib

    from distilframe import _convert

    hf = write_hf_checkpoint(tmp_path / "hf", seed=31, num_labels=2, labels=["A", "B"])
    vocab = _convert._vocabulary(hf)
    settings = {**_convert._tokenizer_settings(hf, vocab), "added": []}
    want = hashlib.sha256((hf / "model.safetensors").read_bytes() + (hf / "config.json").read_bytes()
                          + "\n".join(vocab).encode() + json.dumps(settings, sort_keys=True).encode()).hexdigest()[:32]
    assert _convert._content_hash(hf / "model.safetensors", hf / "config.json", vocab, settings) == want
    assert checkpoints.resolve(hf).path.name == want
