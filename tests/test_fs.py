"""The storage module: atomic writes, and permissions that follow the umask everywhere distilframe writes."""

import json
import os
import stat
import time
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


def _reads(monkeypatch):
    """The files _fs hashes from now on."""
    hashed = []
    real = fs._hash_file

    def counting(h, path):
        hashed.append(Path(path).name)
        return real(h, path)

    monkeypatch.setattr(fs, "_hash_file", counting)
    return hashed


def _rewrite(path: Path, data: bytes) -> None:
    """Write ``path`` again, in place, past the tick of its change time (on any file system's granularity)."""
    before = path.stat().st_ctime_ns
    for _ in range(300):
        path.write_bytes(data)
        if path.stat().st_ctime_ns != before:
            return
        time.sleep(0.01)
    raise AssertionError("the change time never moved")


@pytest.fixture
def settled(monkeypatch, tmp_path):
    """Every file counts as settled (the rule itself is tested apart), in a home of this test's own."""
    monkeypatch.setenv("DISTILFRAME_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(fs, "SETTLED_NS", (0, 0))
    monkeypatch.setattr(fs, "_pruned", False)


def test_a_hash_is_recalled_by_a_later_process_until_the_file_is_written_again(tmp_path, monkeypatch, settled):
    weights = tmp_path / "weights.bin"
    weights.write_bytes(b"a" * 5000)
    first = fs.sha256(weights)
    both = fs.digest([weights, tmp_path / "weights.bin"], b"extra")
    hashed = _reads(monkeypatch)
    fs._digests.clear()  # a new process: only the records in <home>/.hashes remain
    assert fs.sha256(weights) == first and fs.digest([weights, weights], b"extra") == both
    assert hashed == []  # recalled, not read
    assert fs.digest([weights, weights], b"other") != both and hashed == ["weights.bin"] * 2  # another hash
    # Written again with the same size and its modification time put back: the change time still moved.
    mtime = weights.stat().st_mtime_ns
    _rewrite(weights, b"b" * 5000)
    os.utime(weights, ns=(mtime, mtime))
    fs._digests.clear()
    assert fs.sha256(weights) != first and fs.digest([weights, weights], b"extra") != both
    records = sorted((tmp_path / "home" / ".hashes").iterdir())
    assert records and all(json.loads(r.read_text())["value"] for r in records)


def test_a_file_just_written_is_hashed_again_and_never_recorded(tmp_path, monkeypatch):
    # Within one tick of a file's times a second write would leave them as they were: such a hash is not kept.
    monkeypatch.setenv("DISTILFRAME_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(fs, "SETTLED_NS", (10 ** 12, 10 ** 12))  # every file was written just now
    hashed = _reads(monkeypatch)
    path = tmp_path / "fresh.bin"
    path.write_bytes(b"x" * 100)
    fs.sha256(path)
    fs.sha256(path)
    assert hashed == ["fresh.bin"] * 2 and not (tmp_path / "home" / ".hashes").exists()
    # The rule: still for 50 ms (2 s where the file system keeps whole seconds), by this clock.
    st = path.stat()
    assert fs._settled(st, st.st_ctime_ns + 10 ** 12) and not fs._settled(st, st.st_ctime_ns - 10 ** 9)
    monkeypatch.setattr(fs, "SETTLED_NS", (50_000_000, 2_000_000_000))
    assert fs._settled(st, st.st_ctime_ns + 60_000_000) == (st.st_ctime_ns % 10 ** 9 != 0)


def test_a_manifest_written_in_a_staged_folder_is_recalled_by_the_next_process(tmp_path, monkeypatch):
    # The files a staged folder holds were all just written by this process, which is done with them: their
    # manifest's hashes are kept at once, so that the next process to use a new export does not read its
    # weights again. Elsewhere a file just written is not trusted (the test above).
    monkeypatch.setenv("DISTILFRAME_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(fs, "SETTLED_NS", (10 ** 12, 10 ** 12))  # every file was written just now
    with fs.staged_folder(tmp_path / "export") as tmp:
        (tmp / "weights.bin").write_bytes(b"w" * 4096)
        fs.write_manifest(tmp, ["weights.bin"])
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "weights.bin").write_bytes(b"w" * 4096)
    fs.write_manifest(plain, ["weights.bin"])
    hashed = _reads(monkeypatch)
    fs._digests.clear()  # a new process
    assert fs.damaged(tmp_path / "export") == [] and hashed == []
    assert fs.damaged(plain) == [] and hashed == ["weights.bin"]
    assert not fs._staging  # the folder is no longer staged once renamed
    _rewrite(tmp_path / "export" / "weights.bin", b"v" * 4096)  # written again later: found
    fs._digests.clear()
    assert fs.damaged(tmp_path / "export") == ["weights.bin"]


def test_a_damaged_file_is_found_though_its_hash_was_recorded(tmp_path, monkeypatch, settled):
    with fs.staged_folder(tmp_path / "cache") as tmp:
        (tmp / "weights.bin").write_bytes(b"w" * 4096)
        fs.write_manifest(tmp, ["weights.bin"])  # recorded by inode: holds after the rename
    hashed = _reads(monkeypatch)
    fs._digests.clear()
    assert fs.damaged(tmp_path / "cache") == [] and hashed == []
    _rewrite(tmp_path / "cache" / "weights.bin", b"v" * 4096)  # same size, other bytes
    assert fs.damaged(tmp_path / "cache") == ["weights.bin"] and hashed == ["weights.bin"]


def test_a_foreign_or_unwritable_hash_record_changes_nothing(tmp_path, monkeypatch, settled):
    path = tmp_path / "weights.bin"
    path.write_bytes(b"q" * 1000)
    good = fs.sha256(path)
    (record,) = (tmp_path / "home" / ".hashes").iterdir()
    real = json.loads(record.read_text())
    forged = {**real, "value": "0" * 64}
    for garbage in ("not json", "[" * 100_000, json.dumps([1, 2]), json.dumps({**forged, "key": ["other"]}),
                    json.dumps({**forged, "stamps": []}), json.dumps({**real, "value": 5})):
        record.write_text(garbage)
        fs._digests.clear()
        assert fs.sha256(path) == good
    record.write_text(json.dumps(forged))
    fs._digests.clear()
    assert fs.sha256(path) == "0" * 64  # the record is trusted as it stands: so only its owner's are
    if os.geteuid() == 0:  # another user's record in a shared home is not read
        os.chown(record, 12345, 12345)
        fs._digests.clear()
        assert fs.sha256(path) == good
    monkeypatch.setenv("DISTILFRAME_HOME", str(tmp_path / "a file"))  # a home that cannot be made: no error
    (tmp_path / "a file").write_text("")
    fs._digests.clear()
    assert fs.sha256(path) == good


def test_unused_hash_records_are_removed(tmp_path, monkeypatch, settled):
    records = tmp_path / "home" / ".hashes"
    records.mkdir(parents=True)
    old, recent = records / "old.json", records / "recent.json"
    for r in (old, recent):
        r.write_text("{}")
    os.utime(old, (time.time() - 40 * 86400,) * 2)  # unused for 40 days: of a file deleted or rewritten since
    left = records / ".x.json.abc.tmp"  # a record's temporary file, left by a process killed while writing it
    left.write_text("{")
    os.utime(left, (time.time() - 2 * 86400,) * 2)
    (tmp_path / "a.bin").write_bytes(b"a")
    fs.sha256(tmp_path / "a.bin")
    assert not old.exists() and not left.exists() and recent.exists() and len(list(records.iterdir())) == 2
