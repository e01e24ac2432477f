"""The dense index keeps a store's matrix current by reading only the files changed since it was
read (``dense_matrix``): after files are added, removed and attached again, interleaved with
searches, every search answers what a matrix read afresh answers — on one SQLite file shared by two
connections and by two processes, and on PostgreSQL by two replicas."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from asstctl.server.retrieval import dense_matrix, ivf
from asstctl.server.retrieval.search import dense_index
from asstctl.server.store import open_store

DIMS = 12


@pytest.fixture(params=["sqlite", "postgres"])
def two_replicas(request, tmp_path):
    """Two stores on one database (each its own connection and cache), and an index maker."""
    url = request.getfixturevalue("postgres_url") if request.param == "postgres" else str(tmp_path / "shared.sqlite3")
    stores = [open_store(url), open_store(url)]
    yield stores
    for store in stores:
        store.close()


def vectors(rng, n: int) -> list[list[float]]:
    return rng.standard_normal((n, DIMS)).astype(np.float32).tolist()


def same_answers(index, store, queries, file_ids=None) -> None:
    fresh = dense_index(store)  # a new index: reads the whole matrix
    for query in queries:
        got, want = index.search(["vs"], file_ids, "m", query, 8), fresh.search(["vs"], file_ids, "m", query, 8)
        assert [cid for cid, _ in got] == [cid for cid, _ in want]
        assert np.allclose([s for _, s in got], [s for _, s in want], atol=1e-5)


def test_searches_between_changes_through_another_replica_match_a_fresh_read(two_replicas, monkeypatch):
    monkeypatch.setattr(dense_matrix, "TAIL_ROWS", 12)  # compactions within a small test
    writer, reader = (dense_index(store) for store in two_replicas)
    rng = np.random.default_rng(5)
    live: dict[str, list[int]] = {}
    next_id, tails_seen = 1, 0
    queries = vectors(rng, 3)
    for step in range(24):
        kind = ("add", "add", "remove", "again")[step % 4]
        if kind == "add" or not live:
            name, ids = f"f{step}", list(range(next_id, next_id + 4))
            next_id += 4
        else:
            name = sorted(live)[int(rng.integers(len(live)))]
            writer.remove("vs", name)
            freed = live.pop(name)
            if kind == "remove":
                name, ids = f"f{step}", freed  # a new file takes the freed chunk ids (SQLite reuses them)
            else:
                ids = list(range(next_id, next_id + 3))  # the same file attached again
                next_id += 3
        writer.add("vs", name, "m", ids, vectors(rng, len(ids)))
        live[name] = ids
        same_answers(reader, two_replicas[1], queries)
        tails_seen += bool(reader._cache[("vs", "m")].tails)
    some = sorted(live)[:3]
    same_answers(reader, two_replicas[1], queries, some)
    assert tails_seen >= 5  # refreshed by appending, not read whole
    writer.remove_store("vs")
    assert reader.search(["vs"], None, "m", queries[0], 5) == []
    writer.add("vs", "back", "m", [900], vectors(rng, 1))
    assert [cid for cid, _ in reader.search(["vs"], None, "m", queries[0], 5)] == [900]


def test_a_large_store_keeps_its_clusters_while_it_grows_and_trains_them_again_when_doubled(tmp_path, monkeypatch):
    monkeypatch.setattr(ivf, "IVF_FROM", 300)
    store = open_store(str(tmp_path / "ivf.sqlite3"))
    index = dense_index(store)
    rng = np.random.default_rng(8)
    data = {f"f{n}": rng.standard_normal((50, DIMS)).astype(np.float32) for n in range(16)}
    for n in range(7):  # 350 vectors: clustered on the first search
        index.add("vs", f"f{n}", "m", list(range(n * 50 + 1, n * 50 + 51)), data[f"f{n}"].tolist())
    index.search(["vs"], None, "m", data["f0"][0].tolist(), 5)
    trained = index._cache[("vs", "m")].clusters.centroids
    index.remove("vs", "f1")
    index.add("vs", "f7", "m", list(range(351, 401)), data["f7"].tolist())
    snap = index._matrix("vs", "m")
    assert snap.clusters.centroids is trained and snap.tails and snap.dead.sum() == 50  # assigned, not trained
    for n, row in ((7, 3), (0, 10), (7, 49)):  # a stored vector finds itself, through its tail's clusters
        found = index.search(["vs"], None, "m", data[f"f{n}"][row].tolist(), 5)
        assert found[0][0] == n * 50 + row + 1 and found[0][1] == pytest.approx(1.0, abs=1e-5)
    assert all(not 51 <= cid <= 100 for cid, _ in index.search(["vs"], None, "m", data["f1"][0].tolist(), 50))
    for n in range(8, 16):  # 700 live: twice what was trained on
        index.add("vs", f"f{n}", "m", list(range(n * 50 + 1, n * 50 + 51)), data[f"f{n}"].tolist())
    snap = index._matrix("vs", "m")
    assert snap.clusters.centroids is not trained and not snap.tails and snap.trained == 750 and not snap.dead.any()
    store.close()


WRITER = """
import sys
import numpy as np
from asstctl.server.retrieval.search import dense_index
from asstctl.server.store import open_store

store = open_store(sys.argv[1])
index = dense_index(store)
rng = np.random.default_rng(int(sys.argv[2]))
index.remove("vs", "f1")
index.remove("vs", "f2")
index.add("vs", "f2", "m", [201, 202], rng.standard_normal((2, 12)).tolist())  # attached again
index.add("vs", "f3", "m", [301, 302, 303], rng.standard_normal((3, 12)).tolist())
store.close()
"""


def test_a_second_process_changing_the_sqlite_file_is_seen_by_the_first(tmp_path, monkeypatch):
    monkeypatch.setattr(dense_matrix, "DEAD_SHARE", 1.0)  # no compaction: the dead rows stay to be seen
    db = str(tmp_path / "two-processes.sqlite3")
    store = open_store(db)
    index = dense_index(store)
    rng = np.random.default_rng(2)
    index.add("vs", "f1", "m", [1, 2, 3], vectors(rng, 3))
    index.add("vs", "f2", "m", [4, 5], vectors(rng, 2))
    queries = vectors(rng, 3)
    same_answers(index, store, queries)  # the matrix read
    root = Path(__file__).resolve().parents[2]
    subprocess.run([sys.executable, "-c", WRITER, db, "7"], check=True, cwd=root, timeout=60,
                   env={**os.environ, "PYTHONPATH": str(root)})
    same_answers(index, store, queries)
    assert {cid for cid, _ in index.search(["vs"], None, "m", queries[0], 10)} == {201, 202, 301, 302, 303}
    snap = index._cache[("vs", "m")]
    assert len(snap.tails) == 1 and snap.dead.sum() == 5  # refreshed by what the other process changed
    store.close()
