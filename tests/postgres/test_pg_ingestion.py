"""Ingestion on PostgreSQL: a stop cuts the commits in flight short (they roll back, their files stay
``in_progress`` for the next start: resuming them is tests/retrieval/test_ingestion.py's SIGTERM test and
test_replicas' takeover) and the request waiting for them answers with the batch as it stands."""

from __future__ import annotations

import signal
import threading
import time

import psycopg

from asstctl.server.ingest_lease import PENDING_WHERE
from tests.conftest import make_client
from tests.serve_process import ServeProcess



def pending_files(conn) -> list:
    return conn.execute(f"SELECT id FROM objects WHERE {PENDING_WHERE}").fetchall()


def test_sigterm_while_commits_wait_stops_within_10s_and_the_batch_answers_in_progress(tmp_path, postgres_url):
    with ServeProcess(tmp_path, "--db", postgres_url) as server:
        sdk = make_client(server, timeout=30)
        ids = [sdk.files.create(file=(f"f{i}.txt", f"File {i} about harbours and tides.".encode()),
                                purpose="assistants").id for i in range(3)]
        vs = sdk.vector_stores.create(name="held")
        answer: dict = {}

        def create() -> None:
            try:
                answer["batch"] = sdk.vector_stores.file_batches.create(vector_store_id=vs.id, file_ids=ids)
            except Exception as exc:  # noqa: BLE001 - asserted below
                answer["error"] = exc

        with psycopg.connect(postgres_url) as holder:  # the index's table held: every commit waits on it
            holder.execute("LOCK TABLE retrieval_chunks IN SHARE MODE")
            sender = threading.Thread(target=create)
            sender.start()
            with psycopg.connect(postgres_url, autocommit=True) as watcher:
                deadline = time.monotonic() + 20
                while not watcher.execute("SELECT count(*) FROM pg_locks WHERE NOT granted").fetchone()[0]:
                    assert time.monotonic() < deadline, "no ingestion commit reached the held table"
                    time.sleep(0.05)
            started = time.monotonic()
            server.proc.send_signal(signal.SIGTERM)
            try:
                code = server.proc.wait(timeout=10)
            except Exception:  # noqa: BLE001 - too slow: let it go, then fail
                holder.rollback()
                code = server.proc.wait(timeout=60)
            took = time.monotonic() - started
        sender.join(10)
        sdk.close()
        assert code == 0 and took < 10, (code, took, server.stderr()[-2000:])
        assert "batch" in answer, answer
        assert (answer["batch"].status, answer["batch"].file_counts.in_progress) == ("in_progress", 3)
        assert "Traceback" not in server.stderr()
    with psycopg.connect(postgres_url) as conn:  # rolled back whole: nothing indexed, the files left to resume
        assert conn.execute("SELECT count(*) FROM retrieval_chunks").fetchone()[0] == 0
        assert len(pending_files(conn)) == 3
