"""What the PostgreSQL store does to save round trips keeps the store's meaning, on both stores:
writes sent later still fail the transaction, a read made ahead never hides a write, ``save`` and
``enqueue_run`` in one statement behave as the read-then-write they replace, a replica's own
run events reach its streams in memory without losing or repeating one written by another replica,
and reads asked for ahead or at commit see what they must; the round trips themselves are counted
on the wire by a proxy (``round_trip_proxy.py``).
"""

from __future__ import annotations

import asyncio
import threading
import time

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


def _seed(store) -> None:
    store.insert("assistant", {"id": "a", "created_at": 1, "v": 1})
    store.insert("message", {"id": "m1", "created_at": 1}, "t")


def test_a_read_asked_ahead_is_answered_once_and_never_hides_a_write(store):
    _seed(store)
    with store.transaction():
        store.read_ahead([("get", "assistant", "a", None), ("all", "message", "t"), ("get", "thread", "t", "")])
        assert store.get("assistant", "a")["v"] == 1
        assert store.get("thread", "t", "") is None
        store.put("assistant", {"id": "a", "created_at": 1, "v": 2})
        store.insert("message", {"id": "m2", "created_at": 2}, "t")  # after the read ahead
        assert [m["id"] for m in store.all("message", "t")] == ["m1", "m2"]
        assert store.get("assistant", "a")["v"] == 2  # answered once: read again
    with store.reads_kept():  # outside a transaction: kept until a write of this caller
        store.read_ahead([("get", "assistant", "a", None)])
        store.put("assistant", {"id": "a", "created_at": 1, "v": 3})
        assert store.get("assistant", "a")["v"] == 3
    with pytest.raises(ValueError, match="not a read"):
        store.read_ahead([("delete", "assistant", "a")])


def test_reads_asked_at_commit_see_the_transaction_and_go_no_further(store):
    _seed(store)
    with store.reads_kept():
        with store.transaction():
            store.put("assistant", {"id": "a", "created_at": 1, "v": 4})
            store.read_at_commit([("get", "assistant", "a", None), ("all", "message", "t")])
            store.insert("message", {"id": "m3", "created_at": 3}, "t")  # asked before, sent after: seen
        assert store.get("assistant", "a")["v"] == 4
        assert [m["id"] for m in store.all("message", "t")] == ["m1", "m3"]
        with store.transaction():
            store.read_at_commit([("get", "assistant", "a", None)])
        with store.transaction():  # a later transaction: what was kept goes
            store.put("assistant", {"id": "a", "created_at": 1, "v": 5})
        assert store.get("assistant", "a")["v"] == 5
    with store.transaction():  # outside ``reads_kept``: nothing is asked for
        store.read_at_commit([("get", "assistant", "a", None)])
    assert store.get("assistant", "a")["v"] == 5


def test_a_turn_with_its_reads_ahead_is_two_round_trips_on_the_wire(postgres_url):
    """A transaction that reads three objects, writes, and asks for the next call's reads at commit,
    then makes those reads: two round trips in all, counted by a proxy on the wire."""
    from tests.postgres.round_trip_proxy import RoundTrips

    proxy = RoundTrips(postgres_url)
    store = open_store(proxy.url)
    try:
        _seed(store)
        reads = [("get", "assistant", "a", None), ("all", "message", "t"), ("get", "thread", "t", "")]
        proxy.reset()
        with store.reads_kept():
            with store.transaction():
                store.read_ahead(reads)
                store.get("assistant", "a")
                store.all("message", "t")
                store.get("thread", "t", "")
                store.put("assistant", {"id": "a", "created_at": 1, "v": 6})
                store.read_at_commit(reads)
            assert store.get("assistant", "a")["v"] == 6
            assert len(store.all("message", "t")) == 1 and store.get("thread", "t", "") is None
        assert proxy.count == 2
        proxy.reset()
        store.get("assistant", "a")  # not kept: a round trip of its own
        assert proxy.count == 1
    finally:
        store.close()
        proxy.close()


def test_a_streamed_run_makes_few_round_trips_on_the_wire(postgres_url, tmp_path):
    """Thread created, run created and streamed to its end through a real server: the round trips
    its replica sends to PostgreSQL (docs/runs.md), counted by a proxy on the wire."""
    from tests.conftest import make_client
    from tests.postgres.round_trip_proxy import RoundTrips
    from tests.serve_process import ServeProcess

    rules = tmp_path / "rules.yaml"
    rules.write_text('rules:\n  - match: "^ping"\n    reply: "pong"\n')
    proxy = RoundTrips(postgres_url)
    try:
        # a long lease: the replica's timed work (lease renewals, the ingestion leases' look every quarter of
        # a lease) stays out of the counted window (it once added 3 round trips to one run)
        with ServeProcess(tmp_path / "serve", "--db", proxy.url, "--rules", str(rules),
                          env={"ASSTCTL_RUN_LEASE_SECONDS": "600"}) as server:
            client = make_client(server)
            bot = client.beta.assistants.create(model="gpt-4o").id
            counts = []
            for _ in range(3):
                proxy.reset()
                thread = client.beta.threads.create(messages=[{"role": "user", "content": "ping"}])
                with client.beta.threads.runs.create(thread_id=thread.id, assistant_id=bot, stream=True) as stream:
                    assert [event.event for event in stream][-1] == "thread.run.completed"
                time.sleep(0.3)  # anything the replica still sends for the run after its last event counts too
                counts.append(proxy.count)
    finally:
        proxy.close()
    # thread 1; run created and begun 2; its turn's reads 1; answered, its queue entry gone with it 2
    # (13 before reads went ahead and the run began as it was created); + at most 1 of the claimer's probes
    assert min(counts) == 6 and max(counts) <= 7, counts
