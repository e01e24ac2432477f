"""The store interface and everything both databases share.

Every API object is a JSON document keyed by (kind, parent, id) and ordered by
(created_at, seq): ``seq`` is the insertion sequence, so objects made in the same second keep a
stable order for pagination. File bytes are stored as numbered chunks (``blob_chunks``) with
their size in ``blob_meta``.

A backend supplies ``transaction()`` (re-entrant; write transactions are serialized, as SQLite's
``BEGIN IMMEDIATE`` does), ``_fetch``/``_exec`` (SQL with ``?`` placeholders) and the run-queue
and event primitives of :mod:`asstctl.server.store.coordination`.

Calls are synchronous and short; code on an event loop may call them directly, but must never
``await`` inside ``transaction()`` (on PostgreSQL another task would wait for the write lock on
the same thread).
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from typing import Any, Callable, Iterable, Iterator

BLOB_ROW = 1 << 20  # bytes per stored chunk row


class BaseStore:
    """A small document store. ``kind`` is the API object type ("assistant", "thread", ...)."""

    path: str  # what the store was opened with; see ``shown`` for a printable form
    backend: str = "?"

    # -- backend hooks ----------------------------------------------------------------------
    def _fetch(self, sql: str, args: tuple | list = ()) -> list[tuple]:
        raise NotImplementedError

    def _exec(self, sql: str, args: tuple | list = ()) -> int:
        """Run a write statement (callers hold a transaction); returns the row count."""
        raise NotImplementedError

    @contextmanager
    def transaction(self) -> Iterator["BaseStore"]:
        raise NotImplementedError
        yield self

    def after_commit(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` once the current transaction commits (now, outside one)."""
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    @property
    def shown(self) -> str:
        """The database as it may be printed (never a password)."""
        return self.path

    # -- objects ----------------------------------------------------------------------------
    def insert(self, kind: str, obj: dict[str, Any], parent: str = "") -> dict[str, Any]:
        with self.transaction():
            self._exec(
                "INSERT INTO objects (kind, parent, id, created_at, body) VALUES (?, ?, ?, ?, ?)",
                (kind, parent, obj["id"], int(obj.get("created_at") or 0), json.dumps(obj)),
            )
        return obj

    def get(self, kind: str, id: str, parent: str | None = None) -> dict[str, Any] | None:
        if parent is None:
            rows = self._fetch("SELECT body FROM objects WHERE kind = ? AND id = ? ORDER BY seq LIMIT 1", (kind, id))
        else:
            rows = self._fetch(
                "SELECT body FROM objects WHERE kind = ? AND parent = ? AND id = ?", (kind, parent, id)
            )
        return json.loads(rows[0][0]) if rows else None

    def put(self, kind: str, obj: dict[str, Any], parent: str = "") -> dict[str, Any]:
        """Replace the stored body of an existing object."""
        with self.transaction():
            self._exec(
                "UPDATE objects SET body = ? WHERE kind = ? AND parent = ? AND id = ?",
                (json.dumps(obj), kind, parent, obj["id"]),
            )
        return obj

    def update(
        self, kind: str, id: str, change: Callable[[dict[str, Any]], Any], parent: str = ""
    ) -> dict[str, Any] | None:
        """Read-modify-write in one transaction; ``change`` mutates the dict in place. None if missing."""
        with self.transaction():
            obj = self.get(kind, id, parent)
            if obj is None:
                return None
            change(obj)
            return self.put(kind, obj, parent)

    def delete(self, kind: str, id: str, parent: str = "") -> bool:
        with self.transaction():
            count = self._exec("DELETE FROM objects WHERE kind = ? AND parent = ? AND id = ?", (kind, parent, id))
        return count > 0

    def delete_children(self, parent: str, kinds: tuple[str, ...] | None = None) -> int:
        with self.transaction():
            if kinds:
                marks = ",".join("?" * len(kinds))
                return self._exec(f"DELETE FROM objects WHERE parent = ? AND kind IN ({marks})", (parent, *kinds))
            return self._exec("DELETE FROM objects WHERE parent = ?", (parent,))

    def all(self, kind: str, parent: str | None = None) -> list[dict[str, Any]]:
        """Every object of a kind (optionally under a parent), oldest first."""
        if parent is None:
            rows = self._fetch("SELECT body FROM objects WHERE kind = ? ORDER BY created_at, seq", (kind,))
        else:
            rows = self._fetch(
                "SELECT body FROM objects WHERE kind = ? AND parent = ? ORDER BY created_at, seq", (kind, parent)
            )
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
            op = ">" if asc == forward else "<"
            clauses.append(f"(created_at, seq) {op} (?, ?)")
            args.extend(pos)
        # Walk away from `before` towards the window, then flip back to the requested order.
        walk_asc = asc if before is None or after is not None else not asc
        direction = "ASC" if walk_asc else "DESC"
        sql = f"SELECT body FROM objects WHERE {' AND '.join(clauses)} ORDER BY created_at {direction}, seq {direction}"
        if where is None:  # one row more than the page tells whether there is more
            sql += f" LIMIT {int(limit) + 1}"
        items: list[dict[str, Any]] = []
        has_more = False
        for (body,) in self._fetch(sql, args):
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
        rows = self._fetch(
            "SELECT created_at, seq FROM objects WHERE kind = ? AND parent = ? AND id = ?", (kind, parent, id)
        )
        return (rows[0][0], rows[0][1]) if rows else None

    # -- blobs ------------------------------------------------------------------------------
    def write_blob(self, id: str, chunks: Iterable[bytes]) -> int:
        """Store the bytes of ``chunks`` under ``id`` (replacing any); returns the size.

        Atomic: if ``chunks`` raises, nothing is stored and a previous blob stays as it was.
        """
        with self.transaction():
            self._exec("DELETE FROM blob_chunks WHERE id = ?", (id,))
            self._exec("DELETE FROM blob_meta WHERE id = ?", (id,))
            size, number = 0, 0
            for row in _rows(chunks):
                self._exec("INSERT INTO blob_chunks (id, n, data) VALUES (?, ?, ?)", (id, number, row))
                size, number = size + len(row), number + 1
            self._exec("INSERT INTO blob_meta (id, size, chunks) VALUES (?, ?, ?)", (id, size, number))
        return size

    def read_blob(self, id: str, chunk_size: int = 1 << 20) -> Iterator[bytes] | None:
        """The stored bytes in pieces of ``chunk_size`` (the last may be shorter); None if absent."""
        rows = self._fetch("SELECT chunks FROM blob_meta WHERE id = ?", (id,))
        if not rows:
            return None
        return _resliced(self._chunk_rows(id, rows[0][0]), chunk_size)

    def _chunk_rows(self, id: str, count: int) -> Iterator[bytes]:
        for number in range(count):
            found = self._fetch("SELECT data FROM blob_chunks WHERE id = ? AND n = ?", (id, number))
            if not found:
                return  # replaced or deleted while being read
            yield bytes(found[0][0])

    def blob_size(self, id: str) -> int | None:
        rows = self._fetch("SELECT size FROM blob_meta WHERE id = ?", (id,))
        return int(rows[0][0]) if rows else None

    def delete_blob(self, id: str) -> None:
        with self.transaction():
            self._exec("DELETE FROM blob_chunks WHERE id = ?", (id,))
            self._exec("DELETE FROM blob_meta WHERE id = ?", (id,))

    # Shims for the routes written against the one-shot API (h10b moves them to streaming).
    def put_blob(self, id: str, data: bytes) -> None:
        self.write_blob(id, [data])

    def get_blob(self, id: str) -> bytes | None:
        pieces = self.read_blob(id)
        return None if pieces is None else b"".join(pieces)


def _rows(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """Regroup incoming chunks into rows of at most BLOB_ROW bytes."""
    buffer = bytearray()
    for chunk in chunks:
        buffer += chunk
        while len(buffer) >= BLOB_ROW:
            yield bytes(buffer[:BLOB_ROW])
            del buffer[:BLOB_ROW]
    if buffer:
        yield bytes(buffer)


def _resliced(rows: Iterator[bytes], size: int) -> Iterator[bytes]:
    buffer = bytearray()
    for row in rows:
        buffer += row
        while len(buffer) >= size:
            yield bytes(buffer[:size])
            del buffer[:size]
    if buffer:
        yield bytes(buffer)
