"""The request's key check on PostgreSQL, sent with the request's first statement instead of before it.

A request with a project key this replica has seen before (``asstctl.server.projects``: a key's id and
project never change, only whether it is still live) carries a check in ``scope.KEY_CHECK``: a statement
(``check.statement``: the key's row, by its primary key) and ``check.judge(rows)``, which raises the
request's 401 when the key is gone or inactive. The check runs on the first connection the request
takes from the pool, before any statement of the request is sent: a plain read (``get``) joined to it
in one statement (one round trip, as without a project key), anything else after it on that connection.
So a key revoked on any replica fails on the next request everywhere, and a known key costs no hop to
a worker thread before the request, and no round trip of its own when the request's first statement is
a plain read.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator

from asstctl.server.store.scope import KEY_CHECK

# a plain read made part of the check's statement: the check's one row joined to the read's rows
JOINED = ("SELECT k.body, r.* FROM (SELECT ({check}) AS body) k "
          "LEFT JOIN LATERAL (SELECT true AS found, q.* FROM ({read}) q) r ON true")


def pending() -> Any:
    """The request's key check, if it has not passed yet (one that failed is checked again: it raises)."""
    check = KEY_CHECK.get()
    return check if check is not None and not check.passed else None


@contextmanager
def connection(pool: Any) -> Iterator[Any]:
    """A pooled connection, the request's key checked on it first (nothing of the request sent before)."""
    with pool.connection() as conn:
        check = pending()
        if check is not None:
            check.judge(conn.execute(*check.statement).fetchall())
        yield conn


def fetch(pool: Any, key: tuple[str, tuple]) -> list[tuple]:
    """The rows of a read outside a transaction; with the request's key check in the same statement if it can be."""
    with pool.connection() as conn:
        check = pending()
        if check is None:
            return conn.execute(*key).fetchall()
        sql, args = key
        if not _joinable(sql):
            check.judge(conn.execute(*check.statement).fetchall())
            return conn.execute(sql, args).fetchall()
        rows = conn.execute(JOINED.format(check=check.statement[0], read=sql), (*check.statement[1], *args)).fetchall()
        check.judge([(rows[0][0],)] if rows[0][0] is not None else [])
        return [row[2:] for row in rows if row[1]]


def _joinable(sql: str) -> bool:
    """A plain SELECT whose rows keep their order when joined to the check's one row: no order asked
    (``get`` by primary key), or one row at most (``get`` by id: ``ORDER BY seq LIMIT 1``)."""
    plain = sql.startswith("SELECT ") and ";" not in sql and " FOR " not in sql
    return plain and (" ORDER BY " not in sql or sql.endswith(" LIMIT 1"))
