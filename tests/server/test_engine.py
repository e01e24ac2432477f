"""The offline engine on its own: rules file parsing and steering, default replies, reloads."""

from __future__ import annotations

import json
import os

import pytest

from asstctl.server.app import ServerConfig
from asstctl.server.engine import RULES_ENV, build_engine
from asstctl.server.engine.base import EngineError, EngineRequest
from asstctl.server.engine.offline import OfflineEngine, RulesError

RULES = """
rules:
  - match: "weather in (?P<city>[A-Za-z ]+)"
    assistant: "weather-bot"
    tool_calls:
      - name: get_weather
        arguments: {city: "{city}", units: "metric"}
    then: "It is {output} in {city}."
  - match: "flaky"
    replies: ["yes", "yes", "no"]
  - match: "^hello"
    instructions: "pirate"
    reply: "Ahoy {name}! ({model}, {assistant_name})"
  - match: "^hello (?P<name>\\\\w+)"
    reply: "Hello, {name}! {not_a_value} {{braces}}"
    latency_ms: 5
"""

WEATHER_TOOL = {"type": "function", "function": {"name": "get_weather"}}


def request(text: str | None, *, tools=(), instructions="", name="bot", tool_results=(), **run) -> EngineRequest:
    messages = []
    if text is not None:
        messages.append({"role": "user", "content": [{"type": "text", "text": {"value": text, "annotations": []}}]})
    return EngineRequest(
        assistant={"id": "asst_1", "name": name, "metadata": {}},
        model="gpt-4o",
        instructions=instructions,
        tools=list(tools),
        messages=messages,
        tool_results=list(tool_results),
        response_format=run.pop("response_format", "auto"),
        run=run,
    )


@pytest.fixture
def rules_file(tmp_path):
    path = tmp_path / "rules.yaml"
    path.write_text(RULES)
    return path


@pytest.fixture
def engine(rules_file):
    return OfflineEngine(str(rules_file))


def test_rule_tool_calls_take_arguments_from_named_groups(engine):
    reply = engine.respond(request("What's the weather in Paris?", tools=[WEATHER_TOOL], name="weather-bot"))
    assert reply.text is None
    assert [(c.name, json.loads(c.arguments)) for c in reply.tool_calls] == [
        ("get_weather", {"city": "Paris", "units": "metric"})
    ]


def test_rule_then_uses_the_tool_output(engine):
    results = [{"call_id": "call_1", "name": "get_weather", "arguments": "{}", "output": "22C"}]
    reply = engine.respond(
        request("weather in Oslo", tools=[WEATHER_TOOL], name="weather-bot", tool_results=results)
    )
    assert reply.text == "It is 22C in Oslo."


def test_rule_for_another_assistant_or_without_the_tool_does_not_apply(engine):
    other = engine.respond(request("weather in Oslo", tools=[WEATHER_TOOL], name="travel-bot"))
    no_tool = engine.respond(request("weather in Oslo", name="weather-bot"))
    assert other.tool_calls == [] and no_tool.tool_calls == []
    assert other.text.startswith("[offline gpt-4o] You said:")


def test_assistant_matches_by_asstctl_key(engine):
    req = request("weather in Rome", tools=[WEATHER_TOOL], name="Weather")
    req.assistant["metadata"] = {"asstctl.key": "weather-bot"}
    assert engine.respond(req).tool_calls[0].name == "get_weather"


def test_replies_cycle_per_rule(engine):
    answers = [engine.respond(request("is it flaky?")).text for _ in range(4)]
    assert answers == ["yes", "yes", "no", "yes"]


def test_instructions_filter_and_template_values(engine):
    pirate = engine.respond(request("hello Bob", instructions="Talk like a PIRATE.", name="Jack"))
    plain = engine.respond(request("hello Bob"))
    assert pirate.text == "Ahoy {name}! (gpt-4o, Jack)"  # no `name` group in that rule: left as written
    assert plain.text == "Hello, Bob! {not_a_value} {{braces}}"
    assert plain.latency_ms == 5


def test_default_reply_echoes_and_honours_instructions():
    engine = OfflineEngine()
    reply = engine.respond(request("Hi!", instructions="Please address the user as Jane Doe. Be nice."))
    assert reply.text == (
        '[offline gpt-4o] Jane Doe, you said: "Hi!" (instructions: "Please address the user as Jane Doe. Be nice.")'
    )
    assert reply.usage.prompt_tokens > 0 and reply.usage.completion_tokens == len(reply.text) // 4 + 1


