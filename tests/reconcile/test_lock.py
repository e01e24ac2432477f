"""The project lock (asstctl.reconcile.lock, issue 10 item 2), in-process against the embedded server: refusal
naming the holder, --lock-timeout, expiry of a crashed apply's lock, force-unlock, and lock objects
never showing as managed or foreign objects. The subprocess races are in tests/reliability."""

from __future__ import annotations

import threading
import time

import pytest
import yaml
from click.testing import CliRunner

from asstctl.reconcile import lock as locking
from asstctl.cli import cli
from asstctl.reconcile.knowledge import read_knowledge
from asstctl.reconcile.remote import read_remote

NAME = "lock-demo"


@pytest.fixture
def project(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "asstctl.yaml").write_text(f"project: {NAME}\n")
    (tmp_path / "assistants").mkdir()
    for key in ("triage", "faq"):
        (tmp_path / "assistants" / f"{key}.yaml").write_text(yaml.safe_dump({"model": "gpt-4o", "name": key}))
    return tmp_path


def run(server, *args, input=None):
    env = {"OPENAI_API_KEY": server.api_key, "NO_COLOR": None, "FORCE_COLOR": None, "OPENAI_BASE_URL": None}
    return CliRunner().invoke(cli, [*args, "--base-url", server.base_url], env=env, input=input, catch_exceptions=False)


def lock_objects(client):
    return [s for s in client.vector_stores.list() if (s.metadata or {}).get(locking.LOCK) == NAME]


def test_a_held_lock_refuses_apply_and_destroy_at_once_naming_holder_and_since(server, client, project):
    with locking.acquire(client, NAME, "apply") as held:
        for command in (["apply", "--yes"], ["destroy", "--yes"]):
            result = run(server, *command)
            assert result.exit_code == 1, result.output
            errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
            assert len(errors) == 1 and "Traceback" not in result.output
            assert f"project {NAME} is locked by {held.info.holder} (apply) since {held.info.since}" in errors[0]
            assert f"asstctl force-unlock {held.info.id}" in result.output
        assert read_remote(client, NAME).managed == {}  # nothing was planned, nothing made
        assert [s.id for s in lock_objects(client)] == [held.info.id]  # the losers removed theirs
    assert lock_objects(client) == []  # release deletes it


def test_lock_timeout_waits_for_the_holder(server, client, project):
    held = locking.acquire(client, NAME, "apply")
    releaser = threading.Timer(1.5, held.release)
    releaser.start()
    try:
        result = run(server, "apply", "--yes", "--lock-timeout", "1m")
    finally:
        releaser.join()
    assert result.exit_code == 0, result.output
    assert "2 created" in result.output and lock_objects(client) == []


def test_lock_timeout_that_runs_out_says_how_long_it_waited(server, client, project):
    with locking.acquire(client, NAME, "destroy"):
        result = run(server, "apply", "--yes", "--lock-timeout", "1s")
    assert result.exit_code == 1
    assert "(destroy) since" in result.output and "(waited 1 s)" in result.output


def test_a_bad_lock_timeout_is_a_usage_error(server, project):
    result = run(server, "apply", "--yes", "--lock-timeout", "soon")
    assert result.exit_code == 2 and "`soon` is not a duration" in result.output


@pytest.mark.parametrize("text, seconds", [("30s", 30), ("2m", 120), ("1h", 3600), ("1m30s", 90), ("45", 45),
                                           ("0.5", 0.5), ("250ms", 0.25)])
def test_durations(text, seconds):
    assert locking.parse_duration(text) == seconds


def crashed_lock(client, expired: bool = True):
    """A lock object as an apply that died would leave it."""
    expires = int(time.time()) + (-60 if expired else 600)
    return client.vector_stores.create(name=f"asstctl lock: {NAME}", metadata={
        locking.LOCK: NAME, locking.HOLDER: "ci@runner pid 1", locking.OPERATION: "apply",
        locking.SINCE: "2026-01-01 00:00:00 UTC", locking.EXPIRES: str(expires)})


def test_an_expired_lock_of_a_crashed_apply_is_ignored_and_removed(server, client, project):
    crashed_lock(client)
    result = run(server, "apply", "--yes")
    assert result.exit_code == 0, result.output
    assert lock_objects(client) == []


