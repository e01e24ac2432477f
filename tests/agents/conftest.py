"""Fixtures for the Agents API backend: one scripted Agents API per module (tests/agents/scripted.py), a project
whose `agents` target points at it, and the CLI run against that target."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from asstctl.cli import cli
from tests.agents.scripted import ScriptedAgents

KEY_ENV = "SCRIPTED_AGENTS_KEY"
_projects = itertools.count(1)


@pytest.fixture(scope="module")
def agents_api():
    with ScriptedAgents() as api:
        yield api


@pytest.fixture
def api(agents_api):
    """The module's scripted API; a test fails on any request, object or event that breaks the SDK's types."""
    agents_api.problems.clear()
    agents_api.answers.clear()
    agents_api.failures.clear()
    agents_api.create_delay = 0.0
    agents_api.peak_creates = 0
    agents_api.explicit_defaults = False
    agents_api.default_effort = None
    yield agents_api
    assert not agents_api.problems, "the Agents API contract was broken:\n" + "\n".join(agents_api.problems)


@pytest.fixture
def project(tmp_path, monkeypatch, api):
    """A project (its own name: the module's tests share one API) with an `agents` target on the scripted API."""
    monkeypatch.chdir(tmp_path)
    name = f"agents-demo-{next(_projects)}"
    (tmp_path / "asstctl.yaml").write_text(yaml.safe_dump({"project": name, "targets": {
        "agents": {"api": "agents", "base_url": api.base_url, "api_key_env": KEY_ENV}}}, sort_keys=False))
    (tmp_path / "assistants").mkdir()
    return tmp_path


def write_spec(root: Path, key: str, **fields) -> Path:
    path = root / "assistants" / f"{key}.yaml"
    path.write_text(yaml.safe_dump({"model": "gpt-5", **fields}, sort_keys=False))
    return path


def run(api, *args, input=None):
    """`asstctl ARGS --target agents` (commands without a target take their arguments as they are)."""
    env = {KEY_ENV: api.key, "OPENAI_API_KEY": None, "OPENAI_BASE_URL": None, "NO_COLOR": None}
    targeted = [] if args[0] in ("validate", "schema") else ["--target", "agents"]
    return CliRunner().invoke(cli, [*args, *targeted], env=env, input=input, catch_exceptions=False)


def sdk(api, **options):
    """The real SDK on the scripted API (strict response validation on)."""
    import openai

    return openai.OpenAI(base_url=api.base_url, api_key=api.key, max_retries=0, _strict_response_validation=True,
                         **options)
