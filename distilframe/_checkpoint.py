"""A checkpoint folder and what its files say: the one identity of a model on disk.

A PaddleNLP-format folder (``config.json`` or a legacy ``model_config.json``,
``model_state.pdparams``, ``vocab.txt``, optionally ``tokenizer_config.json``) is read into a
:class:`Checkpoint`: its config (legacy ``init_args`` flattened), casing, labels and added
tokens. :func:`content_hash` is its identity: the result cache and the export cache key on it,
and the model manager reloads a model whose hash changed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import _fs as fs
from ._registry import ModelSpec
from ._sentence import SentenceHead, head_files, read_head
from .errors import CasingWarning, CheckpointError, warn

__all__ = ["ADDED_TOKENS", "BASIC_SPECIALS", "CONFIGS", "TOKENIZER_CONFIG", "VOCAB", "WEIGHTS", "WEIGHT_FILES",
           "Checkpoint", "added_tokens", "content_hash", "load_json", "looks_cased", "read"]

WEIGHTS = "model_state.pdparams"
WEIGHT_FILES = (WEIGHTS, "model.safetensors", "pytorch_model.bin")
VOCAB = "vocab.txt"
CONFIGS = ("config.json", "model_config.json")
TOKENIZER_CONFIG = "tokenizer_config.json"
# Tokens added to the vocabulary after training, with their matching rules (transformers' AddedToken).
ADDED_TOKENS = "distilframe_added_tokens.json"
BASIC_SPECIALS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


@dataclass(frozen=True)
class Checkpoint:
    """A complete checkpoint folder and what its files say.

    ``name`` is the registered name, or the absolute path of a local folder. One object is shared by every
    caller that resolves the same folder (``read``): treat it, its ``config`` included, as read-only.
    """

    name: str
    path: Path
    config: dict[str, Any]
    do_lower_case: bool
    labels: tuple[str, ...]
    spec: ModelSpec | None = None
    strip_accents: bool | None = None  # None: follow do_lower_case, as BERT does
    tokenize_chinese_chars: bool = True
    added_tokens: tuple[dict, ...] = ()
    sentence: SentenceHead | None = None  # a sentence-transformers model's pooling, Dense, Normalize, settings

    @property
    def weights_path(self) -> Path:
        return self.path / WEIGHTS

    @property
    def vocab_path(self) -> Path:
        return self.path / VOCAB

    @property
    def hidden_size(self) -> int:
        return int(self.config["hidden_size"])

    @property
    def max_positions(self) -> int:
        return int(self.config.get("max_position_embeddings", 512))

    @property
    def output_dim(self) -> int:
        """The dimension of an embedding: a sentence model's (after its Dense modules), else the hidden size."""
        return self.sentence.dim if self.sentence is not None else self.hidden_size

    @property
    def pad_token_id(self) -> int:
        return int(self.config.get("pad_token_id", 0))


def content_hash(checkpoint: Checkpoint) -> str:
    """SHA-256 (32 hex digits) of the files that determine a checkpoint's outputs: weights, config,
    vocabulary and tokenizer settings (kept per file version, across processes, see ``_fs.digest``)."""
    files = [checkpoint.weights_path, checkpoint.vocab_path]
    extra = (*CONFIGS, TOKENIZER_CONFIG, ADDED_TOKENS, "added_tokens.json", "tokenizer.json")
    files += [checkpoint.path / name for name in extra if (checkpoint.path / name).is_file()]
    return fs.digest(files + head_files(checkpoint.path))[:32]


def read(path: Path, spec: ModelSpec | None, name: str | None = None) -> Checkpoint:
    """The checkpoint in a complete PaddleNLP-format folder; a registered ``spec`` gives its casing and labels.

    Read once per process while the folder's files stay as they are (``_fs.memoized``)."""
    path = Path(path)
    return fs.memoized(("read", path, name, repr(spec)), [path], lambda: (_read(path, spec, name), []))


def _read(path: Path, spec: ModelSpec | None, name: str | None) -> Checkpoint:
    config_path = next(path / c for c in CONFIGS if (path / c).is_file())
    cfg = _flatten(load_json(config_path))
    model_type = cfg.get("model_type", "distilbert")
    if model_type != "distilbert":
        raise CheckpointError(
            f"{config_path} describes a {model_type!r} model; distilframe runs DistilBERT checkpoints only "
            "(model_type 'distilbert')."
        )
    if "hidden_size" not in cfg:
        raise CheckpointError(f"{config_path} has no hidden_size (or dim): is it a DistilBERT config?")
    _check_config(cfg, config_path)
    _check_vocab(path / VOCAB)
    tok_path = path / TOKENIZER_CONFIG
    tok_cfg = load_json(tok_path) if tok_path.is_file() else {}
    if spec is not None:
        do_lower_case = not spec.cased
        labels = spec.labels
    else:
        lower = tok_cfg.get("do_lower_case", cfg.get("do_lower_case"))
        do_lower_case = bool(lower) if lower is not None else True  # PaddleNLP's and transformers' default
        if lower is None and _vocab_looks_cased(path / VOCAB):
            warn(f"{path} does not say whether its tokenizer lower-cases; lower-casing, as PaddleNLP does, but "
                 "its vocabulary has upper-case tokens. If the model is cased, add {\"do_lower_case\": false} "
                 f"to {path / TOKENIZER_CONFIG}.", CasingWarning)
        labels = _labels(cfg)
    strip_accents = tok_cfg.get("strip_accents")
    return Checkpoint(
        name=name or (spec.name if spec else str(path)),
        path=path,
        config=cfg,
        do_lower_case=do_lower_case,
        labels=labels,
        spec=spec,
        strip_accents=None if strip_accents is None else bool(strip_accents),
        tokenize_chinese_chars=bool(tok_cfg.get("tokenize_chinese_chars", True)),
        added_tokens=tuple(_read_added_tokens(path)),
        sentence=read_head(path),
    )


