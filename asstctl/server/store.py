"""SQLite persistence for the local Assistants server.

Every API object is a JSON document in one table, keyed by (kind, parent, id) and
ordered by (created_at, seq): ``seq`` is the insertion sequence, so objects made in
the same second keep a stable order for pagination. File bytes live in ``blob_chunks``
(1 MiB rows, written and read piece by piece: ``asstctl.server.blobs``).

One connection guarded by a lock serves all threads; WAL mode with
``synchronous=NORMAL`` means a committed write survives a kill -9 of the process.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

from asstctl.server.blobs import SQLiteBlobs

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
"""

BUSY_TIMEOUT = 30.0  # seconds


def encode(obj: dict[str, Any]) -> str:
    """The stored text of an object; ValueError for what JSON cannot carry back (NaN,
    Infinity, a lone surrogate), so nothing stored can make a later read fail."""
    text = json.dumps(obj, ensure_ascii=False, allow_nan=False)
    text.encode("utf-8")  # UnicodeEncodeError (a ValueError) on a lone surrogate
    return text


class Store(SQLiteBlobs):
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
        self._init_blobs()

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
        if outer and self._garbage:  # bytes of blobs this transaction deleted, outside the lock
            self._collect_garbage()

    @contextmanager
    def sql(self) -> Iterator[sqlite3.Connection]:
        """The raw connection under the lock, for modules that keep their own tables (retrieval)."""
        with self._lock:
            yield self._db

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
