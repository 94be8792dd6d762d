"""Hugging Face DistilBERT checkpoints to PaddleNLP format: once, cached by content.

A Hugging Face folder holds ``config.json`` (``model_type: distilbert``), the
weights (``model.safetensors``, or ``pytorch_model.bin``), the vocabulary
(``vocab.txt``, or the WordPiece vocabulary inside ``tokenizer.json``) and
optionally ``tokenizer_config.json``. It is converted into
``<DISTILFRAME_HOME>/converted/<content hash>/``, a PaddleNLP-format checkpoint
that the engine loads like any other; a changed source file means a new hash
and a new conversion, an unchanged one is converted only once.

Names map one to one (``transformer.layer.N.attention.q_lin`` ->
``encoder.layers.N.self_attn.q_proj``, ``sa_layer_norm`` -> ``norm1``,
``ffn.lin1`` -> ``linear1``, ``output_layer_norm`` -> ``norm2``,
``embeddings.LayerNorm`` -> ``embeddings.layer_norm``), and every Linear weight
is transposed from PyTorch's [out, in] to Paddle's [in, out]. The masked-LM
head (``vocab_*``) is not used and not kept.

``model.safetensors`` is read directly (bfloat16 and float16 included): no torch needed.
``pytorch_model.bin`` is a PyTorch pickle and needs torch.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from . import _config as config
from . import _fs as fs
from ._checkpoint import ADDED_TOKENS, added_tokens, looks_cased
from ._sentence import SentenceHead, is_sentence_transformers, read_folder, source_files, write_head
from .errors import CasingWarning, CheckpointError, warn

__all__ = ["HF_WEIGHTS", "LINEARS", "RENAMES", "as_converted_from", "convert", "converted_from", "is_huggingface",
           "source_style"]

HF_WEIGHTS = ("model.safetensors", "pytorch_model.bin")
# Hugging Face names -> PaddleNLP names (testing.py writes Hugging Face checkpoints with them, backwards).
RENAMES = (
    ("embeddings.LayerNorm.", "embeddings.layer_norm."),
    ("transformer.layer.", "encoder.layers."),
    ("attention.q_lin.", "self_attn.q_proj."),
    ("attention.k_lin.", "self_attn.k_proj."),
    ("attention.v_lin.", "self_attn.v_proj."),
    ("attention.out_lin.", "self_attn.out_proj."),
    ("sa_layer_norm.", "norm1."),
    ("ffn.lin1.", "linear1."),
    ("ffn.lin2.", "linear2."),
    ("output_layer_norm.", "norm2."),
)
LINEARS = ("q_proj", "k_proj", "v_proj", "out_proj", "linear1", "linear2", "pre_classifier", "classifier")
_HEAD = ("pre_classifier.", "classifier.")
_ACTIVATIONS = ("gelu", "relu")


def is_huggingface(folder: Path) -> bool:
    """A folder with Hugging Face weights and no PaddleNLP weights, or a sentence-transformers folder."""
    folder = Path(folder)
    if (folder / "model_state.pdparams").is_file():
        return False
    return is_sentence_transformers(folder) or (folder / "config.json").is_file() and any(
        (folder / w).is_file() for w in HF_WEIGHTS)


def convert(source: str | os.PathLike, target: str | os.PathLike | None = None) -> Path:
    """Convert a Hugging Face DistilBERT folder to PaddleNLP format and return the new folder.

    Parameters
    ----------
    source
        The Hugging Face checkpoint folder.
    target
        Where to write the PaddleNLP checkpoint; by default the conversion cache
        (``<DISTILFRAME_HOME>/converted/<content hash>/``), where an earlier conversion of the
        same files is reused.

    Examples
    --------
    >>> folder = convert("~/models/my-finetuned-distilbert")  # doctest: +SKIP
    >>> df.distil.classify("review", model=folder)  # doctest: +SKIP
    """
    root = Path(source).expanduser().resolve()
    where = Path(target).expanduser().resolve() if target is not None else config.converted_dir()
    # A conversion already made is found again without re-reading the source's vocabulary (_fs.memoized).
    return fs.memoized(("convert", root, where, target is None), [root], lambda: _convert(root, target))


def _convert(root: Path, target: str | os.PathLike | None) -> tuple[Path, list[Path]]:
    """The conversion's folder, twice: the value, and what the value depends on besides the source."""
    out = _converted(root, target)
    return out, [out]


