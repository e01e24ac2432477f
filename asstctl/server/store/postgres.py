"""The PostgreSQL store: any number of ``asstctl serve`` replicas on one database.

psycopg 3 with a connection pool. A transaction binds one pooled connection to the current
thread or asyncio task (a context variable, checked against its owner) until it ends, so
nested ``transaction()`` calls and plain reads inside it use that connection. Write
transactions take one advisory lock (``WRITE_LOCK``) first: they are serialized across all
replicas exactly as SQLite's ``BEGIN IMMEDIATE`` serializes them in one process, which keeps
read-modify-write and check-then-insert code correct on both stores, and makes ``seq`` grow in
commit order (stable cursors, events in order).

Signals (``work``, ``cancel``, ``event``) travel as ``NOTIFY asstctl`` at commit; a listener
thread per store dispatches them. Run events live in ``run_events`` so a stream on any replica
reads exactly what was committed.
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
from asstctl.server.store.base import BaseStore
from asstctl.server.store.coordination import Coordination, Subscription, payload_of
from asstctl.server.store.pg_schema import migrate

log = logging.getLogger("asstctl.server.store")

WRITE_LOCK = 0x6173_7374_6374_6C01  # pg_advisory_xact_lock key of write transactions ("asstctl" + 1)
CHANNEL = "asstctl"
CONNECT_TIMEOUT = 10.0
POOL_ENV = "ASSTCTL_PG_POOL_SIZE"  # connections per replica (default 10)


@dataclass
class _Bound:
    """A transaction in progress: its connection, who holds it, and what it sends at commit."""

    conn: Any
    owner: tuple
    pending: list[Callable[[], None]] = field(default_factory=list)  # after commit, in this process
    events: list[tuple[str, str, str]] = field(default_factory=list)  # (run_id, name, payload)
    notes: list[str] = field(default_factory=list)  # NOTIFY payloads
    leases: set = field(default_factory=set)  # (run_id, owner) found held in this transaction


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
        self._check_reachable()
        self._pool = ConnectionPool(url, min_size=1, max_size=max(2, pool_size), kwargs={"autocommit": True},
                                    open=False, name="asstctl", timeout=30)
        try:
            self._pool.open(wait=True, timeout=CONNECT_TIMEOUT)
        except PoolTimeout:
            self._pool.close()
            raise self._unreachable(f"no connection within {CONNECT_TIMEOUT:.0f} s") from None
        self._init_coordination()
        self._origin = secrets.token_hex(6)  # this store's signals come back from LISTEN: skip them
        with self._pool.connection() as conn:
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
    def _connection(self) -> Iterator[Any]:
        bound = self._bound()
        if bound is not None:
            yield bound.conn
            return
        with self._pool.connection() as conn:
            yield conn

    @contextmanager
    def sql(self) -> Iterator[Any]:
        """A psycopg connection (the transaction's, inside one), for modules with their own tables."""
        with self._connection() as conn:
            yield conn

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
        with self._pool.connection() as conn:
            bound = _Bound(conn, _owner())
            token = self._tx.set(bound)
            try:
                held = self._begin(conn, lease)
                if held:
                    bound.leases.add(lease)
                yield held
            except BaseException:
                self._tx.reset(token)
                _rollback(conn)
                raise
            self._tx.reset(token)
            self._commit(bound)
        for callback in bound.pending:
            callback()

    @staticmethod
    def _begin(conn: Any, lease: tuple[str, str] | None) -> bool:
        """BEGIN, the write lock and (``lease``) the lease check, in one round trip."""
        from psycopg import sql

        if lease is None:
            conn.execute(f"BEGIN; SELECT pg_advisory_xact_lock({WRITE_LOCK})")
            return True
        cursor = conn.execute(sql.SQL(
            "BEGIN; SELECT pg_advisory_xact_lock({}); SELECT count(*) FROM run_queue "
            "WHERE run_id = {} AND owner = {} AND lease_until >= clock_timestamp()"
        ).format(sql.Literal(WRITE_LOCK), sql.Literal(lease[0]), sql.Literal(lease[1])))
        while cursor.nextset():  # the last statement's result
            pass
        return bool(cursor.fetchone()[0])

    def _commit(self, bound: _Bound) -> None:
        """The transaction's events and notifications, and COMMIT, in one round trip."""
        conn = bound.conn
        try:
            with conn.pipeline():
                if bound.events:
                    runs, names, payloads = (list(column) for column in zip(*bound.events))
                    conn.execute(
                        "INSERT INTO run_events (run_id, name, payload) SELECT r, n, p FROM "
                        "unnest(%s::text[], %s::text[], %s::text[]) WITH ORDINALITY AS t(r, n, p, i) ORDER BY i",
                        (runs, names, payloads),
                    )
                if bound.notes:
                    conn.execute("SELECT pg_notify(%s, note) FROM unnest(%s::text[]) AS note",
                                 (CHANNEL, list(dict.fromkeys(bound.notes))))
                conn.execute("COMMIT")
        except BaseException:
            _rollback(conn)
            raise

    def after_commit(self, callback: Callable[[], None]) -> None:
        bound = self._bound()
        if bound is None:
            callback()
        else:
            bound.pending.append(callback)

    def _fetch(self, sql: str, args: tuple | list = ()) -> list[tuple]:
        with self._connection() as conn:
            return conn.execute(sql.replace("?", "%s"), args).fetchall()

    def _exec(self, sql: str, args: tuple | list = ()) -> int:
        with self._connection() as conn:
            return conn.execute(sql.replace("?", "%s"), args).rowcount

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

    def _listen(self) -> None:
        """LISTEN for signals of every replica (this one included); reconnect when cut off."""
        import psycopg

        while not self._stopping.is_set():
            try:
                with psycopg.connect(self.path, autocommit=True) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    self._listening.set()
                    self._dispatch("work", "")  # anything queued while we were not listening
                    while not self._stopping.is_set():
                        for note in conn.notifies(timeout=0.05):  # short: close() joins this thread
                            kind, run_id, origin = (note.payload.split(":") + ["", ""])[:3]
                            if origin != self._origin:
                                self._dispatch(kind, run_id)
            except psycopg.Error as error:
                if self._stopping.is_set():
                    return
                log.warning("PostgreSQL listener lost its connection (%s); reconnecting", type(error).__name__)
                self._stopping.wait(1.0)

    # -- run queue --------------------------------------------------------------------------
    def claim_next_run(self, owner: str, lease: float) -> str | None:
        if not self._fetch("SELECT 1 FROM run_queue WHERE owner IS NULL OR lease_until < clock_timestamp() LIMIT 1"):
            return None  # nothing to claim: no write transaction (and its lock) needed to know that
        with self.transaction():
            rows = self._fetch(
                "UPDATE run_queue SET owner = ?, lease_until = clock_timestamp() + make_interval(secs => ?) "
                "WHERE run_id = (SELECT run_id FROM run_queue "
                "WHERE owner IS NULL OR lease_until < clock_timestamp() "
                "ORDER BY seq LIMIT 1 FOR UPDATE SKIP LOCKED) RETURNING run_id",
                (owner, lease),
            )
        return rows[0][0] if rows else None

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
        """Inside a transaction: written with its commit. Outside: one statement under the write lock
        (so events enter ``run_events`` in commit order)."""
        payload, bound = payload_of(name, data), self._bound()
        if bound is not None:
            bound.events.append((run_id, name, payload))
            self._signal("event", run_id)
            return
        self._exec(
            "WITH l AS (SELECT pg_advisory_xact_lock(?)), "
            "e AS (INSERT INTO run_events (run_id, name, payload) SELECT ?, ?, ? FROM l RETURNING seq) "
            "SELECT pg_notify(?, ?) FROM e",
            (WRITE_LOCK, run_id, name, payload, CHANNEL, f"event:{run_id}:{self._origin}"),
        )
        self._dispatch("event", run_id)

    def _last_event(self, run_id: str) -> int:
        return int(self._fetch("SELECT coalesce(max(seq), 0) FROM run_events WHERE run_id = ?", (run_id,))[0][0])

    def pull_events(self, sub: Subscription) -> list[tuple[str, str]]:
        rows = self._fetch(
            "SELECT seq, name, payload FROM run_events WHERE run_id = ? AND seq > ? ORDER BY seq",
            (sub.run_id, sub.after),
        )
        if rows:
            sub.after = rows[-1][0]
        return [(name, payload) for _, name, payload in rows]

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
