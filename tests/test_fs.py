"""The storage module: atomic writes, and permissions that follow the umask everywhere distilframe writes."""

import os
import stat
from pathlib import Path

import pandas as pd
import pytest

import distilframe
from distilframe import _fs as fs
from distilframe.testing import write_hf_checkpoint
from servers import HubServer, StaticServer
from conftest import TINY_SST2


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def umask_002():
    """A group-writable umask (shared ETL folders): what is written must be 0664 files and 0775 folders,
    where mkstemp and mkdtemp alone would give 0600 and 0700."""
    old = os.umask(0o002)
    yield
    os.umask(old)


def test_atomic_writes_follow_the_umask_and_leave_nothing_on_failure(tmp_path, umask_002):
    fs.atomic_write(tmp_path / "a.json", "{}")
    assert mode(tmp_path / "a.json") == 0o664
    with fs.staged_file(tmp_path / "b.bin") as tmp:
        tmp.write_bytes(b"x")
        assert not (tmp_path / "b.bin").exists()  # only once complete
    assert mode(tmp_path / "b.bin") == 0o664
    with fs.staged_folder(tmp_path / "folder") as tmp:
        (tmp / "inside").write_text("x")
    assert mode(tmp_path / "folder") == 0o775 and mode(tmp_path / "folder" / "inside") == 0o664
    with pytest.raises(RuntimeError):
        with fs.staged_file(tmp_path / "c.bin") as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError
    with pytest.raises(RuntimeError):
        with fs.staged_folder(tmp_path / "d") as tmp:
            raise RuntimeError
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "b.bin", "folder"]


def test_everything_distilframe_writes_gets_the_umask_permissions(tmp_path, umask_002, monkeypatch, bos):
    monkeypatch.setenv("DISTILFRAME_HOME", str(tmp_path / "home"))  # a fresh cache: all of it is written here
    hub_root = tmp_path / "hub"
    write_hf_checkpoint(hub_root / "someone/tiny", seed=81)
    hub, server = HubServer(hub_root), StaticServer(bos)
    monkeypatch.setenv("DISTILFRAME_HF_ENDPOINT", hub.url)
    monkeypatch.setenv("DISTILFRAME_ENDPOINT", server.url)
    try:
        df = pd.DataFrame({"id": [1, 2], "text": ["a good film", "a bad film"]})
        embedded = df.distil.embed("text", model="hf:someone/tiny")  # download, conversion, export, cache
        df.distil.classify("text", model=TINY_SST2)  # a PaddleNLP download, with its generated config
    finally:
        hub.close()
        server.close()
    df.to_csv(tmp_path / "in.csv", index=False)
    written = [
        embedded.distil.to_parquet(tmp_path / "df.parquet"),
        distilframe.embed_file(tmp_path / "in.csv", tmp_path / "out.parquet", column="text", model="hf:someone/tiny"),
        distilframe.classify_file(tmp_path / "in.csv", tmp_path / "out.csv", column="text", model=TINY_SST2),
        distilframe.classify_file(tmp_path / "in.csv", tmp_path / "out.xlsx", column="text", model=TINY_SST2),
    ]
    home = tmp_path / "home"
    files = [Path(getattr(w, "output", w)) for w in written]
    files += [p for p in home.rglob("*") if p.is_file() and ".locks" not in p.parts]
    folders = [p for p in home.rglob("*") if p.is_dir() and ".locks" not in p.parts]
    assert any("converted" in p.parts for p in files) and any("compiled" in p.parts for p in files)
    assert any(p.name == "model.safetensors" for p in files) and any(p.name == "config.json" for p in files)
    wrong = [f"{p.relative_to(tmp_path)} {oct(mode(p))}" for p in files if mode(p) != 0o664]
    wrong += [f"{p.relative_to(tmp_path)}/ {oct(mode(p))}" for p in folders if mode(p) != 0o775]
    assert wrong == []


def test_memoized_values_last_until_a_file_under_their_folders_changes(tmp_path):
    folder = tmp_path / "ckpt"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.txt").write_text("1")
    (folder / ".git").mkdir()
    calls = []

    def compute():
        calls.append(1)
        return (folder / "a.txt").read_text() + str(len(calls)), [folder]

    assert fs.memoized(("t", folder), compute) == "11"
    assert fs.memoized(("t", folder), compute) == "11" and len(calls) == 1
    (folder / ".git" / "index").write_text("x")  # hidden folders do not count
    assert fs.memoized(("t", folder), compute) == "11"
    (folder / "sub" / "b.txt").write_text("2")  # a file added anywhere below
    assert fs.memoized(("t", folder), compute) == "12"
    (folder / "a.txt").write_text("33")  # a file rewritten
    assert fs.memoized(("t", folder), compute) == "333"
    (folder / "sub" / "b.txt").unlink()  # a file removed
    assert fs.memoized(("t", folder), compute) == "334"
    with pytest.raises(ZeroDivisionError):  # an error is not remembered
        fs.memoized(("u", folder), lambda: 1 / 0)
    assert fs.memoized(("u", folder), lambda: (5, [folder])) == 5
