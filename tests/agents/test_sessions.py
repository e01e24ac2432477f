"""`asstctl test` on an Agents API target: each conversation is a session (environment `none`, streamed) of the
scripted Agents API; function calls are answered from the mocks with `tool_result` events, through the
pending-call race (400 "Unknown pending tool call", submitted again with the same Idempotency-Key). And the
worked example of docs/agents.md, taken from the doc itself (so the two stay in sync): its spec, conversation
and commands in order (validate, plan, apply, a clean re-plan, test, destroy)."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from asstctl import ownership
from asstctl.cli import cli
from tests.agents.conftest import KEY_ENV, run, sdk, write_spec
from tests.agents.scripted import COMPUTER_USE, Answer

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
    with (project / "asstctl.yaml").open("a") as config:
        config.write("test:\n  prices: {gpt-5: {prompt: 1.25, completion: 10}}\n")
    assert run(api, "apply", "--yes").exit_code == 0
    posted, results = len(api.tool_posts), len(api.tool_results)
    api.queue(Answer("It is 21 °C in Paris.", calls=[("get_weather", {"city": "Paris"})], race=True, usage=(30, 9)),
              Answer("You are welcome!", calls=[("get_weather", {"city": "Oslo"})], race=True),  # a later turn's round
              Answer("Booked.", calls=[("book_table", {"people": 2})]))

    result = run(api, "test", "--output", "json")
    assert result.exit_code == 1, result.output  # the unmocked call fails its conversation
    report = json.loads(result.stdout)
    weather, unmocked, overridden = report["conversations"]
    assert weather["passed"] is True, weather
    first, second = weather["attempts"][0]["turns"]
    assert first["reply"] == "It is 21 °C in Paris." and second["reply"] == "You are welcome!"
    assert first["tool_calls"] == [{"name": "get_weather", "arguments": {"city": "Paris"}}]
    assert second["tool_calls"] == [{"name": "get_weather", "arguments": {"city": "Oslo"}}]
    assert first["usage"] == {"prompt_tokens": 30, "completion_tokens": 9, "total_tokens": 39}
    assert first["model"] == "gpt-5" and first["run_id"].startswith("turn_")
    assert report["usage"]["total_tokens"] >= 39
    assert weather["cost"] == pytest.approx(((30 + 20) * 1.25 + (9 + 8) * 10) / 1e6)  # test.prices, per 1M tokens
    assert report["cost"] >= weather["cost"] and report["unpriced_models"] == []
    assert weather["latency_ms"] > 0 and first["latency_ms"] >= first["engine_ms"] > 0
    assert api.race_rejections >= 2  # both turns' tool results met the pending-call race and were submitted again
    assert [accepted for call, _, accepted in api.tool_posts[posted:] if call == api.tool_posts[-1][0]][-1] is True
    posts = api.tool_posts[posted:]
    call_id = posts[0][0]
    refused = {key for call, key, accepted in posts if call == call_id and not accepted}
    accepted = [key for call, key, accepted in posts if call == call_id and accepted]
    assert refused and len(accepted) == 1 and refused == set(accepted), posts  # one Idempotency-Key throughout
    assert [json.loads(result["output"])["city"] for result in api.tool_results[results:]] == ["Paris", "Oslo"]

    failed = unmocked["attempts"][0]["turns"][0]
    assert failed["error"] == "no mock for tool `book_table` called with {\"people\": 2}; add it under mocks:", failed
    assert unmocked["attempts"][0]["error"] is None  # its session was cancelled, then deleted
    assert overridden["attempts"][0]["turns"][0]["error"].startswith(
        "per-turn overrides (instructions) need an Assistants target: an agent session runs the saved agent")
    assert not api.sessions  # every test session deleted
    assert all(body.get("environment") == {"type": "none"} and body.get("stream") is True
               for method, path, body in api.requests if method == "POST" and path == "/v1/agents/sessions")


def test_the_sdks_own_tool_handlers_complete_a_raced_call_and_asstctl_retries_by_the_sdks_rule(api):
    """The double's race refusal is the one the SDK's dispatcher retries (code `invalid_request_error`, the exact
    call id): a streamed session with `tool_handlers` completes; asstctl's rule agrees with the SDK's."""
    import openai
    import openai.lib.beta.agents  # noqa: F401 - loads the SDK's streaming helpers in their import order
    from openai.lib.streaming.agents._tools import is_pending_call_race

    from asstctl.testing.agents import pending_call_race

    rejected = api.race_rejections
    with sdk(api) as client:
        agent = client.beta.agents.create(model="gpt-5", tools=[{
            "type": "function", "name": "get_weather", "description": "", "parameters": {"type": "object"}}])
        api.queue(Answer("It is 17 °C in Oslo.", calls=[("get_weather", {"city": "Oslo"})], race=True))
        seen = []
        stream = client.beta.agents.sessions.create(
            agent_id=agent.id, environment={"type": "none"}, input="Weather in Oslo?", stream=True,
            tool_handlers={"get_weather": lambda arguments: {"city": arguments["city"], "temperature": 17}})
        with stream:
            for event in stream:
                seen.append(event.type)
                if event.type == "agent.session.created":
                    session_id = event.session.id
        assert "agent.session.turn.completed" in seen and seen[-1] == "agent.session.idle", seen
        assert api.race_rejections > rejected  # the first post was refused, the SDK's retry accepted
        assert json.loads(api.tool_results[-1]["output"]) == {"city": "Oslo", "temperature": 17}
        with pytest.raises(openai.BadRequestError) as refused:  # a call the idle session does not know
            client.beta.agents.sessions.events.create(session_id, idempotency_key="k-unknown", events=[{
                "type": "agent.session.input.tool_result", "turn_id": "turn_x", "call_id": "call_x",
                "success": True, "output": "x"}])
        for call_id, race in (("call_x", True), ("call_y", False)):
            assert pending_call_race(refused.value, call_id) is is_pending_call_race(refused.value, call_id) is race
        client.beta.agents.sessions.delete(session_id)
        client.beta.agents.delete(agent.id)


def test_a_session_of_an_agent_with_mcp_servers_shows_them_in_the_session_shape(api, project):
    """A saved HTTP transport keeps its non-secret headers; a session's (McpTransportResourceHTTP) has none."""
    write_spec(project, "docs", instructions="Answer from the docs.", tools=[
        {"mcp": {"server_label": "kb", "allowed_tools": ["search"], "transport": {
            "type": "http", "server_url": "https://mcp.example.com/kb", "headers": {"Accept": "application/json"}}}},
        {"mcp": {"server_label": "files", "transport": {"type": "stdio", "command": "files-mcp", "cwd": "/srv",
                                                        "env_vars": ["HOME"]}}}])
    (project / "assistants" / "docs.test.yaml").write_text(
        "conversations:\n  - name: plain answer\n    turns:\n      - user: Hi\n        expect: {contains: Hi}\n")
    assert run(api, "apply", "--yes").exit_code == 0
    result = run(api, "test", "--keep-threads", "--output", "json")
    assert result.exit_code == 0, result.output
    session_id = json.loads(result.stdout)["conversations"][0]["attempts"][0]["thread_id"]
    with sdk(api) as client:
        session = client.beta.agents.sessions.retrieve(session_id)  # strict: the SDK's own session type
        client.beta.agents.sessions.delete(session_id)
    http, stdio = session.agent.tools
    assert http.transport.to_dict() == {"type": "http", "server_url": "https://mcp.example.com/kb"}
    assert http.allowed_tools == ["search"] and stdio.transport.env_vars == ["HOME"]
    saved = next(obj for obj in api.agents.values() if obj["id"] == session.agent.id)
    assert saved["tools"][0]["transport"]["headers"] == {"Accept": "application/json"}


