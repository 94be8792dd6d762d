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
    folder, made = tmp_path / "ckpt", tmp_path / "made"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.txt").write_text("1")
    (folder / ".git").mkdir()
    calls = []

    def compute():
        calls.append(1)
        made.mkdir(exist_ok=True)
        (made / "out.txt").write_text("x")
        return (folder / "a.txt").read_text() + str(len(calls)), [made]

    def value():
        return fs.memoized(("t", folder), [folder], compute)

    assert value() == "11"
    assert value() == "11" and len(calls) == 1
    (folder / ".git" / "index").write_text("x")  # hidden folders do not count
    assert value() == "11"
    (folder / "sub" / "b.txt").write_text("2")  # a file added anywhere below
    assert value() == "12"
    before = (folder / "a.txt").stat()
    (folder / "a.txt").write_text("3")  # rewritten, same size (a coarse file-system clock may keep the times)
    os.utime(folder / "a.txt", ns=(before.st_atime_ns, before.st_mtime_ns + 10**6))
    assert value() == "33"
    replacement = tmp_path / "new.txt"
    replacement.write_text("4")
    os.utime(replacement, ns=((folder / "a.txt").stat().st_atime_ns, (folder / "a.txt").stat().st_mtime_ns))
    os.replace(replacement, folder / "a.txt")  # replaced by a file of the same size and modification time
    assert value() == "44"
    (folder / "sub" / "b.txt").unlink()  # a file removed
    assert value() == "45"
    (made / "out.txt").unlink()  # what compute wrote, removed: computed again
    assert value() == "46" and (made / "out.txt").is_file()
    with pytest.raises(ZeroDivisionError):  # an error is not remembered
        fs.memoized(("u", folder), [folder], lambda: 1 / 0)
    assert fs.memoized(("u", folder), [folder], lambda: (5, [])) == 5


def test_a_file_changed_while_a_value_is_computed_is_read_again(tmp_path):
    (tmp_path / "a.txt").write_text("old")

    def compute():
        value = (tmp_path / "a.txt").read_text()
        (tmp_path / "a.txt").write_text("new")  # changed after it was read: what another process may do
        return value, []

    assert fs.memoized(("race", tmp_path), [tmp_path], compute) == "old"
    assert fs.memoized(("race", tmp_path), [tmp_path], lambda: ((tmp_path / "a.txt").read_text(), [])) == "new"


def test_memoized_values_are_bounded(tmp_path, monkeypatch):
    monkeypatch.setattr(fs, "MEMOS", 3)
    for i in range(5):
        fs.memoized(("bound", i), [tmp_path], lambda: (i, []))
    assert len([k for k in fs._memos if k[0] == "bound"]) <= 3
    assert fs.memoized(("bound", 0), [tmp_path], lambda: ("again", [])) == "again"  # the oldest went first
