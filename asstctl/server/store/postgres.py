"""The PostgreSQL store: any number of ``asstctl serve`` replicas on one database.

psycopg 3 with a connection pool. A transaction binds one pooled connection to the current
thread or asyncio task (a context variable, checked against its owner) until it ends, so
nested ``transaction()`` calls and plain reads inside it use that connection. Write
transactions take one advisory lock (``WRITE_LOCK``) first: they are serialized across all
replicas exactly as SQLite's ``BEGIN IMMEDIATE`` serializes them in one process, which keeps
read-modify-write and check-then-insert code correct on both stores, and makes ``seq`` grow in
commit order (stable cursors, events in order).

Round trips: every statement is one for psycopg and the server, and a write transaction holds
the lock across its round trips. So BEGIN and the lock go with the transaction's first statement,
writes whose row count nobody reads (``_write``: inserts, replaced bodies, queue entries) wait for
the next statement that needs an answer, and the queued statements go as one batch (the simple
query protocol, parameters bound by psycopg): a transaction that only writes is one round trip,
COMMIT included, and holds the lock only while the server runs it.
Reads a caller names ahead (``read_ahead``) go in one round trip, in a transaction with its BEGIN;
reads named for the commit (``read_at_commit``) go with it and answer the caller after it. A
streamed run makes 6 round trips in all (docs/runs.md; tests/postgres/test_round_trips.py counts them).

Signals (``work``, ``cancel``, ``event``) travel as ``NOTIFY asstctl`` at commit; a listener
thread per store dispatches them. Run events live in ``run_events`` so a stream on any replica
reads exactly what was committed; this replica's own reach its streams in memory
(:mod:`asstctl.server.store.pg_events`).
"""

from __future__ import annotations

import logging
import os
import secrets
import threading
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

from asstctl.errors import ConfigError
from asstctl.server.store import pg_events, pg_guard
from asstctl.server.store.base import BaseStore, encode
from asstctl.server.store.coordination import Coordination, Subscription, payload_of
from asstctl.server.store.pg_schema import migrate
from asstctl.server.store.scope import DEFAULT_PROJECT, current

log = logging.getLogger("asstctl.server.store")

WRITE_LOCK = 0x6173_7374_6374_6C01  # pg_advisory_xact_lock key of write transactions ("asstctl" + 1)
CHANNEL = "asstctl"
CONNECT_TIMEOUT = 10.0
POOL_ENV = "ASSTCTL_PG_POOL_SIZE"  # connections per replica (default 10)
LOCK = ("SELECT pg_advisory_xact_lock(%s)", (WRITE_LOCK,))
BOOK = "run_state"  # the executor's book of a run (asstctl/server/runs/book.py), read ahead with the run


@dataclass
class _Bound:
    """A transaction in progress: its connection, who holds it, and what it sends at commit."""

    conn: Any
    owner: tuple
    queued: list[tuple[str, tuple]] = field(default_factory=list)  # sent with the next round trip
    sent: bool = False  # BEGIN reached the server: there is something to roll back
    read: dict[tuple, list] = field(default_factory=dict)  # the run and its book read ahead (not written since)
    pending: list[Callable[[], None]] = field(default_factory=list)  # after commit, in this process
    events: list[tuple[str, str, str]] = field(default_factory=list)  # (run_id, name, payload)
    notes: list[str] = field(default_factory=list)  # NOTIFY payloads
    leases: set = field(default_factory=set)  # (run_id, owner) found held in this transaction
    later: list[tuple[str, tuple]] = field(default_factory=list)  # reads sent with the commit (``read_at_commit``)


def _owner() -> tuple:
    """Who holds a transaction: this thread, and this asyncio task if one runs here."""
    import asyncio

    try:
        task = asyncio.current_task()
    except RuntimeError:
        task = None
    return threading.get_ident(), id(task) if task is not None else None


