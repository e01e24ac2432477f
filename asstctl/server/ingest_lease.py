"""Ingestion leases on PostgreSQL: several replicas share one database, and a file left
``in_progress`` is ingested again only when the replica that was ingesting it is gone.

The files ``in_progress`` are read through a partial index of them (:data:`PENDING_WHERE`), on both
stores: the look costs the pending files, not every file ever ingested.

A vector store file's record carries the ``_ingest`` token of its current ingestion. Every replica
renews, every quarter of a lease (``ASSTCTL_RUN_LEASE_SECONDS``, the runs' lease, default 15 s), one
row per token it is ingesting in ``ingest_leases`` (token, owner, expiry by the database's clock),
and drops its rows when it stops cleanly. A file ``in_progress`` whose token has no live lease and
that was attached more than a lease ago (so that a file just attached on another replica is not
taken before that replica's first renewal) was abandoned: the replica that claims its lease (an
upsert that takes only a missing or expired lease, so one replica wins) ingests it again. A
replica that restarts therefore resumes only abandoned files, never those a live replica is still
ingesting, and a dead replica's files are resumed within about a lease, not at the next restart.
A frozen replica that wakes after its files were taken over commits nothing: the record's token
decides (``Ingestion._commit``), as before.

On SQLite (one process owns the database) the next start resumes every unfinished file instead.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import socket
import time
from typing import Any

log = logging.getLogger("asstctl.server")
TABLE_LOCK = 0x61737374_6c6c  # advisory lock: replicas starting together create the table once
# The vector store files still to ingest: the WHERE of the partial index ``objects_ingest_pending`` (both stores'
# migrations), word for word, so that reading them reads those rows only, however many files are ingested.
PENDING_WHERE = """kind = 'vector_store_file' AND body LIKE '%"status": "in_progress"%'"""


def pending(store: Any) -> list[tuple[str, dict]]:
    """``(store id, record)`` of every vector store file ``in_progress`` (every project), through the index."""
    hint = " INDEXED BY objects_ingest_pending" if getattr(store, "backend", None) == "sqlite" else ""
    with store.sql() as conn:
        rows = conn.execute(f"SELECT parent, body FROM objects{hint} WHERE {PENDING_WHERE}").fetchall()
    found = [(parent, json.loads(body)) for parent, body in rows]
    return [(parent, item) for parent, item in found if item.get("status") == "in_progress"]


class Leases:
    def __init__(self, store: Any, lease: float):
        self.store, self.lease = store, lease
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        with store.sql() as conn, conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (TABLE_LOCK,))
            conn.execute("CREATE TABLE IF NOT EXISTS ingest_leases (token text PRIMARY KEY, owner text NOT NULL, "
                         "expires_at timestamptz NOT NULL)")

    def hold(self, tokens: list[str]) -> set[str]:
        """Renew this replica's leases of ``tokens`` and take those missing or expired; the tokens held."""
        if not tokens:
            return set()
        with self.store.sql() as conn:
            rows = conn.execute(
                "INSERT INTO ingest_leases (token, owner, expires_at) "
                "SELECT t, %s, now() + make_interval(secs => %s) FROM unnest(%s::text[]) t "
                "ON CONFLICT (token) DO UPDATE SET owner = EXCLUDED.owner, expires_at = EXCLUDED.expires_at "
                "WHERE ingest_leases.owner = EXCLUDED.owner OR ingest_leases.expires_at < now() RETURNING token",
                (self.owner, self.lease, list(tokens))).fetchall()
        return {row[0] for row in rows}

    def renew(self, tokens: list[str]) -> None:
        """Hold the leases of the files this replica is ingesting; release the rest of its own."""
        self.hold(tokens)
        with self.store.sql() as conn:
            conn.execute("DELETE FROM ingest_leases WHERE (owner = %s AND NOT token = ANY(%s::text[])) "
                         "OR expires_at < now() - interval '1 day'", (self.owner, list(tokens)))

    def abandoned(self, mine: set[str]) -> list[tuple[str, dict]]:
        """``(store id, record)`` of the files ``in_progress`` that no live replica holds, attached more
        than a lease ago, now claimed by this replica."""
        found = {}
        for parent, item in pending(self.store):
            token = item.get("_ingest") or f"{parent}/{item.get('id')}"  # (a record from before tokens)
            if token not in mine and (item.get("created_at") or 0) < time.time() - self.lease:
                found[token] = (parent, item)
        if not found:
            return []
        with self.store.sql() as conn:
            live = {row[0] for row in conn.execute(
                "SELECT token FROM ingest_leases WHERE token = ANY(%s::text[]) AND expires_at > now()",
                (list(found),)).fetchall()}
        claimed = self.hold([token for token in found if token not in live])
        return [found[token] for token in found if token in claimed]

    def drop(self) -> None:
        """This replica stops: its files go to the others at their next look."""
        with self.store.sql() as conn:
            conn.execute("DELETE FROM ingest_leases WHERE owner = %s", (self.owner,))
