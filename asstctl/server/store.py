"""SQLite persistence for the local Assistants server.

Every API object is a JSON document in one table, keyed by (kind, parent, id) and
ordered by (created_at, seq): ``seq`` is the insertion sequence, so objects made in
the same second keep a stable order for pagination. File bytes live in ``blob_chunks``
(1 MiB rows, written and read piece by piece: an upload never sits in memory whole).

One connection guarded by a lock serves all threads; WAL mode with
``synchronous=NORMAL`` means a committed write survives a kill -9 of the process.
"""

from __future__ import annotations

import json
import os
import secrets
import sqlite3
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

SCHEMA = """
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
CREATE TABLE IF NOT EXISTS blobs (id TEXT PRIMARY KEY, data BLOB NOT NULL);  -- before blob_chunks; read only
CREATE TABLE IF NOT EXISTS blob_chunks (id TEXT NOT NULL, n INTEGER NOT NULL, data BLOB NOT NULL, PRIMARY KEY (id, n));
"""

BUSY_TIMEOUT = 30.0  # seconds
BLOB_CHUNK = 1 << 20  # bytes per blob_chunks row
TEMP_BLOB = "~partial-"  # id prefix of a blob being written


def encode(obj: dict[str, Any]) -> str:
    """The stored text of an object; ValueError for what JSON cannot carry back (NaN,
    Infinity, a lone surrogate), so nothing stored can make a later read fail."""
    text = json.dumps(obj, ensure_ascii=False, allow_nan=False)
    text.encode("utf-8")  # UnicodeEncodeError (a ValueError) on a lone surrogate
    return text