def _rollback(conn: Any) -> None:
    try:
        conn.execute("ROLLBACK")
    except Exception:  # noqa: BLE001 - a broken connection: the pool discards it
        pass


def _binary(statements: list[tuple[str, tuple]]) -> bool:
    return any(isinstance(value, (bytes, bytearray, memoryview)) for _, values in statements for value in values)


def _results(conn: Any, statements: list[tuple[str, tuple]]) -> Iterator[Any]:
    """``statements`` (``%s`` placeholders, their parameters) sent in one round trip: one simple-query
    message, parameters bound by psycopg (``ClientCursor``); then a cursor on each statement's result in
    turn (every result is in already). Parameters that are bytes (blobs) go one statement at a time, in binary."""
    from psycopg import ClientCursor

    if _binary(statements):
        yield from [conn.execute(text, values) for text, values in statements]  # all sent before the first
        return
    cursor = ClientCursor(conn)
    cursor.execute("; ".join(text for text, _ in statements), [value for _, values in statements for value in values])
    yield cursor
    for _ in statements[1:]:
        cursor.nextset()
        yield cursor


def _batch(conn: Any, statements: list[tuple[str, tuple]], at: int = -1) -> Any:
    """``statements`` in one round trip (``_results``), the cursor left on the result of statement ``at``."""
    at %= len(statements)
    for number, cursor in enumerate(_results(conn, statements)):
        if number == at:
            return cursor


def _rows(conn: Any, statements: list[tuple[str, tuple]], positions: list[int]) -> list[list[tuple]]:
    """``statements`` in one round trip (``_results``), and the rows of those at ``positions``."""
    wanted = set(positions)
    return [cursor.fetchall() for number, cursor in enumerate(_results(conn, statements)) if number in wanted]


def shown_url(url: str) -> str:
    """``postgresql://user@host:port/db`` without the password (or other secrets)."""
    from psycopg.conninfo import conninfo_to_dict

    try:
        info = conninfo_to_dict(url)
    except Exception:  # noqa: BLE001 - a malformed URL is reported when connecting
        return "postgresql://?"
    user = f"{info['user']}@" if info.get("user") else ""
    host = info.get("host") or "localhost"
    port = f":{info['port']}" if info.get("port") else ""
    return f"postgresql://{user}{host}{port}/{info.get('dbname', '')}"


