"""The dense index: one embedding per chunk, nearest neighbours by cosine similarity.

:class:`DenseIndex` is the interface. :class:`SqliteDenseIndex` keeps the vectors (float32
blobs) in ``retrieval_vectors`` of the store's database and searches a per-store matrix held in
memory (numpy): exact cosine over a store's chunks, one matrix product, or from
``ivf.IVF_FROM`` vectors on, over the nearest clusters of an inverted-file index built when the
matrix is loaded (``ivf.py``). A per-store generation
number in ``retrieval_generation`` tells every process sharing the database when its matrix is
stale. The search itself (:class:`MatrixSearch`) is shared with the PostgreSQL index
(``pg_dense``), which reads the same two tables from the PostgreSQL store. (sqlite-vec would be the in-database alternative, but the Python on these machines is built
without ``enable_load_extension``, so SQLite cannot load it.)
"""

from __future__ import annotations

import threading
from typing import Protocol

from asstctl.server.retrieval import ivf

SCHEMA = """
CREATE TABLE IF NOT EXISTS retrieval_vectors (
    id INTEGER PRIMARY KEY,
    store_id TEXT NOT NULL,
    file_id TEXT NOT NULL,
    model TEXT NOT NULL,
    vec BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS retrieval_vectors_file ON retrieval_vectors (store_id, file_id);
CREATE TABLE IF NOT EXISTS retrieval_generation (store_id TEXT PRIMARY KEY, gen INTEGER NOT NULL);
"""


class DenseIndex(Protocol):
    def add(self, store_id: str, file_id: str, model: str, chunk_ids: list[int], vectors: list[list[float]]) -> None: ...

    def remove(self, store_id: str, file_id: str) -> None: ...

    def remove_store(self, store_id: str) -> None: ...

    def search(self, store_ids: list[str], file_ids: list[str] | None, model: str, vector: list[float],
               limit: int, where=None) -> list[tuple[int, float]]:
        """``[(chunk id, cosine similarity)]``, best first (only files that pass ``where``, a
        ``filter_sql.FileFilter``, when given)."""
        ...


class MatrixSearch:
    """The search the dense indexes share: a per-store matrix in memory (numpy), reloaded when the
    store's generation changes. Subclasses read ``_generation`` and ``_rows`` from their database."""

    def __init__(self, store):
        self.store = store
        self._cache: dict[tuple[str, str], tuple] = {}
        self._lock = threading.Lock()

    def _generation(self, store_id: str) -> int:
        raise NotImplementedError

    def _rows(self, store_id: str, model: str) -> list[tuple]:
        """``[(chunk id, file id, float32 bytes)]`` of a store's vectors for ``model``, by chunk id."""
        raise NotImplementedError

    def search(self, store_ids: list[str], file_ids: list[str] | None, model: str, vector: list[float],
               limit: int, where=None) -> list[tuple[int, float]]:
        import numpy as np

        query = np.asarray(vector, dtype=np.float32)
        norm = float(np.linalg.norm(query))
        if norm == 0.0:
            return []
        query /= norm
        wanted = None if file_ids is None else set(file_ids)
        found: list[tuple[int, float]] = []
        for store_id in store_ids:
            ids, files, matrix, clusters = self._matrix(store_id, model)
            if matrix is None or matrix.shape[1] != query.shape[0]:
                continue
            rows = np.arange(len(matrix))
            if clusters is not None:  # a large store: only the clusters nearest the query
                spans = clusters.spans(query)
                rows = np.concatenate([np.arange(a, b) for a, b in spans])
                scores = np.concatenate([matrix[a:b] @ query for a, b in spans])
            else:
                scores = matrix @ query
            if wanted is not None:
                mask = np.fromiter((files[i] in wanted for i in rows), dtype=bool, count=len(rows))
                scores = np.where(mask, scores, -np.inf)
            if where is not None:
                top = _best_passing(scores, lambda i: files[rows[i]], lambda names: where.passing(store_id, names), limit)
            else:
                k = min(limit, len(scores))
                top = np.argpartition(-scores, k - 1)[:k] if k < len(scores) else np.arange(len(scores))
            found.extend((int(ids[rows[i]]), float(scores[i])) for i in top if np.isfinite(scores[i]))
        found.sort(key=lambda pair: -pair[1])
        return found[:limit]

    def _matrix(self, store_id: str, model: str):
        """(chunk ids, file ids, unit-row matrix, IVF clusters or None) of a store, cached per generation."""
        import numpy as np

        gen = self._generation(store_id)
        with self._lock:
            cached = self._cache.get((store_id, model))
        if cached and cached[0] == gen:
            return cached[1:]
        rows = self._rows(store_id, model)
        if not rows or len({len(r[2]) for r in rows}) != 1:
            return np.zeros(0, dtype=np.int64), [], None, None
        ids = np.array([r[0] for r in rows], dtype=np.int64)
        matrix = np.frombuffer(b"".join(r[2] for r in rows), dtype=np.float32).reshape(len(rows), -1).copy()
        norms = np.linalg.norm(matrix, axis=1, keepdims=True)
        matrix /= np.where(norms == 0, 1, norms)
        files = [r[1] for r in rows]
        clusters = None
        if len(rows) >= ivf.IVF_FROM:
            order, clusters = ivf.build(matrix)
            ids, matrix, files = ids[order], np.ascontiguousarray(matrix[order]), [files[i] for i in order]
        with self._lock:
            self._cache[(store_id, model)] = (gen, ids, files, matrix, clusters)
        return ids, files, matrix, clusters


