"""The dense index: one embedding per chunk, nearest neighbours by cosine similarity.

:class:`DenseIndex` is the interface. :class:`SqliteDenseIndex` keeps the vectors (float32
blobs) in ``retrieval_vectors`` of the store's database and searches a per-store matrix held in
memory (numpy, ``dense_matrix.Loaded``): exact cosine over a store's chunks, one matrix product,
or from ``ivf.IVF_FROM`` vectors on, over the nearest clusters of an inverted-file index
(``ivf.py``). The search itself (:class:`MatrixSearch`) is shared with the PostgreSQL index
(``pg_dense``), which reads the same tables from the PostgreSQL store.

Keeping the matrix current is incremental. Every change of a store bumps its generation
(``retrieval_generation``) and stamps each file it touched with the new generation
(``retrieval_changes``, one row per file: the last generation that added or removed its
vectors). The bump locks the store's generation row until the commit, so generations are
committed in order: a process that has seen generation ``g`` has seen every change up to ``g``.
A search that finds the generation moved reads only the files stamped after the one its matrix
holds, marks their old rows dead and appends their current rows (``Loaded.changed``); deleting a
store leaves a reset stamp (the file id ``''``) that makes every holder reload; an add that takes
over chunk ids of another file stamps that file too. A matrix is read whole only on first use, or
when the stamps cannot tell what changed: older asstctl (before the stamps) bumps the generation
without stamping, so each bump here also records whether it follows one of those (``stamped``:
the generation this code's last bump reached; ``unstamped_upto``: the last one older code
reached), and a matrix older than ``unstamped_upto``, or behind the generation while older code
made the last bump, is read whole. So is one whose generation went down (older code deletes a
store's row). (sqlite-vec would be the in-database alternative, but the Python on these machines
is built without ``enable_load_extension``, so SQLite cannot load it.)
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections import OrderedDict
from typing import Protocol

from asstctl.server.retrieval.dense_matrix import Loaded, empty, loaded

CACHE_ENV = "ASSTCTL_DENSE_CACHE_MB"  # the matrices a process keeps in memory, all stores together


def cache_budget() -> int:
    """Bytes of matrices kept (least recently searched stores go first; default 1024 MB)."""
    try:
        return max(1, int(os.environ.get(CACHE_ENV, "") or 1024)) << 20
    except ValueError:
        return 1024 << 20


SCHEMA = """
CREATE TABLE IF NOT EXISTS retrieval_vectors (
    id INTEGER PRIMARY KEY,
    store_id TEXT NOT NULL,
    file_id TEXT NOT NULL,
    model TEXT NOT NULL,
    vec BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS retrieval_vectors_file ON retrieval_vectors (store_id, file_id);
CREATE TABLE IF NOT EXISTS retrieval_generation (store_id TEXT PRIMARY KEY, gen INTEGER NOT NULL, stamped INTEGER,
                                                 unstamped_upto INTEGER);
CREATE TABLE IF NOT EXISTS retrieval_changes (
    store_id TEXT NOT NULL,
    file_id TEXT NOT NULL,
    gen INTEGER NOT NULL,
    PRIMARY KEY (store_id, file_id)
);
CREATE INDEX IF NOT EXISTS retrieval_changes_gen ON retrieval_changes (store_id, gen);
"""

RESET = ""  # the file id of the stamp a deleted store leaves: every matrix of it is reloaded
# ``stamped``: the generation this code's last bump reached (so ``stamped != gen``: the last bump
# came from older code, which stamps nothing); ``unstamped_upto``: the last generation reached by
# such a bump. Both NULL in rows made by older code, which leaves them alone (module docstring).
BUMP = ("INSERT INTO retrieval_generation (store_id, gen, stamped) VALUES (?, 1, 1) "
        "ON CONFLICT (store_id) DO UPDATE SET "
        "unstamped_upto = CASE WHEN coalesce(retrieval_generation.stamped, -1) <> retrieval_generation.gen "
        "THEN retrieval_generation.gen ELSE retrieval_generation.unstamped_upto END, "
        "gen = retrieval_generation.gen + 1, stamped = retrieval_generation.gen + 1")
STAMP = ("INSERT INTO retrieval_changes (store_id, file_id, gen) SELECT ?, ?, gen FROM retrieval_generation "
         "WHERE store_id = ? ON CONFLICT (store_id, file_id) DO UPDATE SET gen = excluded.gen")


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
    """The search the dense indexes share: a per-store matrix in memory (numpy), brought up to the
    store's generation by reading only the files changed since (module docstring). Subclasses
    write the vectors and read ``_rows`` from their database; ``incremental=False`` reloads the
    whole matrix on every change instead (what every search did before; the benchmark's baseline)."""

    def __init__(self, store, *, incremental: bool = True):
        self.store = store
        self.incremental = incremental
        # (store, model) -> matrix, least recently searched first, at most ``cache_budget()`` bytes in all
        self._cache: OrderedDict[tuple[str, str], Loaded] = OrderedDict()
        self._budget = cache_budget()
        self._lock = threading.Lock()  # the cache dict
        self._refreshing = threading.Lock()  # one refresh at a time (a second waits, then finds it done)

    # ------------------------------------------------------------------ writes (inside a transaction)

    def _changed(self, store_id: str, file_id: str, displaced: list[tuple] = ()) -> None:
        """Bump the store's generation and stamp ``file_id`` with it; and the files ``displaced``
        (``(store id, file id)``: whose rows an add took over by chunk id) in theirs, stores in
        order (a lock order for the generation rows)."""
        files: dict[str, set[str]] = {store_id: {file_id}}
        for other_store, other_file in displaced:
            files.setdefault(other_store, set()).add(other_file)
        for changed_store in sorted(files):
            self.store._write(BUMP, (changed_store,))
            for changed_file in sorted(files[changed_store]):
                self.store._write(STAMP, (changed_store, changed_file, changed_store))

    def remove(self, store_id: str, file_id: str) -> None:
        with self.store.transaction():
            if self.store._exec("DELETE FROM retrieval_vectors WHERE store_id = ? AND file_id = ?", (store_id, file_id)):
                self._changed(store_id, file_id)

    def remove_store(self, store_id: str) -> None:
        with self.store.transaction():
            self.store._exec("DELETE FROM retrieval_vectors WHERE store_id = ?", (store_id,))
            self.store._exec("DELETE FROM retrieval_changes WHERE store_id = ?", (store_id,))
            self._changed(store_id, RESET)
        with self._lock:  # its matrices here (other processes drop theirs as the budget needs room)
            for key in [key for key in self._cache if key[0] == store_id]:
                del self._cache[key]

    def _keep(self, key: tuple[str, str], matrix: Loaded) -> None:
        """Cache ``matrix`` as the most recent; the least recently searched go while over the budget."""
        with self._lock:
            self._cache[key] = matrix
            self._cache.move_to_end(key)
            total = sum(kept.nbytes for kept in self._cache.values())
            while total > self._budget and len(self._cache) > 1:
                _, gone = self._cache.popitem(last=False)
                total -= gone.nbytes

    # ------------------------------------------------------------------ reads

    def _generation(self, store_id: str) -> tuple[int, int]:
        """(the store's generation, the least generation from which a matrix may be refreshed by
        the stamps): the generation itself when older code made the last change (it stamps
        nothing), else the last one older code reached (0: none)."""
        rows = self.store._fetch("SELECT gen, stamped, unstamped_upto FROM retrieval_generation WHERE store_id = ?",
                                 (store_id,))
        if not rows:
            return 0, 0
        gen, stamped, unstamped_upto = rows[0]
        return gen, gen if stamped != gen else (unstamped_upto or 0)

    def _changed_since(self, store_id: str, gen: int) -> list[str]:
        return [r[0] for r in self.store._fetch("SELECT file_id FROM retrieval_changes WHERE store_id = ? AND gen > ?",
                                                (store_id, gen))]

    def _rows(self, store_id: str, model: str, file_ids: list[str] | None = None) -> list[tuple]:
        """``[(chunk id, file id, float32 bytes)]`` of a store's vectors for ``model`` (of
        ``file_ids`` only, when given), by chunk id."""
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
            matrix = self._matrix(store_id, model)
            if matrix.dims != query.shape[0]:
                continue
            rows, scores = matrix.scores(query)
            files, ids = matrix.files, matrix.ids
            if wanted is not None:
                mask = np.fromiter((files[i] in wanted for i in rows), dtype=bool, count=len(rows))
                scores = np.where(mask, scores, -np.inf)
            if where is not None:
                top = _best_passing(scores, lambda i: files[rows[i]], lambda names: where.passing(store_id, names), limit)
            else:
                k = min(limit, len(scores))
                top = np.argpartition(-scores, k - 1)[:k] if 0 < k < len(scores) else np.arange(len(scores))
            found.extend((int(ids[rows[i]]), float(scores[i])) for i in top if np.isfinite(scores[i]))
        found.sort(key=lambda pair: -pair[1])
        return found[:limit]

    def _matrix(self, store_id: str, model: str) -> Loaded:
        """A store's matrix (``dense_matrix.Loaded``) at the store's current generation or later."""
        gen, _ = self._generation(store_id)
        key = (store_id, model)
        with self._lock:
            cached = self._cache.get(key)
            if cached is not None:
                self._cache.move_to_end(key)
        if cached is not None and cached.gen == gen:
            return cached
        with self._refreshing:
            # read again: another thread may have refreshed past what this one read; a cache beyond
            # this read means the generation went down (older code deletes a store's row)
            gen, stamped_from = self._generation(store_id)
            with self._lock:
                cached = self._cache.get(key)
            if cached is not None and cached.gen == gen:
                return cached
            fresh = None
            if cached is not None and self.incremental and stamped_from <= cached.gen < gen:
                changed = self._changed_since(store_id, cached.gen)
                if RESET not in changed and len(changed) <= max(256, len(cached.by_file) // 2):  # (else: read whole)
                    rows = self._rows(store_id, model, changed) if changed else []
                    with self._lock:
                        self._cache.pop(key, None)  # (``changed`` updates what snapshots share: gone if it fails)
                    fresh = cached.changed(gen, changed, rows)
            if fresh is None:  # first use, a deleted store, vectors of another width, or changes left unstamped
                rows = self._rows(store_id, model)
                fresh = loaded(gen, rows) if rows else empty(gen)
            self._keep(key, fresh)
            return fresh


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
    def __init__(self, store, *, incremental: bool = True):
        super().__init__(store, incremental=incremental)
        with store.sql() as db:  # statement by statement: executescript would commit an open transaction
            for statement in SCHEMA.split(";"):
                if statement.strip():
                    db.execute(statement)
            have = {row[1] for row in db.execute("PRAGMA table_info(retrieval_generation)")}
            for column in ("stamped", "unstamped_upto"):  # (a table made by older code lacks them)
                if column not in have:
                    try:
                        db.execute(f"ALTER TABLE retrieval_generation ADD COLUMN {column} INTEGER")
                    except sqlite3.OperationalError as exc:
                        if "duplicate column" not in str(exc):  # (else: another process added it meanwhile)
                            raise

    def add(self, store_id: str, file_id: str, model: str, chunk_ids: list[int], vectors: list[list[float]]) -> None:
        import numpy as np

        with self.store.transaction(), self.store.sql() as db:
            displaced: list[tuple] = []  # files whose rows these chunk ids replace
            for start in range(0, len(chunk_ids), 500):  # under SQLite's limit of bound parameters
                part = chunk_ids[start:start + 500]
                displaced += db.execute(f"SELECT DISTINCT store_id, file_id FROM retrieval_vectors WHERE id IN "
                                        f"({', '.join('?' * len(part))}) AND (store_id <> ? OR file_id <> ?)",
                                        (*part, store_id, file_id)).fetchall()
            for chunk_id, vector in zip(chunk_ids, vectors):
                blob = np.asarray(vector, dtype=np.float32).tobytes()
                db.execute("INSERT OR REPLACE INTO retrieval_vectors (id, store_id, file_id, model, vec) VALUES (?, ?, ?, ?, ?)",
                           (chunk_id, store_id, file_id, model, blob))
            self._changed(store_id, file_id, displaced)

    def _rows(self, store_id: str, model: str, file_ids: list[str] | None = None) -> list[tuple]:
        sql = "SELECT id, file_id, vec FROM retrieval_vectors WHERE store_id = ? AND model = ?"
        if file_ids is None:
            return self.store._fetch(sql + " ORDER BY id", (store_id, model))
        out: list[tuple] = []
        for start in range(0, len(file_ids), 500):  # under SQLite's limit of bound parameters
            part = file_ids[start:start + 500]
            out += self.store._fetch(sql + f" AND file_id IN ({', '.join('?' * len(part))})", (store_id, model, *part))
        return sorted(out)