ACTIVATIONS = ("gelu", "relu")  # what DistilBERT's feed-forward layers use (Paddle's F.gelu, F.relu)
_SIZES = ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "max_position_embeddings",
          "vocab_size")


def _check_config(cfg: dict[str, Any], config_path: Path) -> None:
    """The config values the engine builds from, checked: a bad one is a one-line error, not a traceback."""
    for key in _SIZES:
        value = cfg.get(key)
        if key in cfg and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
            raise CheckpointError(f"{config_path} has {key}={value!r}; expected a positive integer.")
    act = cfg.get("hidden_act", "gelu")
    if act not in ACTIVATIONS:
        raise CheckpointError(f"{config_path} has hidden_act={act!r}; distilframe runs DistilBERT's "
                              f"{' and '.join(map(repr, ACTIVATIONS))}.")


def _check_vocab(vocab: Path) -> None:
    data = vocab.read_bytes()
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[:e.start].count(b"\n") + 1
        raise CheckpointError(f"{vocab} is not UTF-8 text: line {line} holds the bytes "
                              f"{data[e.start:e.start + 4]!r}. A vocabulary has one UTF-8 token per line.") from None


def _read_added_tokens(path: Path) -> list[dict]:
    if (path / ADDED_TOKENS).is_file():  # written by the conversion
        return json.loads((path / ADDED_TOKENS).read_text(encoding="utf-8"))
    with open(path / VOCAB, encoding="utf-8") as f:
        size = sum(1 for _ in f)
    return added_tokens(path, size)  # a PaddleNLP folder's added_tokens.json, if any


def _vocab_looks_cased(vocab: Path) -> bool:
    with open(vocab, encoding="utf-8") as f:
        return looks_cased(line.rstrip("\n") for line in f)


def load_json(path: Path) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError) as e:
        raise CheckpointError(f"Could not read {path}: {e}. Re-download the model or fix the file.") from e
    if not isinstance(data, dict):
        raise CheckpointError(f"{path} holds a {type(data).__name__}, expected a JSON object.")
    return data


_HF_NAMES = {"dim": "hidden_size", "n_layers": "num_hidden_layers", "n_heads": "num_attention_heads",
             "hidden_dim": "intermediate_size", "activation": "hidden_act", "num_classes": "num_labels"}


def _flatten(cfg: dict[str, Any]) -> dict[str, Any]:
    """One flat dict from a current or legacy PaddleNLP config (``init_args``), with PaddleNLP's key names."""
    flat: dict[str, Any] = {}
    init_args = cfg.get("init_args")
    if isinstance(init_args, list):
        for arg in init_args:
            if isinstance(arg, dict):
                flat.update(_flatten(arg))
    flat.update({k: v for k, v in cfg.items() if k not in ("init_args", "init_class")})
    for old, new in _HF_NAMES.items():
        if old in flat and new not in flat:
            flat[new] = flat[old]
    return flat


def _labels(cfg: dict[str, Any]) -> tuple[str, ...]:
    id2label = cfg.get("id2label")
    if isinstance(id2label, dict) and id2label:
        try:
            return tuple(str(v) for _, v in sorted(id2label.items(), key=lambda kv: int(kv[0])))
        except ValueError:
            pass
    return ()


def added_tokens(src: Path, vocab_size: int) -> list[dict[str, Any]]:
    """Tokens added after training (transformers' add_tokens / additional special tokens), with their ids
    and matching rules, from tokenizer_config.json, tokenizer.json or added_tokens.json."""
    found: dict[int, dict[str, Any]] = {}
    tok_cfg = _json(src / "tokenizer_config.json")
    for key, spec in (tok_cfg.get("added_tokens_decoder") or {}).items():
        found[int(key)] = spec
    for spec in (_json(src / "tokenizer.json").get("added_tokens") or []):
        found.setdefault(int(spec["id"]), spec)
    legacy = _json(src / "added_tokens.json")
    specials = set(tok_cfg.get("additional_special_tokens") or [])
    for content, index in legacy.items():
        found.setdefault(int(index), {"content": content, "special": content in specials})
    out = []
    for index in sorted(found):
        spec = found[index]
        content = spec.get("content")
        if not isinstance(content, str) or (content in BASIC_SPECIALS and index < vocab_size):
            continue
        special = bool(spec.get("special", False))
        out.append({"content": content, "id": index, "special": special,
                    "normalized": bool(spec.get("normalized", not special)),
                    "lstrip": bool(spec.get("lstrip", False)), "rstrip": bool(spec.get("rstrip", False)),
                    "single_word": bool(spec.get("single_word", False))})
    return out


def looks_cased(tokens) -> bool:
    """Whether a vocabulary has upper-case word pieces: an uncased BERT vocabulary has none
    (bracketed specials such as [CLS] aside)."""
    return any(t != t.lower() for t in tokens if not (t.startswith("[") and t.endswith("]")))


def _json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise CheckpointError(f"Could not read {path}: {e}.") from e
    return data if isinstance(data, dict) else {}


