"""The benchmarks that start servers of their own (PostgreSQL replicas, operations, `asstctl serve` ingestion)
run at a tiny size; a file of their own so the suite's workers share them out (timings never asserted)."""

from __future__ import annotations

from dataclasses import replace

from benchmarks.common import SIZES
from benchmarks.operations import operations_rows
from benchmarks.replicas import URL_ENV, replica_rows


def test_the_replicas_benchmark_runs_at_the_small_size(postgres_cluster, monkeypatch):
    monkeypatch.setenv(URL_ENV, postgres_cluster.url)
    rows = replica_rows(SIZES["small"])
    assert len(rows) == 4 and all(row.passed is None for row in rows), [row.measured for row in rows]
    assert rows[0].data["sqlite"]["runs"] == rows[0].data["postgres"]["runs"] == SIZES["small"].replica_runs
    assert [row.data["replicas"]["replicas"] for row in rows[1:3]] == [2, 4]
    assert rows[3].data["takeover_s"] > 0


def test_the_operations_benchmark_runs_at_the_small_size(postgres_cluster, monkeypatch):
    monkeypatch.setenv(URL_ENV, postgres_cluster.url)  # the session's cluster: no throwaway one
    rows = operations_rows(SIZES["small"])
    assert [row.name.split(":")[0] for row in rows] == ["projects on SQLite", "projects on PostgreSQL", "observability"]
    assert all(row.passed is None and row.measured.endswith(")") for row in rows), [row.measured for row in rows]
    assert all(row.data["ours_s"] > 0 and row.data["baseline_s"] > 0 for row in rows), [row.data for row in rows]


def test_the_ingestion_benchmark_runs_at_a_tiny_size(tmp_path):
    """benchmarks/ingestion.py through `asstctl serve`: 30 attached files, then the hostile files at 0.005
    of the issue's sizes, each ending completed or failed naming its limit (timings not judged)."""
    from benchmarks.ingestion import hostile_row, scale_rows
    from tests.serve_process import ServeProcess

    size = replace(SIZES["small"], ingest_files=30, hostile_scale=0.005)
    with ServeProcess(tmp_path, "--db", str(tmp_path / "bench.sqlite3")) as server:  # one start for both parts
        rows = [*scale_rows(size, server), hostile_row(size, server)]
    assert [row.name.split(":")[0] for row in rows] == ["ingestion"] * 3 and all(row.passed is None for row in rows)
    scale, probes, hostile = (row.data for row in rows)
    assert scale["files"] == scale["completed"] == 30 and probes["probes"] >= 1, scale
    outcomes = hostile["outcomes"]
    assert set(outcomes) == {"tiny-elements.html", "paragraphs.docx", "nested.html", "keys.json", "huge.txt"}
    assert all(o == "completed" or o.startswith("failed: ") for o in outcomes.values()), outcomes
    assert hostile["peak_mb"] >= hostile["baseline_mb"] > 0, hostile
