"""The store interface and everything both databases share.

Every API object is a JSON document keyed by (kind, parent, id) and ordered by
(created_at, seq): ``seq`` is the insertion sequence, so objects made in the same second keep a
stable order for pagination. File bytes: :mod:`asstctl.server.store.blobs`.

A backend supplies ``transaction()`` (re-entrant; write transactions are serialized, as SQLite's
``BEGIN IMMEDIATE`` does), ``_fetch``/``_exec`` (SQL with ``?`` placeholders) and the run-queue
and event primitives of :mod:`asstctl.server.store.coordination`.

Calls are synchronous. Code on an event loop runs them with ``await store.call(fn, *args)``, which
never stalls the loop: ``fn`` (any function of store calls) runs on a worker thread (PostgreSQL:
every statement is a round trip, and a write waits for the write lock), or inline on SQLite when
its lock is free at once (a call into the library, no thread hop). Never ``await`` inside
``transaction()`` (on PostgreSQL another task would wait for the write lock on the same thread).
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import json
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, Callable, Iterator, TypeVar

from asstctl.server.store.scope import DEFAULT_PROJECT, clause, current
from asstctl.server.store.blobs import Blobs

T = TypeVar("T")
WORKERS = 4  # threads that run store calls for code on the event loop (``BaseStore.call``)


def encode(obj: dict[str, Any]) -> str:
    """The stored text of an object; ValueError for what JSON cannot carry back (NaN,
    Infinity, a lone surrogate), so nothing stored can make a later read fail."""
    text = json.dumps(obj, ensure_ascii=False, allow_nan=False)
    text.encode("utf-8")  # UnicodeEncodeError (a ValueError) on a lone surrogate
    return text


class BaseStore(Blobs):
    """A small document store. ``kind`` is the API object type ("assistant", "thread", ...)."""

    path: str  # what the store was opened with; see ``shown`` for a printable form
    backend: str = "?"
    _workers: ThreadPoolExecutor | None = None
    workers = WORKERS  # the threads of ``call``'s pool

    # -- backend hooks ----------------------------------------------------------------------
    def _fetch(self, sql: str, args: tuple | list = ()) -> list[tuple]:
        raise NotImplementedError

    def _exec(self, sql: str, args: tuple | list = ()) -> int:
        """Run a write statement (callers hold a transaction); returns the row count."""
        raise NotImplementedError

    def _write(self, sql: str, args: tuple | list = (), kind: str | None = None) -> None:
        """A write whose row count nobody reads (callers hold a transaction; ``kind``: it replaces an
        object of that kind only): PostgreSQL sends it with the transaction's next round trip."""
        self._exec(sql, args)

    @contextmanager
    def transaction(self) -> Iterator["BaseStore"]:
        raise NotImplementedError
        yield self

    def after_commit(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` once the current transaction commits (now, outside one)."""
        raise NotImplementedError

    @contextmanager
    def reading(self) -> Iterator[Any]:
        """A connection for reads only, for modules with their own tables (retrieval): ``sql()``'s, unless
        the store has one that need not wait for another thread's transaction (SQLite)."""
        with self.sql() as db:
            yield db

    def close(self) -> None:
        raise NotImplementedError

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` (store calls) off the event loop: on one of the store's worker threads."""
        return await self._on_worker(fn, *args)

    async def _on_worker(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` on the store's own pool of ``workers`` threads (made on first use): a
        fixed number whatever the load, apart from the default executor the engines use."""
        if self._workers is None:
            self._workers = ThreadPoolExecutor(self.workers, thread_name_prefix="asstctl-store")
        # the caller's context goes along: the project scope (store/scope.py) is a context variable
        return await asyncio.get_running_loop().run_in_executor(
            self._workers, functools.partial(contextvars.copy_context().run, fn, *args))

    def _stop_workers(self) -> None:
        workers, self._workers = self._workers, None
        if workers is not None:
            workers.shutdown(wait=False)

    @property
    def shown(self) -> str:
        """The database as it may be printed (never a password)."""
        return self.path

    # -- objects ----------------------------------------------------------------------------
    def insert(self, kind: str, obj: dict[str, Any], parent: str = "") -> dict[str, Any]:
        with self.transaction():
            self._write(
                "INSERT INTO objects (kind, parent, id, created_at, body, project) VALUES (?, ?, ?, ?, ?, ?)",
                (kind, parent, obj["id"], int(obj.get("created_at") or 0), encode(obj),
                 current() or DEFAULT_PROJECT),
            )
        return obj

    def get(self, kind: str, id: str, parent: str | None = None) -> dict[str, Any] | None:
        rows = self._fetch(*self._getting(kind, id, parent))
        return json.loads(rows[0][0]) if rows else None

    @staticmethod
    def _getting(kind: str, id: str, parent: str | None = None) -> tuple[str, tuple]:
        """The read ``get`` makes (in the caller's project scope)."""
        mine, project = clause()
        if parent is None:
            return f"SELECT body FROM objects WHERE kind = ? AND id = ?{mine} ORDER BY seq LIMIT 1", (kind, id, *project)
        return f"SELECT body FROM objects WHERE kind = ? AND parent = ? AND id = ?{mine}", (kind, parent, id, *project)

    def get_many(self, kind: str, parent: str, ids: list[str] | set[str]) -> dict[str, dict[str, Any]]:
        """``{id: object}`` of those ids under ``parent`` (missing ones left out): one query per
        500 ids, each by the primary key, so its cost follows ``len(ids)``, not the table."""
        found: dict[str, dict[str, Any]] = {}
        _, project = clause()
        wanted = list(dict.fromkeys(ids))
        for start in range(0, len(wanted), 500):
            part = wanted[start:start + 500]
            # The project is checked on the rows found, not in the WHERE: there, SQLite picks the
            # (project, kind, parent) index for a list of ids and reads every object of the parent
            # (13 ms per call at 10,000 files, twice per vector store search).
            rows = self._fetch(
                f"SELECT id, body, project FROM objects WHERE kind = ? AND parent = ? AND id IN ({','.join('?' * len(part))})",
                (kind, parent, *part),
            )
            found.update((row[0], json.loads(row[1])) for row in rows if not project or row[2] == project[0])
        return found

    def parents_of(self, kind: str, id: str) -> list[str]:
        """The parents that hold an object of this kind and id (by the ``(kind, id)`` index)."""
        mine, project = clause()
        return [row[0] for row in self._fetch(f"SELECT parent FROM objects WHERE kind = ? AND id = ?{mine}",
                                              (kind, id, *project))]

    def put(self, kind: str, obj: dict[str, Any], parent: str = "") -> dict[str, Any]:
        """Replace the stored body of an existing object."""
        with self.transaction():
            self._write(*self._replacing(kind, obj, parent), kind)
        return obj

    def save(self, kind: str, obj: dict[str, Any], parent: str = "") -> dict[str, Any]:
        """Replace the stored body, or insert the object when it is not stored yet (one statement
        when it is)."""
        with self.transaction():
            if not self._replace(kind, obj, parent):
                self.insert(kind, obj, parent)
        return obj

    def _replace(self, kind: str, obj: dict[str, Any], parent: str) -> int:
        return self._exec(*self._replacing(kind, obj, parent))

    @staticmethod
    def _replacing(kind: str, obj: dict[str, Any], parent: str) -> tuple[str, tuple]:
        mine, project = clause()
        return (f"UPDATE objects SET body = ? WHERE kind = ? AND parent = ? AND id = ?{mine}",
                (encode(obj), kind, parent, obj["id"], *project))

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
        mine, project = clause()
        with self.transaction():
            count = self._exec(f"DELETE FROM objects WHERE kind = ? AND parent = ? AND id = ?{mine}",
                               (kind, parent, id, *project))
        return count > 0

    def delete_children(self, parent: str, kinds: tuple[str, ...] | None = None) -> int:
        mine, project = clause()
        with self.transaction():
            if kinds:
                marks = ",".join("?" * len(kinds))
                return self._exec(f"DELETE FROM objects WHERE parent = ? AND kind IN ({marks}){mine}",
                                  (parent, *kinds, *project))
            return self._exec(f"DELETE FROM objects WHERE parent = ?{mine}", (parent, *project))

    def all(self, kind: str, parent: str | None = None) -> list[dict[str, Any]]:
        """Every object of a kind (optionally under a parent), oldest first."""
        return [json.loads(r[0]) for r in self._fetch(*self._listing(kind, parent))]

    @staticmethod
    def _listing(kind: str, parent: str | None = None) -> tuple[str, tuple]:
        """The read ``all`` makes (in the caller's project scope)."""
        mine, project = clause()
        if parent is None:
            return f"SELECT body FROM objects WHERE kind = ?{mine} ORDER BY created_at, seq", (kind, *project)
        return (f"SELECT body FROM objects WHERE kind = ? AND parent = ?{mine} ORDER BY created_at, seq",
                (kind, parent, *project))

    # -- reads ahead ------------------------------------------------------------------------
    # Hints for a store whose every read is a round trip (PostgreSQL): the reads a store call is
    # about to make, asked for together. A read is ("get", kind, id, parent) as ``get`` takes
    # them, or ("all", kind, parent). SQLite answers a read in microseconds and ignores them.
    def read_ahead(self, reads: list[tuple]) -> None:
        """Ask for ``reads`` now, in one round trip (in a transaction: with what it queued); the
        caller's next ``get``/``all`` of them is answered from there, unless a write came between."""
        for read in reads:  # (named right on every store)
            self._read_key(read)

    def read_at_commit(self, reads: list[tuple]) -> None:
        """Ask for ``reads`` with the current transaction's commit (they see its writes); answered
        after it to ``get``/``all`` of the same caller, inside ``reads_kept()`` only."""

    @contextmanager
    def reads_kept(self) -> Iterator[None]:
        """Where what ``read_at_commit`` asked for may be answered from (once each)."""
        yield

    def _read_key(self, read: tuple) -> tuple[str, tuple]:
        """The (SQL, arguments) of a read named as ``read_ahead`` takes it."""
        if read[0] == "get":
            return self._getting(*read[1:])
        if read[0] == "all":
            return self._listing(*read[1:])
        raise ValueError(f"not a read: {read!r}")

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
        if current() is not None:
            clauses.append("project = ?")
            args.append(current())
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
        mine, project = clause()
        rows = self._fetch(
            f"SELECT created_at, seq FROM objects WHERE kind = ? AND parent = ? AND id = ?{mine}",
            (kind, parent, id, *project),
        )
        return (rows[0][0], rows[0][1]) if rows else None

    def project_of(self, kind: str, id: str) -> str | None:
        """The project an object belongs to (unscoped: for the run executor and the admin API)."""
        rows = self._fetch("SELECT project FROM objects WHERE kind = ? AND id = ? ORDER BY seq LIMIT 1", (kind, id))
        return rows[0][0] if rows else None
