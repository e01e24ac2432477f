"""Versioned schema migrations of the PostgreSQL store, applied at start-up.

Each migration runs once, in order, inside one transaction that first takes an advisory lock
(``MIGRATE_LOCK``): replicas starting together wait for each other, and the second finds the
work done. A database migrated by a newer asstctl is refused rather than misread.
To change the schema, append a migration; never edit one that has shipped.
"""

from __future__ import annotations

from typing import Any

from asstctl.errors import ConfigError
from asstctl.server.store.scope import DEFAULT_PROJECT

MIGRATE_LOCK = 0x6173_7374_6374_6C00  # "asstctl" + 0

MIGRATIONS: list[str] = [
    # 1: documents, chunked blobs, the run queue with leases, run events
    """
    CREATE TABLE objects (
        seq bigserial PRIMARY KEY,
        kind text NOT NULL,
        parent text NOT NULL DEFAULT '',
        id text NOT NULL,
        created_at bigint NOT NULL,
        body text NOT NULL,
        UNIQUE (kind, parent, id)
    );
    CREATE INDEX objects_list ON objects (kind, parent, created_at, seq);
    CREATE INDEX objects_id ON objects (kind, id);
    CREATE INDEX objects_parent ON objects (parent);
    CREATE TABLE blob_chunks (key text NOT NULL, n integer NOT NULL, data bytea NOT NULL, PRIMARY KEY (key, n));
    CREATE TABLE blob_index (id text PRIMARY KEY, key text NOT NULL, chunks integer NOT NULL, size bigint NOT NULL);
    CREATE INDEX blob_index_key ON blob_index (key);
    CREATE TABLE run_queue (
        seq bigserial PRIMARY KEY,
        run_id text NOT NULL UNIQUE,
        owner text,
        lease_until timestamptz,
        again integer NOT NULL DEFAULT 0
    );
    CREATE TABLE run_events (
        seq bigserial PRIMARY KEY,
        run_id text NOT NULL,
        name text NOT NULL,
        payload text NOT NULL,
        at timestamptz NOT NULL DEFAULT clock_timestamp()
    );
    CREATE INDEX run_events_run ON run_events (run_id, seq);
    CREATE INDEX run_events_at ON run_events (at);
    """,
    # 2: file_search's indexes: lexical (asstctl.server.retrieval.pg_lexical) and the dense index's vectors
    """
    CREATE TABLE retrieval_vectors (
        id bigint PRIMARY KEY,
        store_id text NOT NULL,
        file_id text NOT NULL,
        model text NOT NULL,
        vec bytea NOT NULL
    );
    CREATE INDEX retrieval_vectors_file ON retrieval_vectors (store_id, file_id);
    CREATE TABLE retrieval_generation (store_id text PRIMARY KEY, gen bigint NOT NULL);
    CREATE TABLE retrieval_chunks (
        id bigserial PRIMARY KEY,
        store_id text NOT NULL,
        file_id text NOT NULL,
        seq integer NOT NULL,
        tokens integer NOT NULL,
        text text NOT NULL,
        tsv tsvector GENERATED ALWAYS AS (to_tsvector('english', text)) STORED
    );
    CREATE INDEX retrieval_chunks_file ON retrieval_chunks (store_id, file_id, seq);
    CREATE INDEX retrieval_chunks_tsv ON retrieval_chunks USING gin (tsv);
    """,
    # 3: projects (asstctl.server.store.scope): every object belongs to one; what was there goes to the default
    f"""
    ALTER TABLE objects ADD COLUMN project text NOT NULL DEFAULT '{DEFAULT_PROJECT}';
    CREATE INDEX objects_project ON objects (project, kind, parent, created_at, seq);
    """,
    # 4: how many chunks hold each lexeme (asstctl.server.retrieval.pg_lexical keeps it with the chunks), counted now
    """
    CREATE TABLE retrieval_terms (lexeme text PRIMARY KEY, chunks bigint NOT NULL);
    INSERT INTO retrieval_terms (lexeme, chunks) SELECT word, ndoc FROM ts_stat('SELECT tsv FROM retrieval_chunks');
    """,
    # 5: the generation that last changed each file's vectors (asstctl.server.retrieval.dense: matrices refreshed by what
    # changed), and which generations a replica on older code reached (it bumps without stamping; NULL: it leaves them)
    """
    CREATE TABLE retrieval_changes (store_id text NOT NULL, file_id text NOT NULL, gen bigint NOT NULL,
                                    PRIMARY KEY (store_id, file_id));
    CREATE INDEX retrieval_changes_gen ON retrieval_changes (store_id, gen);
    ALTER TABLE retrieval_generation ADD COLUMN IF NOT EXISTS stamped bigint,
                                     ADD COLUMN IF NOT EXISTS unstamped_upto bigint;
    """,
    # 6: the vector store files still to ingest (asstctl.server.ingest_lease.PENDING: its WHERE, word for word), so
    # that the replicas' look for abandoned files and the resume at start read those rows only (built over what is there)
    """
    CREATE INDEX IF NOT EXISTS objects_ingest_pending ON objects (parent, id)
        WHERE kind = 'vector_store_file' AND body LIKE '%"status": "in_progress"%';
    """,
    # 7: the chunks counted in retrieval_terms: up to this id (asstctl.server.retrieval.pg_lexical folds the later ones
    # in by the hundred); every chunk there is counted already
    """
    CREATE TABLE IF NOT EXISTS retrieval_terms_upto (one boolean PRIMARY KEY DEFAULT true CHECK (one),
                                                     upto bigint NOT NULL);
    INSERT INTO retrieval_terms_upto (upto) SELECT coalesce(max(id), 0) FROM retrieval_chunks
        ON CONFLICT (one) DO UPDATE SET upto = EXCLUDED.upto;
    """,
]


def migrate(conn: Any) -> int:
    """Bring the database to the newest version; returns the version it was at."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATE_LOCK,))
        conn.execute(
            "CREATE TABLE IF NOT EXISTS asstctl_schema "
            "(version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        current = conn.execute("SELECT coalesce(max(version), 0) FROM asstctl_schema").fetchone()[0]
        if current > len(MIGRATIONS):
            raise ConfigError(
                f"the database's schema is version {current}, newer than this asstctl knows ({len(MIGRATIONS)})",
                hint="Upgrade asstctl on this replica to the version the other replicas run.",
            )
        for version in range(current + 1, len(MIGRATIONS) + 1):
            conn.execute(MIGRATIONS[version - 1])
            conn.execute("INSERT INTO asstctl_schema (version) VALUES (%s)", (version,))
    return current
