"""The README's main job on a fresh install (no `[code]` extra: no sympy) without bubblewrap: the example
project's offline `code:` rule (the project's own code, standard library only) runs as a plain subprocess
with a one-line notice (tests/sandbox/test_runs.py shows that code a message fills in, like a model's code,
never does)."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from click.testing import CliRunner

import asstctl
from asstctl.cli import cli
from tests.sandbox.as_user import UserServer
from tests.sandbox.conftest import ROOMY_CPU

PROJECT = Path(asstctl.__file__).resolve().parents[1]


def without_sympy(tmp_path: Path, monkeypatch) -> None:
    """A fresh install's environment: asstctl's base dependencies only, no sympy (the `[code]` extra's). A site
    directory on the server's path, whose .pth every Python it starts with its packages processes (the plain
    subprocess's REPL too), makes `import sympy` fail there, as where it is not installed."""
    site = tmp_path / "no-sympy" / "site-packages"
    site.mkdir(parents=True)
    (site / "no_sympy.pth").write_text("import sys; sys.modules['sympy'] = None\n")
    monkeypatch.syspath_prepend(str(site))


def test_the_readme_main_job_passes_without_bwrap_on_the_path(tmp_path, monkeypatch, caplog):
    for name in ("asstctl.yaml", "engine-rules.yaml"):
        shutil.copy(PROJECT / name, tmp_path / name)
    shutil.copytree(PROJECT / "assistants", tmp_path / "assistants")
    (tmp_path / "bin").mkdir()
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))  # no bwrap (nor anything else: asstctl needs only its Python)
    without_sympy(tmp_path, monkeypatch)
    monkeypatch.chdir(tmp_path)
    caplog.set_level(logging.WARNING, "asstctl")
    for args in (["apply", "--yes"], ["test"]):
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == 0, result.output
    assert "PASS  math-tutor/solves a linear equation step by step" in result.output and "FAIL" not in result.output
    notices = [r.getMessage() for r in caplog.records if "sandbox" in r.getMessage()]
    assert len(notices) == 1 and "bwrap is not installed" in notices[0] and "plain subprocess" in notices[0], notices


def test_the_plain_subprocess_as_an_unprivileged_user_has_no_process_limit_of_its_uid():
    """The main job's plain subprocess (no bwrap) under the Dockerfile's kind of user: RLIMIT_NPROC would
    count every process and thread of that uid on the machine (the server's own threads too), so it is not
    applied there; the watchdog counts the session's own instead (here 20 + the REPL's 2, under 24)."""
    server = UserServer(dict(ROOMY_CPU, unsafe=True, max_processes=24), {})
    try:
        code = ("import subprocess\nalive = [subprocess.Popen(['sleep', '60']) for _ in range(20)]\n"  # at once
                "for p in alive:\n    p.kill()\n    p.wait()\nprint(len(alive))")
        assert server.call(code, "thread_main").output == "20\n"
    finally:
        server.close()
