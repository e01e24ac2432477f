"""`engine:` in asstctl.yaml: the embedded server of `asstctl apply` / `asstctl test` runs its turns on
the configured upstream, so the smoke tests reach a model with no separate server."""

from __future__ import annotations

import json

from click.testing import CliRunner

from asstctl.cli import cli
from tests.engine.conftest import KEY_ENV
from tests.upstream import Call, Text, ToolCalls

SPEC = """name: Echo Bot
model: gpt-4o
instructions: Repeat what the user says.
tools:
  - function:
      name: get_weather
      parameters: {type: object, properties: {city: {type: string}}, required: [city]}
"""

CONVERSATIONS = """conversations:
  - name: echo
    turns:
      - user: Hello upstream
        expect: {contains: "You said: Hello upstream", no_tool_called: true}
  - name: weather through a tool
    mocks:
      get_weather: {template: "18 degrees in {city}"}
    turns:
      - user: Weather in Paris?
        expect:
          tool_called: {name: get_weather, arguments: {city: Paris}}
          contains: "18 degrees in Paris"
"""


def test_asstctl_test_reaches_the_upstream_configured_in_asstctl_yaml(tmp_path, monkeypatch, keyed):
    (tmp_path / "asstctl.yaml").write_text(
        f"project: upstream-demo\nengine:\n  upstream: {keyed.base_url}\n  api_key_env: {KEY_ENV}\n"
        '  model_map: {"gpt-4*": "scripted-model"}\n')
    (tmp_path / "assistants").mkdir()
    (tmp_path / "assistants" / "echo-bot.yaml").write_text(SPEC)
    (tmp_path / "assistants" / "echo-bot.test.yaml").write_text(CONVERSATIONS)
    monkeypatch.chdir(tmp_path)
    runner, env = CliRunner(), {"OPENAI_BASE_URL": None}
    applied = runner.invoke(cli, ["apply", "--yes"], env=env)
    assert applied.exit_code == 0, applied.output

    def script(body):  # answers by the conversation's turn, whatever order they run in
        user = body["messages"][-1]
        if user["role"] == "tool":
            return Text(f"It is {user['content']}.")
        if "Weather" in (user.get("content") or ""):
            return ToolCalls([Call("get_weather", {"city": "Paris"}, id="call_Paris1")])
        return Text(f"You said: {user['content']}")

    keyed.default = script
    result = runner.invoke(cli, ["test", "--output", "json"], env=env)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert [c["passed"] for c in report["conversations"]] == [True, True]
    assert len(keyed.requests) == 3  # echo; weather: the tool call, then the answer
    assert {r.body["model"] for r in keyed.requests} == {"scripted-model"}
    assert all(r.body["messages"][0] == {"role": "system", "content": "Repeat what the user says."}
               for r in keyed.requests)
