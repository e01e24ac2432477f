"""Concurrent applies of one project against one `asstctl serve` (issue 10, item 2): the project lock
serializes them. Real subprocesses started together, TRIALS trials each: exactly N assistants every time,
and every apply either applied (exit 0) or was refused naming the lock's holder (exit 1, one `Error:` line)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from asstctl.cli import cli

from asstctl.reconcile.remote import read_remote
from asstctl.backends.targets import make_client
from tests.serve_process import ServeProcess

SPECS = 20
TRIALS = 6
SAVED_TRIALS = 3  # each is 2 processes (the report had 5)
BATCH = 3  # trials run at once: wall time, not what is tested, since each trial is its own project
REFUSED = "is locked by "


@pytest.fixture(scope="module")
def serve(tmp_path_factory):
    with ServeProcess(tmp_path_factory.mktemp("serve")) as running:
        yield running


def project(root: Path, name: str) -> Path:
    (root / "assistants").mkdir(parents=True)
    (root / "asstctl.yaml").write_text(f"project: {name}\n")
    for index in range(SPECS):
        (root / "assistants" / f"bot-{index:02d}.yaml").write_text(f"model: gpt-4o\nname: Bot {index}\n")
    return root


def start(serve: ServeProcess, where: Path, *args: str) -> subprocess.Popen:
    env = {**os.environ, "OPENAI_API_KEY": serve.api_key, "NO_COLOR": "1"}
    env.pop("OPENAI_BASE_URL", None)
    return subprocess.Popen([sys.executable, "-m", "asstctl", "apply", *args, "--yes", "--base-url", serve.base_url],
                            cwd=where, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def outcome(process: subprocess.Popen) -> str:
    out, err = process.communicate(timeout=120)
    if process.returncode == 0:
        assert err == "" and ("Apply complete: " in out or "No changes." in out), out + err
        return "created" if f"Apply complete: {SPECS} created" in out else "no-op"
    errors = [line for line in err.splitlines() if line.startswith("Error:")]
    assert process.returncode == 1 and len(errors) == 1 and REFUSED in errors[0], out + err
    assert "Traceback" not in err and "since " in errors[0], err
    return "refused"


def managed(serve: ServeProcess, name: str) -> int:
    assert locks_left(serve, name) == 0, f"{name}: a lock object was left behind"
    with make_client(serve.base_url, serve.api_key) as client:
        return len(read_remote(client, name).owned())


def locks_left(serve: ServeProcess, name: str) -> int:
    with make_client(serve.base_url, serve.api_key) as client:
        return sum(1 for store in client.vector_stores.list(limit=100) if (store.metadata or {}).get("asstctl.lock") == name)


def finish(processes: list[subprocess.Popen]) -> list[str]:
    """Every process's outcome; all of them are waited for even when one is wrong."""
    try:
        return [outcome(process) for process in processes]
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
            process.communicate()


@pytest.mark.timeout(600)
@pytest.mark.parametrize("applies", [2, 3])
def test_applies_started_together_make_exactly_n_assistants(serve, tmp_path, applies):
    """TRIALS trials, BATCH at a time (different projects, so their locks are independent)."""
    tally = {"created": 0, "no-op": 0, "refused": 0}
    for first in range(0, TRIALS, BATCH):
        names = [f"race-{applies}-{trial}" for trial in range(first, min(first + BATCH, TRIALS))]
        where = {name: project(tmp_path / name, name) for name in names}
        groups = {name: [start(serve, where[name]) for _ in range(applies)] for name in names}
        for name, processes in groups.items():
            results = finish(processes)
            assert results.count("created") == 1, (name, results)  # one made them; the others refused or found them made
            assert managed(serve, name) == SPECS, (name, results)
            for result in results:
                tally[result] += 1
    assert tally["created"] == TRIALS and sum(tally.values()) == TRIALS * applies


@pytest.mark.timeout(600)
def test_one_saved_plan_applied_twice_at_once(serve, tmp_path, monkeypatch):
    """SAVED_TRIALS trials (the plan is made in-process: it is not what races)."""
    names = [f"saved-{trial}" for trial in range(SAVED_TRIALS)]
    for name in names:
        monkeypatch.chdir(project(tmp_path / name, name))
        made = CliRunner().invoke(cli, ["plan", "--out", "plan.json", "--base-url", serve.base_url],
                                  env={"OPENAI_API_KEY": serve.api_key, "OPENAI_BASE_URL": None})
        assert made.exit_code == 0, made.output
    groups = {name: [start(serve, tmp_path / name, "plan.json") for _ in range(2)] for name in names}
    for name, processes in groups.items():
        outputs = [process.communicate(timeout=120) + (process.returncode,) for process in processes]
        assert sorted(code for _, _, code in outputs) == [0, 1], outputs
        out, err, _ = next(output for output in outputs if output[2] == 1)
        errors = [line for line in err.splitlines() if line.startswith("Error:")]
        assert len(errors) == 1 and (REFUSED in errors[0] or "the saved plan is stale" in errors[0]), out + err
        assert managed(serve, name) == SPECS
