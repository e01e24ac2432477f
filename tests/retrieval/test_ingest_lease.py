"""Ingestion leases on PostgreSQL (issue 22): a replica that starts, or looks again every quarter
of a lease, resumes only the files no live replica is ingesting, and takes over a stopped
replica's files without waiting for a restart."""

from __future__ import annotations

import time

from asstctl.server.embedded import start_server
from asstctl.server.retrieval.embeddings import EmbeddingsConfig
from tests.conftest import make_client
from tests.upstream import Failure, ScriptedUpstream

NOTE = b"# Parcels\n\nRefund requests for damaged parcels are reviewed by the returns desk."


def test_a_live_replicas_file_is_left_to_it_and_a_stopped_replicas_file_is_taken_over(postgres_url, monkeypatch,
                                                                                          contract):
    monkeypatch.setenv("ASSTCTL_RUN_LEASE_SECONDS", "2")
    with ScriptedUpstream(key=None) as upstream:
        upstream.embed_failures.append(Failure.rate_limit(retry_after="30"))  # replica A's ingestion waits 30 s
        embeddings = EmbeddingsConfig(model="scripted-embed", base_url=upstream.base_url)
        a = start_server(postgres_url, embeddings=embeddings)
        try:
            sdk_a = make_client(a, contract)
            vs = sdk_a.vector_stores.create(name="leased")
            file_id = sdk_a.files.create(file=("note.md", NOTE), purpose="assistants").id
            hasty = make_client(a, timeout=1)
            try:  # the response waits for the ingestion (30 s at most): not this client
                hasty.vector_stores.files.create(vector_store_id=vs.id, file_id=file_id)
            except Exception:  # noqa: BLE001 - the timeout: the file is committed in_progress all the same
                pass
            upstream.wait_for_requests(1)
            with start_server(postgres_url) as b:  # a replica (re)starting while A is still ingesting the file
                sdk_b = make_client(b, contract)
                time.sleep(2.5)  # more than a lease, several rounds of B's look at abandoned files
                assert sdk_b.vector_stores.files.retrieve(file_id, vector_store_id=vs.id).status == "in_progress"
                assert b.state.extra["ingestion"].counts["taken_over"] == 0
                a.stop()  # A stops cleanly: its file stays in_progress and its lease goes
                deadline = time.monotonic() + 20
                while (sdk_b.vector_stores.files.retrieve(file_id, vector_store_id=vs.id).status == "in_progress"
                       and time.monotonic() < deadline):
                    time.sleep(0.1)
                counts = sdk_b.vector_stores.retrieve(vs.id).file_counts
                assert (counts.completed, counts.in_progress) == (1, 0), counts
                assert b.state.extra["ingestion"].counts["taken_over"] == 1
                assert sdk_b.vector_stores.search(vs.id, query="damaged parcels").data
                sdk_b.close()
            sdk_a.close()
            hasty.close()
        finally:
            a.stop()
    assert not upstream.problems  # every request and answer matched the OpenAPI schemas


def _files(store, vs_id: str, completed: int, pending: int) -> None:
    with store.transaction():
        for i in range(completed + pending):
            status = "in_progress" if i < pending else "completed"
            store.insert("vector_store_file", {"id": f"file-{vs_id}-{i}", "object": "vector_store.file",
                                               "created_at": 1700000000 + i, "status": status,
                                               "vector_store_id": vs_id, "_ingest": f"t-{vs_id}-{i}"}, parent=vs_id)


def test_pending_files_are_read_through_their_index_on_sqlite_including_a_database_from_before_it(tmp_path):
    """The resume at start reads the files in progress through the partial index the migration built over
    what was already there, not every file of every store."""
    import sqlite3

    from asstctl.server.ingest_lease import pending
    from asstctl.server.store import open_store
    from asstctl.server.store.sqlite import MIGRATIONS

    path = tmp_path / "old.sqlite3"
    old = sqlite3.connect(path)
    for number, script in enumerate(MIGRATIONS[:3], start=1):  # the schema before the index
        old.executescript(script)
        old.execute(f"PRAGMA user_version = {number}")
    old.execute("""INSERT INTO objects (kind, parent, id, created_at, body) VALUES ('vector_store_file', 'vs_old',
                   'file-old', 1, '{"id": "file-old", "status": "in_progress", "_ingest": "t-old"}')""")
    old.commit()
    old.close()
    store = open_store(str(path))
    try:
        _files(store, "vs_a", completed=300, pending=2)
        found = sorted((parent, item["id"]) for parent, item in pending(store))
        assert found == [("vs_a", "file-vs_a-0"), ("vs_a", "file-vs_a-1"), ("vs_old", "file-old")]
        with store.sql() as conn:
            from asstctl.server.ingest_lease import PENDING_WHERE

            plan = " ".join(row[-1] for row in conn.execute(
                f"EXPLAIN QUERY PLAN SELECT parent, body FROM objects INDEXED BY objects_ingest_pending "
                f"WHERE {PENDING_WHERE}").fetchall())
        assert "USING INDEX objects_ingest_pending" in plan, plan
    finally:
        store.close()


def test_the_replicas_look_for_abandoned_files_reads_the_pending_rows_only_on_postgresql(postgres_url):
    """``Leases.abandoned`` runs on every replica every quarter of a lease: its read of the files in
    progress goes through the partial index, reading the 2 pending rows of 402 (EXPLAIN ANALYZE)."""
    from asstctl.server.ingest_lease import PENDING_WHERE, Leases
    from asstctl.server.store import open_store

    store = open_store(postgres_url)
    try:
        _files(store, "vs_a", completed=200, pending=1)
        _files(store, "vs_b", completed=200, pending=1)
        with store.sql() as conn:
            conn.execute("ANALYZE objects")
            plan = conn.execute(f"EXPLAIN (ANALYZE, FORMAT JSON) SELECT parent, body FROM objects "
                                f"WHERE {PENDING_WHERE}").fetchone()[0][0]["Plan"]
        nodes = [plan, *plan.get("Plans", [])]
        assert any(node.get("Index Name") == "objects_ingest_pending" for node in nodes), plan
        assert all(node["Node Type"] != "Seq Scan" for node in nodes), plan
        assert plan["Actual Rows"] == 2 and not plan.get("Rows Removed by Filter"), plan
        leases = Leases(store, lease=0.001)
        taken = sorted(item["id"] for _, item in leases.abandoned(set()))
        assert taken == ["file-vs_a-0", "file-vs_b-0"]
    finally:
        store.close()
