"""An on-disk cache of results, so that the same embedding is never computed twice.

Why SQLite: it ships with Python, a single file holds millions of small rows, and in WAL
mode several processes (a notebook, an ETL job, Dask workers) read and write it at once
safely: readers never block the writer and never see a half-written row; writers queue
behind a busy timeout. One row per (settings, text):

    results(key BLOB PRIMARY KEY, value BLOB, n_tokens INTEGER, size INTEGER, used REAL)

``key`` is a 16-byte BLAKE2 digest of the settings and the text. The settings are
everything that determines a result: the checkpoint's content hash, the task, pooling,
normalize, max_length, long-text mode and stride, and the precision (a joblib hash of
them, computed once per call). A changed checkpoint has another content hash, so its old
results are never reused. ``value`` holds the float32 result; ``used`` the last time it
was read or written.

Size cap: ``DISTILFRAME_CACHE_SIZE`` (default 1 GiB), counting each row's value plus a
fixed per-row overhead, so that it bounds the file on disk (approximately). Writing past
it evicts the least recently used rows down to 90% of the cap. A running total is kept
by triggers, so the check costs one read.

The cache only ever speeds work up: when it cannot be used (a read-only or full disk, a
damaged file, a lock held too long), a CacheWarning says so once and the work runs
without it. Note that SQLite's WAL mode needs a local file system, not NFS.

On by default: a hit costs microseconds, a miss about 2 ms of model time per row (bf16,
2 cores), and notebooks and nightly jobs mostly see rows they have seen before.
``cache=False`` on any API skips it; ``distilframe cache info`` / ``cache clear``.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from . import _config as config

__all__ = ["ResultCache", "default_cache", "settings_key"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS results (key BLOB PRIMARY KEY, value BLOB NOT NULL, n_tokens INTEGER NOT NULL,
                                    size INTEGER NOT NULL, used REAL NOT NULL) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS results_used ON results(used);
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT OR IGNORE INTO meta VALUES ('bytes', 0);
CREATE TRIGGER IF NOT EXISTS results_add AFTER INSERT ON results
    BEGIN UPDATE meta SET value = value + new.size WHERE name = 'bytes'; END;
CREATE TRIGGER IF NOT EXISTS results_remove AFTER DELETE ON results
    BEGIN UPDATE meta SET value = value - old.size WHERE name = 'bytes'; END;
"""
_BATCH = 500  # SQLite's variable limit is 999 on old builds
ROW_OVERHEAD = 96  # bytes a row takes besides its value: key, columns, the two indexes (measured ~90)


def settings_key(**settings: Any) -> bytes:
    """A stable digest of the settings that determine a result (joblib's hash of them)."""
    import joblib

    return bytes.fromhex(joblib.hash(settings, hash_name="sha1"))


