"""An on-disk cache of results, so that the same embedding is never computed twice.

Why SQLite: it ships with Python, a single file holds millions of small rows, and in WAL
mode several processes (a notebook, an ETL job, Dask workers) read and write it at once
safely: readers never block the writer and never see a half-written row; writers queue
behind a busy timeout. One row per (settings, text):

    results(key BLOB PRIMARY KEY, value BLOB, n_tokens INTEGER, size INTEGER, used REAL, mac BLOB)

``key`` is a 16-byte BLAKE2 digest of the settings and the text. The settings are
everything that determines a result: the checkpoint's content hash, the task, pooling,
normalize, max_length, long-text mode and stride, and the precision (a joblib hash of
them, computed once per call). A changed checkpoint has another content hash, so its old
results are never reused. ``value`` holds the float32 result; ``used`` the last time it
was read or written.

Trust: ``mac`` is a keyed BLAKE2 digest of the key, the value and the token count, under a secret of
the user's own (``~/.config/distilframe/cache-secret``, created 0600; ``DISTILFRAME_CACHE_SECRET``
names another file, for a team that shares a cache and the secret). A row whose digest does not
match was not written by this user's distilframe for this key (another user of a shared folder, an
edited file): it is a miss, computed again and overwritten. So a writable shared cache cannot serve
forged vectors; what another user can still do is delete rows or the file (more work, never wrong
results).

Size cap: ``DISTILFRAME_CACHE_SIZE`` (default 1 GiB) is meant for the file on disk, log included. The
rows' counted bytes (value and a measured per-row overhead) may use 80% of it; past that the least
recently used rows are evicted down to 72%. The rest is for the pages' slack and the write-ahead log
(checkpointed and truncated at a sixteenth of the cap, 16 MB at most). When evictions leave pages so
empty that file and log would pass the cap, the file is rewritten (VACUUM). 64 KiB pages keep a row
(1.5 KB for 384 floats, 3 KB for 768) inside its page: with SQLite's default 4 KiB pages each row
spilled into an overflow page, and the file was 2.9 times what was counted; a table keyed by rowid (the
key in a unique index) fills its pages in insertion order, where a random-key B-tree left a third of each
page empty. Rows go in in transactions of about a quarter of the log, each evicting what passes the cap, and a
call keeps at most its last rows that eviction leaves: one transaction of a whole call grew the file
to hold every row before eviction freed them (38.9 MB on disk at a 4 MB cap after one call of 6,000 rows
of 768 floats; 3.9 MB now). Measured (tests/test_cache.py): 36 MB on disk at a 32 MB cap, 58 MB at 64 MB.

The cache only ever speeds work up: when it cannot be used (a read-only or full disk, a
damaged file, a lock held too long), a CacheWarning says so once and the work runs
without it. Note that SQLite's WAL mode needs a local file system, not NFS.

On by default: a hit costs microseconds, a miss about 2 ms of model time per row (bf16,
2 cores), and notebooks and nightly jobs mostly see rows they have seen before.
``cache=False`` on any API skips it; ``distilframe cache info`` / ``cache clear``.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from . import _config as config

__all__ = ["ResultCache", "default_cache", "settings_key"]

SCHEMA_VERSION = 2  # 2: the mac column, 64 KiB pages. An older file is emptied (it is only a cache).
_SCHEMA = """
CREATE TABLE IF NOT EXISTS results (key BLOB NOT NULL UNIQUE, value BLOB NOT NULL, n_tokens INTEGER NOT NULL,
                                    size INTEGER NOT NULL, used REAL NOT NULL, mac BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS results_used ON results(used);
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT OR IGNORE INTO meta VALUES ('bytes', 0);
CREATE TRIGGER IF NOT EXISTS results_add AFTER INSERT ON results
    BEGIN UPDATE meta SET value = value + new.size WHERE name = 'bytes'; END;
CREATE TRIGGER IF NOT EXISTS results_remove AFTER DELETE ON results
    BEGIN UPDATE meta SET value = value - old.size WHERE name = 'bytes'; END;
CREATE TRIGGER IF NOT EXISTS results_change AFTER UPDATE OF size ON results
    BEGIN UPDATE meta SET value = value - old.size + new.size WHERE name = 'bytes'; END;
"""
_BATCH = 500  # SQLite's variable limit is 999 on old builds
ROW_OVERHEAD = 112  # bytes a row takes besides its value: key, mac, columns, the two indexes
PAGE_SIZE = 1 << 16
WAL_BYTES = 16 << 20  # at most; a sixteenth of the cap for small caps
BUSY_TIMEOUT_MS = 60_000  # a writer waits this long for another
ROWS_SHARE = 0.8  # of the cap, for the rows' counted bytes: the rest is the pages' slack and the log


def _secret() -> bytes:
    """The user's own key for the rows' digests (see Trust above), made on first use."""
    named = os.environ.get("DISTILFRAME_CACHE_SECRET")
    path = Path(named).expanduser() if named else Path.home() / ".config" / "distilframe" / "cache-secret"
    if not path.exists():
        import tempfile

        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".cache-secret.")  # 0600
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(os.urandom(32))
            try:
                os.link(tmp, path)  # appears whole, once: another process's link wins and is used
            except FileExistsError:
                pass
        finally:
            os.unlink(tmp)
    data = path.read_bytes()
    if len(data) < 16:
        raise OSError(f"{path} holds {len(data)} bytes; a cache secret is at least 16: delete it to make a new one")
    return data[:64]


def _mac(secret: bytes, key: bytes, value: bytes, n_tokens: int) -> bytes:
    return hashlib.blake2b(key + value + n_tokens.to_bytes(8, "little", signed=True), digest_size=16,
                           key=secret).digest()


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
        self._secret: bytes | None = None
        self._compact = False

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
                 f"{self.advice(e)}", CacheWarning)

    def advice(self, e: BaseException) -> str:
        """What to do about an error of the cache file: depends on what it is."""
        import errno

        text = str(e).lower()
        if self.path.is_dir():
            return f"{self.path} is a folder, not a cache file: move it away, or set DISTILFRAME_HOME elsewhere."
        if getattr(e, "errno", None) in (errno.EROFS, errno.EACCES, errno.EPERM) or "readonly" in text or \
                "read-only" in text or "unable to open" in text:
            return ("The folder is not writable: point DISTILFRAME_HOME at a writable folder, or pass "
                    "cache=False (--no-cache).")
        if isinstance(e, sqlite3.DatabaseError) and ("not a database" in text or "malformed" in text):
            return "The file is damaged: `distilframe cache clear` removes it."
        return "Pass cache=False (--no-cache) to skip it."

    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # SQLite creates its file 0644 whatever the umask; made here first, it gets what the umask allows
            # (a group-shared cache stays writable by the group), and the -wal and -shm files follow it.
            os.close(os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o666))
            self._secret = _secret()
            conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000, check_same_thread=False,
                                   isolation_level=None)
            try:
                if conn.execute("PRAGMA user_version").fetchone()[0] != SCHEMA_VERSION:
                    self._create(conn)
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable at checkpoints, never corrupt
                conn.execute(f"PRAGMA wal_autocheckpoint={max(1, self._wal_bytes() // PAGE_SIZE)}")
                conn.execute(f"PRAGMA journal_size_limit={self._wal_bytes()}")
            except BaseException:
                conn.close()
                raise
            self._conn = conn
        return self._conn

    @staticmethod
    def _create(conn: sqlite3.Connection) -> None:
        """A new file (given 64 KiB pages), or one of an older layout (emptied; it keeps its page size),
        given the schema: in one transaction, so that processes starting at once do it once."""
        if conn.execute("PRAGMA page_count").fetchone()[0] == 0:
            conn.execute(f"PRAGMA page_size={PAGE_SIZE}")  # takes effect for a file with no page yet
        try:
            conn.execute("BEGIN IMMEDIATE")
            if conn.execute("PRAGMA user_version").fetchone()[0] != SCHEMA_VERSION:  # else another process did it
                for kind, name in conn.execute("SELECT type, name FROM sqlite_master WHERE type IN ('table', "
                                               "'trigger') AND name NOT LIKE 'sqlite_%'").fetchall():
                    conn.execute(f"DROP {kind} IF EXISTS {name}")
                for statement in _SCHEMA.split(";\n"):
                    if statement.strip():
                        conn.execute(statement)
                conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            conn.execute("COMMIT")
        except BaseException:
            _rollback(conn)
            raise

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
                rows = db.execute(f"SELECT key, value, n_tokens, mac FROM results WHERE key IN ({marks})",
                                  part).fetchall()
                trusted = []
                for key, value, tokens, mac in rows:
                    if not (type(value) is bytes and len(value) == 4 * width and type(tokens) is int
                            and -2**63 <= tokens < 2**63 and type(mac) is bytes
                            and hmac.compare_digest(mac, _mac(self._secret, key, value, tokens))):
                        continue  # not written by this user's distilframe for this key: a miss
                    vector = np.frombuffer(value, dtype=np.float32)
                    trusted.append((key,))
                    i = where[key]
                    found[i], values[i], n_tokens[i] = True, vector, tokens
                if trusted:
                    db.execute(f"UPDATE results SET used = ? WHERE key IN ({','.join('?' * len(trusted))})",
                               [now, *(r[0] for r in trusted)])
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
        with self._lock:
            db = self._db()
            rows = []
            for i, k in enumerate(keys):
                if not np.isnan(values[i]).any():
                    value = values[i].tobytes()
                    rows.append((k, value, int(n_tokens[i]), len(value) + ROW_OVERHEAD, now,
                                 _mac(self._secret, k, value, int(n_tokens[i]))))
            # A call keeps at most its last rows that eviction leaves (all are used at once: which go is
            # arbitrary, and a row written then evicted is work lost); they go in in
            # transactions of about a quarter of the log's size (each also rewrites the 64 KiB pages of the rows
            # it evicts and of both indexes), each evicting what passes the cap, so that neither the file nor the
            # log grows past it (one transaction of every row grew the file to hold them all before eviction
            # freed its pages: 38.9 MB on disk at a 4 MB cap).
            room, kept = 0.9 * ROWS_SHARE * self.max_bytes, len(rows)
            while kept and room >= rows[kept - 1][3]:
                room -= rows[kept - 1][3]
                kept -= 1
            rows = rows[kept:]
            step = max(1, self._wal_bytes() // (4 * rows[0][3])) if rows else 1
            for start in range(0, len(rows), step):
                try:  # BEGIN inside: a Ctrl-C as it returns must not leave the write lock held
                    db.execute("BEGIN IMMEDIATE")
                    # A row already there is rewritten: the same result, or one that did not pass its digest.
                    db.executemany("INSERT INTO results VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(key) DO UPDATE SET "
                                   "value = excluded.value, n_tokens = excluded.n_tokens, size = excluded.size, "
                                   "used = excluded.used, mac = excluded.mac", rows[start:start + step])
                    self._evict(db)
                    db.execute("COMMIT")
                except BaseException:
                    _rollback(db)
                    raise
                if self._compact:  # evicted rows left pages part-empty: rewrite the file (rare)
                    self._compact = False
                    db.execute("VACUUM")
            wal = self.path.with_name(self.path.name + "-wal")
            if wal.exists() and wal.stat().st_size > self._wal_bytes():  # a VACUUM's, or a transaction's, passed it
                # Truncated now unless another process reads (it would wait for every reader: readers never
                # block a writer); then later, when SQLite next resets the log (journal_size_limit).
                db.execute("PRAGMA busy_timeout=0")
                try:
                    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # busy: it says so in its row, and returns
                finally:
                    db.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")

    def _evict(self, db: sqlite3.Connection) -> None:
        """Past the cap (the rows' counted bytes), delete the least recently used rows down to 90% of it."""
        total = db.execute("SELECT value FROM meta WHERE name = 'bytes'").fetchone()[0]
        if total <= ROWS_SHARE * self.max_bytes:
            return
        excess = total - int(0.9 * ROWS_SHARE * self.max_bytes)
        doomed, freed = [], 0
        for key, size in db.execute("SELECT key, size FROM results ORDER BY used LIMIT 200000"):
            doomed.append((key,))
            freed += size
            if freed >= excess:
                break
        db.executemany("DELETE FROM results WHERE key = ?", doomed)
        self._compact = self._pages_in_use(db) + self._wal_bytes() > self.max_bytes

    def _wal_bytes(self) -> int:
        return min(WAL_BYTES, self.max_bytes // 16)

    @staticmethod
    def _pages_in_use(db: sqlite3.Connection) -> int:
        pages = db.execute("PRAGMA page_count").fetchone()[0] - db.execute("PRAGMA freelist_count").fetchone()[0]
        return pages * db.execute("PRAGMA page_size").fetchone()[0]

    def info(self) -> dict[str, Any]:
        """Rows, bytes stored, the cap and the file's path and size on disk."""
        with self._lock:
            db = self._db()
            rows = db.execute("SELECT COUNT(*) FROM results").fetchone()[0]
            stored = db.execute("SELECT value FROM meta WHERE name = 'bytes'").fetchone()[0]
        disk = sum(p.stat().st_size for p in self.path.parent.glob(self.path.name + "*") if p.is_file())
        return {"path": str(self.path), "rows": rows, "bytes": stored, "max_bytes": self.max_bytes, "disk_bytes": disk}

    def clear(self) -> int | None:
        """Delete every stored result; return how many there were, or None when the file was damaged (it is
        removed, and its rows could not be counted). A read-only file raises (OSError, sqlite3.Error)."""
        with self._lock:
            try:
                db = self._db()
                rows = db.execute("SELECT COUNT(*) FROM results").fetchone()[0]
                db.execute("DELETE FROM results")
                db.execute("VACUUM")
            except sqlite3.DatabaseError as e:
                if "not a database" not in str(e) and "malformed" not in str(e):
                    raise  # read-only, locked, ...: nothing to remove, say why
                if self._conn is not None:
                    self._conn.close()
                    self._conn = None
                for path in self.path.parent.glob(self.path.name + "*"):
                    path.unlink(missing_ok=True)
                rows = None
            self._broken = False
        return rows

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None


def _rollback(db: sqlite3.Connection) -> None:
    """Roll back the transaction an exception interrupted, if one is open (a Ctrl-C as COMMIT returned leaves
    none): the exception, not a "no transaction is active" error, is what the caller sees."""
    if db.in_transaction:
        try:
            db.execute("ROLLBACK")
        except sqlite3.Error:
            pass  # the connection's transaction ends with it


_default: dict[str, ResultCache] = {}
_default_lock = threading.Lock()


def default_cache() -> ResultCache:
    """The process's cache for the current DISTILFRAME_HOME."""
    path = str(config.home() / "results.sqlite")
    with _default_lock:
        if path not in _default:
            _default[path] = ResultCache(path)
        return _default[path]
