"""The disk idioms, in one place: file locks, atomic files and folders, stale sweeps, SHA-256 and
manifests, and permissions that follow the umask.

Every file distilframe writes (downloads, conversions, exports, result files, parts) goes through
here, so that the rules hold everywhere:

* **atomic**: a file or folder is written under a temporary name beside its target and renamed
  into place when complete; readers see nothing or the whole thing;
* **shareable**: what is written gets the permissions the umask gives (``mkstemp`` and ``mkdtemp``
  make 0600 files and 0700 folders, which other users of a shared cache or ETL folder cannot read);
* **locked**: work that two processes must not do at once (a download, a conversion, an export)
  holds a file lock in ``<DISTILFRAME_HOME>/.locks``;
* **verified**: a manifest (``distilframe_manifest.json``) records the size and SHA-256 of the files
  written into a cache folder; sizes are checked on every use, hashes once per file version (kept
  across processes while a file's times stay as they were, :func:`_recall`), so a truncated or
  rewritten file is found before Paddle reads garbage from it;
* **swept**: temporary folders and files left by killed processes are removed after a day, hash records
  unused for 30 days after that long.

:func:`digest` is the one content hash: of a checkpoint's files (its identity in the result cache
and the export cache) and of a conversion's source. :func:`memoized` keeps what was read from a
folder for as long as its files stay as they are (:func:`tree_stamp`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, TypeVar

from . import _config as config

__all__ = ["MANIFEST", "STALE_SECONDS", "atomic_write", "build_once", "damaged", "digest", "file_lock", "memoized",
           "read_json", "sha256", "shareable", "staged_file", "staged_folder", "sweep_stale", "tree_stamp", "umask",
           "write_manifest"]

MANIFEST = "distilframe_manifest.json"
STALE_SECONDS = 24 * 3600  # a temporary folder older than this belongs to a process that was killed
_BLOCK = 1 << 20

_digests: OrderedDict[str, tuple[list, str]] = OrderedDict()
_pruned = False
_digest_lock = threading.Lock()
_memos: OrderedDict[tuple, tuple[Any, tuple[Path, ...], tuple]] = OrderedDict()
_staging: set[Path] = set()  # the folders staged_folder is filling now: this process's alone until renamed
T = TypeVar("T")


def umask() -> int:
    """The process's umask, read from /proc without changing it (setting it to read it back would, for a
    moment, give files other threads create meanwhile the wrong permissions); elsewhere read by setting it."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    with _umask_lock:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


_umask_lock = threading.Lock()


def shareable(path: Path) -> None:
    """Give a file (0666) or a folder (0777) the permissions the umask allows."""
    os.chmod(path, (0o777 if path.is_dir() else 0o666) & ~umask())


