"""asstctl's benchmarks: every figure is a ratio against a baseline measured in the same run.

    python -m benchmarks                 # the documented sizes; see docs/benchmarks.md
    python -m benchmarks --size small --output json

``run_all(size)`` returns the rows (``benchmarks.common.Row``); the test suite runs it at the small size.
"""

from __future__ import annotations

from typing import Callable

from benchmarks.common import Row, Size


def benchmarks() -> dict[str, Callable[[Size], list[Row]]]:
    from benchmarks.reconcile import apply_rows, plan_rows
    from benchmarks.sandbox import sandbox_rows
    from benchmarks.retrieval import retrieval_rows
    from benchmarks.replicas import replica_rows
    from benchmarks.ingestion import ingestion_rows
    from benchmarks.startup import startup_rows
    from benchmarks.turns import turn_rows
    from benchmarks.upstream import upstream_rows
    from benchmarks.operations import operations_rows
    from benchmarks.vector_store_scale import scale_rows

    return {"plan": plan_rows, "apply": apply_rows, "turn": turn_rows, "startup": startup_rows,
            "upstream": upstream_rows,
            "sandbox": sandbox_rows,
            "retrieval": retrieval_rows,
            "replicas": replica_rows,
            "operations": operations_rows,
            "vector_stores": scale_rows,
            "ingestion": ingestion_rows}


def run_all(size: Size, only: list[str] | None = None,
            progress: Callable[[str], None] = lambda name: None) -> list[Row]:
    rows: list[Row] = []
    for name, run in benchmarks().items():
        if not only or name in only:
            progress(name)
            rows.extend(run(size))
    return rows
