"""The dense index keeps a store's matrix current by reading only the files changed since it was
read (``dense_matrix``): after files are added, removed and attached again, interleaved with
searches, every search answers what a matrix read afresh answers — on one SQLite file shared by two
connections and by two processes, and on PostgreSQL by two replicas; also beside a writer on older
asstctl (no stamps), a refresh racing another thread, a store shrinking below ``ivf.IVF_FROM``, and
chunk ids taken over by another file."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
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
                name, ids = f"f{step}", freed  # a new file takes the freed chunk ids (the chunk tables never
                # reuse one, AUTOINCREMENT and bigserial: only a caller of the interface can)
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


OLD_TABLES = ("CREATE TABLE retrieval_vectors (id INTEGER PRIMARY KEY, store_id TEXT NOT NULL, file_id TEXT NOT NULL, "
              "model TEXT NOT NULL, vec BLOB NOT NULL)",
              "CREATE TABLE retrieval_generation (store_id TEXT PRIMARY KEY, gen INTEGER NOT NULL)")  # (0333ce8)
OLD_BUMP = ("INSERT INTO retrieval_generation (store_id, gen) VALUES (?, 1) "
            "ON CONFLICT (store_id) DO UPDATE SET gen = retrieval_generation.gen + 1")


def old_write(store, file_id: str, ids=(), rows=()) -> None:
    """What asstctl before the stamps (0333ce8) writes for a file removed (no ``ids``) or added:
    its vectors and a bump of the generation, its exact SQL; no stamp."""
    with store.transaction():
        store._exec("DELETE FROM retrieval_vectors WHERE store_id = 'vs' AND file_id = ?", (file_id,))
        for chunk_id, row in zip(ids, rows):
            store._exec("INSERT INTO retrieval_vectors (id, store_id, file_id, model, vec) VALUES (?, 'vs', ?, 'm', ?)",
                        (chunk_id, file_id, np.asarray(row, dtype=np.float32).tobytes()))
        store._exec(OLD_BUMP, ("vs",))


def test_changes_by_a_writer_on_older_code_are_seen(two_replicas):
    """A replica (or process) on older asstctl keeps writing beside this one: its changes bump the
    generation unstamped, and are found by a matrix that searched in between and by one that did not."""
    writer_store, reader_store = two_replicas
    if getattr(writer_store, "backend", None) != "postgres":  # a file made by older code: no stamp columns yet
        with writer_store.sql() as db:
            for statement in OLD_TABLES:
                db.execute(statement)
    rng = np.random.default_rng(11)
    old_write(writer_store, "f1", [1, 2, 3], vectors(rng, 3))  # the generation row made by older code
    old_write(writer_store, "f2", [4, 5], vectors(rng, 2))
    writer, early, late = dense_index(writer_store), dense_index(reader_store), dense_index(reader_store)
    queries = vectors(rng, 3)
    same_answers(early, reader_store, queries)
    same_answers(late, reader_store, queries)
    writer.add("vs", "f3", "m", [6, 7], vectors(rng, 2))
    same_answers(early, reader_store, queries)
    assert early._cache[("vs", "m")].tails  # older code's bumps all before the matrix: refreshed by the stamps
    old_write(writer_store, "f1")
    old_write(writer_store, "f4", [8, 9], vectors(rng, 2))
    same_answers(early, reader_store, queries)  # the last bump older code's: read whole
    writer.add("vs", "f5", "m", [10], vectors(rng, 1))
    same_answers(early, reader_store, queries)
    same_answers(late, reader_store, queries)  # behind older code's changes: read whole
    assert early._cache[("vs", "m")].tails and not late._cache[("vs", "m")].tails
    assert {cid for cid, _ in late.search(["vs"], None, "m", queries[0], 20)} == {4, 5, 6, 7, 8, 9, 10}


class WatchedLock:
    """A re-entrant lock that tells when a thread other than its maker waits for it."""

    def __init__(self):
        self._lock, self._maker, self.waiting = threading.RLock(), threading.get_ident(), threading.Event()

    def __enter__(self):
        if threading.get_ident() != self._maker:
            self.waiting.set()
        self._lock.acquire()

    def __exit__(self, *exc):
        self._lock.release()


def test_a_thread_that_read_an_older_generation_takes_the_matrix_another_refreshed(tmp_path):
    store = open_store(str(tmp_path / "race.sqlite3"))
    writer, reader = dense_index(store), dense_index(store)
    rng = np.random.default_rng(4)
    writer.add("vs", "f1", "m", [1, 2], vectors(rng, 2))
    reader.search(["vs"], None, "m", vectors(rng, 1)[0], 5)
    writer.add("vs", "f2", "m", [3], vectors(rng, 1))
    reader._refreshing = lock = WatchedLock()  # (the order of the two threads made certain)
    got: list = []
    with lock:
        thread = threading.Thread(target=lambda: got.append(reader._matrix("vs", "m")))
        thread.start()  # reads the generation of f2, then waits for the lock
        assert lock.waiting.wait(30)
        writer.add("vs", "f3", "m", [4], vectors(rng, 1))
        mine = reader._matrix("vs", "m")  # this thread refreshes past it
    thread.join(30)
    assert got == [mine] and got[0] is mine and reader._cache[("vs", "m")] is mine  # not read whole, nor labelled back
    assert mine.gen == 3 and len(mine.tails) == 1
    store.close()


def test_a_store_falling_below_ivf_from_is_searched_exactly_again(tmp_path, monkeypatch):
    monkeypatch.setattr(ivf, "IVF_FROM", 320)
    store = open_store(str(tmp_path / "shrink.sqlite3"))
    index = dense_index(store)
    rng = np.random.default_rng(9)
    for n in range(7):  # 350 vectors: clustered
        index.add("vs", f"f{n}", "m", list(range(n * 50 + 1, n * 50 + 51)), vectors(rng, 50))
    queries = vectors(rng, 10)
    index.search(["vs"], None, "m", queries[0], 5)
    assert index._cache[("vs", "m")].clusters is not None
    index.remove("vs", "f0")  # 300 live, 50 dead: not compacted for its dead rows
    assert index._matrix("vs", "m").clusters is None
    same_answers(index, store, queries)
    store.close()


def test_chunk_ids_taken_over_by_another_file_leave_the_first(two_replicas):
    writer, reader = (dense_index(store) for store in two_replicas)
    rng = np.random.default_rng(13)
    writer.add("vs", "d", "m", [8, 9], vectors(rng, 2))
    writer.add("vs", "e", "m", [10], vectors(rng, 1))
    queries = vectors(rng, 3)
    same_answers(reader, two_replicas[1], queries)
    writer.add("vs", "f", "m", [9, 12], vectors(rng, 2))  # chunk id 9 now file f's
    same_answers(reader, two_replicas[1], queries)
    writer.add("vs2", "g", "m", [8], vectors(rng, 1))  # chunk id 8 now of another store
    same_answers(reader, two_replicas[1], queries)
    snap = reader._cache[("vs", "m")]
    assert sorted(snap.ids[~snap.dead].tolist()) == [9, 10, 12]


def test_the_matrices_kept_stay_within_the_budget_least_recently_searched_first(tmp_path, monkeypatch):
    monkeypatch.setenv("ASSTCTL_DENSE_CACHE_MB", "1")  # one of these stores (600 rows x 256 floats: 0.65 MB)
    store = open_store(str(tmp_path / "budget.sqlite3"))
    try:
        index = dense_index(store)
        rng = np.random.default_rng(9)
        data = {name: rng.standard_normal((600, 256)).astype(np.float32) for name in ("a", "b", "c")}
        for name, rows in data.items():
            index.add(name, "f", "m", list(range(ord(name) * 1000, ord(name) * 1000 + 600)), rows.tolist())
        for name in ("a", "b", "c", "a"):
            assert index.search([name], None, "m", data[name][7].tolist(), 1)[0][0] == ord(name) * 1000 + 7
        assert list(index._cache) == [("a", "m")]  # two would not fit: only the latest is kept
        monkeypatch.setattr(index, "_budget", 4 << 20)
        for name in ("b", "c"):
            index.search([name], None, "m", data[name][0].tolist(), 1)
        assert list(index._cache) == [("a", "m"), ("b", "m"), ("c", "m")]
        index.search(["a"], None, "m", data["a"][0].tolist(), 1)  # searched again: the most recent
        assert list(index._cache)[-1] == ("a", "m")
        index.remove_store("b")
        assert ("b", "m") not in index._cache and index.search(["b"], None, "m", data["b"][0].tolist(), 1) == []
    finally:
        store.close()
