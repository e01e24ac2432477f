"""An inverted-file (IVF) index over a store's normalised vectors, for large stores.

``build(matrix)`` clusters the vectors (spherical k-means: ``sqrt(n)`` centroids trained on a
sample, then every vector assigned to its nearest centroid) and returns the order that makes each
cluster a contiguous slice. A search scores only the vectors of the ``nprobe`` clusters whose
centroids are nearest the query (about a tenth of them): approximate, in exchange for not reading
every vector. The dense index uses it from ``IVF_FROM`` vectors on; smaller stores are searched
exactly. Vectors added later are assigned to their nearest existing centroid (``nearest``) and
the rows rearranged without training (``arrange``); the centroids are trained again only when the
store has doubled since (``dense_matrix``).
"""

from __future__ import annotations

from dataclasses import dataclass

IVF_FROM = 20_000
TRAIN_PER_CLUSTER = 40
ITERATIONS = 5
BLOCK = 8192


@dataclass
class Clusters:
    centroids: object  # (nlist, dims) float32, unit rows
    offsets: object  # (nlist + 1,) cluster c holds rows offsets[c]:offsets[c + 1]

    def nearest(self, query, share: float = 0.1, least: int = 8):
        """The clusters to probe for ``query`` (a unit vector): the tenth nearest it, sorted."""
        import numpy as np

        nlist = len(self.centroids)
        nprobe = min(nlist, max(least, int(nlist * share)))
        scores = self.centroids @ query
        return np.sort(np.argpartition(-scores, nprobe - 1)[:nprobe] if nprobe < nlist else np.arange(nlist))

    def spans(self, query, share: float = 0.1, least: int = 8) -> list[tuple[int, int]]:
        """Row slices of the clusters nearest ``query`` (a unit vector)."""
        return self.spans_of(self.nearest(query, share, least))

    def spans_of(self, near) -> list[tuple[int, int]]:
        return [(int(self.offsets[c]), int(self.offsets[c + 1])) for c in near if self.offsets[c + 1] > self.offsets[c]]

    def assignment(self):
        """The cluster of every row, in row order."""
        import numpy as np

        return np.repeat(np.arange(len(self.centroids)), np.diff(self.offsets))


def _normalise(rows):
    import numpy as np

    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    return rows / np.where(norms == 0, 1, norms)


def nearest(matrix, centroids):
    """The nearest centroid of every row of ``matrix``."""
    import numpy as np

    if not len(matrix):
        return np.zeros(0, dtype=np.int64)
    return np.concatenate([np.argmax(matrix[s : s + BLOCK] @ centroids.T, axis=1) for s in range(0, len(matrix), BLOCK)])


def arrange(assign, centroids):
    """(row order, Clusters) for rows assigned to ``centroids``: each cluster a contiguous slice."""
    import numpy as np

    order = np.argsort(assign, kind="stable")
    offsets = np.concatenate([[0], np.cumsum(np.bincount(assign, minlength=len(centroids)))])
    return order, Clusters(centroids, offsets)


def build(matrix, seed: int = 0):
    """(row order, Clusters) for unit-row ``matrix``; reorder the rows with ``order``."""
    import numpy as np

    rng = np.random.default_rng(seed)
    n = len(matrix)
    nlist = max(1, int(np.sqrt(n)))
    sample = matrix[rng.choice(n, min(n, TRAIN_PER_CLUSTER * nlist), replace=False)]
    centroids = sample[rng.choice(len(sample), nlist, replace=False)].copy()
    for _ in range(ITERATIONS):
        assign = nearest(sample, centroids)
        sums = np.zeros_like(centroids)
        np.add.at(sums, assign, sample)
        counts = np.bincount(assign, minlength=nlist)
        filled = counts > 0
        centroids[filled] = _normalise(sums[filled])
    centroids = centroids.astype(np.float32)
    return arrange(nearest(matrix, centroids), centroids)
