"""file_search's dense index on PostgreSQL: the ``DenseIndex`` interface of
``asstctl.server.retrieval.dense``, with the vectors in the store's database.

The tables are created by the store's migrations (``asstctl.server.store.pg_schema``, migrations
2 and 5): ``retrieval_vectors`` (one float32 vector per chunk, as ``bytea``), ``retrieval_generation``
(a per-store counter bumped on every change) and ``retrieval_changes`` (the generation that last
changed each file). The search and its bookkeeping are the SQLite index's
(:class:`dense.MatrixSearch`): each replica keeps a store's matrix in memory (numpy), exact cosine
or IVF from ``ivf.IVF_FROM`` vectors, and when the store's generation moved reads the files
changed since — so a file indexed through one replica is found through every other. (pgvector
would search in the database; it is not required, and not used.)

May import: ``asstctl.server.retrieval.dense``.
"""

from __future__ import annotations

from typing import Any

from asstctl.server.retrieval.dense import MatrixSearch


class PostgresDenseIndex(MatrixSearch):
    def __init__(self, store: Any, *, incremental: bool = True):
        if getattr(store, "backend", None) != "postgres":
            raise ValueError("PostgresDenseIndex needs the PostgreSQL store")
        super().__init__(store, incremental=incremental)

    def add(self, store_id: str, file_id: str, model: str, chunk_ids: list[int], vectors: list[list[float]]) -> None:
        import numpy as np

        if not chunk_ids:
            return
        blobs = [np.asarray(vector, dtype=np.float32).tobytes() for vector in vectors]
        ids = list(chunk_ids[: len(blobs)])
        with self.store.transaction():
            displaced = self.store._fetch(  # the files whose rows these chunk ids take over (sent with BEGIN)
                "SELECT DISTINCT store_id, file_id FROM retrieval_vectors WHERE id = ANY(?::bigint[]) "
                "AND (store_id <> ? OR file_id <> ?)",  # (an array literal: a read's arguments must be hashable)
                ("{" + ",".join(str(int(i)) for i in ids) + "}", store_id, file_id))
            self.store._write(  # (queued: sent with the commit)
                "INSERT INTO retrieval_vectors (id, store_id, file_id, model, vec) "
                "SELECT t.id, ?, ?, ?, t.vec FROM unnest(?::bigint[], ?::bytea[]) AS t(id, vec) "
                "ON CONFLICT (id) DO UPDATE SET store_id = EXCLUDED.store_id, file_id = EXCLUDED.file_id, "
                "model = EXCLUDED.model, vec = EXCLUDED.vec",
                (store_id, file_id, model, ids, blobs),
            )
            self._changed(store_id, file_id, displaced)

    def _rows(self, store_id: str, model: str, file_ids: list[str] | None = None) -> list[tuple]:
        sql = "SELECT id, file_id, vec FROM retrieval_vectors WHERE store_id = ? AND model = ?"
        if file_ids is None:
            return self.store._fetch(sql + " ORDER BY id", (store_id, model))
        return self.store._fetch(sql + " AND file_id = ANY(?) ORDER BY id", (store_id, model, list(file_ids)))
