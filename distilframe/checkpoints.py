"""Resolve a model name or a directory to a complete PaddleNLP-format checkpoint on disk.

A registered name lives in ``<DISTILFRAME_HOME>/models/<name>/``; ``hf:<owner>/<repo>``
in ``<DISTILFRAME_HOME>/models/hf/<owner>/<repo>/``. Files that are missing there
are fetched, into a private staging folder, and moved into place one finished
file at a time: the model folder never holds a partial file, and a failed
download leaves nothing behind. PaddleNLP weights come through PaddleNLP's
downloader (``bos_download``), Hugging Face weights through ``huggingface_hub``.
A folder that already has every file is used without any network call, so an
offline machine can be pre-seeded by copying a checkpoint there.

A local directory is used as it is: in PaddleNLP format (``config.json`` or
``model_config.json``, ``model_state.pdparams``, ``vocab.txt``, optionally
``tokenizer_config.json``), or in Hugging Face format, which is converted once
(``distilframe.convert``) into the conversion cache.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import config
from .convert import ADDED_TOKENS, HF_WEIGHTS, _added_tokens, convert, is_huggingface, looks_cased
from .errors import CheckpointError, ModelNotAvailableError, UnknownModelError
from .integrity import damaged, write_manifest
from .registry import ModelSpec, RemoteFile, find, hub_spec, unknown_model_message

__all__ = ["Checkpoint", "content_hash", "folder", "is_on_disk", "resolve"]

WEIGHTS = "model_state.pdparams"
WEIGHT_FILES = (WEIGHTS, "model.safetensors", "pytorch_model.bin")
VOCAB = "vocab.txt"
CONFIGS = ("config.json", "model_config.json")
TOKENIZER_CONFIG = "tokenizer_config.json"


@dataclass(frozen=True)
class Checkpoint:
    """A complete checkpoint folder and what its files say.

    ``name`` is the registered name, or the absolute path of a local folder.
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
    def pad_token_id(self) -> int:
        return int(self.config.get("pad_token_id", 0))


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
    if model[:3].lower() == "hf:":
        spec = hub_spec(model[3:])
        return _read(convert(_ensure_files(spec)), None, name=spec.name)
    spec = find(model)
    if spec is not None:
        files = _ensure_files(spec)
        return _read(convert(files) if spec.source == "huggingface" else files, spec)
    path = Path(model).expanduser()
    # "owner/repo" that is not a folder here is a (misspelt?) name; "./x", "/x", "~/x", "a/b/c" are paths.
    if path.exists() or model.startswith((".", "/", "~")) or model.count("/") > 1 or os.sep != "/" and os.sep in model:
        return _local(path)
    raise UnknownModelError(unknown_model_message(model))


_hash_memo: dict[tuple, str] = {}


