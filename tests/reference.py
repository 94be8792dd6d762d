"""An independent float64 numpy DistilBERT, the reference the engine is tested against.

Written from the DistilBERT paper and the Hugging Face implementation; it shares no
code with Paddle, PaddleNLP or distilframe's engine.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np


def _layer_norm(x, g, b, eps):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * g + b


_erf = np.vectorize(math.erf)


def _gelu(x):
    return 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0)))


def reference_forward(folder: Path, ids: np.ndarray, mask: np.ndarray, *, eps: float = 1e-12):
    """Last hidden states (float64) and, when the checkpoint has a head, logits."""
    import paddle

    cfg_path = folder / "config.json" if (folder / "config.json").exists() else folder / "model_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg = {**cfg.get("init_args", [{}])[0], **cfg} if "init_args" in cfg else cfg
    raw = paddle.load(str(folder / "model_state.pdparams"), return_numpy=True)
    s = {("distilbert." + k if k.startswith(("embeddings.", "encoder.")) else k): np.asarray(v, np.float64)
         for k, v in raw.items()}
    heads = cfg["num_attention_heads"]
    b, n = ids.shape
    x = s["distilbert.embeddings.word_embeddings.weight"][ids] + s["distilbert.embeddings.position_embeddings.weight"][np.arange(n)]
    x = _layer_norm(x, s["distilbert.embeddings.layer_norm.weight"], s["distilbert.embeddings.layer_norm.bias"], eps)
    neg = np.where(mask[:, None, None, :] > 0, 0.0, -np.inf)
    for i in range(cfg["num_hidden_layers"]):
        p = f"distilbert.encoder.layers.{i}"

        def lin(t, name):
            return t @ s[f"{p}.{name}.weight"] + s[f"{p}.{name}.bias"]

        def split(t):
            return t.reshape(b, n, heads, -1).transpose(0, 2, 1, 3)

        q, k, v = (split(lin(x, f"self_attn.{m}")) for m in ("q_proj", "k_proj", "v_proj"))
        scores = q @ k.transpose(0, 1, 3, 2) / math.sqrt(q.shape[-1]) + neg
        scores = np.exp(scores - scores.max(-1, keepdims=True))
        attn = scores / scores.sum(-1, keepdims=True)
        ctx = (attn @ v).transpose(0, 2, 1, 3).reshape(b, n, -1)
        x = _layer_norm(x + lin(ctx, "self_attn.out_proj"), s[f"{p}.norm1.weight"], s[f"{p}.norm1.bias"], eps)
        ff = lin(_gelu(lin(x, "linear1")), "linear2")
        x = _layer_norm(x + ff, s[f"{p}.norm2.weight"], s[f"{p}.norm2.bias"], eps)
    logits = None
    if "pre_classifier.weight" in s:  # a sentence classifier (a token classifier has classifier.* only)
        pre = np.maximum(x[:, 0] @ s["pre_classifier.weight"] + s["pre_classifier.bias"], 0.0)
        logits = pre @ s["classifier.weight"] + s["classifier.bias"]
    return x, logits
