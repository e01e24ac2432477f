"""A project directory, a local server steered by a rules file, and `asstctl test` through click."""

from __future__ import annotations

import json
import textwrap

import pytest
from click.testing import CliRunner

from asstctl import ownership
from asstctl.cli import cli
from asstctl.server.embedded import start_server
from tests.conftest import make_client

PROJECT = "shop"
RULES = """
rules:
  - match: "weather in (?P<city>[A-Za-z ]+)"
    assistant: weather-bot
    tool_calls: [{name: get_weather, arguments: {city: "{city}", unit: celsius}}]
    then: "It is {output} in {city}."
  - match: "pirate"
    instructions: "pirate"
    reply: "Arr, {message}"
  - match: "^three of five"
    replies: ["yes", "yes", "yes", "no", "no"]
  - match: "^two of five"
    replies: ["yes", "yes", "no", "no", "no"]
  - match: "^slow"
    reply: "finally"
    latency_ms: 5000
  - match: "^hello (?P<name>\\\\w+)"
    reply: "Hello, {name}!"
"""
GET_WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "unit": {"type": "string"}},
            "required": ["city"],
        },
    },
}


@pytest.fixture
def project(tmp_path, monkeypatch):
    root = tmp_path / "project"
    (root / "assistants").mkdir(parents=True)
    (root / "asstctl.yaml").write_text(f"project: {PROJECT}\n")
    monkeypatch.chdir(root)
    return root


@pytest.fixture
def target(tmp_path):
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    with start_server(":memory:", rules_path=str(rules)) as server:
        yield server


@pytest.fixture
def sdk(target):
    client = make_client(target)
    yield client
    client.close()


def deploy(client, key: str, project: str = PROJECT, tools=(GET_WEATHER,)) -> str:
    """An assistant as `asstctl apply` leaves it: tagged with project and key."""
    assistant = client.beta.assistants.create(
        model="gpt-4o", name=key, instructions=f"You are {key}.", tools=list(tools),
        metadata=ownership.tags(project, key, "0" * 16),
    )
    return assistant.id


def write_conversations(root, key: str, text: str):
    path = root / "assistants" / f"{key}.test.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def asstctl_test(server, *args: str):
    runner = CliRunner()
    return runner.invoke(cli, ["test", "--base-url", server.base_url, *args],
                         env={"OPENAI_API_KEY": server.api_key, "OPENAI_BASE_URL": None})


def json_report(result) -> dict:
    assert result.exit_code in (0, 1), result.output
    return json.loads(result.stdout)
