"""sentence-transformers folders: the modules around the encoder, read once and kept beside its conversion.

    <folder>/modules.json ─► Transformer (the encoder: DistilBERT, or a BERT folded into it)
                          ─► Pooling   (cls, max, mean, mean_sqrt_len_tokens, weightedmean, lasttoken;
                                        include_prompt)
                          ─► Dense*    (weights from safetensors or pytorch_model.bin, an activation)
                          ─► Normalize
    sentence_bert_config.json: max_seq_length, do_lower_case; config_sentence_transformers.json: prompts

A module type distilframe cannot compute exactly is refused with its name, never skipped. What was read
is written into the converted checkpoint as ``distilframe_sentence.json`` and ``dense_<i>.safetensors``
(no pickle), and read back from there as a :class:`SentenceHead`; it then computes what
sentence-transformers computes after the encoder (``pool``, ``dense``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import CheckpointError, check_finite

__all__ = ["HEAD_FILE", "MODES", "SentenceHead", "head_files", "is_sentence_transformers", "module_files",
           "output_dim", "read_folder", "read_head", "source_files", "write_head"]

HEAD_FILE = "distilframe_sentence.json"
# Pooling modes in the order sentence-transformers concatenates them, with the keys of its config.
MODES = ("cls", "max", "mean", "mean_sqrt_len_tokens", "weightedmean", "lasttoken")
_MODE_KEYS = {"cls": "pooling_mode_cls_token", "max": "pooling_mode_max_tokens", "mean": "pooling_mode_mean_tokens",
              "mean_sqrt_len_tokens": "pooling_mode_mean_sqrt_len_tokens",
              "weightedmean": "pooling_mode_weightedmean_tokens", "lasttoken": "pooling_mode_lasttoken"}
_KINDS = ("Transformer", "Pooling", "Dense", "Normalize")
# Dense activations hub models use, by the name sentence-transformers records (torch.nn... or just the class).
_ACTIVATIONS = {"Tanh": np.tanh, "Identity": lambda x: x, "ReLU": lambda x: np.maximum(x, 0),
                "Sigmoid": lambda x: 1 / (1 + np.exp(-x)), "GELU": None, "SiLU": lambda x: x / (1 + np.exp(-x))}


@dataclass(frozen=True)
class SentenceHead:
    """What a sentence-transformers model computes after its encoder, and its own settings.

    ``pooling`` is ``"+"``-joined modes (in sentence-transformers' order); ``dense`` holds
    (weight [out, in], bias or None, activation name) per Dense module.
    """

    pooling: str = "mean"
    include_prompt: bool = True
    dense: tuple[tuple[np.ndarray, np.ndarray | None, str], ...] = ()
    normalize: bool = False
    max_seq_length: int | None = None
    do_lower_case: bool = False
    prompts: dict[str, str] = field(default_factory=dict)
    default_prompt_name: str | None = None
    hidden_size: int = 0

    @property
    def dim(self) -> int:
        """The output dimension: the last Dense module's, else the pooled one."""
        if self.dense:
            return int(self.dense[-1][0].shape[0])
        return self.hidden_size * len(self.pooling.split("+"))

    def describe(self) -> dict[str, Any]:
        """The settings, without weights (for ``distilframe info``, cache keys and the model card)."""
        return {"pooling": self.pooling, "include_prompt": self.include_prompt,
                "dense": [[int(w.shape[1]), int(w.shape[0]), b is not None, act] for w, b, act in self.dense],
                "normalize": self.normalize, "max_seq_length": self.max_seq_length,
                "do_lower_case": self.do_lower_case, "prompts": self.prompts,
                "default_prompt_name": self.default_prompt_name}

    def apply_dense(self, x: np.ndarray) -> np.ndarray:
        """The Dense modules on pooled rows (float32 in and out), as sentence-transformers applies them."""
        for weight, bias, activation in self.dense:
            x = x @ weight.T + (bias if bias is not None else 0)
            x = _activate(activation, x)
        return np.asarray(x, dtype=np.float32)


def output_dim(hidden: int, head: SentenceHead | None, pooling: str) -> int:
    """An embedding's dimension with ``pooling`` in force: the last Dense module's, else hidden size x modes.
    Dense weights take the model's own pooled width: another number of modes is refused."""
    modes = len(pooling.split("+"))
    if head is not None and head.dense:
        own = len(head.pooling.split("+"))
        if modes != own:
            raise ValueError(f"Got pooling={pooling!r} ({modes} modes) but this model's Dense modules take its own "
                             f"pooling's width ({head.pooling!r}, {own}): pass a pooling of {own} modes, or none.")
        return head.dim
    return hidden * modes


def _activate(name: str, x: np.ndarray) -> np.ndarray:
    if name == "GELU":  # exact GELU, as torch.nn.GELU() computes it (numpy has no erf; the rows are few)
        import math

        erf = np.vectorize(math.erf, otypes=[np.float64])
        return 0.5 * x * (1 + erf(x / math.sqrt(2)))
    return _ACTIVATIONS[name](x)


def module_files(folder: Path) -> list[tuple[str, tuple[str, ...]]]:
    """The files the modules of a downloaded ``modules.json`` need, as (local name, its names on the hub, the
    first preferred): a Pooling or Dense module's config.json, a Dense module's weights. Types it cannot
    compute are left for :func:`read_folder` to refuse by name; their files are not fetched."""
    out: list[tuple[str, tuple[str, ...]]] = []
    for module in _json(folder / "modules.json", list):
        path = str(module.get("path", "")).strip("/")
        kind = str(module.get("type", "")).rsplit(".", 1)[-1]
        if kind == "Transformer" and path:
            raise CheckpointError(f"{folder / 'modules.json'} keeps its encoder in {path!r}: download that "
                                  "repository's folder and pass its path (the encoder is read at the root here).")
        if not path or ".." in path.split("/") or kind not in ("Pooling", "Dense"):
            continue
        out.append((f"{path}/config.json", (f"{path}/config.json",)))
        if kind == "Dense":
            out.append((f"{path}/model.safetensors", (f"{path}/model.safetensors", f"{path}/pytorch_model.bin")))
    return out


def is_sentence_transformers(folder: Path) -> bool:
    return (Path(folder) / "modules.json").is_file()


def read_folder(folder: Path) -> tuple[Path, SentenceHead]:
    """(the encoder's folder, the head) of a sentence-transformers folder; unsupported modules are refused."""
    modules = _json(folder / "modules.json", list)
    encoder: Path | None = None
    pooling: dict[str, Any] | None = None
    dense: list[tuple[np.ndarray, np.ndarray | None, str]] = []
    normalize = False
    for module in sorted(modules, key=lambda m: int(m.get("idx", 0))):
        kind = _kind(module, folder)
        path = folder / module.get("path", "")
        if kind == "Transformer":
            if encoder is not None or pooling is not None or dense:
                raise CheckpointError(f"{folder / 'modules.json'}: the Transformer module must come first, once.")
            encoder = path
        elif kind == "Pooling":
            if pooling is not None:
                raise CheckpointError(f"{folder / 'modules.json'} has two Pooling modules; distilframe computes one.")
            pooling = _json(path / "config.json", dict)
        elif kind == "Dense":
            if pooling is None:
                raise CheckpointError(f"{folder / 'modules.json'}: a Dense module before Pooling is not supported.")
            dense.append(_read_dense(path))
        else:
            normalize = True
        if normalize and kind != "Normalize":
            raise CheckpointError(f"{folder / 'modules.json'} has a {kind} module after Normalize; distilframe "
                                  "computes Normalize last only (as sentence-transformers models have it).")
    if encoder is None:
        raise CheckpointError(f"{folder / 'modules.json'} has no Transformer module: distilframe needs the encoder.")
    settings = _json(encoder / "sentence_bert_config.json", dict, missing={})
    if not settings and encoder != folder:
        settings = _json(folder / "sentence_bert_config.json", dict, missing={})
    extra = _json(folder / "config_sentence_transformers.json", dict, missing={})
    modes = _modes(pooling, folder) if pooling is not None else []
    if pooling is not None and not modes:
        raise CheckpointError(f"{folder}: its Pooling module has no pooling mode switched on.")
    prompts = extra.get("prompts") or {}
    if not isinstance(prompts, dict) or not all(isinstance(v, str) for v in prompts.values()):
        raise CheckpointError(f"{folder / 'config_sentence_transformers.json'}: prompts must map names to strings.")
    default = extra.get("default_prompt_name")
    if default is not None and default not in prompts:  # sentence-transformers refuses it too
        raise CheckpointError(f"{folder / 'config_sentence_transformers.json'}: its default_prompt_name {default!r} is "
                              f"not one of its prompts ({', '.join(map(repr, prompts)) or 'none'}): name one of them, "
                              "or remove default_prompt_name.")
    if pooling is None:
        raise CheckpointError(f"{folder}: a sentence-transformers model without a Pooling module gives token "
                              "embeddings, not one vector per text; distilframe embeds texts.")
    head = SentenceHead(pooling="+".join(modes), include_prompt=bool(pooling.get("include_prompt", True)),
                        dense=tuple(dense), normalize=normalize,
                        max_seq_length=_int_or_none(settings.get("max_seq_length"), folder),
                        do_lower_case=bool(settings.get("do_lower_case", False)), prompts=dict(prompts),
                        default_prompt_name=extra.get("default_prompt_name"),
                        hidden_size=int(pooling.get("word_embedding_dimension") or 0))
    return encoder, head


def _modes(pooling: dict[str, Any], folder: Path) -> list[str]:
    """The modes a Pooling config switches on, with sentence-transformers' constructor defaults (mean on unless
    the config says otherwise) and its ``pooling_mode`` string, which overrides the flags."""
    named = pooling.get("pooling_mode")
    if named is not None:
        aliases = {"mean_sqrt_len": "mean_sqrt_len_tokens", "weighted_mean": "weightedmean", "last_token": "lasttoken"}
        mode = aliases.get(str(named), str(named))
        if mode not in MODES:
            raise CheckpointError(f"{folder}: its Pooling module says pooling_mode={named!r}; distilframe computes "
                                  f"{', '.join(MODES)}.")
        return [mode]
    flags = {m: bool(pooling.get(_MODE_KEYS[m], m == "mean")) for m in MODES}
    return [m for m in MODES if flags[m]]


def _kind(module: dict[str, Any], folder: Path) -> str:
    kind = str(module.get("type", ""))
    last = kind.rsplit(".", 1)[-1]
    if kind.startswith("sentence_transformers.") and last in _KINDS:
        return last  # sentence_transformers.models.Pooling, or a later module path ending with the class name
    raise CheckpointError(
        f"{folder / 'modules.json'} has a module of type {kind!r}, which distilframe cannot compute: it runs "
        f"sentence-transformers models made of {', '.join(_KINDS)} modules only. Nothing was skipped or converted."
    )


def _read_dense(path: Path) -> tuple[np.ndarray, np.ndarray | None, str]:
    cfg = _json(path / "config.json", dict)
    if not cfg.get("activation_function"):
        raise CheckpointError(f"{path / 'config.json'} names no activation_function (sentence-transformers cannot "
                              "load it either): add the one the model was trained with.")
    activation = str(cfg["activation_function"]).rsplit(".", 1)[-1]
    if activation not in _ACTIVATIONS:
        raise CheckpointError(f"{path / 'config.json'} uses activation {cfg.get('activation_function')!r}; distilframe "
                              f"computes {', '.join(sorted(_ACTIVATIONS))}.")
    if (path / "model.safetensors").is_file():
        from safetensors.numpy import load_file

        state = load_file(str(path / "model.safetensors"))
    elif (path / "pytorch_model.bin").is_file():
        try:
            import torch
        except ImportError as e:
            raise ImportError(f"{path / 'pytorch_model.bin'} is a PyTorch pickle, and reading it needs torch (the "
                              "CPU build is enough), or save the model with safetensors.") from e
        state = {k: v.float().numpy() for k, v in torch.load(str(path / "pytorch_model.bin"), map_location="cpu",
                                                            weights_only=True).items()}
    else:
        raise CheckpointError(f"{path} has no Dense weights (model.safetensors or pytorch_model.bin).")
    if "linear.weight" not in state:
        raise CheckpointError(f"{path}: the Dense weights have no linear.weight (found {', '.join(sorted(state))}).")
    weight = np.asarray(state["linear.weight"], dtype=np.float32)
    bias = state.get("linear.bias")
    for name, array in (("linear.weight", weight), ("linear.bias", bias)):
        check_finite(array, f"the Dense module {path.name!r}", f"{name} ({path})")
    expected = (int(cfg.get("out_features", weight.shape[0])), int(cfg.get("in_features", weight.shape[-1])))
    if weight.ndim != 2 or weight.shape != expected:
        raise CheckpointError(f"{path}: linear.weight has shape {weight.shape}, its config says {expected}.")
    return weight, None if bias is None else np.asarray(bias, dtype=np.float32), activation


def write_head(folder: Path, head: SentenceHead) -> list[str]:
    """Write the head into a converted checkpoint folder (JSON and safetensors); returns the file names."""
    from safetensors.numpy import save_file

    names = [HEAD_FILE]
    described = head.describe()
    described["hidden_size"] = head.hidden_size
    (folder / HEAD_FILE).write_text(json.dumps(described, indent=1, sort_keys=True), encoding="utf-8")
    for i, (weight, bias, _) in enumerate(head.dense):
        tensors = {"weight": np.ascontiguousarray(weight)}
        if bias is not None:
            tensors["bias"] = np.ascontiguousarray(bias)
        save_file(tensors, str(folder / f"dense_{i}.safetensors"))
        names.append(f"dense_{i}.safetensors")
    return names


def read_head(folder: Path) -> SentenceHead | None:
    """The head written by :func:`write_head`, or None for a plain checkpoint."""
    if not (folder / HEAD_FILE).is_file():
        return None
    from safetensors.numpy import load_file

    d = _json(folder / HEAD_FILE, dict)
    dense = []
    for i, (_, _, has_bias, activation) in enumerate(d.get("dense", [])):
        tensors = load_file(str(folder / f"dense_{i}.safetensors"))
        for name, array in tensors.items():  # a head converted before the check (_read_dense) is checked too
            check_finite(array, f"the Dense module {i} of {str(folder)!r}", f"{name} (dense_{i}.safetensors)")
        dense.append((tensors["weight"], tensors.get("bias") if has_bias else None, activation))
    return SentenceHead(pooling=d["pooling"], include_prompt=d["include_prompt"], dense=tuple(dense),
                        normalize=d["normalize"], max_seq_length=d["max_seq_length"], do_lower_case=d["do_lower_case"],
                        prompts=d["prompts"], default_prompt_name=d["default_prompt_name"],
                        hidden_size=d["hidden_size"])


def head_files(folder: Path) -> list[Path]:
    """The files of a head in a converted folder (part of the checkpoint's content hash)."""
    return [p for p in [folder / HEAD_FILE, *sorted(folder.glob("dense_*.safetensors"))] if p.is_file()]


def source_files(folder: Path) -> list[Path]:
    """The module files of a sentence-transformers folder that shape its outputs (its conversion key)."""
    names = ["modules.json", "config_sentence_transformers.json", "sentence_bert_config.json"]
    files = [folder / n for n in names if (folder / n).is_file()]
    for module in _json(folder / "modules.json", list):
        path = folder / module.get("path", "")
        if module.get("path") and path.is_dir():  # a Normalize module often has no folder at all
            files += sorted(p for p in path.iterdir() if p.is_file())
    return files


def _int_or_none(value: Any, folder: Path) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise CheckpointError(f"{folder}: max_seq_length={value!r} is not a positive integer.")
    return value


def _json(path: Path, kind: type, missing: Any = None) -> Any:
    if not path.is_file():
        if missing is not None:
            return missing
        raise CheckpointError(f"{path} is missing: the sentence-transformers folder is incomplete.")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise CheckpointError(f"Could not read {path}: {e}.") from e
    if not isinstance(data, kind):
        raise CheckpointError(f"{path} holds a {type(data).__name__}, expected a JSON {kind.__name__}.")
    return data
