"""Parity with the reference implementation: Hugging Face transformers on PyTorch.

Random DistilBERTs are built and saved by transformers itself, then read by
distilframe from the Hugging Face folder and from a PaddleNLP-format copy of it.
Token ids, last hidden states, pooled embeddings, logits and labels are compared
with what transformers computes, on batches with padding, mixed lengths,
duplicates, nulls and shuffled rows.
"""

import json

import numpy as np
import pandas as pd
import pytest

from conftest import reference_module

torch = reference_module("torch")
transformers = reference_module("transformers")
DistilBertConfig = transformers.DistilBertConfig
DistilBertForSequenceClassification = transformers.DistilBertForSequenceClassification
DistilBertModel = transformers.DistilBertModel
DistilBertTokenizerFast = transformers.DistilBertTokenizerFast

import distilframe  # noqa: E402
from distilframe._manager import ModelManager  # noqa: E402
from distilframe.testing import WORDS, make_vocab  # noqa: E402

pytestmark = pytest.mark.reference

TINY = dict(dim=32, n_layers=2, n_heads=4, hidden_dim=37)
BASE = dict(dim=768, n_layers=6, n_heads=12, hidden_dim=3072)
LABELS = ["NEGATIVE", "POSITIVE"]


def texts():
    rng = np.random.default_rng(7)
    out = [" ".join(rng.choice(WORDS, size=n)) for n in (1, 3, 8, 20, 45, 90, 200, 600)]  # 600: truncated
    out += ["The Cat, héllo! 中文 ©", "a [MASK] word", "hello world"]
    return out


def build(folder, dims, num_labels, seed):
    """A random transformers DistilBERT, saved with save_pretrained (safetensors), with its tokenizer files."""
    torch.manual_seed(seed)
    vocab = make_vocab()
    vocab += [f"[unused{i}]" for i in range(30522 - len(vocab))] if dims is BASE else []
    cfg = DistilBertConfig(vocab_size=len(vocab), max_position_embeddings=512, **dims)
    if num_labels:
        cfg.num_labels = num_labels
        cfg.id2label = dict(enumerate(LABELS))
        cfg.label2id = {v: k for k, v in enumerate(LABELS)}
        model = DistilBertForSequenceClassification(cfg)
    else:
        model = DistilBertModel(cfg)
    with torch.no_grad():  # non-trivial LayerNorm parameters, so that epsilon and layout errors show
        for name, p in model.named_parameters():
            if "LayerNorm" in name or "layer_norm" in name:
                p.add_(torch.randn_like(p) * 0.1)
    model.eval().save_pretrained(folder)
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    (folder / "tokenizer_config.json").write_text(json.dumps({"do_lower_case": True}))
    return model


def reference(model, folder, batch):
    """What transformers computes: ids, last hidden states, mean-pooled unit vectors, logits."""
    tok = DistilBertTokenizerFast.from_pretrained(str(folder))
    enc = tok(batch, padding=True, truncation=True, max_length=512, return_tensors="pt")
    with torch.no_grad():
        encoder = model.distilbert if hasattr(model, "distilbert") else model
        hidden = encoder(**enc).last_hidden_state
        logits = model(**enc).logits.numpy() if hasattr(model, "classifier") else None
    mask = enc["attention_mask"].unsqueeze(-1).float()
    pooled = ((hidden * mask).sum(1) / mask.sum(1)).numpy()
    pooled /= np.linalg.norm(pooled, axis=1, keepdims=True)
    return enc["input_ids"].numpy(), enc["attention_mask"].numpy(), hidden.numpy(), pooled, logits


CASES = [("tiny-base", TINY, 0), ("tiny-classifier", TINY, 2), ("base-size", BASE, 0), ("base-size-classifier", BASE, 2)]


@pytest.mark.parametrize("label,dims,num_labels", CASES, ids=[c[0] for c in CASES])
def test_distilframe_matches_transformers(tmp_path, label, dims, num_labels):
    hf_folder = tmp_path / "hf"
    model = build(hf_folder, dims, num_labels, seed=len(label))
    batch = texts()
    ids, mask, hidden, pooled, logits = reference(model, hf_folder, batch)
    paddle_copy = distilframe.convert(hf_folder, tmp_path / "paddle")

    for folder in (hf_folder, paddle_copy):  # both formats give the same numbers
        loaded = ModelManager().get(folder)
        # Token ids: identical.
        ours = loaded.tokenizer.encode(batch, max_length=512).ids
        for i, row in enumerate(ours):
            assert row.tolist() == ids[i, : mask[i].sum()].tolist()
        # Last hidden states, on the same padded batch.
        got = loaded.engine.hidden_states(ids, mask)
        valid = mask.astype(bool)
        assert np.max(np.abs(got[valid] - hidden[valid])) <= 2e-5  # measured 4e-6 at base size
        # Pooled, normalised embeddings through the public API: duplicates, nulls, shuffled rows.
        order = np.random.default_rng(1).permutation(len(batch))
        column = [batch[i] for i in order] + [None, batch[0], "", batch[3]]
        expect = np.vstack([pooled[i] for i in order] + [np.full(pooled.shape[1], np.nan), pooled[0],
                                                          np.full(pooled.shape[1], np.nan), pooled[3]])
        df = pd.DataFrame({"text": column}, index=pd.Index(list(range(len(column)))[::-1]))
        with pytest.warns(distilframe.TruncationWarning, match="1 of 11 distinct texts"):  # the 600 words
            X = distilframe.to_numpy(df.distil.embed("text", model=folder, batch_size=3)["text_embedding"])
        np.testing.assert_array_equal(np.isnan(X).all(axis=1), np.isnan(expect).all(axis=1))
        rows = ~np.isnan(expect).all(axis=1)
        cosine = np.sum(X[rows] * expect[rows], axis=1)
        assert cosine.min() >= 0.9999995  # measured 0.99999988
        if num_labels:
            assert np.max(np.abs(loaded.engine.logits(ids, mask) - logits)) <= 1e-5  # measured 4e-7
            with pytest.warns(distilframe.TruncationWarning):
                out = df.distil.classify("text", model=folder, batch_size=2)
            want = [LABELS[int(np.argmax(logits[i]))] for i in order] + [None, LABELS[int(np.argmax(logits[0]))],
                                                                         None, LABELS[int(np.argmax(logits[3]))]]
            assert out["text_label"].tolist() == [w if w is not None else pd.NA for w in want]


def test_added_tokens_match_transformers(tmp_path):
    folder = tmp_path / "hf"
    model = build(folder, TINY, 2, seed=9)
    tok = DistilBertTokenizerFast.from_pretrained(str(folder))
    tok.add_tokens(["<url>", "catdog"])
    tok.add_special_tokens({"additional_special_tokens": ["[E1]"]})
    model.resize_token_embeddings(len(tok))
    with torch.no_grad():
        model.distilbert.embeddings.word_embeddings.weight[-3:] = torch.randn(3, TINY["dim"])
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    batch = ["see <url> now", "a CatDog and [E1] here", "<URL>catdog", "plain text"]
    ids, mask, hidden, pooled, logits = reference(model, folder, batch)
    loaded = ModelManager().get(folder)
    for i, row in enumerate(loaded.tokenizer.encode(batch, max_length=512).ids):
        assert row.tolist() == ids[i, : mask[i].sum()].tolist(), batch[i]
    X = distilframe.to_numpy(pd.Series(batch).distil.embed(model=folder))
    assert np.sum(X * pooled, axis=1).min() >= 0.9999995
    assert np.max(np.abs(loaded.engine.logits(ids, mask) - logits)) <= 1e-5