class ResultCache:
    """Results by (settings, text), in one SQLite file shared by every process.

    Parameters
    ----------
    path
        The database file (default ``<DISTILFRAME_HOME>/results.sqlite``).
    max_bytes
        Size cap of the stored values (default ``DISTILFRAME_CACHE_SIZE``, 1 GiB).
    """

    def __init__(self, path: str | Path | None = None, max_bytes: int | None = None) -> None:
        self.path = Path(path) if path is not None else config.home() / "results.sqlite"
        self._max_bytes = max_bytes
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._broken = False

    @property
    def max_bytes(self) -> int:
        return self._max_bytes if self._max_bytes is not None else config.cache_size()

    def _failed(self, e: BaseException) -> None:
        """The cache is a speed-up: when it cannot be used (read-only or full disk, a damaged file, a lock
        held too long), say so once and let the work run without it."""
        from .errors import CacheWarning, warn

        if not self._broken:
            self._broken = True
            warn(f"The result cache {self.path} cannot be used ({type(e).__name__}: {e}); running without it. "
                 "`distilframe cache clear` removes a damaged cache file.", CacheWarning)

    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # SQLite creates its file 0644 whatever the umask; made here first, it gets what the umask allows
            # (a group-shared cache stays writable by the group), and the -wal and -shm files follow it.
            os.close(os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o666))
            conn = sqlite3.connect(self.path, timeout=60, check_same_thread=False, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable at checkpoints, never corrupt
            conn.executescript(_SCHEMA)
            self._conn = conn
        return self._conn

    @staticmethod
    def keys(settings: bytes, texts: Sequence[str]) -> list[bytes]:
        return [hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16, key=settings[:64]).digest()
                for text in texts]

    def get(self, keys: Sequence[bytes], width: int) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """(found mask, values (n, width) float32, n_tokens) for ``keys``, marking the hits as used;
        None when the cache cannot be used."""
        if self._broken:
            return None
        try:
            return self._get(keys, width)
        except (sqlite3.Error, OSError) as e:
            self._failed(e)
            return None

    def _get(self, keys: Sequence[bytes], width: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        found = np.zeros(len(keys), dtype=bool)
        values = np.empty((len(keys), width), dtype=np.float32)
        n_tokens = np.zeros(len(keys), dtype=np.int64)
        if not keys:
            return found, values, n_tokens
        where = {k: i for i, k in enumerate(keys)}
        now = time.time()
        with self._lock:
            db = self._db()
            for start in range(0, len(keys), _BATCH):
                part = list(keys[start:start + _BATCH])
                marks = ",".join("?" * len(part))
                rows = db.execute(f"SELECT key, value, n_tokens FROM results WHERE key IN ({marks})", part).fetchall()
                for key, value, tokens in rows:
                    vector = np.frombuffer(value, dtype=np.float32)
                    if len(vector) != width:
                        continue  # cannot happen with the same settings; never trust a row blindly
                    i = where[key]
                    found[i], values[i], n_tokens[i] = True, vector, tokens
                if rows:
                    db.execute(f"UPDATE results SET used = ? WHERE key IN ({','.join('?' * len(rows))})",
                               [now, *(r[0] for r in rows)])
        return found, values, n_tokens

    def put(self, keys: Sequence[bytes], values: np.ndarray, n_tokens: np.ndarray) -> None:
        """Store results (rows of ``values``), then evict the least recently used past the size cap."""
        if not len(keys) or self._broken:
            return
        try:
            self._put(keys, values, n_tokens)
        except (sqlite3.Error, OSError) as e:
            self._failed(e)

    def _put(self, keys: Sequence[bytes], values: np.ndarray, n_tokens: np.ndarray) -> None:
        now = time.time()
        values = np.ascontiguousarray(values, dtype=np.float32)
        rows = [(k, values[i].tobytes(), int(n_tokens[i]), values[i].nbytes + ROW_OVERHEAD, now)
                for i, k in enumerate(keys) if not np.isnan(values[i]).any()]
        with self._lock:
            db = self._db()
            db.execute("BEGIN IMMEDIATE")
            try:
                db.executemany("INSERT INTO results VALUES (?, ?, ?, ?, ?) "
                               "ON CONFLICT(key) DO UPDATE SET used = excluded.used", rows)
                total = db.execute("SELECT value FROM meta WHERE name = 'bytes'").fetchone()[0]
                if total > self.max_bytes:
                    self._evict(db, total - int(0.9 * self.max_bytes))
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise

    @staticmethod
    def _evict(db: sqlite3.Connection, excess: int) -> None:
        cursor = db.execute("SELECT key, size FROM results ORDER BY used LIMIT 100000")
        doomed, freed = [], 0
        for key, size in cursor:
            doomed.append((key,))
            freed += size
            if freed >= excess:
                break
        db.executemany("DELETE FROM results WHERE key = ?", doomed)

    def info(self) -> dict[str, Any]:
        """Rows, bytes stored, the cap and the file's path and size on disk."""
        with self._lock:
            db = self._db()
            rows = db.execute("SELECT COUNT(*) FROM results").fetchone()[0]
            stored = db.execute("SELECT value FROM meta WHERE name = 'bytes'").fetchone()[0]
        disk = sum(p.stat().st_size for p in self.path.parent.glob(self.path.name + "*") if p.is_file())
        return {"path": str(self.path), "rows": rows, "bytes": stored, "max_bytes": self.max_bytes, "disk_bytes": disk}

    def clear(self) -> int:
        """Delete every stored result; return how many there were. A damaged cache file is removed."""
        with self._lock:
            try:
                db = self._db()
                rows = db.execute("SELECT COUNT(*) FROM results").fetchone()[0]
                db.execute("DELETE FROM results")
                db.execute("VACUUM")
            except sqlite3.DatabaseError:
                if self._conn is not None:
                    self._conn.close()
                    self._conn = None
                for path in self.path.parent.glob(self.path.name + "*"):
                    path.unlink(missing_ok=True)
                rows = 0
            self._broken = False
        return rows

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None


_default: dict[str, ResultCache] = {}
_default_lock = threading.Lock()


def default_cache() -> ResultCache:
    """The process's cache for the current DISTILFRAME_HOME."""
    path = str(config.home() / "results.sqlite")
    with _default_lock:
        if path not in _default:
            _default[path] = ResultCache(path)
        return _default[path]
