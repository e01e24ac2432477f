"""The store behaves the same on SQLite and PostgreSQL: transactions, cursors, blobs, the run queue."""

from __future__ import annotations

import threading

import pytest

from asstctl.errors import ConfigError
from asstctl.server.store import open_store


class Boom(Exception):
    pass


def test_a_failed_transaction_commits_nothing_and_nesting_joins_the_outer_one(store):
    with pytest.raises(Boom):
        with store.transaction():
            store.insert("assistant", {"id": "a", "created_at": 1})
            with store.transaction():  # re-entrant: part of the outer transaction
                store.insert("assistant", {"id": "b", "created_at": 1})
            raise Boom
    assert store.all("assistant") == []
    with store.transaction():
        store.insert("assistant", {"id": "a", "created_at": 1})
        with store.transaction():
            store.update("assistant", "a", lambda obj: obj.update(name="x"))
        assert store.get("assistant", "a")["name"] == "x"  # reads inside see the transaction's writes
    assert store.get("assistant", "a") == {"id": "a", "created_at": 1, "name": "x"}


def test_other_threads_see_a_transaction_only_once_it_commits_and_read_meanwhile(store):
    """A read from another thread neither waits for the transaction (SQLite: a file's second, read-only
    connection) nor sees it before it commits."""
    store.insert("assistant", {"id": "z", "created_at": 1})
    seen: list = []
    inside, checked = threading.Event(), threading.Event()

    def look() -> None:
        inside.wait(10)
        seen.extend([store.get("assistant", "a", ""), store.get("assistant", "z", "")])
        checked.set()

    reader = threading.Thread(target=look)
    reader.start()
    with store.transaction():
        store.insert("assistant", {"id": "a", "created_at": 1})
        inside.set()
        assert checked.wait(5), "the read waited for the transaction"
    reader.join(10)
    assert seen == [None, {"id": "z", "created_at": 1}]
    assert store.get("assistant", "a") is not None