def test_force_unlock_removes_a_live_lock_after_confirmation(server, client, project):
    stuck = crashed_lock(client, expired=False)
    assert "ci@runner pid 1" in run(server, "apply", "--yes").output
    refused = run(server, "force-unlock", stuck.id)
    assert refused.exit_code == 1 and "re-run with --yes" in refused.output and lock_objects(client)
    unknown = run(server, "force-unlock", "vs_nope", "--yes")
    assert unknown.exit_code == 1 and f"vs_nope is not a lock of project {NAME}" in unknown.output
    removed = run(server, "force-unlock", stuck.id, "--yes")
    assert removed.exit_code == 0 and f"removed lock {stuck.id}" in removed.output
    assert lock_objects(client) == [] and run(server, "apply", "--yes").exit_code == 0
    assert "is not locked" in run(server, "force-unlock", "--yes").output


def test_lock_objects_are_never_managed_foreign_or_pruned(server, client, project):
    assert run(server, "apply", "--yes").exit_code == 0
    other = client.vector_stores.create(name="someone else's")
    with locking.acquire(client, NAME, "apply") as held:
        knowledge = read_knowledge(client, NAME)
        assert held.info.id not in {s["id"] for s in knowledge.stores.owned() + knowledge.stores.foreign}
        assert {s["id"] for s in knowledge.stores.foreign} == {other.id}
        planned = run(server, "plan", "--prune", "--output", "json").output
        assert held.info.id not in planned
        status = run(server, "status", "--output", "json")
        assert f'"id": "{held.info.id}"' in status.output and held.info.holder in status.output  # as the lock
        assert '"object": "vector_store"' not in status.output
    assert run(server, "destroy", "--yes").exit_code == 0
    assert {s.id for s in client.vector_stores.list()} == {other.id}


def test_the_holder_renews_its_lock(client):
    with locking.acquire(client, NAME, "apply") as held:
        before = held.info.expires
        held.offset += 30  # as if 30 s had passed
        held.renew()
        assert held.info.expires >= before + 29
        stored = client.vector_stores.retrieve(held.info.id).metadata
        assert int(stored[locking.EXPIRES]) == held.info.expires and stored[locking.HOLDER] == held.info.holder


def info(lock_id: str, created_at: int):
    return locking.LockInfo(lock_id, NAME, "h", "apply", "", created_at + 100, created_at)


def test_the_oldest_wins_and_objects_made_in_the_same_second_contend():
    assert locking.verdict("a", [info("a", 10)]) == locking.WON
    assert locking.verdict("b", [info("a", 10), info("b", 12)]).id == "a"
    assert locking.verdict("a", [info("a", 10), info("b", 12)]) == locking.WON
    assert locking.verdict("a", [info("a", 10), info("b", 11)]) == locking.CONTENDED  # may not have seen each other
    assert locking.verdict("b", [info("a", 10), info("b", 10)]) == locking.CONTENDED
    assert locking.verdict("c", [info("a", 10)]) == locking.CONTENDED  # our own object not listed yet


def test_no_lock_skips_the_lock(server, client, project):
    with locking.acquire(client, NAME, "apply"):
        result = run(server, "apply", "--yes", "--no-lock")
    assert result.exit_code == 0 and "2 created" in result.output, result.output


def test_a_live_lock_whose_process_on_this_machine_is_gone_is_removed_at_once(server, client, project):
    import subprocess
    import sys

    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = int(gone.stdout)
    stale = crashed_lock(client, expired=False)
    client.vector_stores.update(stale.id, metadata={**stale.metadata, locking.PROCESS: locking.process_identity(dead)})
    alive = crashed_lock(client, expired=False)  # its process (pid 1) runs: only expiry or force-unlock remove it
    client.vector_stores.update(alive.id, metadata={**alive.metadata, locking.PROCESS: locking.process_identity(1)})
    result = run(server, "apply", "--yes")
    assert result.exit_code == 1 and alive.id in result.output and stale.id not in result.output
    assert {s.id for s in lock_objects(client)} == {alive.id}  # pid 1 still runs: its lock stands
    run(server, "force-unlock", "--yes")
    assert run(server, "apply", "--yes").exit_code == 0


def test_a_lost_lock_create_is_adopted_never_left_to_block_the_apply_that_made_it(server, client):
    """The target makes the lock but its answer is lost: the lock is found by its metadata and used (before,
    the create was sent again and the first lock, older, blocked the apply that made it)."""
    server.faults.kinds, server.faults.rate = ("lost",), 1.0  # every write's answer is lost
    before = server.faults.injected.get("lost", 0)
    try:
        held = locking.acquire(client, NAME, "apply")
    finally:
        server.faults.rate = 0
    assert server.faults.injected.get("lost", 0) == before + 1  # the create, and nothing sent again
    with held:
        assert [s.id for s in lock_objects(client)] == [held.info.id]
    assert lock_objects(client) == []
