"""Persistence of the Assistants server: one document model on SQLite (the default) or
PostgreSQL (several replicas on one database).

``open_store(db)`` picks the backend: a ``postgresql://`` (or ``postgres://``) URL opens
:class:`~asstctl.server.store.postgres.PostgresStore`, anything else is a SQLite path or
``:memory:``. ``Store`` is the SQLite store, as before the split.

May import: the standard library, ``asstctl.errors``; psycopg/psycopg_pool only inside
``postgres`` (an optional extra: ``pip install 'asstctl[postgres]'``).
"""

from __future__ import annotations

from asstctl.server.store.base import BaseStore
from asstctl.server.store.coordination import DONE, Subscription
from asstctl.server.store.sqlite import SQLiteStore

Store = SQLiteStore
POSTGRES_SCHEMES = ("postgresql://", "postgres://")

__all__ = ["BaseStore", "DONE", "SQLiteStore", "Store", "Subscription", "is_postgres", "open_store"]


def is_postgres(db: str) -> bool:
    return str(db).startswith(POSTGRES_SCHEMES)


def open_store(db: str) -> BaseStore:
    if is_postgres(db):
        from asstctl.server.store.postgres import PostgresStore

        return PostgresStore(str(db))
    return SQLiteStore(db)