def test_generation_time_counts_as_engine_time_not_overhead(api, project):
    """engine_ms runs to the turn's end, not its first output: 6 text deltas 0.08 s apart are the agent's time."""
    write_spec(project, "counter", instructions="Count.")
    (project / "assistants" / "counter.test.yaml").write_text(
        "conversations:\n  - name: slow\n    turns:\n      - user: count\n        expect: {contains: six}\n")
    assert run(api, "apply", "--yes").exit_code == 0
    api.queue(Answer("one two three four five six", delay=0.08))  # 6 deltas of 5 characters
    result = run(api, "test", "--output", "json")
    assert result.exit_code == 0, result.output
    turn = json.loads(result.stdout)["conversations"][0]["attempts"][0]["turns"][0]
    assert turn["engine_ms"] >= 400 and turn["latency_ms"] >= turn["engine_ms"]
    assert turn["overhead_ms"] == pytest.approx(turn["latency_ms"] - turn["engine_ms"], abs=0.01)


def test_approvals_attachments_a_subagent_and_failed_sessions(api, project):
    """docs/agents.md: an MCP or computer-use approval cancels the turn and fails it, `attachments:` fail the turn
    (before the API is asked), a subagent's message is not the reply, a failed or paused session fails the turn."""
    write_spec(project, "helper", tools=[{"mcp": {"server_label": "kb", "transport": {
        "type": "http", "server_url": "https://mcp.example.com/kb"}}}])
    (project / "assistants" / "helper.test.yaml").write_text("""\
conversations:
  - {name: approval, turns: [{user: Find the refund policy}]}
  - {name: subagent, turns: [{user: Ask your helper, expect: {equals: Done.}}]}
  - {name: session failure, turns: [{user: Hello}]}
  - {name: budget, turns: [{user: Hello}]}
  - {name: error event, turns: [{user: Hello}]}
  - {name: computer approval, turns: [{user: Buy the blue one}]}
  - {name: attachments, turns: [{user: Read this, attachments: [notes.txt]}]}
  - {name: hosted, turns: [{user: Look it up, expect: {tool_called: [{name: search, arguments: {q: refunds}},
                                                                      {name: web_search, arguments: {query: refunds}}]}}]}
  - {name: nothing called, turns: [{user: Just answer, expect: {no_tool_called: true}}]}
  - {name: cited, turns: [{user: Cite it, expect: {file_cited: true}}]}
  - {name: no code, turns: [{user: Hi, expect: {code_ran: false}}]}
  - {name: code output, turns: [{user: Hi, expect: {code_output_contains: "1"}}]}
""")
    (project / "assistants" / "notes.txt").write_text("Refunds within 30 days.")
    assert run(api, "apply", "--yes").exit_code == 0
    api.queue(Answer("Never said.", approval="kb"),
              Answer("Done.", subagent="The helper's notes.", usage=(40, 4)),
              Answer("", session_fail="The session's environment could not start."),
              Answer("", budget=True), Answer("", fail=("server_error", "The model failed."), error_event=True),
              Answer("Never said.", approval=COMPUTER_USE),
              Answer("Found it.", mcp=("kb", "search", {"q": "refunds"}), search="refunds"),
              Answer("Sure.", mcp=("kb", "search", {"q": "x"})))
    result = run(api, "test", "--output", "json")
    assert result.exit_code == 1, result.output
    approval, subagent, failed, budget, errored, computer, attached, hosted, nothing, *refused = \
        json.loads(result.stdout)["conversations"]
    asked = approval["attempts"][0]
    assert asked["turns"][0]["error"] == "the agent asked for `mcp_approval_request`, which asstctl test cannot answer"
    assert asked["error"] is None  # the turn was cancelled, then its session deleted
    helped = subagent["attempts"][0]["turns"][0]
    assert subagent["passed"] is True and helped["reply"] == "Done.", helped  # not the subagent's message
    assert helped["usage"] == {"prompt_tokens": 40, "completion_tokens": 4, "total_tokens": 44}  # the root turn's
    assert failed["attempts"][0]["turns"][0]["error"] == \
        "the turn ended `failed`: The session's environment could not start."
    assert budget["attempts"][0]["turns"][0]["error"] == \
        "the turn ended `budget_reached`: the session paused at its spending limit (50 of 50 US cents spent)"
    assert errored["attempts"][0]["turns"][0]["error"] == "the turn ended `failed`: server_error: The model failed."
    assert computer["attempts"][0]["turns"][0]["error"] == \
        "the agent asked for `computer_use_approval_request`, which asstctl test cannot answer"
    assert attached["attempts"][0]["turns"][0]["error"].startswith(
        "attachments need an Assistants target: an agent session has no file uploads")
    assert hosted["passed"] is True, hosted  # the MCP and web search calls the API ran are recorded
    assert hosted["attempts"][0]["turns"][0]["tool_calls"] == [{"name": "search", "arguments": {"q": "refunds"}},
                                                               {"name": "web_search", "arguments": {"query": "refunds"}}]
    assert nothing["passed"] is False and 'called: search({\\"q\\": \\"x\\"})' in json.dumps(nothing), nothing
    for conversation, name in zip(refused, ("file_cited", "code_ran", "code_output_contains")):  # never vacuous
        assert conversation["attempts"][0]["turns"][0]["error"].startswith(
            f"`{name}` needs an Assistants target: an agent has no "), conversation
    assert all(conversation["attempts"][0]["error"] is None for conversation in (failed, budget, errored, computer))
    assert not api.answers  # the attachments turn never reached the API
    assert not api.sessions  # each deleted, the paused one too


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


