"""``python -m asstctl serve`` as a real subprocess, for the serve/security/durability tests.

Output goes to files (no pipe can fill up); the base URL is read from the one line the
server prints once it listens (``--port 0`` picks a free port).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

URL = re.compile(r"http://\S+/v1")


class ServeProcess:
    def __init__(self, workdir: Path, *args: str, env: dict[str, str] | None = None, python: str = sys.executable):
        self.workdir = workdir
        self.api_key = (env or {}).get("ASSTCTL_SERVER_API_KEY") or "asstctl-local"  # for make_client
        workdir.mkdir(parents=True, exist_ok=True)
        self.out_path, self.err_path = workdir / "serve.out", workdir / "serve.err"
        command = [python, "-m", "asstctl", "serve", "--port", "0", *args]
        with open(self.out_path, "w") as out, open(self.err_path, "w") as err:
            self.proc = subprocess.Popen(command, cwd=workdir, stdout=out, stderr=err, env={**os.environ, **(env or {})})
        self.base_url = self._wait_for_url()

    def _wait_for_url(self, patience: float = 20.0) -> str:
        deadline = time.monotonic() + patience
        while time.monotonic() < deadline:
            found = URL.search(self.stdout())
            if found:
                return found.group(0)
            if self.proc.poll() is not None:
                break
            time.sleep(0.02)
        self.proc.kill()
        raise AssertionError(f"asstctl serve did not start:\n{self.stdout()}\n{self.stderr()}")

    def stdout(self) -> str:
        return self.out_path.read_text()

    def stderr(self) -> str:
        return self.err_path.read_text()

    def stop(self, sig: int = signal.SIGTERM) -> int:
        """Send ``sig`` and return the exit code (negative: killed by a signal)."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(timeout=30)

    def __enter__(self) -> "ServeProcess":
        return self

    def __exit__(self, *exc) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)