def _converted(root: Path, target: str | os.PathLike | None) -> Path:
    head = None
    src = root
    if is_sentence_transformers(root):  # the encoder is one of its modules; the others become the head
        src, head = read_folder(root)
    hf_config = _read_config(src)
    weights = next((src / w for w in HF_WEIGHTS if (src / w).is_file()), None)
    if weights is None:
        raise CheckpointError(
            f"{src} has no weights: expected {' or '.join(HF_WEIGHTS)}. "
            f"Found: {', '.join(sorted(p.name for p in src.iterdir())) or '(empty folder)'}."
        )
    vocab = _vocabulary(src)
    tokenizer = _tokenizer_settings(src, vocab)
    added = added_tokens(src, len(vocab))
    digest = _content_hash(weights, src / "config.json", vocab, {**tokenizer, "added": added},
                           source_files(root) if head is not None else [])
    out = Path(target).expanduser().resolve() if target is not None else config.converted_dir() / digest
    if out.exists() and _conversion_of(out) == digest and fs.damaged(out):
        if target is not None:
            raise CheckpointError(f"The conversion in {out} is damaged ({', '.join(fs.damaged(out))} changed since it "
                                  "was written): delete the folder and convert again.")
        shutil.rmtree(out, ignore_errors=True)  # a cached conversion: made again from the source below
    if out.exists():
        if _conversion_of(out) == digest:
            return out  # this very conversion is already there
        if target is None:
            raise CheckpointError(f"{out} is in the conversion cache but incomplete or foreign: delete it.")
        if out == src or src.is_relative_to(out) or any(out.iterdir()):
            raise CheckpointError(
                f"Cannot convert into {out}: the folder exists and is not empty (or holds the source). "
                "Choose a new folder; nothing was written."
            )

    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        with fs.file_lock(f"convert-{digest}"):  # one process converts; the others wait, then reuse
            if _conversion_of(out) == digest:
                return out
            return _write(src, out, hf_config, weights, vocab, tokenizer, added, digest, target, head)
    except PermissionError as e:  # EACCES, EPERM
        raise _not_writable(root, out, e) from None
    except OSError as e:
        if e.errno == errno.EROFS:
            raise _not_writable(root, out, e) from None
        raise


def _not_writable(root: Path, out: Path, e: OSError) -> CheckpointError:
    return CheckpointError(
        f"{root} is a Hugging Face checkpoint, converted on first use into {out.parent}, which is not writable "
        f"({e.strerror or e}). Point DISTILFRAME_HOME at a writable folder, or convert it once where that works "
        "(distilframe.convert(folder, target)) and pass the converted folder.")


