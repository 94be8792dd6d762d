"""Random DistilBERT checkpoints for tests: no download, any size, PaddleNLP or Hugging Face format.

Random weights give random outputs: use these to test that a pipeline runs, keeps
rows aligned and writes what it should, never to judge results.

>>> from distilframe.testing import write_checkpoint
>>> folder = write_checkpoint(tmp_path / "tiny", seed=0)  # doctest: +SKIP
>>> df.distil.embed("text", model=folder)  # doctest: +SKIP
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

__all__ = ["base_config", "make_vocab", "random_state", "write_checkpoint", "write_hf_checkpoint",
           "write_sentence_checkpoint"]

WORDS = (
    "the a an is was are be to of and in it that this for on with as at by not no yes very so "
    "good bad great awful happy sad cat dog movie film film plot actor story love hate fun boring "
    "i you he she we they my your time day night world hello bye thanks ok"
).split()
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def make_vocab(cased: bool = False) -> list[str]:
    """A small WordPiece vocabulary: BERT's special tokens, characters, word pieces and common words."""
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


def random_state(cfg: dict, *, seed: int, num_labels: int = 0, embed_std: float = 0.05,
                 weight_std: float = 0.2) -> dict[str, np.ndarray]:
    """Weights named as PaddleNLP names them (Linear weights are [in, out]), under ``distilbert.``."""
    rng = np.random.default_rng(seed)
    h, f = cfg["hidden_size"], cfg["intermediate_size"]

    def w(*shape, std=weight_std):
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
    vocab: list[str] | None = None,
    weight_std: float = 0.2,
    **dims,
) -> Path:
    """Write a random PaddleNLP-format checkpoint and return its folder.

    Parameters
    ----------
    folder
        Where to write ``config.json`` (or a legacy ``model_config.json``), ``model_state.pdparams``,
        ``vocab.txt`` and ``tokenizer_config.json``.
    seed
        The weights are a function of the seed: the same seed writes the same checkpoint.
    num_labels, labels
        Add a sequence-classification head with that many classes (and label names).
    prefixed, legacy_config, extra_keys, tokenizer_config
        Variants of the format found in the wild: weight names with or without ``distilbert.``;
        PaddleNLP's legacy ``init_args`` config; unused extra tensors; no tokenizer config.
    vocab
        Tokens, one per id; default :func:`make_vocab`.
    **dims
        ``hidden``, ``layers``, ``heads``, ``ffn``, ``positions`` (default a 32-wide, 2-layer model).
    """
    from ._paddle import save_state

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    vocab = list(vocab) if vocab is not None else make_vocab(cased)
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    cfg = base_config(len(vocab), **dims)
    state = random_state(cfg, seed=seed, num_labels=num_labels, weight_std=weight_std)
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
    save_state(state, folder / "model_state.pdparams")
    return folder


def write_hf_checkpoint(
    folder: Path,
    *,
    seed: int,
    cased: bool = False,
    num_labels: int = 0,
    labels: list[str] | None = None,
    vocab: list[str] | None = None,
    weight_std: float = 0.2,
    **dims,
) -> Path:
    """Write a random checkpoint in Hugging Face format (config.json, model.safetensors, vocab.txt,
    tokenizer_config.json) and return its folder. Needs no torch. Same options as :func:`write_checkpoint`;
    the same seed and options give the same weights as :func:`write_checkpoint`, in Hugging Face layout.
    """
    from safetensors.numpy import save_file

    from ._convert import LINEARS, RENAMES

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    vocab = list(vocab) if vocab is not None else make_vocab(cased)
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    cfg = base_config(len(vocab), **dims)
    state = random_state(cfg, seed=seed, num_labels=num_labels, weight_std=weight_std)
    hf_state = {}
    for name, value in state.items():
        if name.endswith(".weight") and name.split(".")[-2] in LINEARS:
            value = np.ascontiguousarray(value.T)
        for old, new in RENAMES:
            name = name.replace(new, old)
        hf_state[name] = value
    hf_config = {
        "model_type": "distilbert",
        "architectures": ["DistilBertForSequenceClassification" if num_labels else "DistilBertModel"],
        "vocab_size": len(vocab),
        "dim": cfg["hidden_size"],
        "n_layers": cfg["num_hidden_layers"],
        "n_heads": cfg["num_attention_heads"],
        "hidden_dim": cfg["intermediate_size"],
        "max_position_embeddings": cfg["max_position_embeddings"],
        "activation": "gelu",
        "dropout": 0.1,
        "attention_dropout": 0.1,
        "pad_token_id": 0,
        "sinusoidal_pos_embds": False,
    }
    if num_labels:
        names = labels or [f"LABEL_{i}" for i in range(num_labels)]
        hf_config["id2label"] = {str(i): n for i, n in enumerate(names)}
        hf_config["label2id"] = {n: i for i, n in enumerate(names)}
    (folder / "config.json").write_text(json.dumps(hf_config, indent=1))
    (folder / "tokenizer_config.json").write_text(json.dumps({"do_lower_case": not cased,
                                                             "tokenizer_class": "DistilBertTokenizer"}))
    save_file(hf_state, str(folder / "model.safetensors"), metadata={"format": "pt"})  # as transformers writes
    return folder