def test_read_modify_write_from_many_threads_loses_no_update(store):
    store.insert("counter", {"id": "c", "created_at": 0, "n": 0})

    def bump() -> None:
        for _ in range(25):
            store.update("counter", "c", lambda obj: obj.update(n=obj["n"] + 1))

    threads = [threading.Thread(target=bump) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert store.get("counter", "c")["n"] == 100


def test_cursor_pages_are_stable_within_one_second(store):
    for i in range(7):
        store.insert("message", {"id": f"m{i}", "created_at": 100}, parent="t")
    asc, more = store.page("message", "t", limit=3, order="asc")
    assert [m["id"] for m in asc] == ["m0", "m1", "m2"] and more
    nxt, more = store.page("message", "t", limit=3, order="asc", after="m2")
    assert [m["id"] for m in nxt] == ["m3", "m4", "m5"] and more
    back, more = store.page("message", "t", limit=2, order="desc", before="m2")
    assert [m["id"] for m in back] == ["m4", "m3"] and more
    assert store.page("message", "t", after="nope") == ([], False)


def test_blobs_stream_in_chunks_and_a_failed_write_stores_nothing(store):
    data = bytes(range(256)) * 9000  # ~2.3 MB: three stored rows
    assert store.write_blob("file-1", (data[i:i + 70_000] for i in range(0, len(data), 70_000))) == len(data)
    assert store.blob_size("file-1") == len(data)
    pieces = list(store.read_blob("file-1", chunk_size=1_000_000))
    assert [len(p) for p in pieces] == [1_000_000, 1_000_000, len(data) - 2_000_000] and b"".join(pieces) == data

    def broken():
        yield b"new bytes"
        raise Boom

    with pytest.raises(Boom):
        store.write_blob("file-1", broken())
    assert b"".join(store.read_blob("file-1")) == data  # the old blob is untouched
    with pytest.raises(Boom):
        store.write_blob("file-2", broken())
    assert store.read_blob("file-2") is None and store.blob_size("file-2") is None
    assert store.write_blob("empty", []) == 0 and list(store.read_blob("empty")) == []
    store.delete_blob("file-1")
    assert store.read_blob("file-1") is None
    assert store._fetch("SELECT count(*) FROM blob_chunks")[0][0] == 0  # replaced, failed, deleted: all collected


def test_whole_blobs_of_an_older_sqlite_database_are_still_read(tmp_path):
    import sqlite3

    path = tmp_path / "old.sqlite3"
    with sqlite3.connect(path) as old:  # asstctl 0.1's schema: version 0, one row per file
        old.execute("CREATE TABLE blobs (id TEXT PRIMARY KEY, data BLOB NOT NULL)")
        old.execute("INSERT INTO blobs VALUES ('file-a', ?), ('file-empty', ?)", (b"abc" * 1000, b""))
    store = open_store(str(path))
    try:
        assert b"".join(store.read_blob("file-a", 7)) == b"abc" * 1000 and store.blob_size("file-a") == 3000
        assert list(store.read_blob("file-empty")) == [] and store.blob_size("file-empty") == 0
    finally:
        store.close()


def test_a_run_is_claimed_by_one_owner_until_released_or_its_lease_lapses(store):
    with store.transaction():
        store.enqueue_run("run_1")
    assert store.claim_next_run("a", 60) == "run_1"
    assert store.claim_next_run("b", 60) is None
    with store.transaction():
        assert store.holds_lease("run_1", "a") and not store.holds_lease("run_1", "b")
    with store.transaction_holding("run_1", "a") as held_a, store.transaction_holding("run_1", "b") as held_b:
        assert held_a and not held_b  # checked as the transaction begins, and again when nested
    with store.transaction_holding("run_1", "b") as held_b, store.transaction_holding("run_1", "a") as held_a:
        assert held_a and not held_b
    store.enqueue_run("run_1")  # asked again while held: stays with "a" until released
    assert store.claim_next_run("b", 60) is None
    store.release_run("run_1", "a")
    assert store.claim_next_run("b", 0) == "run_1"  # a lease that lapses at once
    assert store.claim_next_run("a", 60) == "run_1"  # b's lease lapsed: taken over
    assert not store.renew_lease("run_1", "b", 60) and store.renew_lease("run_1", "a", 60)
    store.release_run("run_1", "a")
    assert store.claim_next_run("a", 60) is None


def test_queued_runs_are_claimed_in_batches_oldest_first_up_to_the_limit(store):
    for number in range(5):
        with store.transaction():
            store.enqueue_run(f"run_{number}")
    assert store.claim_runs("a", 60, 0) == []
    assert store.claim_runs("a", 60, 2) == ["run_0", "run_1"]
    assert store.claim_runs("b", 60, 10) == ["run_2", "run_3", "run_4"]
    assert store.claim_runs("c", 60, 10) == [] and store.claim_next_run("c", 60) is None
    with store.transaction():
        assert store.holds_lease("run_1", "a") and store.holds_lease("run_4", "b")
        assert not store.holds_lease("run_2", "a")
    store.enqueue_run("run_1")  # asked again while held: back in the queue once released
    store.release_run("run_1", "a")
    store.release_run("run_0", "a")
    assert store.claim_runs("c", 60, 10) == ["run_1"]


def test_a_database_migrated_by_a_newer_asstctl_is_refused(postgres_url):
    import psycopg

    open_store(postgres_url).close()
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute("INSERT INTO asstctl_schema (version) VALUES (999)")
    with pytest.raises(ConfigError, match="schema is version 999"):
        open_store(postgres_url)


def test_an_unreachable_database_is_one_clear_error_without_the_password():
    with pytest.raises(ConfigError) as caught:
        open_store("postgresql://someone:s3cret@127.0.0.1:1/nothing?connect_timeout=1")
    assert "s3cret" not in str(caught.value) and "postgresql://someone@127.0.0.1:1/nothing" in str(caught.value)