def sha256(path: Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB blocks; recalled instead while the file is as it was hashed
    (:func:`_recall`)."""
    return _hashed(("sha256",), [Path(path)], b"", names=False)


def digest(files: Iterable[Path], extra: bytes = b"", *, names: bool = True) -> str:
    """SHA-256 (hex) of the names (unless ``names=False``) and contents of ``files``, in order, then
    ``extra``: a content hash.

    Memoized per process, and recalled in later ones, while every file is as it was hashed (:func:`_recall`):
    a repeated call costs an ``open`` and ``fstat`` per file; a file changed on disk is hashed again."""
    return _hashed(("digest", names, hashlib.sha256(extra).hexdigest()), [Path(f) for f in files], extra,
                   names=names)


def _hashed(kind: tuple, files: list[Path], extra: bytes, *, names: bool, own: bool = False) -> str:
    stats = [_stat(f) for f in files]  # raises FileNotFoundError for a missing file, as reading it would
    read_at = time.time_ns()
    key = [*kind, [[f.name if names else "", st.st_dev, st.st_ino] for f, st in zip(files, stats)]]  # JSON as is
    value = _recall(key, stats)
    if value is None:
        h = hashlib.sha256()
        for f in files:
            if names:
                h.update(f.name.encode())
            _hash_file(h, f)
        h.update(extra)
        value = h.hexdigest()
        _remember(key, stats, read_at, files, value, own=own)
    return value


def _hash_file(h: Any, path: Path) -> None:
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(_BLOCK), b""):
            h.update(block)


def _stat(path: Path) -> os.stat_result:
    """A file's status through an open descriptor: on NFS, opening a file revalidates its cached attributes
    (close-to-open consistency), where a plain ``stat`` may return them seconds old."""
    with open(path, "rb") as f:
        return os.fstat(f.fileno())


# A hash is recalled, in this process or a later one, while each file it read has the same size, modification
# and change times, inode and device as when it was read. Writing a file through write() moves its change time
# (ctime), and no tool sets that back (``touch`` and ``os.utime`` set the modification time, and that moves the
# change time too), so a file written again is hashed again. Trusted on these times alone: a write that moves
# no time (to a memory-mapped page already dirty) or a disk's own decay goes unseen, as it would by a size
# check. A process keeps its hashes in memory; later processes of the same user find them in
# ``<home>/.hashes/`` (one small JSON file per hash, named by the files' inodes; another user's are not read),
# and no longer read a model's 250 MB three or four times before the first batch (0.77 s of a 2.0-2.6 s
# start at distilbert-base size). A file written again within one tick of its times keeps them, so a hash is kept only
# when every file it read had been still for a while before it was read (:data:`SETTLED_NS`), and on disk only
# once those files are on disk (fsync): after a power cut a record never vouches for data that was lost. Records
# unused for :data:`RECORD_DAYS` are removed. Not on Windows, where st_ctime is the creation time.
SETTLED_NS = (50_000_000, 2_000_000_000)  # on file systems with sub-second times (jiffies), and on the others
RECORD_DAYS = 30
MEMO_HASHES = 4096  # hashes kept in memory at most: the least recently used go first


def _stamps(stats: list[os.stat_result]) -> list[list[int]]:
    return [[st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev] for st in stats]


def _settled(st: os.stat_result, now_ns: int) -> bool:
    """Whether the file had not changed for a while at ``now_ns`` (a write since would have moved its times);
    a change time ahead of this clock is not."""
    return now_ns - st.st_ctime_ns >= SETTLED_NS[st.st_ctime_ns % 1_000_000_000 == 0]


def _record_path(key: list) -> Path:
    name = hashlib.sha256(json.dumps(key).encode()).hexdigest()[:40]
    return config.home() / ".hashes" / f"{name}.json"


def _recall(key: list, stats: list[os.stat_result]) -> str | None:
    """The hash remembered for ``key`` (JSON) while its files have these ``stats``, or None."""
    stamps = _stamps(stats)
    memo = json.dumps(key)
    with _digest_lock:
        if memo in _digests and _digests[memo][0] == stamps:
            _digests.move_to_end(memo)
            return _digests[memo][1]
    if os.name == "nt":
        return None
    path = _record_path(key)
    try:
        with open(path, "rb") as f:
            if os.fstat(f.fileno()).st_uid != os.geteuid():
                return None  # another user's, in a shared home: not trusted
            record = json.loads(f.read())
    except (OSError, ValueError, RecursionError):
        return None
    if not isinstance(record, dict) or record.get("key") != key or record.get("stamps") != stamps:
        return None
    value = record.get("value")
    if not isinstance(value, str):
        return None
    _memo(memo, stamps, value)
    with contextlib.suppress(OSError):
        os.utime(path)  # in use: not removed as unused
    return value


def _memo(memo: str, stamps: list, value: str) -> None:
    with _digest_lock:
        _digests[memo] = (stamps, value)
        _digests.move_to_end(memo)
        while len(_digests) > MEMO_HASHES:
            _digests.popitem(last=False)


def _remember(key: list, stats: list[os.stat_result], read_at: int, files: list[Path], value: str, *,
              own: bool = False) -> None:
    """Keep ``value``, the hash for ``key`` of ``files`` that had ``stats`` when their reading began (at
    ``read_at``, ns), if each had been still before (:func:`_settled`), or is ``own`` (this process wrote it,
    in a folder it is staging, and is done writing it), and none changed meanwhile."""
    if not own and not all(_settled(st, read_at) for st in stats):
        return
    try:
        after = []
        for f in files:
            with open(f, "rb") as handle:
                after.append(os.fstat(handle.fileno()))
                if os.name != "nt":
                    os.fsync(handle.fileno())  # on disk before a record says what it holds
    except OSError:
        return
    stamps = _stamps(stats)
    if _stamps(after) != stamps:
        return  # written while it was read: the value may be of neither version
    _memo(json.dumps(key), stamps, value)
    if os.name == "nt":
        return
    path = _record_path(key)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, json.dumps({"key": key, "stamps": stamps, "value": value}))
        _prune(path.parent)
    except OSError:
        pass  # a read-only or full cache: hashed again next time


def _prune(records: Path) -> None:
    """Remove the records unused for RECORD_DAYS (of deleted or rewritten files), once per process."""
    global _pruned
    if _pruned:
        return
    _pruned = True
    sweep_stale(records, "*.json", RECORD_DAYS * 86400, files=True)
    sweep_stale(records, ".*.tmp", STALE_SECONDS, files=True)  # left by a process killed while writing one


def tree_stamp(folders: Iterable[Path]) -> tuple:
    """The path, size, modification and change times and inode of every file under ``folders`` (not under
    hidden folders such as ``.git``): it changes when a file there is written, replaced, added or removed."""
    out = []
    for folder in folders:
        for root, dirs, files in os.walk(folder):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            for name in sorted(files):
                try:
                    st = os.stat(os.path.join(root, name))
                except OSError:
                    continue
                out.append((root, name, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino))
        out.append((str(folder),))  # a folder that is missing or empty still counts
    return tuple(out)


MEMOS = 64  # values memoized at most: the least recently used go first


def memoized(key: tuple, inputs: Iterable[Path], compute: Callable[[], tuple[T, Iterable[Path]]]) -> T:
    """``compute()``'s value, remembered in this process under ``key`` until a file changes under ``inputs``
    (the folders it reads) or under the folders ``compute`` returns with its value (those it wrote), as
    :func:`tree_stamp` sees them, taken again on every call.

    The inputs are stamped before ``compute`` runs, so a file changed meanwhile is read again on the next call.
    It spares a warm call re-reading a checkpoint's vocabulary and settings (9 ms for distilbert-base). A
    warning ``compute`` gives is given once per version of the files; an error is not remembered."""
    inputs = tuple(inputs)
    with _digest_lock:
        entry = _memos.get(key)
        if entry is not None:
            _memos.move_to_end(key)
    if entry is not None and tree_stamp(entry[1]) == entry[2]:
        return entry[0]
    before = tree_stamp(inputs)
    value, outputs = compute()
    folders = inputs + tuple(outputs)
    with _digest_lock:
        _memos[key] = (value, folders, before + tree_stamp(tuple(outputs)))
        _memos.move_to_end(key)
        while len(_memos) > MEMOS:
            _memos.popitem(last=False)
    return value


def read_json(path: Path) -> dict | None:
    """A JSON object from ``path``, or None when it is missing, unreadable or not an object."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):  # RecursionError: brackets nested too deep
        return None
    return data if isinstance(data, dict) else None


def atomic_write(path: Path, data: str | bytes) -> None:
    """Write ``data`` to ``path`` under a temporary name, then rename it into place (umask permissions)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode("utf-8") if isinstance(data, str) else data)
        shareable(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def staged_file(target: Path) -> Iterator[Path]:
    """A temporary path beside ``target`` for a writer that takes a path (Parquet, CSV, xlsx); when the
    block succeeds the file is given umask permissions and renamed to ``target``. On failure it is removed."""
    fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        shareable(tmp)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def staged_folder(target: Path, *, complete: Callable[[Path], bool] | None = None) -> Iterator[Path]:
    """A new temporary folder beside ``target``; when the block succeeds it is renamed to ``target``.

    The rename is atomic: readers see no folder or a complete one. An empty folder at ``target``
    is replaced. If another process put a folder there meanwhile and ``complete(target)`` says it is
    whole, that one is kept and this one dropped. On failure the temporary folder is removed.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    _staging.add(tmp)
    try:
        yield tmp
        shareable(tmp)
        if target.is_dir() and not any(target.iterdir()):
            target.rmdir()
        try:
            os.replace(tmp, target)
        except OSError:
            if complete is None or not complete(target):
                raise
    finally:
        _staging.discard(tmp)
        shutil.rmtree(tmp, ignore_errors=True)


def build_once(target: Path, complete: Callable[[Path], bool], build: Callable[[Path], None]) -> Path:
    """``target``, a cache folder that ``build(tmp)`` fills, built unless ``complete(target)``: one process
    builds it (the lock ``<parent>-<name>``) while the others wait and then reuse it; a damaged or partial
    folder is built again; the files get a manifest (so later damage is seen); stale temporary folders
    beside it are swept. The folder appears whole or not at all (:func:`staged_folder`)."""
    if complete(target):
        return target
    with file_lock(f"{target.parent.name}-{target.name}"):
        if complete(target):  # another process built it meanwhile
            return target
        if target.exists():  # damaged, or an interrupted copy: build it again
            shutil.rmtree(target, ignore_errors=True)
        sweep_stale(target.parent, ".*")
        with staged_folder(target) as tmp:
            build(tmp)
            write_manifest(tmp, [p.name for p in sorted(tmp.iterdir())])
    return target


@contextlib.contextmanager
def file_lock(name: str) -> Iterator[None]:
    """Hold the lock ``name`` (``<DISTILFRAME_HOME>/.locks/<name>.lock``), shared by every process."""
    from filelock import FileLock

    locks = config.home() / ".locks"
    locks.mkdir(parents=True, exist_ok=True)
    with FileLock(str(locks / (name.replace("/", "--") + ".lock"))):
        yield


class Busy(Exception):
    """``exclusive``: another process holds the lock; ``owner`` is what it wrote into the lock file."""

    def __init__(self, owner: str) -> None:
        super().__init__(owner)
        self.owner = owner


@contextlib.contextmanager
def exclusive(path: Path, owner: str) -> Iterator[None]:
    """Hold the lock file ``path`` without waiting, or raise Busy with what its holder wrote into it
    (``owner``: who and what, for the error). The lock is the kernel's (flock): a killed holder releases
    it. The file is removed on release; a process that opened it just before then finds it replaced and
    tries again, so two holders never both believe they have it."""
    try:
        import fcntl
    except ImportError:  # Windows: filelock's lock, and the file stays
        from filelock import FileLock, Timeout

        lock = FileLock(str(path), timeout=0)
        try:
            lock.acquire()
        except Timeout:
            raise Busy("") from None
        try:
            yield
        finally:
            lock.release()
        return
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666 & ~umask())
        except PermissionError as denied:  # left by another user's killed job: flock works on a read-only descriptor
            try:
                fd = os.open(path, os.O_RDONLY)
            except FileNotFoundError:  # no such lock: the folder itself is not writable
                raise denied from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            try:
                other = os.read(fd, 4096).decode("utf-8", "replace").strip()
            finally:
                os.close(fd)
            raise Busy(other) from None
        try:
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    try:
        with contextlib.suppress(OSError):  # who holds it, for the error of a second job
            os.ftruncate(fd, 0)
            os.write(fd, owner.encode("utf-8"))
        yield
    finally:
        with contextlib.suppress(OSError):
            os.unlink(path)
        os.close(fd)


