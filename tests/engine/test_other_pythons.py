"""The cancel proof on every supported Python: a real ``asstctl serve`` process run by that Python, a
hostile upstream streaming a token every 10 ms (tests/engine/hostile.py), and the openai SDK of this
process cancelling 15 runs at random moments, each of which must reach ``cancelled`` within 1 s
(test_hostile.py's own test, run once per other Python: under the Python running the tests it runs
there already).

Which Python serves comes from a ``.venv-pyXY`` folder at the checkout's root (``.ci/run`` builds one
for every supported Python other than its own, from the local package index, with only the server's
runtime dependencies). The server imports this
checkout (``PYTHONPATH``), whatever the venv has installed. A Python without its venv is skipped,
saying so, unless ``ASSTCTL_REQUIRE_PYTHONS`` lists it (``.ci/run`` lists the ones it built): then the
row fails instead."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import pytest

from tests.conftest import make_client
from tests.engine.hostile import HostileUpstream, delta
from tests.engine.test_hostile import serve_on
from tests.engine.test_hostile import test_cancel_reaches_cancelled_within_a_second_every_time as cancel_15_runs

SUPPORTED = ("3.10", "3.11", "3.12", "3.13")  # pyproject: requires-python and classifiers, the README: the same
OTHERS = tuple(v for v in SUPPORTED if v != "%d.%d" % sys.version_info[:2])  # this one: test_hostile.py
REQUIRE_ENV = "ASSTCTL_REQUIRE_PYTHONS"  # e.g. "3.10 3.12 3.13": those rows fail instead of skipping
ROOT = Path(__file__).resolve().parents[2]


def venv_of(version: str) -> Path:
    return ROOT / f".venv-py{version.replace('.', '')}"


def venv_version(venv: Path) -> str | None:
    """The Python version a venv was made with (its pyvenv.cfg), or None."""
    try:
        lines = (venv / "pyvenv.cfg").read_text().splitlines()
    except OSError:
        return None
    for key, _, value in (line.partition("=") for line in lines):
        if key.strip() in ("version", "version_info"):
            return value.strip()
    return None


def interpreter(version: str) -> str:
    """The Python ``version`` to serve with (its venv's); else skip (or fail when required)."""
    venv = venv_of(version)
    python, made_with = venv / "bin" / "python", venv_version(venv)
    if not python.exists():
        problem = f"no Python {version} venv at {venv} (.ci/run builds it when python{version} is installed)"
    elif not (made_with or "").startswith(version + "."):
        problem = f"{venv} was made with Python {made_with}, not {version}"
    else:
        return str(python)
    if version in os.environ.get(REQUIRE_ENV, "").split():
        pytest.fail(f"{REQUIRE_ENV} lists {version} but there is {problem}")
    pytest.skip(problem)


@pytest.fixture(scope="module")
def upstream():
    with HostileUpstream() as running:
        # The stream's chunk checked against the schema now: its first check (0.5 s on a loaded machine,
        # the schema compiled) would otherwise come between the head and the first token, past the 1 s
        # idle limit of the first run.
        running._check(delta({"content": "tok "}))
        assert not running.problems, running.problems
        yield running
    assert not running.problems, running.problems


@pytest.mark.parametrize("version", OTHERS)
def test_cancel_reaches_cancelled_within_a_second_on(version, upstream, tmp_path, contract):
    python = interpreter(version)
    with serve_on(upstream, tmp_path, python=python, env={"PYTHONPATH": str(ROOT)}) as server:
        client = make_client(server, contract, timeout=30)
        try:
            cancel_15_runs(client)
        finally:
            client.close()
        assert server.stop() == 0, server.stderr()


def test_pyproject_and_the_readme_claim_exactly_the_pythons_tested():
    project, readme = (ROOT / "pyproject.toml").read_text(), (ROOT / "README.md").read_text()
    last = int(SUPPORTED[-1].split(".")[1])
    assert re.search(rf'^requires-python = ">={SUPPORTED[0]},<3\.{last + 1}"', project, re.M), "requires-python"
    assert tuple(re.findall(r'"Programming Language :: Python :: (3\.\d+)"', project)) == SUPPORTED
    assert f"Python {SUPPORTED[0]} to {SUPPORTED[-1]} (each tested" in readme
