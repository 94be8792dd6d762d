"""Sizes and SHA-256 of the files distilframe writes into its caches, to detect later damage.

A manifest (``distilframe_manifest.json``) is written beside downloaded and converted
files. Sizes are checked on every use; hashes once per process per file version, so a
truncated or altered file is found before Paddle reads garbage from it.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Iterable

__all__ = ["MANIFEST", "damaged", "write_manifest"]

MANIFEST = "distilframe_manifest.json"
_verified: set[tuple] = set()


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _read(folder: Path) -> dict:
    try:
        return json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def write_manifest(folder: Path, names: Iterable[str]) -> None:
    """Record the size and hash of ``names`` in ``folder`` (added to what is recorded already)."""
    manifest = _read(folder)
    for name in names:
        manifest[name] = {"size": (folder / name).stat().st_size, "sha256": _sha256(folder / name)}
    tmp = folder / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=1), encoding="utf-8")
    os.replace(tmp, folder / MANIFEST)


def damaged(folder: Path) -> list[str]:
    """Recorded files of ``folder`` whose size or hash has changed (missing files are not listed)."""
    bad = []
    for name, record in _read(folder).items():
        path = folder / name
        if not path.is_file():
            continue
        st = path.stat()
        stamp = (str(path), st.st_size, st.st_mtime_ns)
        if st.st_size != record.get("size"):
            bad.append(name)
        elif stamp not in _verified:
            if _sha256(path) != record.get("sha256"):
                bad.append(name)
            else:
                _verified.add(stamp)
    return bad