DOC = Path(__file__).resolve().parents[2] / "docs" / "agents.md"


def worked_example() -> tuple[dict[str, str], list[list[str]]]:
    """({path: YAML}, [asstctl arguments]) from the doc's "A worked example" section."""
    section = DOC.read_text().split("## A worked example", 1)[1].split("\n## ", 1)[0]
    files, commands = {}, []
    for lang, body in re.findall(r"```(\w+)\n(.*?)```", section, re.S):
        if lang == "yaml":
            first, rest = body.split("\n", 1)
            files[first.removeprefix("# ").strip()] = rest
        elif lang == "sh":
            commands = [shlex.split(line.split("#", 1)[0])[1:] for line in body.splitlines()
                        if line.startswith("asstctl ")]
    return files, commands


def test_the_docs_worked_example_validates_applies_replans_clean_and_tests(api, project):
    files, commands = worked_example()
    name = yaml.safe_load((project / "asstctl.yaml").read_text())["project"]
    assert set(files) == {"assistants/triage.yaml", "assistants/triage.test.yaml"}
    assert [args[0] for args in commands] == ["validate", "plan", "apply", "plan", "test", "destroy"]
    for path, text in files.items():
        (project / path).write_text(text)
    api.queue(Answer("Urgent: checkout is down for an enterprise customer.",
                     calls=[("lookup_customer", {"email": "ana@example.com"})]))
    env = {KEY_ENV: api.key, "OPENAI_API_KEY": None, "OPENAI_BASE_URL": None, "NO_COLOR": None}
    outputs = []
    for args in commands:
        result = CliRunner().invoke(cli, args, env=env, catch_exceptions=False)
        assert result.exit_code == 0, f"asstctl {shlex.join(args)}:\n{result.output}"
        outputs.append(result.output)
    assert "+ create" in outputs[1] and "triage" in outputs[1]
    assert "No changes." in outputs[3]
    assert "1 passed, 0 failed" in outputs[4], outputs[4]
    assert json.loads(api.tool_results[-1]["output"]) == {"plan": "enterprise", "open_tickets": 3}
    assert not [obj for obj in api.agents.values() if obj["metadata"].get(ownership.PROJECT) == name]  # destroyed


