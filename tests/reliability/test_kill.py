"""`asstctl serve --db FILE` killed with SIGKILL in the middle of `asstctl apply` (both real
processes): every write acknowledged before the kill is there after a restart, and the next
apply converges without a duplicate."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

from tests.reliability.helpers import assert_matches_specs, cli, numbered_specs, sdk, snapshot, write_project
from tests.serve_process import ServeProcess

N = 80
CREATED = re.compile(r"\+ (bot-\d+): created (asst_[0-9a-f]+)")


def start_apply(root, base_url: str, log) -> subprocess.Popen:
    command = [sys.executable, "-m", "asstctl", "apply", "--yes", "--parallelism", "2", "--base-url", base_url]
    env = {**os.environ, "OPENAI_API_KEY": "asstctl-local", "NO_COLOR": "1"}
    env.pop("OPENAI_BASE_URL", None)
    return subprocess.Popen(command, cwd=root, stdout=log, stderr=subprocess.STDOUT, env=env)


def kill_midway(server: ServeProcess, root, log_path) -> tuple[set[str], subprocess.CompletedProcess | int]:
    """Start the apply, SIGKILL the server once some assistants exist; the ids seen before the kill."""
    client = sdk(server.base_url, server.api_key)
    with open(log_path, "w") as log:
        applying = start_apply(root, server.base_url, log)
        seen: set[str] = set()
        deadline = time.monotonic() + 90  # the apply's start-up (imports, plan) on a loaded machine
        while len(seen) < 10 and time.monotonic() < deadline:
            seen = set(snapshot(client))
            time.sleep(0.05)
        assert server.stop(signal.SIGKILL) == -signal.SIGKILL
        code = applying.wait(timeout=60)
    client.close()
    return seen, code


def test_sigkill_mid_apply_loses_no_acknowledged_write(tmp_path):
    db, specs = tmp_path / "server.sqlite3", numbered_specs(N)
    root = write_project(tmp_path / "project", specs)
    with ServeProcess(tmp_path / "serve", "--db", str(db), "--latency-ms", "40") as server:
        seen, code = kill_midway(server, root, tmp_path / "apply.log")
    output = (tmp_path / "apply.log").read_text()
    assert code == 1 and "Traceback" not in output, output
    acknowledged = dict(CREATED.findall(output))
    assert 10 <= len(seen) < N, "the kill did not land in the middle of the apply"
    with ServeProcess(tmp_path / "serve-again", "--db", str(db)) as server:
        after = snapshot(sdk(server.base_url, server.api_key))
        assert seen <= set(after), "objects listed before the kill are gone"
        assert set(acknowledged.values()) <= set(after), "acknowledged creates are gone"
        result = cli(root, server.base_url, server.api_key, "apply", "--yes")
        assert result.exit_code == 0, result.output
        assert_matches_specs(snapshot(sdk(server.base_url, server.api_key)), specs)
        assert cli(root, server.base_url, server.api_key, "plan", "--detailed-exitcode").exit_code == 0