def write_sentence_checkpoint(
    folder: Path,
    *,
    seed: int,
    bert: bool = True,
    pooling: str = "mean",
    include_prompt: bool = True,
    dense: tuple[tuple[int, str], ...] = (),
    normalize: bool = True,
    max_seq_length: int | None = 128,
    do_lower_case: bool = False,
    prompts: dict[str, str] | None = None,
    default_prompt_name: str | None = None,
    encoder_folder: str = "",
    weight_std: float = 0.2,
    **dims,
) -> Path:
    """Write a random sentence-transformers folder and return it: ``modules.json``, the encoder (a BERT, or a
    DistilBERT with ``bert=False``) at the root or in ``encoder_folder``, ``1_Pooling`` (modes joined by
    ``+``), Dense modules (``(out_features, activation class)`` each, e.g. ``(16, "Tanh")``; safetensors),
    Normalize, ``sentence_bert_config.json`` and ``config_sentence_transformers.json`` (prompts).
    sentence-transformers itself loads it (the parity tests), and so does distilframe."""
    from safetensors.numpy import save_file

    from ._sentence import MODES

    folder = Path(folder)
    encoder = folder / encoder_folder
    write_hf_checkpoint(encoder, seed=seed, weight_std=weight_std, **dims)
    hidden = json.loads((encoder / "config.json").read_text())["dim"]
    if bert:
        _as_bert(encoder, np.random.default_rng(seed + 1))
    modules = [{"idx": 0, "name": "0", "path": encoder_folder, "type": "sentence_transformers.models.Transformer"}]
    (encoder / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": max_seq_length,
                                                                   "do_lower_case": do_lower_case}))
    modes = pooling.split("+")
    pool_cfg = {"word_embedding_dimension": hidden, "include_prompt": include_prompt,
                **{f"pooling_mode_{k}": k_mode in modes for k, k_mode in
                   (("cls_token", "cls"), ("max_tokens", "max"), ("mean_tokens", "mean"),
                    ("mean_sqrt_len_tokens", "mean_sqrt_len_tokens"), ("weightedmean_tokens", "weightedmean"),
                    ("lasttoken", "lasttoken"))}}
    assert all(m in MODES for m in modes), pooling
    (folder / "1_Pooling").mkdir(parents=True, exist_ok=True)
    (folder / "1_Pooling" / "config.json").write_text(json.dumps(pool_cfg, indent=1))
    modules.append({"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"})
    rng = np.random.default_rng(seed + 2)
    width = hidden * len(modes)
    for i, (out, activation) in enumerate(dense, start=2):
        path = folder / f"{i}_Dense"
        path.mkdir(exist_ok=True)
        (path / "config.json").write_text(json.dumps({"in_features": width, "out_features": out, "bias": True,
                                                      "activation_function": f"torch.nn.modules.activation.{activation}"
                                                      if activation != "Identity" else
                                                      "torch.nn.modules.linear.Identity"}))
        save_file({"linear.weight": (rng.standard_normal((out, width)) * 0.3).astype(np.float32),
                   "linear.bias": (rng.standard_normal(out) * 0.1).astype(np.float32)}, str(path / "model.safetensors"),
                  metadata={"format": "pt"})
        modules.append({"idx": i, "name": str(i), "path": f"{i}_Dense", "type": "sentence_transformers.models.Dense"})
        width = out
    if normalize:
        n = len(modules)
        modules.append({"idx": n, "name": str(n), "path": f"{n}_Normalize",
                        "type": "sentence_transformers.models.Normalize"})
    (folder / "modules.json").write_text(json.dumps(modules, indent=1))
    (folder / "config_sentence_transformers.json").write_text(json.dumps(
        {"prompts": prompts or {}, "default_prompt_name": default_prompt_name, "similarity_fn_name": "cosine"}))
    return folder


def _as_bert(folder: Path, rng: np.random.Generator) -> None:
    """Rewrite a Hugging Face DistilBERT folder (write_hf_checkpoint) as a BERT with the same encoder, random
    token-type embeddings and a pooler: what BERT-architecture sentence models are."""
    from safetensors.numpy import load_file, save_file

    cfg = json.loads((folder / "config.json").read_text())
    names = {"transformer.layer.": "encoder.layer.", "attention.q_lin.": "attention.self.query.",
             "attention.k_lin.": "attention.self.key.", "attention.v_lin.": "attention.self.value.",
             "attention.out_lin.": "attention.output.dense.", "sa_layer_norm.": "attention.output.LayerNorm.",
             "ffn.lin1.": "intermediate.dense.", "ffn.lin2.": "output.dense.",
             "output_layer_norm.": "output.LayerNorm."}
    state = {}
    for key, value in load_file(str(folder / "model.safetensors")).items():
        key = key.removeprefix("distilbert.")
        for old, new in names.items():
            key = key.replace(old, new)
        state[key] = value
    hidden = cfg["dim"]
    state["embeddings.token_type_embeddings.weight"] = (rng.standard_normal((2, hidden)) * 0.05).astype(np.float32)
    state["pooler.dense.weight"] = (rng.standard_normal((hidden, hidden)) * 0.1).astype(np.float32)
    state["pooler.dense.bias"] = np.zeros(hidden, np.float32)
    save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})
    bert = {"model_type": "bert", "architectures": ["BertModel"], "vocab_size": cfg["vocab_size"],
            "hidden_size": hidden, "num_hidden_layers": cfg["n_layers"], "num_attention_heads": cfg["n_heads"],
            "intermediate_size": cfg["hidden_dim"], "hidden_act": "gelu", "max_position_embeddings":
            cfg["max_position_embeddings"], "type_vocab_size": 2, "layer_norm_eps": 1e-12, "pad_token_id": 0,
            "position_embedding_type": "absolute", "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1}
    (folder / "config.json").write_text(json.dumps(bert, indent=1))
    tok = json.loads((folder / "tokenizer_config.json").read_text())
    (folder / "tokenizer_config.json").write_text(json.dumps({**tok, "tokenizer_class": "BertTokenizer"}))