def test_default_reply_without_a_user_message():
    assert OfflineEngine().respond(request(None)).text == "[offline gpt-4o] There is no user message to answer."


def test_default_tool_call_when_the_message_names_a_function_tool():
    tools = [{"type": "function", "function": {"name": "get_time"}}, {"type": "function", "function": {"name": "get"}}]
    reply = OfflineEngine().respond(request("please call get_time", tools=tools))
    assert [(c.name, c.arguments) for c in reply.tool_calls] == [("get_time", "{}")]


def test_default_tool_choice_rules():
    tools = [{"type": "function", "function": {"name": "get_time"}}]
    engine = OfflineEngine()
    assert engine.respond(request("call get_time", tools=tools, tool_choice="none")).tool_calls == []
    assert engine.respond(request("anything", tools=tools, tool_choice="required")).tool_calls[0].name == "get_time"
    forced = {"type": "function", "function": {"name": "get_time"}}
    assert engine.respond(request("anything", tools=tools, tool_choice=forced)).tool_calls[0].name == "get_time"


def test_default_reply_after_tool_outputs():
    results = [{"call_id": "c", "name": "get_time", "arguments": "{}", "output": "12:00"}]
    reply = OfflineEngine().respond(request("call get_time", tool_results=results))
    assert reply.text == "[offline gpt-4o] get_time returned 12:00."


def test_json_response_format_gets_a_json_reply():
    reply = OfflineEngine().respond(request("hi", response_format={"type": "json_object"}))
    assert json.loads(reply.text) == {"reply": '[offline gpt-4o] You said: "hi"'}


def test_rules_file_is_reread_when_it_changes(rules_file, engine):
    assert engine.respond(request("hello Ann")).text.startswith("Hello, Ann!")
    rules_file.write_text('rules:\n  - match: "hello"\n    reply: "changed"\n')
    stat = os.stat(rules_file)
    os.utime(rules_file, (stat.st_atime, stat.st_mtime + 5))
    assert engine.respond(request("hello Ann")).text == "changed"


def test_broken_rules_file_at_runtime_fails_the_turn_clearly(rules_file, engine):
    rules_file.write_text("rules:\n  - reply: x\n")
    stat = os.stat(rules_file)
    os.utime(rules_file, (stat.st_atime, stat.st_mtime + 5))
    with pytest.raises(EngineError, match=r"rules.yaml: rule 0: 'match'"):
        engine.respond(request("hello"))


@pytest.mark.parametrize(
    "text, problem",
    [
        ("rules: {}", "expected a mapping with one key 'rules'"),
        ("rules:\n  - match: a\n", "rule 0: give one of 'reply', 'replies', 'tool_calls' or 'code'"),
        ("rules:\n  - match: a\n    reply: b\n  - match: '('\n    reply: c\n", "rule 1: 'match' is not a valid regular"),
        ("rules:\n  - match: a\n    reply: b\n    colour: red\n", "rule 0: unknown key(s) colour"),
        ("rules:\n  - match: a\n    replies: []\n", "rule 0: 'replies' must be a non-empty list"),
        ("rules:\n  - match: a\n    tool_calls: [{name: f, arguments: 3}]\n", "rule 0: tool_calls[0].arguments"),
        ("rules:\n  - match: a\n    reply: b\n    latency_ms: -1\n", "rule 0: 'latency_ms' must be a number"),
        ("rules: [", "not valid YAML"),
    ],
)
def test_invalid_rules_file_names_file_and_rule(tmp_path, text, problem):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(RulesError) as info:
        OfflineEngine(str(path))
    assert str(path) in str(info.value) and problem in str(info.value)


def test_build_engine_uses_config_then_environment(tmp_path, monkeypatch, rules_file):
    monkeypatch.setenv(RULES_ENV, str(rules_file))
    assert build_engine(ServerConfig()).rules_path == str(rules_file)
    monkeypatch.setenv(RULES_ENV, str(tmp_path / "missing.yaml"))
    with pytest.raises(RulesError, match="missing.yaml"):
        build_engine(ServerConfig())
    assert build_engine(ServerConfig(rules_path=str(rules_file))).rules_path == str(rules_file)