def _write(src: Path, out: Path, hf_config: dict, weights: Path, vocab: list[str], tokenizer: dict,
           added: list[dict], digest: str, target: Any, head: SentenceHead | None) -> Path:
    from ._paddle import save_state

    fs.sweep_stale(out.parent, f".{out.name}.*" if target is not None else ".*")
    state = _to_paddle(_load_weights(weights), src, hf_config)
    cfg = _paddle_config(hf_config, src, state)
    cfg["distilframe_source"] = {"path": str(src), "sha256": digest}
    with fs.staged_folder(out, complete=lambda folder: (folder / "model_state.pdparams").is_file()) as tmp:
        if (src / "vocab.txt").is_file():
            shutil.copyfile(src / "vocab.txt", tmp / "vocab.txt")
        else:
            (tmp / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
        (tmp / "config.json").write_text(json.dumps(cfg, indent=2), encoding="utf-8")
        (tmp / "tokenizer_config.json").write_text(json.dumps(tokenizer, indent=2), encoding="utf-8")
        if added:
            (tmp / ADDED_TOKENS).write_text(json.dumps(added, indent=1), encoding="utf-8")
        save_state(state, tmp / "model_state.pdparams")
        if head is not None:
            write_head(tmp, head)
        fs.write_manifest(tmp, [p.name for p in sorted(tmp.iterdir())])
    return out


def converted_from(config: dict[str, Any]) -> Path | None:
    """The Hugging Face folder a converted checkpoint's ``config`` says it was made from, or None."""
    source = config.get("distilframe_source")
    return Path(source["path"]) if isinstance(source, dict) and isinstance(source.get("path"), str) else None


def source_style(folder: Path, weights: Path) -> tuple[bool, str]:
    """How a Hugging Face folder's weights file names its tensors: (BERT's names, the prefix: ``distilbert.``,
    ``bert.`` or none), read from a safetensors header (its first bytes alone); for a PyTorch pickle (reading
    it takes torch and the whole file) or a header that cannot be read, from ``config.json``'s model_type, with
    the prefix the hub's checkpoints have."""
    import struct

    names: set[str] = set()
    try:
        if weights.suffix == ".safetensors":
            with open(weights, "rb") as f:
                (size,) = struct.unpack("<Q", f.read(8))
                if size <= os.fstat(f.fileno()).st_size - 8:
                    header = json.loads(f.read(size))
                    names = set(header) if isinstance(header, dict) else set()
    except Exception:  # a damaged header: the names are unknown, and this only words an error
        names = set()
    for bert, prefix in ((False, "distilbert."), (False, ""), (True, "bert."), (True, "")):
        if prefix + "embeddings.word_embeddings.weight" in names:
            return bert, prefix
    try:
        bert = json.loads((folder / "config.json").read_text(encoding="utf-8")).get("model_type") == "bert"
    except Exception:
        bert = False
    return bert, "bert." if bert else "distilbert."


def as_converted_from(name: str, shape: tuple[int, ...], style: tuple[bool, str] = (False, "distilbert.")
                      ) -> tuple[str, tuple[int, ...]]:
    """A converted weight's PaddleNLP name and shape as the Hugging Face file it came from names it (``style``:
    :func:`source_style`): what an error about the weights says, so that the user finds it in their own file (a
    BERT's in BERT's names, as they were folded)."""
    if name.startswith("distilbert."):
        name = name[len("distilbert."):]
        for old, new in RENAMES:
            name = name.replace(new, old)
        bert, prefix = style
        if bert:
            for old, new in _BERT_RENAMES:
                name = name.replace(new, old, 1) if new.startswith(".") or name.startswith(new) else name
        name = prefix + name
    if len(shape) == 2 and name.endswith(".weight") and not name.split(".")[-2].endswith(("embeddings", "LayerNorm")):
        shape = shape[::-1]  # Hugging Face's Linear is [out, in], PaddleNLP's [in, out]
    return name, tuple(shape)


def _conversion_of(folder: Path) -> str | None:
    """The content hash a folder is a complete conversion of, or None."""
    if not (folder / "model_state.pdparams").is_file():
        return None
    try:
        cfg = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return (cfg.get("distilframe_source") or {}).get("sha256")


def _read_config(src: Path) -> dict[str, Any]:
    path = src / "config.json"
    try:
        cfg = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise CheckpointError(f"Could not read {path}: {e}.") from e
    model_type = cfg.get("model_type")
    if model_type == "bert":
        # A BERT encoder with absolute positions is a DistilBERT-architecture encoder for one-segment input.
        positions = cfg.get("position_embedding_type", "absolute")
        if positions != "absolute":
            raise CheckpointError(f"{path} describes a BERT with {positions!r} position embeddings, which does not "
                                  "fold into DistilBERT (absolute positions only).")
        if cfg.get("hidden_act", "gelu") not in _ACTIVATIONS:
            raise CheckpointError(f"{path} uses activation {cfg.get('hidden_act')!r}; distilframe runs 'gelu' or "
                                  "'relu'.")
        return cfg
    if model_type != "distilbert":
        raise CheckpointError(
            f"{path} describes a {model_type!r} model; distilframe runs DistilBERT checkpoints, and BERT ones "
            "folded into DistilBERT (model_type 'distilbert' or 'bert'); RoPE and relative-position models do not "
            "fold."
        )
    activation = cfg.get("activation", "gelu")
    if activation not in _ACTIVATIONS:
        raise CheckpointError(f"{path} uses activation {activation!r}; DistilBERT uses 'gelu' or 'relu'.")
    return cfg


def _vocabulary(src: Path) -> list[str]:
    """The tokens by id, from vocab.txt or from a WordPiece tokenizer.json."""
    if (src / "vocab.txt").is_file():
        # As transformers' load_vocab: one token per line, the line number is the id.
        with open(src / "vocab.txt", encoding="utf-8") as f:
            return [line.rstrip("\n") for line in f]
    if (src / "tokenizer.json").is_file():
        model = json.loads((src / "tokenizer.json").read_text(encoding="utf-8")).get("model", {})
        vocab = model.get("vocab")
        if model.get("type") == "WordPiece" and isinstance(vocab, dict) and vocab:
            by_id = sorted(vocab.items(), key=lambda kv: kv[1])
            if [i for _, i in by_id] == list(range(len(by_id))):
                return [t for t, _ in by_id]
        raise CheckpointError(f"{src / 'tokenizer.json'} does not hold a WordPiece vocabulary with ids 0..n-1.")
    raise CheckpointError(f"{src} has no vocabulary: expected vocab.txt (or a WordPiece tokenizer.json).")


def _tokenizer_settings(src: Path, vocab: list[str]) -> dict[str, Any]:
    """do_lower_case, strip_accents and tokenize_chinese_chars, as the original tokenizer had them."""
    settings: dict[str, Any] = {}
    if (src / "tokenizer_config.json").is_file():
        tok = json.loads((src / "tokenizer_config.json").read_text(encoding="utf-8"))
        settings = {k: tok[k] for k in ("do_lower_case", "strip_accents", "tokenize_chinese_chars") if k in tok}
    if "do_lower_case" not in settings and (src / "tokenizer.json").is_file():
        norm = json.loads((src / "tokenizer.json").read_text(encoding="utf-8")).get("normalizer") or {}
        if norm.get("type") == "BertNormalizer":
            settings.setdefault("do_lower_case", bool(norm.get("lowercase", True)))
            settings.setdefault("strip_accents", norm.get("strip_accents"))
            settings.setdefault("tokenize_chinese_chars", bool(norm.get("handle_chinese_chars", True)))
    if "do_lower_case" not in settings:
        settings["do_lower_case"] = True  # transformers' default, so that the numbers are the same
        if looks_cased(vocab):
            warn(f"{src} does not say whether its tokenizer lower-cases; lower-casing, as transformers does, "
                 "but its vocabulary has upper-case tokens. If the model is cased, add "
                 '{"do_lower_case": false} to its tokenizer_config.json.', CasingWarning)
    settings.setdefault("strip_accents", None)
    settings.setdefault("tokenize_chinese_chars", True)
    return settings


def _content_hash(weights: Path, cfg: Path, vocab: list[str], tokenizer: dict, modules: list[Path] = ()) -> str:
    """The source's identity: its weights and config bytes, vocabulary and tokenizer settings (the same bytes
    as every release so far, so that no conversion in a cache is orphaned), then a sentence-transformers
    folder's module files."""
    extra = "\n".join(vocab).encode("utf-8") + json.dumps(tokenizer, sort_keys=True).encode("utf-8")
    if modules:
        extra += fs.digest(modules).encode()
    return fs.digest([weights, cfg], extra, names=False)[:32]


def _load_weights(path: Path) -> dict[str, np.ndarray]:
    if path.suffix == ".safetensors":
        try:
            return _read_safetensors(path)
        except CheckpointError:
            raise
        except Exception as e:
            raise CheckpointError(f"Could not read {path}: {type(e).__name__}: {e}. "
                                  "Replace it with a good copy.") from e
    try:
        import torch
    except ImportError as e:
        raise ImportError(
            f"{path} is a PyTorch pickle, and reading it needs torch, which is not installed. "
            "Install it (pip install torch; the CPU build is enough), or save the model as model.safetensors."
        ) from e
    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:
        raise CheckpointError(f"Could not read {path}: {type(e).__name__}: {e}. Replace it with a good copy.") from e
    return {k: v.detach().float().numpy() if v.is_floating_point() else v.numpy() for k, v in state.items()}


_SAFETENSORS_DTYPES = {"F64": np.float64, "F32": np.float32, "F16": np.float16, "I64": np.int64, "I32": np.int32,
                      "I16": np.int16, "I8": np.int8, "U8": np.uint8, "BOOL": np.bool_}


def _read_safetensors(path: Path) -> dict[str, np.ndarray]:
    """Read a safetensors file into float32/int numpy arrays, bfloat16 included (numpy has no bfloat16:
    its 16 bits are the high half of a float32). The format: an 8-byte header length, a JSON header,
    then the raw tensors."""
    import struct

    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 8:
        raise CheckpointError(f"{path} is too short to be a safetensors file. Replace it with a good copy.")
    (size,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + size])
    base = 8 + size
    out: dict[str, np.ndarray] = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        start, end = info["data_offsets"]
        raw = data[base + start:base + end]
        dtype = info["dtype"]
        if dtype == "BF16":
            bits = np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16
            array = bits.view(np.float32)
        elif dtype in _SAFETENSORS_DTYPES:
            array = np.frombuffer(raw, dtype=np.dtype(_SAFETENSORS_DTYPES[dtype]).newbyteorder("<"))
        else:
            raise CheckpointError(f"{path} holds {name} as {dtype}, which distilframe cannot read.")
        out[name] = array.reshape(info["shape"])
    return out


