"""The SQLite store (the default): one process, one file (or ``:memory:``).

One connection guarded by a lock serves all threads; WAL mode with ``synchronous=NORMAL``
means a committed write survives a kill -9 of the process. A read outside a transaction while
another thread's transaction holds that connection goes to a read-only one instead (a file's WAL
readers are not blocked by its writer; up to ``READERS`` of them, opened as needed, one read each at a
time): it reads what is committed, without waiting for the transaction (a 2,000-file batch's held a
store's retrieve for 850 ms). ``reading()`` gives the retrieval module the same for its searches. The schema version is
``PRAGMA user_version``. Run events are handed to this process's subscribers in memory;
leases use this process's clock, and are reset at open (one process owns the file's runs).
"""

from __future__ import annotations

import os
import queue
import sqlite3
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

from asstctl.server.store.base import BaseStore, T
from asstctl.server.store.coordination import Coordination, payload_of
from asstctl.server.store.scope import DEFAULT_PROJECT

BUSY_TIMEOUT = 30.0  # seconds
READERS = 4  # read-only connections at most (reads while another thread's transaction runs)
PROJECTS_MIGRATION = f"""
    ALTER TABLE objects ADD COLUMN project TEXT NOT NULL DEFAULT '{DEFAULT_PROJECT}';
    CREATE INDEX objects_project ON objects (project, kind, parent, created_at, seq);
    """

MIGRATIONS = [
    # 1: the document table and whole-file blobs (asstctl 0.1)
    """
    CREATE TABLE IF NOT EXISTS objects (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        kind TEXT NOT NULL,
        parent TEXT NOT NULL DEFAULT '',
        id TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        body TEXT NOT NULL,
        UNIQUE (kind, parent, id)
    );
    CREATE INDEX IF NOT EXISTS objects_list ON objects (kind, parent, created_at, seq);
    CREATE INDEX IF NOT EXISTS objects_id ON objects (kind, id);
    CREATE TABLE IF NOT EXISTS blobs (id TEXT PRIMARY KEY, data BLOB NOT NULL);
    """,
    # 2: streamed blobs (chunks under a write key + an index; whole blobs moved over), the run queue
    """
    CREATE TABLE IF NOT EXISTS blob_chunks (key TEXT NOT NULL, n INTEGER NOT NULL, data BLOB NOT NULL,
                                            PRIMARY KEY (key, n));
    CREATE TABLE IF NOT EXISTS blob_index (id TEXT PRIMARY KEY, key TEXT NOT NULL, chunks INTEGER NOT NULL,
                                           size INTEGER NOT NULL);
    INSERT INTO blob_chunks (key, n, data) SELECT '0-' || id, 0, data FROM blobs WHERE length(data) > 0;
    INSERT INTO blob_index (id, key, chunks, size) SELECT id, '0-' || id, length(data) > 0, length(data) FROM blobs;
    DROP TABLE blobs;
    CREATE INDEX IF NOT EXISTS blob_index_key ON blob_index (key);
    CREATE INDEX objects_parent ON objects (parent);
    CREATE TABLE run_queue (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        run_id TEXT NOT NULL UNIQUE,
        owner TEXT,
        lease_until REAL,
        again INTEGER NOT NULL DEFAULT 0
    );
    """,
    # 3: projects (asstctl.server.store.scope): every object belongs to one; what was there goes to the default
    PROJECTS_MIGRATION,
    # 4: the vector store files still to ingest (asstctl.server.ingest_lease.PENDING: its WHERE, word for word), so
    # that the resume at start reads those rows only (built over what is there)
    """
    CREATE INDEX IF NOT EXISTS objects_ingest_pending ON objects (parent, id)
        WHERE kind = 'vector_store_file' AND body LIKE '%"status": "in_progress"%'
    """,
]


