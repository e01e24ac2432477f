"""file_search's dense index on PostgreSQL: the ``DenseIndex`` interface of
``asstctl.server.retrieval.dense``, with the vectors in the store's database.

The tables are created by the store's migrations (``asstctl.server.store.pg_schema``, migration 2):
``retrieval_vectors`` (one float32 vector per chunk, as ``bytea``) and ``retrieval_generation``
(a per-store counter bumped on every change). The search is the SQLite index's
(:class:`dense.MatrixSearch`): each replica keeps a store's matrix in memory (numpy), exact cosine
or IVF from ``ivf.IVF_FROM`` vectors, and reloads it when the store's generation moved — so a
file indexed through one replica is found through every other. (pgvector would search in the
database; it is not required, and not used.)

May import: ``asstctl.server.retrieval.dense``.
"""

from __future__ import annotations

from typing import Any

from asstctl.server.retrieval.dense import MatrixSearch


class PostgresDenseIndex(MatrixSearch):
    def __init__(self, store: Any):
        if getattr(store, "backend", None) != "postgres":
            raise ValueError("PostgresDenseIndex needs the PostgreSQL store")
        super().__init__(store)

    def add(self, store_id: str, file_id: str, model: str, chunk_ids: list[int], vectors: list[list[float]]) -> None:
        import numpy as np

        if not chunk_ids:
            return
        blobs = [np.asarray(vector, dtype=np.float32).tobytes() for vector in vectors]
        with self.store.transaction():
            self.store._exec(
                "INSERT INTO retrieval_vectors (id, store_id, file_id, model, vec) "
                "SELECT t.id, ?, ?, ?, t.vec FROM unnest(?::bigint[], ?::bytea[]) AS t(id, vec) "
                "ON CONFLICT (id) DO UPDATE SET store_id = EXCLUDED.store_id, file_id = EXCLUDED.file_id, "
                "model = EXCLUDED.model, vec = EXCLUDED.vec",
                (store_id, file_id, model, list(chunk_ids[: len(blobs)]), blobs),
            )
            self._bump(store_id)

    def remove(self, store_id: str, file_id: str) -> None:
        with self.store.transaction():
            if self.store._exec("DELETE FROM retrieval_vectors WHERE store_id = ? AND file_id = ?", (store_id, file_id)):
                self._bump(store_id)

    def remove_store(self, store_id: str) -> None:
        with self.store.transaction():
            self.store._exec("DELETE FROM retrieval_vectors WHERE store_id = ?", (store_id,))
            self.store._exec("DELETE FROM retrieval_generation WHERE store_id = ?", (store_id,))

    def _bump(self, store_id: str) -> None:
        self.store._exec("INSERT INTO retrieval_generation (store_id, gen) VALUES (?, 1) "
                         "ON CONFLICT (store_id) DO UPDATE SET gen = retrieval_generation.gen + 1", (store_id,))

    def _generation(self, store_id: str) -> int:
        rows = self.store._fetch("SELECT gen FROM retrieval_generation WHERE store_id = ?", (store_id,))
        return rows[0][0] if rows else 0

    def _rows(self, store_id: str, model: str) -> list[tuple]:
        return self.store._fetch(
            "SELECT id, file_id, vec FROM retrieval_vectors WHERE store_id = ? AND model = ? ORDER BY id", (store_id, model)
        )
