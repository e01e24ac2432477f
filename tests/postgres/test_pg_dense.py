"""file_search's dense index on PostgreSQL: vectors stored as bytea in ``retrieval_vectors``,
nearest by cosine; two replicas on one database see each other's changes (the per-store
generation makes the other's in-memory matrix stale)."""

from __future__ import annotations

import pytest

from asstctl.server.retrieval.pg_dense import PostgresDenseIndex
from asstctl.server.store import open_store


@pytest.fixture
def replicas(postgres_url):
    stores = [open_store(postgres_url), open_store(postgres_url)]
    yield [PostgresDenseIndex(store) for store in stores]
    for store in stores:
        store.close()


def test_nearest_vectors_within_the_stores_and_files_asked(replicas):
    index, _ = replicas
    index.add("vs1", "f1", "m", [1, 2], [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    index.add("vs1", "f2", "m", [3], [[0.7, 0.7, 0.0]])
    index.add("vs2", "f3", "m", [4], [[1.0, 0.0, 0.0]])
    found = index.search(["vs1"], None, "m", [1.0, 0.1, 0.0], 2)
    assert [cid for cid, _ in found] == [1, 3] and found[0][1] > found[1][1] and found[0][1] == pytest.approx(0.995, abs=1e-3)
    assert [cid for cid, _ in index.search(["vs1"], ["f2"], "m", [1.0, 0.0, 0.0], 5)] == [3]
    assert index.search(["vs1"], None, "other-model", [1.0, 0.0, 0.0], 5) == []
    index.add("vs1", "f1", "m", [1], [[0.0, 0.0, 1.0]])  # re-embedded: the row is replaced, not duplicated
    assert [cid for cid, _ in index.search(["vs1"], None, "m", [0.0, 0.0, 1.0], 5)][0] == 1


def test_a_change_through_one_replica_is_seen_by_the_other(replicas):
    first, second = replicas
    first.add("vs1", "f1", "m", [10], [[1.0, 0.0]])
    assert [cid for cid, _ in second.search(["vs1"], None, "m", [1.0, 0.0], 5)] == [10]  # loads its matrix
    first.add("vs1", "f2", "m", [11], [[0.0, 1.0]])
    assert [cid for cid, _ in second.search(["vs1"], None, "m", [0.0, 1.0], 1)] == [11]
    first.remove("vs1", "f2")
    assert [cid for cid, _ in second.search(["vs1"], None, "m", [0.0, 1.0], 5)] == [10]
    first.remove_store("vs1")
    assert second.search(["vs1"], None, "m", [1.0, 0.0], 5) == []
