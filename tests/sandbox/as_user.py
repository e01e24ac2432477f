"""An asstctl server and its code_interpreter tool in a process of its own, for the corpus as an
unprivileged user: ``python -m tests.sandbox.as_user DB LIMITS`` (under ``setpriv`` when the tests
run as root, like the Dockerfile's ``USER asstctl``), driven with JSON lines on stdin/stdout."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace

UNPRIVILEGED = 65534  # nobody


PROJECT = Path(__file__).resolve().parents[2]


def python_for_user(prefix: list[str], env: dict[str, str]) -> str | None:
    """An interpreter of this Python version the unprivileged user can run with this checkout and its
    packages (this one may live below a directory it cannot enter, e.g. pyenv in /root)."""
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    for python in dict.fromkeys([sys.executable, os.path.realpath(sys.executable),
                                 f"/usr/local/bin/python{version}", f"/usr/bin/python{version}"]):
        probe = [*prefix, python, "-c", f"import os, sys; assert sys.version_info[:2] == {sys.version_info[:2]}; "
                                         "assert os.path.isfile(os.path.realpath(sys.executable)); "  # what bwrap runs
                                         "import asstctl.server.embedded, tests.sandbox.tool_driver"]
        try:
            if subprocess.run(probe, cwd=PROJECT, env=env, capture_output=True, timeout=60).returncode == 0:
                return python
        except OSError:
            continue
    return None


class UserServer:
    """The in-process ``(server, ToolDriver)`` pair's interface, served by an unprivileged process."""

    def __init__(self, limits: dict, env: dict[str, str]):
        import pytest

        self.home = Path(tempfile.mkdtemp(prefix="asstctl-as-user-"))
        self.db = self.home / "server.sqlite3"
        prefix = []
        if os.geteuid() == 0:
            os.chown(self.home, UNPRIVILEGED, UNPRIVILEGED)
            prefix = ["setpriv", f"--reuid={UNPRIVILEGED}", f"--regid={UNPRIVILEGED}", "--clear-groups"]
        packages = [p for p in sys.path if p.endswith(("site-packages", "dist-packages")) and os.path.isdir(p)]
        environment = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(self.home),
                       "PYTHONPATH": os.pathsep.join([str(PROJECT), *packages]), **env}
        python = python_for_user(prefix, environment)
        if python is None:
            pytest.fail(f"no Python {sys.version_info.major}.{sys.version_info.minor} that uid {UNPRIVILEGED} can run "
                        f"with {PROJECT} and {packages}: make them readable to it (e.g. check out outside /root)")
        self.proc = subprocess.Popen([*prefix, python, "-m", "tests.sandbox.as_user", str(self.db),
                                      json.dumps(limits)], cwd=PROJECT, env=environment, text=True,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        hello = json.loads(self.proc.stdout.readline() or "{}")
        assert hello.get("uid") == (UNPRIVILEGED if prefix else os.geteuid()), hello
        self.base_url, self.port, self.api_key = hello["base_url"], hello["port"], hello["api_key"]

    def ask(self, request: dict) -> dict:
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())

    def call(self, code: str, thread_id: str) -> SimpleNamespace:
        return SimpleNamespace(**self.ask({"code": code, "thread": thread_id}))

    def set_wall(self, seconds: float) -> None:
        self.configure(wall_seconds=seconds)

    def configure(self, **limits) -> None:
        """Set fields of the server's sandbox config (read by its pool and watchdog at each use)."""
        self.ask({"config": limits})

    def end_sessions(self) -> None:
        """End every sandbox session of the server (those of earlier tests)."""
        self.ask({"end_sessions": True})

    def idle(self, seconds: float) -> None:
        """Let the server's loop (and so its watchdog) run ``seconds`` without a call."""
        self.ask({"idle": seconds})

    def close(self) -> None:
        self.proc.stdin.close()
        assert self.proc.wait(30) == 0
        self.proc.stdout.close()
        import shutil

        shutil.rmtree(self.home, ignore_errors=True)


def main() -> None:
    from asstctl.server.embedded import start_server
    from asstctl.server.sandbox import SandboxConfig
    from tests.sandbox.tool_driver import ToolDriver

    db, limits = sys.argv[1], json.loads(sys.argv[2])
    with start_server(db, sandbox=SandboxConfig(**limits)) as server:
        tool = ToolDriver(server)
        print(json.dumps({"base_url": server.base_url, "port": server.port, "api_key": server.api_key,
                          "uid": os.geteuid()}), flush=True)
        for line in sys.stdin:
            request = json.loads(line)
            if "config" in request:
                for name, value in request["config"].items():
                    setattr(tool.tool.config, name, value)
                print("{}", flush=True)
                continue
            if "end_sessions" in request:
                tool.end_sessions()
                print("{}", flush=True)
                continue
            if "idle" in request:
                tool.idle(request["idle"])
                print("{}", flush=True)
                continue
            outcome = tool.call(request["code"], request["thread"])
            print(json.dumps({"output": outcome.output, "call": outcome.call,
                              "written_files": outcome.written_files}), flush=True)
        tool.close()


if __name__ == "__main__":
    main()
