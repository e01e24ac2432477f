"""`asstctl test` on an Agents API target: each conversation is a session (environment `none`, streamed) of the
scripted Agents API; function calls are answered from the mocks with `tool_result` events, through the
pending-call race (400 "Unknown pending tool call", submitted again with the same Idempotency-Key)."""

from __future__ import annotations

import json

from tests.agents.conftest import run, write_spec
from tests.agents.scripted import Answer

CONVERSATIONS = """\
conversations:
  - name: weather round
    mocks:
      get_weather: {template: {city: "{city}", temperature: 21, unit: celsius}}
    turns:
      - user: What is the weather in Paris?
        expect: {tool_called: {name: get_weather, arguments: {city: Paris}}, contains: "21"}
      - user: Thanks!
        expect: {icontains: welcome}
  - name: unmocked call
    turns:
      - user: Book me a table.
        expect: {contains: booked}
  - name: run overrides
    turns:
      - user: Hi
        instructions: Answer like a pirate.
"""
WEATHER = {"name": "Weather", "instructions": "Answer with the weather tool.",
           "tools": [{"function": {"name": "get_weather", "parameters": {
               "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]}


def test_conversations_run_as_sessions_with_a_tool_round(api, project):
    write_spec(project, "weather", **WEATHER)
    (project / "assistants" / "weather.test.yaml").write_text(CONVERSATIONS)
    assert run(api, "apply", "--yes").exit_code == 0
    api.queue(Answer("It is 21 °C in Paris.", calls=[("get_weather", {"city": "Paris"})], race=True, usage=(30, 9)),
              Answer("You are welcome!"),
              Answer("Booked.", calls=[("book_table", {"people": 2})]))

    result = run(api, "test", "--output", "json")
    assert result.exit_code == 1, result.output  # the unmocked call fails its conversation
    report = json.loads(result.stdout)
    weather, unmocked, overridden = report["conversations"]
    assert weather["passed"] is True, weather
    first, second = weather["attempts"][0]["turns"]
    assert first["reply"] == "It is 21 °C in Paris." and second["reply"] == "You are welcome!"
    assert first["tool_calls"] == [{"name": "get_weather", "arguments": {"city": "Paris"}}]
    assert first["usage"] == {"prompt_tokens": 30, "completion_tokens": 9, "total_tokens": 39}
    assert first["model"] == "gpt-5" and first["run_id"].startswith("turn_")
    assert report["usage"]["total_tokens"] >= 39
    assert api.race_rejections >= 1  # the tool result met the pending-call race and was submitted again
    assert json.loads(api.tool_results[0]["output"]) == {"city": "Paris", "temperature": 21, "unit": "celsius"}

    failed = unmocked["attempts"][0]["turns"][0]
    assert failed["error"] == "no mock for tool `book_table` called with {\"people\": 2}; add it under mocks:", failed
    assert unmocked["attempts"][0]["error"] is None  # its session was cancelled, then deleted
    assert overridden["attempts"][0]["turns"][0]["error"].startswith(
        "per-turn overrides (instructions) need an Assistants target: an agent session runs the saved agent")
    assert not api.sessions  # every test session deleted
    assert all(body.get("environment") == {"type": "none"} and body.get("stream") is True
               for method, path, body in api.requests if method == "POST" and path == "/v1/agents/sessions")


def test_an_agent_that_is_not_deployed_is_named(api, project):
    write_spec(project, "weather", **WEATHER)
    (project / "assistants" / "weather.test.yaml").write_text(CONVERSATIONS)
    result = run(api, "test")
    assert result.exit_code == 2 and "`weather` is not deployed" in result.output, result.output


def test_a_failed_turn_says_why(api, project):
    write_spec(project, "weather", **WEATHER)
    (project / "assistants" / "weather.test.yaml").write_text(
        "conversations:\n  - name: overloaded\n    turns:\n      - user: Hello\n")
    assert run(api, "apply", "--yes").exit_code == 0
    api.queue(Answer("", fail=("server_overloaded", "The model is overloaded; try again.")))
    result = run(api, "test")
    assert result.exit_code == 1, result.output
    assert "the turn ended `failed`: server_overloaded: The model is overloaded; try again." in result.output
    assert not api.sessions
