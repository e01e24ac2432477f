"""The README's main job on a fresh install (no `[code]` extra: no sympy, pandas nor matplotlib) without bubblewrap: the example
project's offline `code:` rule (the project's own code, standard library only) runs as a plain subprocess
with a one-line notice (tests/sandbox/test_runs.py shows that code a message fills in, like a model's code,
never does)."""

from __future__ import annotations

import logging
import re
import shutil
import sys
from pathlib import Path

from click.testing import CliRunner

import asstctl
from asstctl.cli import cli
from tests.sandbox.as_user import UserServer
from tests.sandbox.conftest import ROOMY_CPU

PROJECT = Path(asstctl.__file__).resolve().parents[1]


def base_packages() -> set[str]:
    """asstctl's base dependencies and theirs (no extra), as normalized distribution names."""
    from importlib import metadata

    from packaging.requirements import Requirement

    found, todo = set(), ["asstctl"]
    while todo:
        name = todo.pop()
        try:
            requires = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            continue
        for text in requires:
            requirement = Requirement(text)
            if requirement.marker is not None and "extra" in str(requirement.marker):
                continue
            key = re.sub(r"[-_.]+", "-", requirement.name).lower()
            if key not in found:
                found.add(key)
                todo.append(requirement.name)
    return found


def hidden_packages() -> list[str]:
    """The top-level modules of every installed distribution that a base install lacks (sympy, pandas,
    matplotlib, scipy, pytest, ...)."""
    from importlib import metadata

    base = base_packages() | {"asstctl"}
    return sorted(top for top, dists in metadata.packages_distributions().items()
                  if not top.startswith("_") and top not in sys.stdlib_module_names
                  and not any(re.sub(r"[-_.]+", "-", d).lower() in base for d in dists))


def without_extras(tmp_path: Path, monkeypatch) -> list[str]:
    """A fresh install's environment: asstctl's base dependencies only (no `[code]` extra: no sympy, pandas nor
    matplotlib, and no test packages). A site directory on the server's path, whose .pth every Python it starts
    with its packages processes (the plain subprocess's REPL too), makes importing any other installed package
    fail there, as where it is not installed. The names hidden."""
    hidden = hidden_packages()
    site = tmp_path / "base-only" / "site-packages"
    site.mkdir(parents=True)
    (site / "base_only.pth").write_text(f"import sys; sys.modules.update(dict.fromkeys({hidden!r}))\n")
    monkeypatch.syspath_prepend(str(site))
    return hidden


def test_the_readme_main_job_passes_without_bwrap_on_the_path(tmp_path, monkeypatch, caplog):
    for name in ("asstctl.yaml", "engine-rules.yaml"):
        shutil.copy(PROJECT / name, tmp_path / name)
    shutil.copytree(PROJECT / "assistants", tmp_path / "assistants")
    (tmp_path / "bin").mkdir()
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))  # no bwrap (nor anything else: asstctl needs only its Python)
    hidden = without_extras(tmp_path, monkeypatch)
    assert {"sympy", "pandas", "matplotlib"} <= set(hidden) and "numpy" not in hidden  # numpy is a base dependency
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
