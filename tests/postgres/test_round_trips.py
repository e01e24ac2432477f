"""What the PostgreSQL store does to save round trips keeps the store's meaning, on both stores:
writes sent later still fail the transaction, a read made ahead never hides a write, ``save`` and
``enqueue_run`` in one statement behave as the read-then-write they replace, and a replica's own
run events reach its streams in memory without losing or repeating one written by another replica.
"""

from __future__ import annotations

import asyncio
import threading

import pytest

from asstctl.server.store import DONE, open_store
from asstctl.server.store.scope import scoped


def test_a_write_sent_with_a_later_round_trip_still_fails_its_transaction(store):
    store.insert("assistant", {"id": "a", "created_at": 1})
    with pytest.raises(Exception, match="(?i)unique"):
        with store.transaction():
            store.insert("thread", {"id": "t", "created_at": 1})
            store.insert("assistant", {"id": "a", "created_at": 2})  # the same key again
            store.get("assistant", "nobody")  # PostgreSQL sends both inserts now (or at COMMIT)
    assert store.get("thread", "t") is None
    assert store.get("assistant", "a") == {"id": "a", "created_at": 1}
    with pytest.raises(Exception, match="(?i)unique"):
        with store.transaction():
            store.insert("thread", {"id": "t", "created_at": 1})
            store.insert("assistant", {"id": "a", "created_at": 2})  # only COMMIT follows
    assert store.get("thread", "t") is None


def test_a_turn_transaction_reads_the_run_as_it_wrote_it(store):
    run = {"id": "run_1", "created_at": 1, "status": "queued"}
    with store.transaction():
        store.insert("run", run, "thread_1")
        store.enqueue_run("run_1")
    assert store.claim_next_run("a", 60) == "run_1"
    with store.transaction_holding("run_1", "a") as held:
        assert held
        assert store.get("run", "run_1")["status"] == "queued"  # PostgreSQL: read with the lease check
        store.save("book", {"id": "run_1", "created_at": 1, "calls": 1}, "run_1")  # another kind: no effect
        assert store.get("run", "run_1")["status"] == "queued"
        store.put("run", {**run, "status": "in_progress"}, "thread_1")
        assert store.get("run", "run_1")["status"] == "in_progress"
    with store.transaction_holding("run_1", "a"):
        store.put("run", {**run, "status": "completed"}, "thread_1")  # before the first read this time
        assert store.get("run", "run_1")["status"] == "completed"
    assert store.get("run", "run_1")["status"] == "completed"
    assert store.get("book", "run_1", "run_1")["calls"] == 1


def test_save_replaces_or_inserts_and_never_reaches_into_another_project(store):
    with scoped("proj_a"):
        store.save("note", {"id": "n", "created_at": 5, "v": 1}, "p")
        store.save("note", {"id": "n", "created_at": 9, "v": 2}, "p")
        assert store.get("note", "n", "p") == {"id": "n", "created_at": 9, "v": 2}
    with scoped("proj_b"):
        with pytest.raises(Exception):  # the key is taken in another project: refused, not overwritten
            store.save("note", {"id": "n", "created_at": 5, "v": 3}, "p")
        assert store.get("note", "n", "p") is None
    with scoped("proj_a"):
        assert store.get("note", "n", "p")["v"] == 2
    store.save("note", {"id": "n", "created_at": 5, "v": 4}, "p")  # unscoped: whatever project holds it
    assert store.get("note", "n", "p")["v"] == 4 and store.project_of("note", "n") == "proj_a"


def test_queued_again_a_waiting_run_goes_to_the_back_and_a_held_one_stays_with_its_owner(store):
    with store.transaction():
        store.enqueue_run("run_1")
        store.enqueue_run("run_2")
        store.enqueue_run("run_1")  # still waiting: behind run_2 now
    assert store.claim_next_run("a", 60) == "run_2"
    store.enqueue_run("run_2")  # held by a: marked to go back to the queue once released
    assert store.claim_next_run("b", 60) == "run_1"
    assert store.claim_next_run("b", 60) is None
    store.release_run("run_2", "a")
    assert store.claim_next_run("b", 60) == "run_2"
    store.release_run("run_2", "b")
    assert store.claim_next_run("b", 60) is None


def test_a_stream_gets_every_event_once_in_order_whichever_replica_wrote_it(postgres_url):
    """Events of one run written in turn by two replicas (in transactions and alone), while the
    stream reads: its own arrive in memory, the other's make it read the database."""
    here, there = open_store(postgres_url), open_store(postgres_url)
    try:
        names = [f"e{i}" for i in range(40)]

        def write() -> None:
            for i, name in enumerate(names):
                replica = here if i % 3 else there
                if i % 2:
                    replica.publish_event("run_x", name, {"i": i})
                else:
                    with replica.transaction():
                        replica.publish_event("run_x", name, {"i": i})
            here.publish_event("run_x", DONE, None)

        async def read() -> list[str]:
            sub = here.subscribe("run_x", after=0)
            writer = threading.Thread(target=write)
            writer.start()
            seen = [name async for name, _ in sub]
            writer.join(10)
            return seen

        seen = asyncio.run(asyncio.wait_for(read(), 60))
        assert seen == [*names, DONE]
        with here.transaction():  # several events of one transaction, some for another run
            for name in ("a", "b"):
                here.publish_event("run_y", name, {})
                here.publish_event("run_z", name, {})

        async def replay() -> list[str]:
            sub = here.subscribe("run_y")  # from the last event on: reads first
            here.publish_event("run_y", "c", {})
            there.publish_event("run_y", DONE, None)
            return [name async for name, _ in sub]

        assert asyncio.run(asyncio.wait_for(replay(), 30)) == ["c", DONE]
    finally:
        here.close()
        there.close()
