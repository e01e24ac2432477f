"""The escape corpus: every case runs for real through the code_interpreter tool of a real server
(with a database file), is contained, ends failed or truncated, and the server stays healthy."""

from __future__ import annotations

import socket
import sys
from pathlib import Path

import pytest

import asstctl
from asstctl.server.embedded import start_server
from asstctl.server.sandbox import SandboxConfig
from tests.conftest import make_client
from tests.sandbox.conftest import TEST_LIMITS
from tests.sandbox.tool_driver import ToolDriver

SECRET = "sk-asstctl-test-secret-must-not-leak-0123456789"
PROJECT = Path(asstctl.__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    db = tmp_path_factory.mktemp("escape") / "server.sqlite3"
    patch = pytest.MonkeyPatch()
    patch.setenv("ASSTCTL_TEST_UPSTREAM_KEY", SECRET)  # in the server's environment, never in the sandbox's
    with start_server(str(db), sandbox=SandboxConfig(**TEST_LIMITS)) as server:
        tool = ToolDriver(server)
        yield server, tool, db
        tool.close()
    patch.undo()


@pytest.fixture
def wall(served):
    """Lower the wall-time limit of the server's sandbox for one test."""
    config = served[1].tool.config
    kept = config.wall_seconds

    def lower(seconds):
        config.wall_seconds = seconds

    yield lower
    config.wall_seconds = kept


@pytest.fixture
def call(served, contract):
    server, tool, _ = served
    sdk = make_client(server, contract)
    thread = sdk.beta.threads.create()

    def run(code):
        return tool.call(code, thread.id)

    yield run
    # Contained: the same thread's sandbox still answers, and so does the server.
    assert run("print('still alive')").output == "still alive\n"
    assert sdk.beta.threads.retrieve(thread.id).id == thread.id
    sdk.close()


def test_no_loopback_to_the_server(served, call):
    server, _, _ = served
    with socket.create_connection(("127.0.0.1", server.port), timeout=5):
        pass  # reachable from outside the sandbox
    outcome = call(f"import socket\nsocket.create_connection(('127.0.0.1', {server.port}), timeout=5)")
    assert "ConnectionRefusedError" in outcome.output


def test_no_network_outside(call):
    outcome = call("import socket\nsocket.create_connection(('192.0.2.1', 80), timeout=5)")
    assert "Network is unreachable" in outcome.output


def test_the_servers_environment_is_invisible(call):
    code = ("import os, glob\nfound = [k for k, v in os.environ.items() if 'asstctl' in (k + v).lower()]\n"
            "for path in glob.glob('/proc/*/environ'):\n"
            "    try:\n        found += [path] if b'ASSTCTL' in open(path, 'rb').read() else []\n"
            "    except OSError:\n        pass\n"
            "print('found:', found, sorted(os.environ))")
    outcome = call(code)
    assert outcome.output.startswith("found: [] ") and SECRET not in outcome.output
    assert "'MPLBACKEND'" in outcome.output  # the clean environment it does get


def test_the_servers_files_are_invisible(served, call):
    _, _, db = served
    assert db.exists() and (PROJECT / "pyproject.toml").exists()
    files = [str(db), str(PROJECT / "pyproject.toml"), str(PROJECT / "asstctl" / "__init__.py"), "/etc/passwd",
             "/etc/shadow", str(Path.home() / ".bash_history")]
    code = (f"import os\nfor p in {files!r}:\n"
            "    try:\n        open(p, 'rb').read()\n        print('READ', p)\n"
            "    except OSError as e:\n        print('blocked', type(e).__name__)\n"
            f"for d in {[str(db.parent), str(PROJECT)]!r}:\n"
            "    print('listing', os.listdir(d) if os.path.isdir(d) else None)")
    outcome = call(code)
    assert "READ" not in outcome.output and outcome.output.count("blocked") == len(files)
    listings = [line for line in outcome.output.splitlines() if line.startswith("listing")]
    # The database's folder is absent; of the project only the venv's site-packages may show (read-only).
    assert listings[0] == "listing None" and listings[1] in ("listing None", "listing ['.venv']"), listings


def test_no_writes_outside_mnt_data(call):
    targets = ["/escape.txt", "/usr/escape.txt", "/etc/escape.txt", f"{sys.base_prefix}/escape.txt",
               f"{Path(asstctl.__file__).parent}/escape.txt", f"{PROJECT}/escape.txt"]
    code = (f"for p in {targets!r}:\n"
            "    try:\n        open(p, 'w').write('x')\n        print('WROTE', p)\n"
            "    except OSError as e:\n        print('blocked', type(e).__name__)")
    outcome = call(code)
    assert "WROTE" not in outcome.output and outcome.output.count("blocked") == len(targets)
    assert not any(Path(p).exists() for p in targets)


def test_fork_bomb(call):
    outcome = call("import os\nwhile True:\n    os.fork()")
    assert "Resource temporarily unavailable" in outcome.output
    left = call("import os\nprint(sorted(int(p) for p in os.listdir('/proc') if p.isdigit()))")
    assert len(eval(left.output)) <= 3  # its init, this REPL (and at most a dying straggler): the bomb was reaped


def test_memory_bomb(call):
    outcome = call("hog = bytearray(8 * 1024 ** 3)")
    assert "MemoryError" in outcome.output


def test_endless_loop_hits_the_cpu_limit(call, wall):
    wall(600)  # only the CPU limit (1 s) can end it
    outcome = call("while True:\n    pass")
    assert "CPU time limit of 1 s per call exceeded" in outcome.output


def test_endless_sleep_hits_the_wall_time_limit_and_is_interrupted(call, wall):
    call("kept = 1")
    wall(6)
    outcome = call("import time\nwhile True:\n    time.sleep(1)")
    assert "KeyboardInterrupt: stopped: the call ran longer than the wall-time limit" in outcome.output
    assert outcome.output.endswith("[Execution interrupted: it ran longer than the wall-time limit of 6 s.]")
    assert call("kept").output == "1\n"  # interrupted, not restarted: the session lives on


def test_a_cell_that_ignores_the_interrupt_is_ended_with_its_session(call, wall):
    call("kept = 1")
    wall(3)
    code = "import time\nwhile True:\n    try:\n        time.sleep(1)\n    except KeyboardInterrupt:\n        pass"
    outcome = call(code)
    assert "did not stop when interrupted" in outcome.output and "session was restarted" in outcome.output
    assert "NameError" in call("kept").output


def test_huge_output_is_truncated(call):
    outcome = call("for i in range(20000):\n    print('spam' * 100)")
    (output,) = outcome.call["code_interpreter"]["outputs"]
    assert output["logs"].startswith("spam") and len(output["logs"]) < 2200
    assert output["logs"].endswith(f"[output truncated: {20000 * 401 - 2000} more bytes]")


def test_endless_output_is_truncated_and_interrupted(call, wall):
    wall(3)
    outcome = call("import time\nwhile True:\n    print('spam' * 1000)\n    time.sleep(0.001)")  # ended by the wall time
    (output,) = outcome.call["code_interpreter"]["outputs"]
    assert output["logs"].startswith("spamspam") and "KeyboardInterrupt" not in output["logs"][:2000]
    assert "[Execution interrupted" in output["logs"] and "[output truncated:" in output["logs"]


def test_disk_fill(call):
    outcome = call("with open('/mnt/data/fill', 'wb') as f:\n    while True:\n        f.write(b'x' * 2 ** 20)")
    assert "File too large" in outcome.output
    many = call("i = 0\nwhile True:\n    open(f'/mnt/data/f{i}', 'wb').write(b'x' * 2 ** 22)\n    i += 1")
    assert "No space left on device" in many.output
    assert sum(len(path) for path, _ in many.written_files) < 10_000 and len(many.written_files) <= 20


def test_killing_itself_restarts_the_session(call):
    outcome = call("import os, signal\nos.kill(os.getpid(), signal.SIGKILL)")
    assert "the sandboxed process ended" in outcome.output
