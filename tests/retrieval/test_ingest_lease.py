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