def _to_paddle(hf: dict[str, np.ndarray], src: Path, cfg: dict[str, Any]) -> dict[str, np.ndarray]:
    """Hugging Face names and layouts to PaddleNLP's, encoder under ``distilbert.``."""
    if cfg.get("model_type") == "bert":
        hf = _fold_bert(hf, src)
    out: dict[str, np.ndarray] = {}
    for key, value in hf.items():
        name = key[len("distilbert."):] if key.startswith("distilbert.") else key
        if name.startswith(("embeddings.", "transformer.")):
            for old, new in RENAMES:
                name = name.replace(old, new)
            name = "distilbert." + name
        elif not name.startswith(_HEAD):
            continue  # the masked-LM head (vocab_*), QA outputs, buffers: not used here
        if name.endswith("position_ids"):
            continue
        value = np.asarray(value, dtype=np.float32)
        if name.endswith(".weight") and name.split(".")[-2] in LINEARS:
            value = np.ascontiguousarray(value.T)
        out[name] = value
    if "distilbert.embeddings.word_embeddings.weight" not in out:
        raise CheckpointError(
            f"The weights in {src} have no DistilBERT embeddings (found e.g. {', '.join(list(hf)[:3])}): "
            "is this a DistilBERT checkpoint?"
        )
    return out