class PostgresStore(Coordination, BaseStore):
    backend = "postgres"
    READS_EVENTS = True
    CHECKS_KEYS = True  # a request's project key is checked with its first statement (``pg_guard``)

    def __init__(self, url: str, *, pool_size: int | None = None):
        try:
            from psycopg_pool import ConnectionPool, PoolTimeout
        except ImportError:
            raise ConfigError(
                "PostgreSQL support is not installed",
                hint="Install it with: pip install 'asstctl[postgres]'",
            ) from None
        self.path = url
        pool_size = pool_size or _pool_size()
        self._tx: ContextVar[_Bound | None] = ContextVar(f"asstctl_pg_tx_{id(self)}", default=None)
        # (owner, {read: rows}) inside ``reads_kept``: what ``read_at_commit`` and ``read_ahead`` answered
        self._kept: ContextVar[tuple[tuple, dict] | None] = ContextVar(f"asstctl_pg_kept_{id(self)}", default=None)
        self._check_reachable()
        self._pool = ConnectionPool(url, min_size=1, max_size=max(2, pool_size), kwargs={"autocommit": True},
                                    open=False, name="asstctl", timeout=CONNECT_TIMEOUT)  # then a 503
        try:
            self._pool.open(wait=True, timeout=CONNECT_TIMEOUT)
        except PoolTimeout:
            self._pool.close()
            raise self._unreachable(f"no connection within {CONNECT_TIMEOUT:.0f} s") from None
        self._init_coordination()
        self._claimed: dict[str, str] = {}  # run id -> project, of runs just claimed
        self._queued_here = threading.Event()  # a run was queued by this process since the last claim
        self._origin = secrets.token_hex(6)  # this store's signals come back from LISTEN: skip them
        with self._pool.connection() as conn:  # at start: no request, no key to check (pg_guard)
            migrate(conn)
        self._collect_stale()
        self._stopping = threading.Event()
        self._listener = threading.Thread(target=self._listen, name="asstctl-pg-listen", daemon=True)
        self._listening = threading.Event()
        self._listener.start()
        self._listening.wait(CONNECT_TIMEOUT)

    def _check_reachable(self) -> None:
        """One plain connection first: a wrong URL fails at once, with libpq's reason."""
        import psycopg

        try:
            psycopg.connect(self.path, connect_timeout=int(CONNECT_TIMEOUT)).close()
        except psycopg.Error as error:
            raise self._unreachable(str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__)

    def _unreachable(self, reason: str) -> ConfigError:
        from psycopg.conninfo import conninfo_to_dict

        try:
            password = conninfo_to_dict(self.path).get("password")
        except Exception:  # noqa: BLE001 - a malformed URL: say so without echoing it
            password, reason = None, "the URL is not a valid postgresql:// URL"
        if password:
            reason = reason.replace(str(password), "***")
        return ConfigError(
            f"cannot connect to PostgreSQL at {self.shown}: {reason}",
            hint="Check that the server runs and that the URL's host, port, user and database are right "
                 "(the password: PGPASSWORD or ~/.pgpass).",
        )

    @property
    def shown(self) -> str:
        return shown_url(self.path)

    def close(self) -> None:
        self._stop_workers()
        self._stopping.set()
        self._listener.join(timeout=5)
        self._pool.close()

    # -- connections and transactions -------------------------------------------------------
    def _bound(self) -> _Bound | None:
        bound = self._tx.get()
        return bound if bound is not None and bound.owner == _owner() else None

    @contextmanager
    def sql(self) -> Iterator[Any]:
        """A psycopg connection (the transaction's, inside one, what it queued sent first), for
        modules with their own tables (reads ahead stay: it writes no ``objects``)."""
        bound = self._bound()
        if bound is not None:
            self._send(bound)
            yield bound.conn
            return
        with pg_guard.connection(self._pool) as conn:
            yield conn

    def canceller(self) -> Callable[[], None] | None:
        """Inside a transaction: what cancels its statement from any thread (the transaction then rolls back)."""
        return None if (bound := self._bound()) is None else (lambda: bound.conn.cancel_safe(timeout=2.0))

    @contextmanager
    def transaction(self) -> Iterator["PostgresStore"]:
        """Group several writes atomically (re-entrant); serialized with every other write transaction."""
        with self._transaction(None):
            yield self

    @contextmanager
    def transaction_holding(self, run_id: str, owner: str) -> Iterator[bool]:
        """A write transaction and whether ``owner`` holds the run's lease: checked in the round trip that
        begins it, and once per transaction (the write lock keeps any other replica from claiming it)."""
        with self._transaction((run_id, owner)) as held:
            yield held

    @contextmanager
    def _transaction(self, lease: tuple[str, str] | None) -> Iterator[bool]:
        bound = self._bound()
        if bound is not None:
            if lease is not None and lease not in bound.leases:
                if not self.holds_lease(*lease):
                    yield False
                    return
                bound.leases.add(lease)
            yield True
            return
        kept = self._kept_here()
        if kept:  # answers kept from before: this transaction may change what they read
            kept.clear()
        with pg_guard.connection(self._pool) as conn:
            bound = _Bound(conn, _owner())
            token = self._tx.set(bound)
            try:
                held = self._begin(bound, lease)
                if held:
                    bound.leases.add(lease)
                yield held
            except BaseException:
                self._tx.reset(token)
                if bound.sent:
                    _rollback(conn)
                raise
            self._tx.reset(token)
            committed = self._commit(bound)
        pg_events.deliver(self, committed)
        for callback in bound.pending:
            callback()

    def _begin(self, bound: _Bound, lease: tuple[str, str] | None) -> bool:
        """BEGIN and the write lock, queued for the first statement; with ``lease``, sent now with
        the lease check, whose answer the caller needs first, and the reads of the run and its book
        that a turn's transaction makes first (one round trip)."""
        if lease is None:
            bound.queued += [("BEGIN", ()), LOCK]
            return True
        bound.sent = True
        ahead = [self._getting("run", lease[0]), self._getting(BOOK, lease[0], lease[0])]
        ahead = [(sql.replace("?", "%s"), args) for sql, args in ahead]
        cursor = _batch(bound.conn, [
            ("BEGIN", ()), LOCK,
            ("SELECT count(*) FROM run_queue WHERE run_id = %s AND owner = %s AND lease_until >= clock_timestamp()",
             lease), *ahead], at=2)
        held = bool(cursor.fetchone()[0])
        for read in ahead:
            cursor.nextset()
            bound.read[read] = cursor.fetchall()
        return held

    def _send(self, bound: _Bound, statement: str | None = None, args: tuple | list = ()) -> Any:
        """One round trip on the transaction's connection: what is queued, then ``statement``
        (the cursor on its result)."""
        if statement is not None and "objects" in statement:  # what was read ahead may be stale (not by ``sql()``)
            bound.read.clear()
        if not bound.queued:
            return bound.conn.execute(statement, args) if statement is not None else None
        statements, bound.queued = bound.queued, []
        if statement is not None:
            statements.append((statement, tuple(args)))
        bound.sent = True
        return _batch(bound.conn, statements)

    def _commit(self, bound: _Bound) -> list:
        """What is queued, the transaction's events and notifications, the reads asked for at commit,
        and COMMIT, in one round trip (none for a transaction that neither read nor wrote); the events
        as committed (``pg_events``)."""
        statements = bound.queued
        kept = self._kept_here() if bound.later else None
        later = list(dict.fromkeys(bound.later)) if kept is not None else []
        if (not bound.sent and not bound.events and not bound.notes and not later
                and statements == [("BEGIN", ()), LOCK]):
            return []
        positions = []
        if bound.events:
            positions.append(len(statements))
            statements.append(pg_events.insert(bound.events))
        if bound.notes:
            notes = list(dict.fromkeys(bound.notes))
            statements.append(("SELECT pg_notify(%s, note) FROM (VALUES " + ", ".join(["(%s)"] * len(notes))
                               + ") AS t(note)", (CHANNEL, *notes)))
        positions += range(len(statements), len(statements) + len(later))
        statements += [*later, ("COMMIT", ())]
        try:
            if positions:
                rows = _rows(bound.conn, statements, positions)
            else:
                rows = []
                _batch(bound.conn, statements)
        except BaseException:
            _rollback(bound.conn)
            raise
        if later:
            kept.update(zip(later, rows[len(rows) - len(later):]))
        return pg_events.chained(bound.events, rows[0]) if bound.events else []

    # -- reads ahead (``BaseStore.read_ahead``) ---------------------------------------------
    def _kept_here(self) -> dict | None:
        kept = self._kept.get()
        return kept[1] if kept is not None and kept[0] == _owner() else None

    @contextmanager
    def reads_kept(self) -> Iterator[None]:
        token = self._kept.set((_owner(), {}))
        try:
            yield
        finally:
            self._kept.reset(token)

    def _keys(self, reads: list[tuple]) -> list[tuple[str, tuple]]:
        return list(dict.fromkeys((sql.replace("?", "%s"), tuple(args))
                                  for sql, args in map(self._read_key, reads)))

    def read_ahead(self, reads: list[tuple]) -> None:
        keys = self._keys(reads)
        bound = self._bound()
        if bound is not None:  # with what the transaction queued (its BEGIN, at first): they see it
            keys = [key for key in keys if key not in bound.read]
            if keys:
                statements, bound.queued = bound.queued + keys, []
                bound.sent = True
                first = len(statements) - len(keys)
                bound.read.update(zip(keys, _rows(bound.conn, statements, list(range(first, len(statements))))))
            return
        kept = self._kept_here()
        if kept is not None and keys:
            with pg_guard.connection(self._pool) as conn:
                kept.update(zip(keys, _rows(conn, keys, list(range(len(keys))))))

    def read_at_commit(self, reads: list[tuple]) -> None:
        bound = self._bound()
        if bound is None:
            self.read_ahead(reads)
        else:
            bound.later += self._keys(reads)

    def after_commit(self, callback: Callable[[], None]) -> None:
        bound = self._bound()
        if bound is None:
            callback()
        else:
            bound.pending.append(callback)

    def _fetch(self, sql: str, args: tuple | list = ()) -> list[tuple]:
        key = (sql.replace("?", "%s"), tuple(args))
        bound = self._bound()
        if bound is not None:
            if key in bound.read:  # read ahead in this transaction, not written since (``_write``)
                return bound.read.pop(key)
            return self._send(bound, *key).fetchall()
        kept = self._kept_here()
        if kept and key in kept:  # read with the last commit or ahead (``reads_kept``), nothing written since
            return kept.pop(key)
        return pg_guard.fetch(self._pool, key)

    def _exec(self, sql: str, args: tuple | list = ()) -> int:
        bound = self._bound()
        if bound is not None:
            return self._send(bound, sql.replace("?", "%s"), args).rowcount
        kept = self._kept_here()
        if kept:
            kept.clear()
        with pg_guard.connection(self._pool) as conn:
            return conn.execute(sql.replace("?", "%s"), args).rowcount

    def _write(self, sql: str, args: tuple | list = (), kind: str | None = None) -> None:
        """Inside a transaction: queued for its next round trip (an error surfaces there, and the
        transaction rolls back). ``kind``: the write replaces an object of that kind only, so what
        was read ahead of other kinds stays."""
        bound = self._bound()
        if bound is None:
            self._exec(sql, args)
            return
        if kind is None:  # any write: nothing read ahead is trusted any more
            bound.read.clear()
        else:  # an object of ``kind`` replaced: what was read ahead of that kind goes (its key starts with it)
            for key in [key for key in bound.read if key[1][:1] == (kind,)]:
                del bound.read[key]
        bound.queued.append((sql.replace("?", "%s"), tuple(args)))

    def save(self, kind: str, obj: dict[str, Any], parent: str = "") -> dict[str, Any]:
        """Replace or insert, in one statement needing no answer (queued in a transaction). Scoped, an
        object of another project with this key is refused (body NULL: a NOT NULL violation), as the
        INSERT that follows a missed UPDATE is refused elsewhere."""
        scoped = current()
        body = "CASE WHEN objects.project = EXCLUDED.project THEN EXCLUDED.body END" if scoped else "EXCLUDED.body"
        with self.transaction():
            self._write(
                "INSERT INTO objects (kind, parent, id, created_at, body, project) VALUES (?, ?, ?, ?, ?, ?) "
                f"ON CONFLICT (kind, parent, id) DO UPDATE SET body = {body}",
                (kind, parent, obj["id"], int(obj.get("created_at") or 0), encode(obj), scoped or DEFAULT_PROJECT),
                kind,
            )
        return obj

    # -- signals ----------------------------------------------------------------------------
    def _signal(self, kind: str, run_id: str) -> None:
        """NOTIFY the other replicas at commit; this one is told directly (no round trip)."""
        note = f"{kind}:{run_id}:{self._origin}"
        bound = self._bound()
        if bound is not None:
            bound.notes.append(note)
        else:
            self._exec("SELECT pg_notify(?, ?)", (CHANNEL, note))
        self.after_commit(lambda: self._dispatch(kind, run_id))

    def _dispatch(self, kind: str, run_id: str) -> None:
        if kind == "work" and run_id:  # queued by this process (another's come from the listener: probed)
            self._queued_here.set()
        super()._dispatch(kind, run_id)

    def _listen(self) -> None:
        """LISTEN for signals of every replica (this one included); reconnect when cut off."""
        import psycopg

        while not self._stopping.is_set():
            try:
                with psycopg.connect(self.path, autocommit=True) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    self._listening.set()
                    self._dispatch("work", "")  # anything queued while we were not listening
                    pg_events.stale(self, None)  # and any event written meanwhile
                    while not self._stopping.is_set():
                        for note in conn.notifies(timeout=0.05):  # short: close() joins this thread
                            kind, run_id, origin = (note.payload.split(":") + ["", ""])[:3]
                            if origin == self._origin:
                                continue
                            if kind == "event":
                                pg_events.stale(self, run_id)
                            else:
                                Coordination._dispatch(self, kind, run_id)
            except psycopg.Error as error:
                if self._stopping.is_set():
                    return
                log.warning("PostgreSQL listener lost its connection (%s); reconnecting", type(error).__name__)
                self._stopping.wait(1.0)

    # -- run queue --------------------------------------------------------------------------
    def enqueue_run(self, run_id: str) -> None:
        """As ``Coordination.enqueue_run``, in one statement needing no answer (queued in the caller's
        transaction): a held run is marked ``again``, a waiting one goes to the back of the queue."""
        with self.transaction():
            self._write(
                "INSERT INTO run_queue (run_id) VALUES (?) ON CONFLICT (run_id) DO UPDATE SET "
                "again = CASE WHEN run_queue.owner IS NULL THEN 0 ELSE 1 END, "
                "lease_until = CASE WHEN run_queue.owner IS NULL THEN NULL ELSE run_queue.lease_until END, "
                "seq = CASE WHEN run_queue.owner IS NULL THEN nextval(pg_get_serial_sequence('run_queue', 'seq')) "
                "ELSE run_queue.seq END", (run_id,))
            self._signal("work", run_id)

    def queue_claimed(self, run_id: str, owner: str, lease: float) -> None:
        """In one statement needing no answer (queued in the caller's transaction); the run's project
        known for the executor's task (``project_of``) once it commits."""
        project = current() or DEFAULT_PROJECT
        with self.transaction():
            self._write("INSERT INTO run_queue (run_id, owner, lease_until) "
                        "VALUES (?, ?, clock_timestamp() + make_interval(secs => ?))", (run_id, owner, float(lease)))
            self.after_commit(lambda: self._claimed.__setitem__(run_id, project))

    def claim_runs(self, owner: str, lease: float, limit: int) -> list[str]:
        if limit < 1:
            return []
        if self._queued_here.is_set():  # this process queued a run: claim at once
            self._queued_here.clear()
        elif not self._fetch("SELECT 1 FROM run_queue WHERE owner IS NULL OR lease_until < clock_timestamp() LIMIT 1"):
            return []  # nothing to claim: no write lock needed to know that
        claim = ("UPDATE run_queue SET owner = %s, lease_until = clock_timestamp() + make_interval(secs => %s) "
                 "WHERE run_id IN (SELECT run_id FROM run_queue WHERE owner IS NULL OR lease_until < clock_timestamp() "
                 "ORDER BY seq LIMIT %s FOR UPDATE SKIP LOCKED) RETURNING run_id, "
                 "(SELECT project FROM objects WHERE kind = 'run' AND id = run_queue.run_id ORDER BY seq LIMIT 1), seq",
                 (owner, float(lease), int(limit)))
        if self._bound() is not None:
            with self.transaction():
                rows = self._fetch(claim[0].replace("%s", "?"), claim[1])
        else:  # the lock and the claim in one round trip: one implicit transaction, the lock held only in it
            with pg_guard.connection(self._pool) as conn:
                rows = _batch(conn, [LOCK, claim]).fetchall()
        for run_id, project, _ in rows:
            if project is not None:  # what the executor asks next (project_of), known now
                self._claimed[run_id] = project
        return [run_id for run_id, _, _ in sorted(rows, key=lambda row: row[2])]

    def project_of(self, kind: str, id: str) -> str | None:
        if kind == "run" and id in self._claimed:
            return self._claimed.pop(id, None) or super().project_of(kind, id)
        return super().project_of(kind, id)

    def drop_run(self, run_id: str, owner: str) -> None:
        self._claimed.pop(run_id, None)
        super().drop_run(run_id, owner)

    def release_run(self, run_id: str, owner: str) -> None:
        """As ``Coordination.release_run``, in one round trip (one implicit transaction under the lock)."""
        self._claimed.pop(run_id, None)
        if self._bound() is not None:
            return super().release_run(run_id, owner)
        with pg_guard.connection(self._pool) as conn:
            requeued = _batch(conn, [
                LOCK,
                ("DELETE FROM run_queue WHERE run_id = %s AND owner = %s AND again = 0", (run_id, owner)),
                ("WITH u AS (UPDATE run_queue SET owner = NULL, lease_until = NULL, again = 0 "
                 "WHERE run_id = %s AND owner = %s RETURNING run_id) SELECT pg_notify(%s, %s) FROM u",
                 (run_id, owner, CHANNEL, f"work:{run_id}:{self._origin}")),
            ]).rowcount
        if requeued:
            self._dispatch("work", run_id)

    def renew_lease(self, run_id: str, owner: str, lease: float) -> bool:
        """Not a write transaction: it only touches this owner's own queue row."""
        return self._exec(
            "UPDATE run_queue SET lease_until = clock_timestamp() + make_interval(secs => ?) "
            "WHERE run_id = ? AND owner = ?", (lease, run_id, owner),
        ) > 0

    def holds_lease(self, run_id: str, owner: str) -> bool:
        return bool(self._fetch(
            "SELECT 1 FROM run_queue WHERE run_id = ? AND owner = ? AND lease_until >= clock_timestamp()",
            (run_id, owner),
        ))

    # -- events -----------------------------------------------------------------------------
    def publish_event(self, run_id: str, name: str, data: Any) -> None:
        """Inside a transaction: written with its commit. Outside: in one round trip under the write
        lock (so events enter ``run_events`` in commit order). Then to this process's streams."""
        event, note = (run_id, name, payload_of(name, data)), f"event:{run_id}:{self._origin}"
        bound = self._bound()
        if bound is not None:
            bound.events.append(event)
            bound.notes.append(note)
            return
        with pg_guard.connection(self._pool) as conn:
            rows = _batch(conn, [LOCK, pg_events.insert([event]), ("SELECT pg_notify(%s, %s)", (CHANNEL, note))],
                          at=1).fetchall()
        pg_events.deliver(self, pg_events.chained([event], rows))

    def _last_event(self, run_id: str) -> int:
        return int(self._fetch("SELECT coalesce(max(seq), 0) FROM run_events WHERE run_id = ?", (run_id,))[0][0])

    def pull_events(self, sub: Subscription) -> None:
        pg_events.pull(self, sub)

    def prune_events(self, older_than: float) -> int:
        return self._exec("DELETE FROM run_events WHERE at < clock_timestamp() - make_interval(secs => ?)",
                          (older_than,))


def _pool_size() -> int:
    raw = os.environ.get(POOL_ENV, "").strip()
    if not raw:
        return 10
    if not raw.isdigit() or int(raw) < 2:
        raise ConfigError(f"{POOL_ENV}={raw!r} is not a number of connections", hint="Use a whole number, 2 or more.")
    return int(raw)
