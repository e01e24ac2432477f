"""The benchmarks run (at a tiny size) and keep their one exact invariant: `plan` reads N assistants
with ceil(N/100) list requests and nothing else. Timings are never asserted here."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from benchmarks import run_all
from benchmarks.common import SIZES
from benchmarks.reconcile import plan_rows
from benchmarks.startup import import_chain

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.timeout(300)  # six benchmarks in one test: 29 s idle, past 120 s at load 10 (not a hang)
def test_every_benchmark_runs_at_the_small_size():
    rows = run_all(SIZES["small"], ["plan", "apply", "turn", "startup", "upstream", "sandbox"])  # retrieval: tests/retrieval/test_benchmark.py; replicas: below
    names = [row.name for row in rows]
    assert len(rows) == 18 and len(set(names)) == 18, names
    requests = rows[0]
    assert requests.data["ours"] == {"GET /v1/assistants": 1, "total": 1}
    assert requests.data["baseline"]["GET /v1/assistants/{id}"] == 12
    assert requests.passed is True
    assert all(row.passed is None for row in rows[1:8]), "timing targets are not judged at the small size"
    assert rows[8].passed is True, rows[8].measured  # the SDK is not imported at start-up
    example = rows[9]  # validate of the example project
    assert example.passed is None and example.measured.endswith(" ms"), example.measured
    noop = rows[10:12]  # a no-op plan and status of the example project, against the SDK's import
    assert [row.passed for row in noop] == [None, None] and all(row.measured.endswith(" ms") for row in noop), \
        [row.measured for row in noop]
    functions = rows[12]  # validate, specs with a strict function each
    assert functions.passed is None and functions.measured.endswith(" ms"), functions.measured
    upstream = rows[13:16]  # the upstream engine: time to first token, per delta, concurrent runs
    assert [row.passed for row in upstream] == [None, None, None], [row.measured for row in upstream]
    assert upstream[2].data["completed"] == SIZES["small"].concurrent
    assert [row.name.split(",")[0] for row in rows[16:]] == ["code_interpreter sandbox: cold start"] * 1 + [
        "code_interpreter sandbox: warm call overhead (median of 10)"]
    assert all(row.passed is None and row.measured.endswith("ms") for row in rows[16:]), [r.measured for r in rows[16:]]


def test_plan_pages_are_exactly_ceil_n_over_100():
    size = replace(SIZES["small"], plan_n=250, latency_ms=0)
    requests, _ = plan_rows(size)
    assert requests.data["ours"] == {"GET /v1/assistants": 3, "total": 3}
    assert requests.data["baseline"]["total"] == 3 + 250
    assert requests.passed is True


def test_the_command_prints_json_and_markdown():
    command = [sys.executable, "-m", "benchmarks", "--size", "small", "--only", "plan"]
    as_json = subprocess.run([*command, "--output", "json"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert as_json.returncode == 0, as_json.stderr
    data = json.loads(as_json.stdout)
    assert data["machine"]["nproc"] >= 1 and data["machine"]["python"]
    assert [row["passed"] for row in data["rows"]] == [True, None]
    table = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert table.returncode == 0, table.stderr
    assert "| plan, 12 in-sync assistants: HTTP requests | 1 (1 list) |" in table.stdout
    assert "Traceback" not in table.stderr


def test_import_chain_names_the_module_that_pulled_in_the_sdk():
    importtime = "\n".join([
        "import time: self [us] | cumulative | imported package",
        "import time:       100 |        100 |       openai._client",
        "import time:       500 |        900 |     openai",
        "import time:        50 |        950 |   asstctl.spec.loader",
        "import time:        10 |         10 |   yaml",
        "import time:        20 |        990 | asstctl.cli.validate_cmd",
    ])
    assert import_chain(importtime, "openai") == ["asstctl.cli.validate_cmd", "asstctl.spec.loader", "openai"]
    assert import_chain(importtime, "httpx") == []