def _fold_bert(hf: dict[str, np.ndarray], src: Path) -> dict[str, np.ndarray]:
    """A BERT encoder's weights in DistilBERT's Hugging Face names. For one-segment input every token has
    token type 0, so ``token_type_embeddings[0]`` is added into every position embedding; the pooler (used
    only by BERT's own heads) is dropped. A BERT classification head does not fold (it pools with a tanh
    layer, DistilBERT's with a ReLU one) and is not kept: such a model embeds."""
    state = {(k[len("bert."):] if k.startswith("bert.") else k): v for k, v in hf.items()}
    try:
        types = np.asarray(state.pop("embeddings.token_type_embeddings.weight"), dtype=np.float32)
        positions = np.asarray(state.pop("embeddings.position_embeddings.weight"), dtype=np.float32)
    except KeyError as e:
        raise CheckpointError(f"The BERT weights in {src} have no {e.args[0]}: is this a BERT encoder?") from None
    out = {"distilbert.embeddings.position_embeddings.weight": positions + types[0]}
    for key, value in state.items():
        for old, new in _BERT_RENAMES:
            if key.startswith(old) or old.startswith(".") and old in key:
                key = key.replace(old, new, 1)
        if key.startswith(("embeddings.", "transformer.")):
            out["distilbert." + key] = value
    return out


# BERT's Hugging Face names -> DistilBERT's (then RENAMES maps those to PaddleNLP's), in this order.
_BERT_RENAMES = (
    ("embeddings.LayerNorm.", "embeddings.LayerNorm."),
    ("encoder.layer.", "transformer.layer."),
    (".attention.self.query.", ".attention.q_lin."),
    (".attention.self.key.", ".attention.k_lin."),
    (".attention.self.value.", ".attention.v_lin."),
    (".attention.output.dense.", ".attention.out_lin."),
    (".attention.output.LayerNorm.", ".sa_layer_norm."),
    (".intermediate.dense.", ".ffn.lin1."),
    (".output.dense.", ".ffn.lin2."),
    (".output.LayerNorm.", ".output_layer_norm."),
)


def _paddle_config(hf: dict[str, Any], src: Path, state: dict[str, np.ndarray]) -> dict[str, Any]:
    word = state["distilbert.embeddings.word_embeddings.weight"]
    if hf.get("model_type") == "bert":  # BERT's key names, and its own LayerNorm epsilon
        hf = {**hf, "dim": hf.get("hidden_size"), "n_layers": hf.get("num_hidden_layers"),
              "n_heads": hf.get("num_attention_heads"), "hidden_dim": hf.get("intermediate_size"),
              "activation": hf.get("hidden_act", "gelu")}
        hf = {k: v for k, v in hf.items() if k not in ("id2label", "label2id", "problem_type")}  # no head folds
    cfg = {
        "model_type": "distilbert",
        "architectures": ["DistilBertForSequenceClassification" if "classifier.weight" in state else "DistilBertModel"],
        "vocab_size": int(hf.get("vocab_size", word.shape[0])),
        "hidden_size": int(hf.get("dim", word.shape[1])),
        "num_hidden_layers": int(hf.get("n_layers", 6)),
        "num_attention_heads": int(hf.get("n_heads", 12)),
        "intermediate_size": int(hf.get("hidden_dim", 4 * word.shape[1])),
        "hidden_act": hf.get("activation", "gelu"),
        "max_position_embeddings": int(hf.get("max_position_embeddings", 512)),
        "pad_token_id": int(hf.get("pad_token_id", 0) or 0),
        "layer_norm_eps": float(hf.get("layer_norm_eps", 1e-12)) if hf.get("model_type") == "bert" else 1e-12,
    }  # DistilBERT's 1e-12 is hard-coded in the Hugging Face implementation
    for key in ("id2label", "label2id", "problem_type"):
        if hf.get(key) is not None:
            cfg[key] = hf[key]
    return cfg