def content_hash(checkpoint: Checkpoint) -> str:
    """SHA-256 (32 hex digits) of the files that determine a checkpoint's outputs: weights, config,
    vocabulary and tokenizer settings. Computed once per process per file version."""
    import hashlib

    files = [checkpoint.weights_path, checkpoint.vocab_path]
    extra = (*CONFIGS, TOKENIZER_CONFIG, ADDED_TOKENS, "added_tokens.json", "tokenizer.json")
    files += [checkpoint.path / name for name in extra if (checkpoint.path / name).is_file()]
    stamp = tuple((str(f), f.stat().st_size, f.stat().st_mtime_ns) for f in files)
    if stamp in _hash_memo:
        return _hash_memo[stamp]
    h = hashlib.sha256()
    for f in files:
        h.update(f.name.encode())
        with open(f, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                h.update(block)
    _hash_memo[stamp] = h.hexdigest()[:32]
    return _hash_memo[stamp]


def is_on_disk(spec: ModelSpec) -> bool:
    """True when every required file of ``spec`` is in the cache folder."""
    return not _missing(spec, folder(spec))


def folder(spec: ModelSpec) -> Path:
    """Where a model's files are kept (``hf:owner/repo`` under ``models/hf/owner/repo``)."""
    return config.models_dir().joinpath(*spec.name.replace("hf:", "hf/", 1).split("/"))


def _missing(spec: ModelSpec, target: Path) -> list[RemoteFile]:
    return [f for f in spec.files if not f.optional and not _present(f, target)]


def _present(remote: RemoteFile, target: Path) -> bool:
    return any((target / name).is_file() for name in remote.names)


def _ensure_files(spec: ModelSpec) -> Path:
    target = folder(spec)
    bad = damaged(target)
    if bad:
        names = ", ".join(bad)
        if config.offline():
            raise CheckpointError(
                f"{names} of {spec.name!r} in {target} is damaged (its size or SHA-256 differs from what was "
                "recorded at download). Delete it and run once with network access to fetch it again, or copy a "
                "good copy there (if you replaced it on purpose, delete distilframe_manifest.json there)."
            )
        for name in bad:  # fetched again below, like a missing file
            (target / name).unlink(missing_ok=True)
    if not _missing(spec, target):
        _write_generated(spec, target)
        return target
    if config.offline():
        raise _not_available(spec, target, _missing(spec, target), "DISTILFRAME_OFFLINE=1 forbids downloads")

    from filelock import FileLock

    lock_dir = config.home() / ".locks"
    lock_dir.mkdir(parents=True, exist_ok=True)
    with FileLock(str(lock_dir / (spec.name.replace("/", "--") + ".lock"))):
        missing = _missing(spec, target)  # another process may have fetched them meanwhile
        optional = [f for f in spec.files if f.optional and not _present(f, target)]
        if missing:
            _download(spec, target, missing + optional)
        _write_generated(spec, target)
    return target


def _fetcher(spec: ModelSpec):
    """(url_of, fetch) for the spec's server: fetch(source, local_name, staging) downloads into staging."""
    if spec.source == "huggingface":
        from huggingface_hub import hf_hub_download

        endpoint = config.hf_endpoint()

        def hf_url(source: str) -> str:
            repo, filename = source.rsplit("/", 1)
            return f"{endpoint}/{repo}/resolve/main/{filename}"

        def fetch_hf(source: str, local_name: str, staging: Path) -> Path:
            repo, filename = source.rsplit("/", 1)
            return Path(hf_hub_download(repo_id=repo, filename=filename, local_dir=str(staging), endpoint=endpoint,
                                        etag_timeout=10))

        return hf_url, fetch_hf

    from .engine import _paddle, _quiet_imports

    _paddle()  # quietly, before PaddleNLP imports it
    with _quiet_imports():
        from paddlenlp.utils.download.bos_download import bos_download

    base = config.endpoint()

    def bos_url(source: str) -> str:
        return f"{base}/{source}"

    def fetch_bos(source: str, local_name: str, staging: Path) -> Path:
        return Path(bos_download(repo_id=spec.name, filename=local_name, url=bos_url(source), cache_dir=str(staging)))

    return bos_url, fetch_bos


def _download(spec: ModelSpec, folder: Path, files: list[RemoteFile]) -> None:
    import requests
    from huggingface_hub.utils import EntryNotFoundError, LocalEntryNotFoundError

    folder.mkdir(parents=True, exist_ok=True)
    staging_root = config.home() / "tmp"
    staging_root.mkdir(parents=True, exist_ok=True)
    _remove_stale(staging_root)
    staging = Path(tempfile.mkdtemp(prefix="download-", dir=staging_root))
    tried: list[str] = []
    try:
        url_of, fetch = _fetcher(spec)
        for remote in files:
            fetched = None
            for source in remote.sources:
                basename = source.rsplit("/", 1)[-1]
                local_name = basename if basename in remote.also_accept else remote.local_name
                tried.append(url_of(source))
                try:
                    fetched = fetch(source, local_name, staging)
                    break
                except (requests.HTTPError, LocalEntryNotFoundError) as e:
                    # PaddleNLP turns a 404 into EntryNotFoundError and drops the response; huggingface_hub
                    # says LocalEntryNotFoundError (an EntryNotFoundError) when it could not connect at all.
                    if isinstance(e, LocalEntryNotFoundError):
                        raise
                    if isinstance(e, EntryNotFoundError) or getattr(e.response, "status_code", None) == 404:
                        continue  # try the next name this file may have on the server
                    raise
            if fetched is None:
                if remote.optional:
                    continue
                raise FileNotFoundError(f"{remote.local_name} is not on the server (404 at {', '.join(remote.sources)})")
            os.replace(fetched, folder / local_name)
            if spec.source == "huggingface" and local_name == "config.json":
                _check_hub_config(spec, folder / local_name)  # before fetching the weights
            if local_name in WEIGHT_FILES:  # size and hash, to detect later damage (configs are the user's to edit)
                write_manifest(folder, [local_name])
    except CheckpointError:
        raise
    except Exception as e:
        raise _not_available(spec, folder, _missing(spec, folder), _short(e), tried) from e
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        try:
            folder.rmdir()  # only if the failure left it empty
        except OSError:
            pass


STALE_SECONDS = 24 * 3600


def _remove_stale(staging_root: Path) -> None:
    """Remove staging folders left by downloads that were killed (older than a day)."""
    import time

    for old in staging_root.glob("download-*"):
        try:
            if time.time() - old.stat().st_mtime > STALE_SECONDS:
                shutil.rmtree(old, ignore_errors=True)
        except OSError:
            pass


def _short(e: BaseException) -> str:
    """A one-line cause: requests' connection errors nest three layers of repr."""
    import requests
    from huggingface_hub.utils import LocalEntryNotFoundError

    if isinstance(e, requests.ConnectionError):
        url = getattr(e.request, "url", None) or "the server"
        return f"could not connect to {url}"
    if isinstance(e, LocalEntryNotFoundError):  # huggingface_hub's word for "no connection"
        cause = e.__cause__ or e.__context__
        if isinstance(cause, requests.ConnectionError):
            return _short(cause)
        return f"could not reach {config.hf_endpoint()}"
    text = str(e).splitlines()[0] if str(e) else ""
    return f"{type(e).__name__}: {text[:300]}"


def _check_hub_config(spec: ModelSpec, path: Path) -> None:
    model_type = _load_json(path).get("model_type")
    if model_type != "distilbert":
        path.unlink()
        raise CheckpointError(
            f"{spec.name!r} is a {model_type!r} model, not a DistilBERT (model_type 'distilbert'); "
            "nothing else was downloaded."
        )


def _write_generated(spec: ModelSpec, folder: Path) -> None:
    for name, content in spec.generated_files.items():
        target = folder / name
        if target.is_file():
            continue
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{name}.", dir=folder)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(content, f, indent=2)
        os.replace(tmp, target)


def _not_available(
    spec: ModelSpec, folder: Path, missing: list[RemoteFile], cause: str, tried: list[str] | None = None
) -> ModelNotAvailableError:
    names = ", ".join(f.local_name for f in missing) or "(none)"
    where = f" Tried: {', '.join(tried)}." if tried else ""
    needed = ", ".join(" or ".join(f.names) for f in spec.files if not f.optional)
    kind = "Hugging Face" if spec.source == "huggingface" else "PaddleNLP"
    return ModelNotAvailableError(
        f"Model {spec.name!r} is not on disk and could not be downloaded ({cause}). "
        f"Missing files: {names}; looked in {folder}.{where} "
        f"To use it offline, copy the {kind} files of it ({needed}) into {folder}, "
        "or point DISTILFRAME_HOME at a cache that has it (for example one filled on a machine with network access)."
    )


def _local(path: Path) -> Checkpoint:
    if not path.is_dir():
        raise CheckpointError(
            f"Checkpoint directory {str(path)!r} does not exist. Pass the path of a folder with "
            f"{CONFIGS[0]} (or {CONFIGS[1]}), {WEIGHTS} and {VOCAB}, or a registered model name."
        )
    path = path.resolve()
    if is_huggingface(path):
        return _read(convert(path), None, name=str(path))
    missing = []
    if not any((path / c).is_file() for c in CONFIGS):
        missing.append(f"{CONFIGS[0]} or {CONFIGS[1]}")
    missing += [f for f in (WEIGHTS, VOCAB) if not (path / f).is_file()]
    if missing:
        found = sorted(p.name for p in path.iterdir())[:20]
        raise CheckpointError(
            f"{str(path)!r} is not a PaddleNLP DistilBERT checkpoint: missing {', '.join(missing)}. "
            f"Found: {', '.join(found) or '(empty folder)'}. Expected a PaddleNLP checkpoint ({CONFIGS[0]} "
            f"or {CONFIGS[1]}, {WEIGHTS}, {VOCAB}, optionally {TOKENIZER_CONFIG}) or a Hugging Face one "
            f"(config.json, {' or '.join(HF_WEIGHTS)}, vocab.txt or tokenizer.json)."
        )
    return _read(path, None)


def _read(path: Path, spec: ModelSpec | None, name: str | None = None) -> Checkpoint:
    config_path = next(path / c for c in CONFIGS if (path / c).is_file())
    cfg = _flatten(_load_json(config_path))
    model_type = cfg.get("model_type", "distilbert")
    if model_type != "distilbert":
        raise CheckpointError(
            f"{config_path} describes a {model_type!r} model; distilframe runs DistilBERT checkpoints only "
            "(model_type 'distilbert')."
        )
    if "hidden_size" not in cfg:
        raise CheckpointError(f"{config_path} has no hidden_size (or dim): is it a DistilBERT config?")
    tok_path = path / TOKENIZER_CONFIG
    tok_cfg = _load_json(tok_path) if tok_path.is_file() else {}
    if spec is not None:
        do_lower_case = not spec.cased
        labels = spec.labels
    else:
        lower = tok_cfg.get("do_lower_case", cfg.get("do_lower_case"))
        do_lower_case = bool(lower) if lower is not None else True  # PaddleNLP's and transformers' default
        if lower is None and _vocab_looks_cased(path / VOCAB):
            from .errors import CasingWarning, warn

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
    )


def _read_added_tokens(path: Path) -> list[dict]:
    if (path / ADDED_TOKENS).is_file():  # written by the conversion
        return json.loads((path / ADDED_TOKENS).read_text(encoding="utf-8"))
    with open(path / VOCAB, encoding="utf-8") as f:
        size = sum(1 for _ in f)
    return _added_tokens(path, size)  # a PaddleNLP folder's added_tokens.json, if any


def _vocab_looks_cased(vocab: Path) -> bool:
    with open(vocab, encoding="utf-8") as f:
        return looks_cased(line.rstrip("\n") for line in f)


def _load_json(path: Path) -> dict[str, Any]:
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
