"""A model name or a folder -> a complete PaddleNLP-format checkpoint on disk.

A registered name or alias is fetched into the cache on first use (``_download``); a Hugging Face
one (registered, or ``hf:<owner>/<repo>``) is then converted once (``_convert``). A local directory
is used as it is: in PaddleNLP format, or in Hugging Face format, which is converted once into the
conversion cache.
"""

from __future__ import annotations

import os
from pathlib import Path

from ._checkpoint import CONFIGS, TOKENIZER_CONFIG, VOCAB, WEIGHTS, Checkpoint, read
from ._convert import HF_WEIGHTS, convert, is_huggingface
from ._download import ensure_files, packaged_folder
from ._registry import find, hub_spec, unknown_model_message
from .errors import CheckpointError, UnknownModelError

__all__ = ["resolve"]


def resolve(model: str | os.PathLike) -> Checkpoint:
    """Return the checkpoint for a registered name or alias, or a local directory.

    Registered models are downloaded into the cache on first use.

    Examples
    --------
    >>> resolve("uncased").path  # doctest: +SKIP
    PosixPath('/home/me/.cache/distilframe/models/distilbert-base-uncased')
    """
    if isinstance(model, os.PathLike):
        return _local(Path(model).expanduser())
    if not isinstance(model, str):
        raise TypeError(f"Got model={model!r} ({type(model).__name__}) but expected a model name or a directory path.")
    if not model.strip():
        raise UnknownModelError(f"Got model={model!r}: expected a registered name (see distilframe.models()), "
                                "'hf:<owner>/<repo>', or the path of a checkpoint folder.")
    if len(model) > 4096 or any(len(part) > 255 for part in model.split("/")):
        raise UnknownModelError(f"Got a model name of {len(model):,} characters ({model[:40]!r}...): it is neither a "
                                "registered name nor a usable path. Pass a name from distilframe.models() or a "
                                "folder's path.")
    if model[:3].lower() == "hf:":
        spec = hub_spec(model[3:])
        return read(convert(ensure_files(spec)), None, name=spec.name)
    spec = find(model)
    if spec is not None:
        packaged = packaged_folder(spec)
        if packaged is not None:  # its files ship in an installed package: no download, no copy
            return read(convert(packaged), spec)
        files = ensure_files(spec)
        return read(convert(files) if spec.source == "huggingface" else files, spec)
    path = Path(model).expanduser()
    # "owner/repo" that is not a folder here is a (misspelt?) name; "./x", "/x", "~/x", "a/b/c" are paths.
    if path.exists() or model.startswith((".", "/", "~")) or model.count("/") > 1 or os.sep != "/" and os.sep in model:
        return _local(path)
    raise UnknownModelError(unknown_model_message(model))


def _local(path: Path) -> Checkpoint:
    if path.is_file():
        raise CheckpointError(f"{str(path)!r} is a file; a checkpoint is a folder (with {CONFIGS[0]}, {WEIGHTS} "
                              f"and {VOCAB}, or a Hugging Face folder). Pass the folder that holds it.")
    if not path.is_dir():
        raise CheckpointError(
            f"Checkpoint directory {str(path)!r} does not exist. Pass the path of a folder with "
            f"{CONFIGS[0]} (or {CONFIGS[1]}), {WEIGHTS} and {VOCAB}, or a registered model name."
        )
    path = path.resolve()
    if is_huggingface(path):
        return read(convert(path), None, name=str(path))
    missing = []
    hf_weights = any((path / w).is_file() for w in HF_WEIGHTS)
    if hf_weights:  # Hugging Face weights but not a Hugging Face folder (is_huggingface): its config is missing
        missing.append("config.json")
    elif not any((path / c).is_file() for c in CONFIGS):
        missing.append(f"{CONFIGS[0]} or {CONFIGS[1]}")
    if not (path / WEIGHTS).is_file() and not hf_weights:  # neither kind of weights
        missing.append(f"{WEIGHTS} (PaddleNLP) or {' or '.join(HF_WEIGHTS)} (Hugging Face)")
    paddlenlp = (path / WEIGHTS).is_file()  # whose tokenizer is vocab.txt; a Hugging Face one's may be tokenizer.json
    if not (path / VOCAB).is_file() and (paddlenlp or not (path / "tokenizer.json").is_file()):
        missing.append(VOCAB if paddlenlp else f"{VOCAB} (or tokenizer.json, Hugging Face)")
    if missing:
        found = sorted(p.name for p in path.iterdir())[:20]
        raise CheckpointError(
            f"{str(path)!r} is not a DistilBERT checkpoint: missing {', '.join(missing)}. "
            f"Found: {', '.join(found) or '(empty folder)'}. Expected a PaddleNLP checkpoint ({CONFIGS[0]} "
            f"or {CONFIGS[1]}, {WEIGHTS}, {VOCAB}, optionally {TOKENIZER_CONFIG}) or a Hugging Face one "
            f"(config.json, {' or '.join(HF_WEIGHTS)}, vocab.txt or tokenizer.json)."
        )
    return read(path, None)