class SQLiteStore(Coordination, BaseStore):
    backend = "sqlite"
    # a call goes to a thread only when another holds the lock; a write then waits there for it, so with 4
    # threads 4 waiting writes held every read back (which a read-only connection answers at once)
    workers = 16

    def __init__(self, path: str | os.PathLike = ":memory:"):
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        # Threads share this one connection under the lock; a second process on the same file
        # (`asstctl serve` beside an embedded target) waits up to BUSY_TIMEOUT for the write lock.
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=BUSY_TIMEOUT)
        if self.path != ":memory:":
            self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        # read-only connections for reads while another thread's transaction runs (a file only): the idle
        # ones, and all those opened (at most READERS)
        self._readers: queue.LifoQueue[sqlite3.Connection] = queue.LifoQueue()
        self._opened = 0
        self._read_lock = threading.Lock()
        self._reads = self.path != ":memory:"
        self._held = threading.local()  # the read-only connection this thread reads on (a read within a read)
        self._depth = 0
        self._pending: list[Callable[[], None]] = []
        self._init_coordination()
        self._migrate()
        self._collect_stale()

    def _migrate(self) -> None:
        with self.transaction():
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
                for statement in filter(str.strip, script.split(";")):
                    self._db.execute(statement)
                self._db.execute(f"PRAGMA user_version = {number}")
            self._db.execute("UPDATE run_queue SET owner = NULL, lease_until = NULL")

    def close(self) -> None:
        self._stop_workers()
        with self._lock:
            self._db.close()
        with self._read_lock:  # the idle read-only connections; a busy one is closed when its read ends
            self._reads = False
            while not self._readers.empty():
                self._readers.get_nowait().close()

    # -- transactions -----------------------------------------------------------------------
    @contextmanager
    def transaction(self) -> Iterator["SQLiteStore"]:
        """Group several writes atomically (re-entrant)."""
        with self._lock:
            outer = self._depth == 0
            if outer:
                self._db.execute("BEGIN IMMEDIATE")
            self._depth += 1
            try:
                yield self
            except BaseException:
                self._depth -= 1
                if outer:
                    self._pending.clear()
                    self._db.execute("ROLLBACK")
                raise
            self._depth -= 1
            if not outer:
                return
            self._db.execute("COMMIT")
            pending, self._pending = self._pending, []
        for callback in pending:
            callback()

    def after_commit(self, callback: Callable[[], None]) -> None:
        with self._lock:
            if self._depth:
                self._pending.append(callback)
                return
        callback()

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        """Inline when the connection's lock is free at once (no thread hop), else on a worker
        thread: the loop never waits for another thread's transaction."""
        if self._lock.acquire(blocking=False):
            try:
                return fn(*args)
            finally:
                self._lock.release()
        return await self._on_worker(fn, *args)

    @contextmanager
    def sql(self) -> Iterator[sqlite3.Connection]:
        """The raw connection under the lock, for modules that keep their own tables (retrieval)."""
        with self._lock:
            yield self._db

    @contextmanager
    def reading(self) -> Iterator[sqlite3.Connection]:
        """A connection for reads only: this one when it is free or this thread's (in its transaction, a
        read sees its writes); else, on a file, a read-only one: what is committed, without waiting for
        the other thread's transaction (a search waited for an ingesting batch's commits)."""
        if self._lock.acquire(blocking=not self._reads):  # (a :memory: store has no other connection: it waits)
            try:
                yield self._db
            finally:
                self._lock.release()
            return
        reader = getattr(self._held, "reader", None)
        if reader is not None:  # a read within this thread's read: the same connection (never a second wait)
            yield reader
            return
        self._held.reader = reader = self._reader()
        try:
            yield reader
        finally:
            self._held.reader = None
            with self._read_lock:
                if self._reads:
                    self._readers.put(reader)
                else:  # closed meanwhile (closing a connection another thread reads on crashes the process)
                    reader.close()

    def _reader(self) -> sqlite3.Connection:
        """An idle read-only connection; a new one while fewer than ``READERS`` are open, else the next freed."""
        try:
            return self._readers.get_nowait()
        except queue.Empty:
            pass
        with self._read_lock:
            if not self._reads:
                raise sqlite3.ProgrammingError("Cannot operate on a closed database.")
            if self._opened < READERS:
                reader = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None,
                                         timeout=BUSY_TIMEOUT)
                reader.execute("PRAGMA query_only=1")
                self._opened += 1
                return reader
        while True:
            try:
                return self._readers.get(timeout=0.1)
            except queue.Empty:
                if not self._reads:
                    raise sqlite3.ProgrammingError("Cannot operate on a closed database.") from None

    def _fetch(self, sql: str, args: tuple | list = ()) -> list[tuple]:
        with self.reading() as db:
            return db.execute(sql, args).fetchall()

    def _exec(self, sql: str, args: tuple | list = ()) -> int:
        with self._lock:
            return self._db.execute(sql, args).rowcount

    # -- coordination -----------------------------------------------------------------------
    def _signal(self, kind: str, run_id: str) -> None:
        self.after_commit(lambda: self._dispatch(kind, run_id))

    def claim_runs(self, owner: str, lease: float, limit: int) -> list[str]:
        with self.transaction():
            ids = [row[0] for row in self._fetch(
                "SELECT run_id FROM run_queue WHERE owner IS NULL OR lease_until < ? ORDER BY seq LIMIT ?",
                (time.time(), max(0, limit)),
            )]
            if ids:
                self._exec(f"UPDATE run_queue SET owner = ?, lease_until = ? WHERE run_id IN "
                           f"({', '.join('?' * len(ids))})", (owner, time.time() + lease, *ids))
            return ids

    def queue_claimed(self, run_id: str, owner: str, lease: float) -> None:
        with self.transaction():
            self._write("INSERT INTO run_queue (run_id, owner, lease_until) VALUES (?, ?, ?)",
                        (run_id, owner, time.time() + lease))

    def renew_lease(self, run_id: str, owner: str, lease: float) -> bool:
        with self.transaction():
            return self._exec("UPDATE run_queue SET lease_until = ? WHERE run_id = ? AND owner = ?",
                              (time.time() + lease, run_id, owner)) > 0

    def holds_lease(self, run_id: str, owner: str) -> bool:
        return bool(self._fetch("SELECT 1 FROM run_queue WHERE run_id = ? AND owner = ? AND lease_until >= ?",
                                (run_id, owner, time.time())))

    def publish_event(self, run_id: str, name: str, data: Any) -> None:
        item = (name, payload_of(name, data))
        self.after_commit(lambda: self._deliver(run_id, item))

    def _deliver(self, run_id: str, item: tuple[str, str]) -> None:
        with self._sub_lock:
            subscribers = list(self._subscribers.get(run_id, ()))
        for sub in subscribers:
            sub.items.append(item)
            sub.wake()