class Store:
    """A small document store. ``kind`` is the API object type ("assistant", "thread", ...)."""

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
        self._db.executescript(SCHEMA)
        self._depth = 0
        self._drop_stale_temp_blobs()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def transaction(self) -> Iterator["Store"]:
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
                    self._db.execute("ROLLBACK")
                raise
            self._depth -= 1
            if outer:
                self._db.execute("COMMIT")

    def insert(self, kind: str, obj: dict[str, Any], parent: str = "") -> dict[str, Any]:
        with self.transaction():
            self._db.execute(
                "INSERT INTO objects (kind, parent, id, created_at, body) VALUES (?, ?, ?, ?, ?)",
                (kind, parent, obj["id"], int(obj.get("created_at") or 0), encode(obj)),
            )
        return obj

    def get(self, kind: str, id: str, parent: str | None = None) -> dict[str, Any] | None:
        with self._lock:
            if parent is None:
                row = self._db.execute(
                    "SELECT body FROM objects WHERE kind = ? AND id = ? ORDER BY seq LIMIT 1", (kind, id)
                ).fetchone()
            else:
                row = self._db.execute(
                    "SELECT body FROM objects WHERE kind = ? AND parent = ? AND id = ?", (kind, parent, id)
                ).fetchone()
        return json.loads(row[0]) if row else None

    def put(self, kind: str, obj: dict[str, Any], parent: str = "") -> dict[str, Any]:
        """Replace the stored body of an existing object."""
        with self.transaction():
            self._db.execute(
                "UPDATE objects SET body = ? WHERE kind = ? AND parent = ? AND id = ?",
                (encode(obj), kind, parent, obj["id"]),
            )
        return obj

    def update(
        self, kind: str, id: str, change: Callable[[dict[str, Any]], Any], parent: str = ""
    ) -> dict[str, Any] | None:
        """Read-modify-write under the lock; ``change`` mutates the dict in place. None if missing."""
        with self.transaction():
            obj = self.get(kind, id, parent)
            if obj is None:
                return None
            change(obj)
            return self.put(kind, obj, parent)

    def delete(self, kind: str, id: str, parent: str = "") -> bool:
        with self.transaction():
            cur = self._db.execute(
                "DELETE FROM objects WHERE kind = ? AND parent = ? AND id = ?", (kind, parent, id)
            )
        return cur.rowcount > 0

    def delete_children(self, parent: str, kinds: tuple[str, ...] | None = None) -> int:
        with self.transaction():
            if kinds:
                marks = ",".join("?" * len(kinds))
                cur = self._db.execute(
                    f"DELETE FROM objects WHERE parent = ? AND kind IN ({marks})", (parent, *kinds)
                )
            else:
                cur = self._db.execute("DELETE FROM objects WHERE parent = ?", (parent,))
        return cur.rowcount

    def all(self, kind: str, parent: str | None = None) -> list[dict[str, Any]]:
        """Every object of a kind (optionally under a parent), oldest first."""
        with self._lock:
            if parent is None:
                rows = self._db.execute(
                    "SELECT body FROM objects WHERE kind = ? ORDER BY created_at, seq", (kind,)
                ).fetchall()
            else:
                rows = self._db.execute(
                    "SELECT body FROM objects WHERE kind = ? AND parent = ? ORDER BY created_at, seq",
                    (kind, parent),
                ).fetchall()
        return [json.loads(r[0]) for r in rows]

    def page(
        self,
        kind: str,
        parent: str = "",
        *,
        limit: int = 20,
        order: str = "desc",
        after: str | None = None,
        before: str | None = None,
        where: Callable[[dict[str, Any]], bool] | None = None,
    ) -> tuple[list[dict[str, Any]], bool]:
        """One page of a cursor list: (items in the requested order, has_more).

        ``after`` = items strictly after that id in ``order``; ``before`` = the ``limit``
        items immediately preceding it, still returned in ``order``. An unknown cursor
        id yields an empty page. ``where`` filters in Python (small filtered lists).
        """
        asc = order == "asc"
        clauses, args = ["kind = ?", "parent = ?"], [kind, parent]
        for cursor, forward in ((after, True), (before, False)):
            if cursor is None:
                continue
            pos = self._position(kind, parent, cursor)
            if pos is None:
                return [], False
            greater = asc == forward
            op = ">" if greater else "<"
            clauses.append(f"(created_at, seq) {op} (?, ?)")
            args.extend(pos)
        # Walk away from `before` towards the window, then flip back to the requested order.
        walk_asc = asc if before is None or after is not None else not asc
        direction = "ASC" if walk_asc else "DESC"
        sql = f"SELECT body FROM objects WHERE {' AND '.join(clauses)} ORDER BY created_at {direction}, seq {direction}"
        items: list[dict[str, Any]] = []
        has_more = False
        with self._lock:
            for (body,) in self._db.execute(sql, args):
                obj = json.loads(body)
                if where is not None and not where(obj):
                    continue
                if len(items) == limit:
                    has_more = True
                    break
                items.append(obj)
        if walk_asc != asc:
            items.reverse()
        return items, has_more

    def _position(self, kind: str, parent: str, id: str) -> tuple[int, int] | None:
        with self._lock:
            row = self._db.execute(
                "SELECT created_at, seq FROM objects WHERE kind = ? AND parent = ? AND id = ?",
                (kind, parent, id),
            ).fetchone()
        return (row[0], row[1]) if row else None

    # ------------------------------------------------------------------ blobs (file bytes)
    # Bytes live as BLOB_CHUNK-sized rows of ``blob_chunks``. A write goes in under a temporary
    # id, one short transaction per chunk (the lock is never held while the caller produces the
    # next chunk), then one transaction renames it: readers see all of a blob or none of it.

    def write_blob(self, id: str, chunks: Iterable[bytes]) -> int:
        """Store the bytes ``chunks`` yields under ``id`` (replacing any); the size. Atomic:
        if ``chunks`` raises, nothing is stored and the exception propagates."""
        temp = f"{TEMP_BLOB}{int(time.time())}-{secrets.token_hex(8)}-{id}"
        size, n = 0, 0
        try:
            for piece in _rechunk(chunks, BLOB_CHUNK):
                with self.transaction():
                    self._db.execute("INSERT INTO blob_chunks (id, n, data) VALUES (?, ?, ?)", (temp, n, piece))
                size, n = size + len(piece), n + 1
            with self.transaction():
                if n == 0:  # an empty file still exists
                    self._db.execute("INSERT INTO blob_chunks (id, n, data) VALUES (?, 0, ?)", (temp, b""))
                    n = 1
                self._db.execute("DELETE FROM blob_chunks WHERE id = ?", (id,))
                self._db.execute("DELETE FROM blobs WHERE id = ?", (id,))
                cur = self._db.execute("UPDATE blob_chunks SET id = ? WHERE id = ?", (id, temp))
                if cur.rowcount != n:
                    raise RuntimeError(f"blob {id}: {n - cur.rowcount} of {n} chunks vanished while writing")
        except BaseException:
            with self.transaction():
                self._db.execute("DELETE FROM blob_chunks WHERE id = ?", (temp,))
            raise
        return size

    def read_blob(self, id: str, chunk_size: int = 1 << 20) -> Iterator[bytes] | None:
        """The bytes of ``id`` in pieces of ``chunk_size`` (the last may be shorter), or None.
        Each piece is read under the lock; none is held between pieces."""
        with self._lock:
            count = self._db.execute("SELECT count(*) FROM blob_chunks WHERE id = ?", (id,)).fetchone()[0]
            legacy = not count and self._db.execute("SELECT 1 FROM blobs WHERE id = ?", (id,)).fetchone()
        if not count and not legacy:
            return None
        return _rechunk(self._blob_rows(id, count, bool(legacy)), chunk_size)

    def _blob_rows(self, id: str, count: int, legacy: bool) -> Iterator[bytes]:
        if legacy:  # written by an older asstctl, whole
            with self._lock:
                row = self._db.execute("SELECT data FROM blobs WHERE id = ?", (id,)).fetchone()
            if row:
                yield bytes(row[0])
            return
        for n in range(count):
            with self._lock:
                row = self._db.execute("SELECT data FROM blob_chunks WHERE id = ? AND n = ?", (id, n)).fetchone()
            if row is None:  # deleted while being read
                return
            yield bytes(row[0])

    def blob_size(self, id: str) -> int | None:
        with self._lock:
            count, size = self._db.execute(
                "SELECT count(*), coalesce(sum(length(data)), 0) FROM blob_chunks WHERE id = ?", (id,)
            ).fetchone()
            if count:
                return size
            row = self._db.execute("SELECT length(data) FROM blobs WHERE id = ?", (id,)).fetchone()
        return row[0] if row else None

    def delete_blob(self, id: str) -> None:
        with self.transaction():
            self._db.execute("DELETE FROM blob_chunks WHERE id = ?", (id,))
            self._db.execute("DELETE FROM blobs WHERE id = ?", (id,))

    def _drop_stale_temp_blobs(self) -> None:
        """Temporary rows of writes a crash interrupted (older than a day: not another process's)."""
        with self.transaction():
            for (temp,) in self._db.execute(
                "SELECT DISTINCT id FROM blob_chunks WHERE id >= ? AND id < ?", (TEMP_BLOB, TEMP_BLOB + "\U0010ffff")
            ).fetchall():
                started = temp[len(TEMP_BLOB):].split("-", 1)[0]
                if started.isdigit() and int(started) < time.time() - 86_400:
                    self._db.execute("DELETE FROM blob_chunks WHERE id = ?", (temp,))


def _rechunk(chunks: Iterable[bytes], size: int) -> Iterator[bytes]:
    """Re-cut a stream of byte strings into pieces of exactly ``size`` (the last may be shorter)."""
    buffer = bytearray()
    for chunk in chunks:
        buffer += chunk
        if len(buffer) < size:
            continue
        with memoryview(buffer) as view:
            start = 0
            while len(buffer) - start >= size:
                yield bytes(view[start:start + size])
                start += size
        del buffer[:start]
    if buffer:
        yield bytes(buffer)
