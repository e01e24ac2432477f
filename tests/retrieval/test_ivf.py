"""The inverted-file index of large stores: clusters partition the vectors, and a probe finds a
stored vector's own row (approximate search with high recall on clustered data)."""

from __future__ import annotations

import numpy as np

from asstctl.server.retrieval import ivf


def clustered(n: int, dims: int = 32, groups: int = 50, seed: int = 3):
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((groups, dims))
    points = centres[rng.integers(0, groups, n)] + 0.3 * rng.standard_normal((n, dims))
    points /= np.linalg.norm(points, axis=1, keepdims=True)
    return points.astype(np.float32)


def test_clusters_partition_every_vector_once():
    matrix = clustered(5000)
    order, clusters = ivf.build(matrix)
    assert sorted(order.tolist()) == list(range(5000))
    assert clusters.offsets[0] == 0 and clusters.offsets[-1] == 5000
    assert len(clusters.centroids) == int(np.sqrt(5000))
    assert np.allclose(np.linalg.norm(clusters.centroids, axis=1), 1, atol=1e-4)


def test_probing_finds_the_nearest_vector_for_most_queries():
    matrix = clustered(5000)
    order, clusters = ivf.build(matrix)
    ordered = matrix[order]
    rng = np.random.default_rng(9)
    hits = 0
    for row in rng.choice(5000, 200, replace=False):
        query = ordered[row]
        spans = clusters.spans(query)
        probed = sum(b - a for a, b in spans)
        assert probed < 5000 * 0.5  # only part of the index is read
        hits += any(a <= row < b for a, b in spans)
    assert hits >= 190


def test_the_dense_index_searches_large_stores_through_clusters(monkeypatch):
    from asstctl.server.retrieval.dense import SqliteDenseIndex
    from asstctl.server.store import Store

    monkeypatch.setattr(ivf, "IVF_FROM", 1000)  # what counts as large, so the test stays small
    index = SqliteDenseIndex(Store(":memory:"))
    matrix = clustered(3000)
    index.add("vs_1", "file-a", "m", list(range(1, 1501)), matrix[:1500].tolist())
    index.add("vs_1", "file-b", "m", list(range(1501, 3001)), matrix[1500:].tolist())
    found = [index.search(["vs_1"], None, "m", matrix[i].tolist(), 5)[0][0] for i in (0, 10, 1600, 2999)]
    assert found == [1, 11, 1601, 3000]
    assert index._cache[("vs_1", "m")].clusters is not None  # the clusters were built
    only_a = index.search(["vs_1"], ["file-a"], "m", matrix[1600].tolist(), 5)
    assert only_a and all(cid <= 1500 for cid, _ in only_a)