def test_the_live_test_runs_as_written_against_the_scripted_api(api, tmp_path, monkeypatch):
    """tests/agents/test_live.py's cycle (opt-in on OpenAI) with ASSTCTL_LIVE_AGENTS_URL on the scripted API."""
    from tests.agents.test_live import cycle

    for name, value in (("ASSTCTL_LIVE_AGENTS_URL", api.base_url), ("OPENAI_API_KEY", api.key)):
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("ASSTCTL_LIVE_AGENTS_MODEL", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    api.queue(Answer("It is 17 °C in Oslo.", calls=[("get_weather", {"city": "Oslo"})]))
    cycle(tmp_path, monkeypatch)
    assert json.loads(api.tool_results[-1]["output"]) == {"temperature": 17, "unit": "celsius"}
    assert not [obj for obj in api.agents.values() if obj["name"] == "asstctl live test"]  # destroyed


def test_a_refused_tool_result_fails_the_turn_at_once_and_the_race_after_3_retries(api, project):
    """A 400 that is not the race fails the turn after one post; the race refused on every post (4: the first and
    3 retries) fails it with the API's error. Each failed turn is cancelled, so its session is deleted."""
    write_spec(project, "weather", **WEATHER)
    (project / "assistants" / "weather.test.yaml").write_text("""\
conversations:
  - {name: refused, mocks: {get_weather: {result: {}}}, turns: [{user: Weather?}]}
  - {name: exhausted, mocks: {get_weather: {result: {}}}, turns: [{user: Weather?}]}
""")
    assert run(api, "apply", "--yes").exit_code == 0
    events = len([r for r in api.requests if r[0] == "POST" and r[1].endswith("/events")])
    api.fail_next("POST", 1, r".*/events", refuse="The tool output is not valid JSON.")
    api.queue(Answer("Never said.", calls=[("get_weather", {"city": "Oslo"})]))
    refused = run(api, "test", "-k", "refused", "--output", "json")
    turn = json.loads(refused.stdout)["conversations"][0]["attempts"][0]
    assert turn["turns"][0]["error"].endswith("The tool output is not valid JSON."), turn
    posts = [r for r in api.requests if r[0] == "POST" and r[1].endswith("/events")][events:]
    assert [post[2]["events"][0]["type"] for post in posts] == [  # no retry: the result once, then the cancel
        "agent.session.input.tool_result", "agent.session.input.cancel"], posts
    assert turn["error"] is None  # cancelled, then deleted

    api.fail_next("POST", 4, r".*/events", refuse="Unknown pending tool call: {call_id}")
    api.queue(Answer("Never said.", calls=[("get_weather", {"city": "Oslo"})]))
    exhausted = run(api, "test", "-k", "exhausted", "--output", "json")
    attempt = json.loads(exhausted.stdout)["conversations"][0]["attempts"][0]
    assert "BadRequestError" in attempt["turns"][0]["error"] and "Unknown pending tool call: call_" in \
        attempt["turns"][0]["error"], attempt
    assert not api.failures[-1][2] and attempt["error"] is None  # all 4 posts refused; the session deleted
    assert not api.sessions
