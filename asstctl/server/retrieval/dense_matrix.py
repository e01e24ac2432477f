"""A store's vectors in memory, kept current by small steps (``dense.MatrixSearch`` holds one per
store and model).

:class:`Loaded` is a snapshot: the unit rows of the vectors read so far, their chunk and file
ids, and which rows are dead. The rows sit in a *base* matrix (in cluster order when the store
has ``ivf.IVF_FROM`` vectors or more, each cluster a contiguous slice) followed by *tails*, one
block per refresh, whose rows carry the cluster of their nearest centroid. ``changed`` returns the
next snapshot: the rows of the files changed since are marked dead (scored ``-inf``) and their
current rows appended as a tail, so a refresh costs what changed, not the store. From time to
time the snapshot is rearranged in memory, without reading the database:

- compacted when a quarter of its rows are dead, or its tails hold more than a quarter of its rows
  (at least ``TAIL_ROWS``) or ``MAX_TAILS`` blocks: the live rows in one base, in cluster order;
- clustered again (k-means, ``ivf.build``) when the store reaches ``ivf.IVF_FROM`` live vectors,
  or has doubled since its clusters were trained; unclustered (exact, as a fresh read) when it
  falls below ``ivf.IVF_FROM``.

So memory stays within a third above the live vectors (dead rows at most a quarter of all), and
a search scores the probed clusters' rows of the base and of every tail.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from asstctl.server.retrieval import ivf

DEAD_SHARE = 0.25  # compacted beyond this share of dead rows
TAIL_SHARE = 0.25  # ... or of rows in tails (and at least TAIL_ROWS of them)
TAIL_ROWS = 1024
MAX_TAILS = 64
REGROW = 2.0  # clusters trained again when the live rows reach this multiple of those trained on


@dataclass
class Loaded:
    gen: int  # the store's generation this snapshot holds (at least)
    dims: int  # 0: no vectors
    ids: Any  # chunk ids of every row (numpy int64), base rows then each tail's
    files: list  # file id of every row; shared with later snapshots, which only append to it
    dead: Any  # numpy bool per row
    base: Any  # (rows, dims) float32 unit rows
    clusters: ivf.Clusters | None = None
    tails: tuple = ()  # ((rows, dims) float32 unit rows, their clusters or None), in row order
    by_file: dict = field(default_factory=dict)  # file id -> its rows; the refreshing thread's only
    trained: int = 0  # live rows when the clusters were trained
    whole: bool = True  # False: vectors of mixed widths were dropped; reload instead of refreshing

    @property
    def rows(self) -> int:
        return len(self.ids)

    @property
    def nbytes(self) -> int:
        """About what the snapshot holds in memory (the vectors, ids and flags; 64 bytes per file id)."""
        size = getattr(self.base, "nbytes", 0) + getattr(self.ids, "nbytes", 0) + getattr(self.dead, "nbytes", 0)
        return size + sum(getattr(block, "nbytes", 0) for block, _ in self.tails) + 64 * len(self.files)

    def scores(self, query):
        """(rows, cosine scores) of the rows worth scoring for unit ``query`` (dead rows: ``-inf``)."""
        import numpy as np

        parts, scored = [], []
        if self.clusters is None:
            parts.append(np.arange(len(self.base)))
            scored.append(self.base @ query)
        else:
            near = self.clusters.nearest(query)
            for a, b in self.clusters.spans_of(near):
                parts.append(np.arange(a, b))
                scored.append(self.base[a:b] @ query)
        start = len(self.base)
        for block, assign in self.tails:
            if assign is None:
                parts.append(np.arange(start, start + len(block)))
                scored.append(block @ query)
            else:
                picked = np.flatnonzero(np.isin(assign, near))
                parts.append(start + picked)
                scored.append(block[picked] @ query)
            start += len(block)
        if not parts:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        rows, scores = np.concatenate(parts), np.concatenate(scored)
        if self.dead.any():
            scores = np.where(self.dead[rows], -np.inf, scores)
        return rows, scores

    def changed(self, gen: int, file_ids: list[str], rows: list[tuple]) -> "Loaded | None":
        """The snapshot at ``gen``: ``file_ids``' rows dead, ``rows`` (their current vectors,
        ``(chunk id, file id, bytes)``) appended; None when they do not fit (reload instead)."""
        import numpy as np

        if not self.whole or (rows and self.dims and {len(r[2]) for r in rows} != {4 * self.dims}):
            return None
        if not self.dims:  # the store had no vectors: the changed files' rows are all it has
            return loaded(gen, rows)
        dead = self.dead.copy()
        for file_id in file_ids:
            dead[self.by_file.pop(file_id, [])] = True
        if not rows:
            return self._tidied(replace(self, gen=gen, dead=dead))
        block = _unit_rows(rows)
        assign = None if self.clusters is None else ivf.nearest(block, self.clusters.centroids)
        start = self.rows
        for offset, row in enumerate(rows):
            self.by_file.setdefault(row[1], []).append(start + offset)
        del self.files[start:]  # (what a refresh that failed midway may have left)
        self.files.extend(r[1] for r in rows)
        ids = np.concatenate([self.ids, np.array([r[0] for r in rows], dtype=np.int64)])
        dead = np.concatenate([dead, np.zeros(len(rows), dtype=bool)])
        return self._tidied(replace(self, gen=gen, ids=ids, dead=dead, tails=self.tails + ((block, assign),)))

    def _tidied(self, snap: "Loaded") -> "Loaded":
        """``snap`` compacted or clustered again when it is due (module docstring)."""
        dead = int(snap.dead.sum())
        live, tail = snap.rows - dead, snap.rows - len(snap.base)
        if (snap.clusters is None and live >= ivf.IVF_FROM) or (snap.clusters is not None and live >= REGROW * snap.trained):
            return _rebuilt(snap, train=True)
        if (dead > DEAD_SHARE * snap.rows or len(snap.tails) > MAX_TAILS or tail > max(TAIL_ROWS, TAIL_SHARE * snap.rows)
                or (snap.clusters is not None and live < ivf.IVF_FROM)):  # (rebuilt without clusters: exact)
            return _rebuilt(snap, train=False)
        return snap


def empty(gen: int, whole: bool = True) -> Loaded:
    import numpy as np

    return Loaded(gen, 0, np.zeros(0, dtype=np.int64), [], np.zeros(0, dtype=bool), np.zeros((0, 0), dtype=np.float32),
                  whole=whole)


def loaded(gen: int, rows: list[tuple]) -> Loaded:
    """A snapshot of ``rows`` (``(chunk id, file id, float32 bytes)``, a store's every vector)."""
    import numpy as np

    if not rows:
        return empty(gen)
    if len({len(r[2]) for r in rows}) != 1:
        return empty(gen, whole=False)
    matrix = _unit_rows(rows)
    snap = Loaded(gen, matrix.shape[1], np.array([r[0] for r in rows], dtype=np.int64), [r[1] for r in rows],
                  np.zeros(len(rows), dtype=bool), matrix)
    return _rebuilt(snap, train=True) if len(rows) >= ivf.IVF_FROM else _with_files(snap)


def _unit_rows(rows: list[tuple]):
    import numpy as np

    matrix = np.frombuffer(b"".join(r[2] for r in rows), dtype=np.float32).reshape(len(rows), -1).copy()
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    matrix /= np.where(norms == 0, 1, norms)
    return matrix


def _rebuilt(snap: Loaded, *, train: bool) -> Loaded:
    """The live rows of ``snap`` in one base: clustered afresh (``train``), or in the order of the
    clusters they were assigned to (exact below ``ivf.IVF_FROM`` live rows)."""
    import numpy as np

    live = np.flatnonzero(~snap.dead)
    matrix = np.concatenate([snap.base, *(block for block, _ in snap.tails)])[live] if snap.tails else snap.base[live]
    ids, files = snap.ids[live], [snap.files[i] for i in live]
    clusters, trained = None, 0
    if train and len(live) >= ivf.IVF_FROM:
        order, clusters = ivf.build(matrix)
        trained = len(live)
    elif snap.clusters is not None and len(live) >= ivf.IVF_FROM:
        assign = np.concatenate([snap.clusters.assignment(), *(a for _, a in snap.tails)])[live]
        order, clusters = ivf.arrange(assign, snap.clusters.centroids)
        trained = snap.trained
    if clusters is not None:
        matrix, ids, files = np.ascontiguousarray(matrix[order]), ids[order], [files[i] for i in order]
    return _with_files(Loaded(snap.gen, snap.dims, ids, files, np.zeros(len(ids), dtype=bool), matrix, clusters,
                              trained=trained))


def _with_files(snap: Loaded) -> Loaded:
    by_file: dict[str, list[int]] = {}
    for row, file_id in enumerate(snap.files):
        by_file.setdefault(file_id, []).append(row)
    snap.by_file = by_file
    return snap
