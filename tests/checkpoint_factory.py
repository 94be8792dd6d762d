"""Write tiny random DistilBERT checkpoints in PaddleNLP format, and a numpy reference forward.

The reference (``reference_forward``) is written from the DistilBERT paper and the
Hugging Face implementation, in float64 numpy, independent of Paddle and PaddleNLP:
tests compare distilframe against it, never against distilframe's own output.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

WORDS = (
    "the a an is was are be to of and in it that this for on with as at by not no yes very so "
    "good bad great awful happy sad cat dog movie film film plot actor story love hate fun boring "
    "i you he she we they my your time day night world hello bye thanks ok"
).split()

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def make_vocab(cased: bool) -> list[str]:
    letters = "abcdefghijklmnopqrstuvwxyz"
    tokens = list(SPECIALS)
    tokens += list("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~")
    tokens += list("0123456789")
    tokens += list(letters)
    if cased:
        tokens += list(letters.upper())
        tokens += ["The", "Hello", "Cat", "Paris"]
    tokens += ["##" + c for c in letters + "0123456789"]
    tokens += ["##s", "##ing", "##ed", "##ly", "##er"]
    tokens += ["é", "ü", "中", "文", "日", "本", "©", "™"]
    seen: set[str] = set()
    out = []
    for t in tokens + sorted(set(WORDS)):
        if t not in seen:
            seen.add(t)
            out.append(t)
    return out


def base_config(vocab_size: int, *, hidden: int = 32, layers: int = 2, heads: int = 4, ffn: int = 37,
                positions: int = 512) -> dict:
    return {
        "model_type": "distilbert",
        "architectures": ["DistilBertModel"],
        "vocab_size": vocab_size,
        "hidden_size": hidden,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "intermediate_size": ffn,
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1,
        "attention_probs_dropout_prob": 0.1,
        "max_position_embeddings": positions,
        "initializer_range": 0.02,
        "pad_token_id": 0,
    }


def random_state(cfg: dict, *, seed: int, num_labels: int = 0, embed_std: float = 0.05) -> dict[str, np.ndarray]:
    """Weights named as PaddleNLP names them (Linear weights are [in, out]), under ``distilbert.``."""
    rng = np.random.default_rng(seed)
    h, f = cfg["hidden_size"], cfg["intermediate_size"]

    def w(*shape, std=0.2):
        return (rng.standard_normal(shape) * std).astype(np.float32)

    def ln(prefix):
        return {f"{prefix}.weight": (1 + w(h, std=0.1)), f"{prefix}.bias": w(h, std=0.1)}

    s: dict[str, np.ndarray] = {
        # A small embedding scale keeps the first LayerNorm's input variance near 1e-3, where an
        # epsilon of 1e-5 instead of 1e-12 changes the output visibly.
        "distilbert.embeddings.word_embeddings.weight": w(cfg["vocab_size"], h, std=embed_std),
        "distilbert.embeddings.position_embeddings.weight": w(cfg["max_position_embeddings"], h, std=embed_std),
        **ln("distilbert.embeddings.layer_norm"),
    }
    for i in range(cfg["num_hidden_layers"]):
        p = f"distilbert.encoder.layers.{i}"
        for name in ("q_proj", "k_proj", "v_proj", "out_proj"):
            s[f"{p}.self_attn.{name}.weight"] = w(h, h)
            s[f"{p}.self_attn.{name}.bias"] = w(h, std=0.05)
        s[f"{p}.linear1.weight"] = w(h, f)
        s[f"{p}.linear1.bias"] = w(f, std=0.05)
        s[f"{p}.linear2.weight"] = w(f, h)
        s[f"{p}.linear2.bias"] = w(h, std=0.05)
        s.update(ln(f"{p}.norm1"))
        s.update(ln(f"{p}.norm2"))
    if num_labels:
        s["pre_classifier.weight"] = w(h, h)
        s["pre_classifier.bias"] = w(h, std=0.05)
        s["classifier.weight"] = w(h, num_labels, std=1.0)
        s["classifier.bias"] = w(num_labels, std=0.1)
    return s


def write_checkpoint(
    folder: Path,
    *,
    seed: int,
    cased: bool = False,
    num_labels: int = 0,
    labels: list[str] | None = None,
    prefixed: bool = True,
    legacy_config: bool = False,
    extra_keys: bool = False,
    tokenizer_config: bool = True,
    **dims,
) -> Path:
    """A PaddleNLP-format checkpoint folder: config, model_state.pdparams, vocab.txt, tokenizer_config.json."""
    import paddle

    folder.mkdir(parents=True, exist_ok=True)
    vocab = make_vocab(cased)
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    cfg = base_config(len(vocab), **dims)
    state = random_state(cfg, seed=seed, num_labels=num_labels)
    if not prefixed:
        state = {k.removeprefix("distilbert."): v for k, v in state.items()}
    if extra_keys:
        # As in the renmada conversions: heads and BERT-style tensors that DistilBERT does not use.
        state["distilbert.embeddings.token_type_embeddings.weight"] = np.zeros((2, cfg["hidden_size"]), np.float32)
        state["vocab_projector.bias"] = np.zeros(len(vocab), np.float32)
    if num_labels:
        cfg["architectures"] = ["DistilBertForSequenceClassification"]
        if labels:
            cfg["id2label"] = {str(i): name for i, name in enumerate(labels)}
            cfg["label2id"] = {name: i for i, name in enumerate(labels)}
    if legacy_config:
        legacy = {"init_args": [{**cfg, "init_class": "DistilBertModel"}],
                  "init_class": "DistilBertForSequenceClassification" if num_labels else "DistilBertModel"}
        if num_labels:
            legacy["num_classes"] = num_labels
        for key in ("architectures", "id2label", "label2id", "model_type"):
            legacy["init_args"][0].pop(key, None)
        (folder / "model_config.json").write_text(json.dumps(legacy, indent=1))
    else:
        (folder / "config.json").write_text(json.dumps(cfg, indent=1))
    if tokenizer_config:
        (folder / "tokenizer_config.json").write_text(json.dumps({"do_lower_case": not cased}))
    paddle.save(state, str(folder / "model_state.pdparams"))
    return folder


# ---------------------------------------------------------------------------- reference forward

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
    if "classifier.weight" in s:
        pre = np.maximum(x[:, 0] @ s["pre_classifier.weight"] + s["pre_classifier.bias"], 0.0)
        logits = pre @ s["classifier.weight"] + s["classifier.bias"]
    return x, logits