def _best_passing(scores, file_of, passing, limit: int) -> list[int]:
    """The best ``limit`` rows whose file passes: walked best first in blocks that double (4x
    ``limit`` first), each block's new files judged in one query by primary key — so the files read
    follow how deep the passing results lie, not how many files the store has."""
    import numpy as np

    n, kept, depth, block = len(scores), [], 0, max(4 * limit, 50)
    while len(kept) < limit and depth < n:
        upto = min(n, depth + block)
        top = np.argpartition(-scores, upto - 1)[:upto] if upto < n else np.arange(n)
        top = [int(i) for i in top[np.argsort(-scores[top], kind="stable")][depth:] if np.isfinite(scores[i])]
        ok = passing(sorted({file_of(i) for i in top}))  # files judged before are not read again
        kept.extend(i for i in top if file_of(i) in ok)
        depth, block = upto, block * 2
    return kept[:limit]


class SqliteDenseIndex(MatrixSearch):
    def __init__(self, store):
        super().__init__(store)
        with store.sql() as db:  # statement by statement: executescript would commit an open transaction
            for statement in SCHEMA.split(";"):
                if statement.strip():
                    db.execute(statement)

    def add(self, store_id: str, file_id: str, model: str, chunk_ids: list[int], vectors: list[list[float]]) -> None:
        import numpy as np

        with self.store.transaction(), self.store.sql() as db:
            for chunk_id, vector in zip(chunk_ids, vectors):
                blob = np.asarray(vector, dtype=np.float32).tobytes()
                db.execute("INSERT OR REPLACE INTO retrieval_vectors (id, store_id, file_id, model, vec) VALUES (?, ?, ?, ?, ?)",
                           (chunk_id, store_id, file_id, model, blob))
            self._bump(db, store_id)

    def remove(self, store_id: str, file_id: str) -> None:
        with self.store.transaction(), self.store.sql() as db:
            db.execute("DELETE FROM retrieval_vectors WHERE store_id = ? AND file_id = ?", (store_id, file_id))
            self._bump(db, store_id)

    def remove_store(self, store_id: str) -> None:
        with self.store.transaction(), self.store.sql() as db:
            db.execute("DELETE FROM retrieval_vectors WHERE store_id = ?", (store_id,))
            db.execute("DELETE FROM retrieval_generation WHERE store_id = ?", (store_id,))

    @staticmethod
    def _bump(db, store_id: str) -> None:
        db.execute("INSERT INTO retrieval_generation (store_id, gen) VALUES (?, 1) "
                   "ON CONFLICT (store_id) DO UPDATE SET gen = retrieval_generation.gen + 1", (store_id,))

    def _generation(self, store_id: str) -> int:
        with self.store.sql() as db:
            row = db.execute("SELECT gen FROM retrieval_generation WHERE store_id = ?", (store_id,)).fetchone()
        return row[0] if row else 0

    def _rows(self, store_id: str, model: str) -> list[tuple]:
        with self.store.sql() as db:
            return db.execute("SELECT id, file_id, vec FROM retrieval_vectors WHERE store_id = ? AND model = ? ORDER BY id",
                              (store_id, model)).fetchall()