def sweep_stale(parent: Path, pattern: str, max_age: float = STALE_SECONDS, *, files: bool = False) -> None:
    """Remove the folders (with ``files``, the files) in ``parent`` matching ``pattern`` older than ``max_age``
    seconds (left by processes that were killed)."""
    now = time.time()
    for old in parent.glob(pattern):
        try:
            if now - old.stat().st_mtime <= max_age:
                continue
            if files and old.is_file():
                old.unlink()
            elif not files and old.is_dir():
                shutil.rmtree(old, ignore_errors=True)
        except OSError:
            pass


def write_manifest(folder: Path, names: Iterable[str]) -> None:
    """Record the size and SHA-256 of ``names`` in ``folder``'s manifest (added to what it holds).

    In a folder :func:`staged_folder` is filling, whose files were all just written by this process, the
    hashes are kept for later processes at once: no other process writes there (a 0700 folder of a
    temporary name), and this one is done with them, so the rule that a file must have been still for a
    while before its hash is kept (:func:`_settled`) has nothing to guard against. (Without this the first
    process to use a new export or conversion read its 250 MB of weights again: 0.33 s of a 1.9 s start.)"""
    manifest = read_json(folder / MANIFEST) or {}
    own = Path(folder) in _staging
    for name in names:
        path = Path(folder) / name
        manifest[name] = {"size": path.stat().st_size,
                          "sha256": _hashed(("sha256",), [path], b"", names=False, own=own)}
    atomic_write(folder / MANIFEST, json.dumps(manifest, indent=1))


def damaged(folder: Path) -> list[str]:
    """Files of ``folder``'s manifest whose size or hash has changed (missing files are not listed)."""
    bad = []
    for name, record in (read_json(folder / MANIFEST) or {}).items():
        path = folder / name
        if not path.is_file():
            continue
        if path.stat().st_size != record.get("size") or sha256(path) != record.get("sha256"):
            bad.append(name)
    return bad
