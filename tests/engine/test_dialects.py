"""Dialects: servers stricter than OpenAI's, learned without configuration or named with a profile.

Each scripted replica (tests/engine/replicas.py) refuses the way that server does; the server is
started with nothing but its upstream URL, and the runs go through the real SDK: a forced function
tool round (polled), a streamed run with max_completion_tokens, a reasoning-model name, json_schema
output. Each refusal is adapted to once and remembered: repeating the same runs sends no refused request."""

from __future__ import annotations

import json
import logging
from contextlib import contextmanager
from dataclasses import replace
from typing import Iterator

import pytest

from asstctl.server.embedded import start_server
from asstctl.server.engine import dialects
from asstctl.server.engine.config import UpstreamConfig
from tests.conftest import make_client
from tests.engine.replicas import (AZURE_OLD_API_VERSION, AZURE_UNRECOGNIZED, OLLAMA_IGNORED, REPLICAS, absent_content,
                                  anthropic, azure, bedrock, dashscope, gemini, llama_cpp, ollama, tool_call_messages)
from tests.serve_process import ServeProcess
from tests.upstream import Call, ScriptedUpstream, Text, ToolCalls

WEATHER = {"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
CLOCK = {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}}}
CITY = {"type": "json_schema", "json_schema": {"name": "city", "schema": {
    "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"], "additionalProperties": False}}}


@contextmanager
def replica_upstream(refuse) -> Iterator[ScriptedUpstream]:
    """A scripted upstream that refuses as ``refuse`` does; on leaving, every request it received and
    every answer it sent must have been valid against the official schemas (``problems``)."""
    with ScriptedUpstream(key=None, refuse=refuse) as upstream:
        yield upstream
    assert not upstream.problems, upstream.problems


def weather_round(sdk, upstream: ScriptedUpstream, tools=(WEATHER,), **options):
    """One function tool round (get_weather called, its output submitted): (the run as it ended, its thread)."""
    bot = sdk.beta.assistants.create(model="gpt-4o", instructions="Be brief.", tools=list(tools))
    upstream.queue(ToolCalls([Call("get_weather", {"city": "Paris"})]), Text("Sunny in Paris."))
    thread = sdk.beta.threads.create(messages=[{"role": "user", "content": "Weather in Paris?"}])
    run = sdk.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=bot.id, poll_interval_ms=10,
                                                **options)
    assert run.status == "requires_action", run.last_error
    (call,) = run.required_action.submit_tool_outputs.tool_calls
    run = sdk.beta.threads.runs.submit_tool_outputs_and_poll(
        run_id=run.id, thread_id=thread.id, tool_outputs=[{"tool_call_id": call.id, "output": "18 C"}],
        poll_interval_ms=10)
    return run, thread


def scenario(sdk, upstream: ScriptedUpstream) -> None:
    """The four kinds of run every dialect must get through."""
    # two tools: `required` goes as it is (with one it goes as that tool, named)
    run, thread = weather_round(sdk, upstream, tools=(WEATHER, CLOCK), tool_choice="required")
    assert run.status == "completed", run.last_error
    bot = sdk.beta.assistants.create(model="gpt-4o", instructions="Be brief.", tools=[WEATHER])

    upstream.queue(Text("A streamed answer.", omit_usage=True))
    events = list(sdk.beta.threads.runs.create(thread.id, assistant_id=bot.id, stream=True, max_completion_tokens=256))
    assert events[-1].event in ("thread.run.completed", "thread.run.incomplete"), events[-1].data.last_error
    assert 0 < events[-1].data.usage.completion_tokens <= 256  # counted locally when no usage came

    upstream.queue(Text("Reasoned."))
    run = sdk.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=bot.id, model="o3-mini",
                                                poll_interval_ms=10)
    assert run.status == "completed", run.last_error

    upstream.queue(Text('{"city": "Paris"}'))
    run = sdk.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=bot.id, response_format=CITY,
                                                poll_interval_ms=10)
    assert run.status == "completed", run.last_error


@pytest.mark.parametrize("replica", REPLICAS, ids=[r.name for r in REPLICAS])
def test_a_stricter_server_is_learned_once_with_only_its_url(replica, contract, caplog):
    with replica_upstream(replica.refuse) as upstream, \
            start_server(":memory:", upstream=UpstreamConfig(url=upstream.base_url)) as server, \
            make_client(server, contract) as sdk:
        scenario(sdk, upstream)
        learned = upstream.refusals
        scenario(sdk, upstream)  # the same runs again: what was learned is sent first
        assert upstream.refusals == learned, "a shape learned before was refused again"
        assert learned == replica.refusals  # one refusal per quirk and upstream model
    adapted = [r.getMessage() for r in caplog.records
               if r.levelno == logging.WARNING and " refused a request for " in r.getMessage()]
    assert len(adapted) == replica.refusals, adapted  # one WARNING per adaptation, saying what changed
    assert all("; sending it again with " in line for line in adapted), adapted


def test_llama_cpp_learns_empty_content_system_role_max_tokens_and_json_object(contract):
    with replica_upstream(llama_cpp) as upstream, \
            start_server(":memory:", upstream=UpstreamConfig(url=upstream.base_url)) as server, \
            make_client(server, contract) as sdk:
        scenario(sdk, upstream)
        accepted = [r.body for r in upstream.requests if llama_cpp(r.body) is None]
        upstream.queue(Text('{"town": "Paris"}'))  # json_object was asked for: the schema is checked here
        bot = sdk.beta.assistants.create(model="gpt-4o")
        thread = sdk.beta.threads.create(messages=[{"role": "user", "content": "Where?"}])
        run = sdk.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=bot.id, response_format=CITY,
                                                    poll_interval_ms=10)
    assert run.status == "failed" and "its answer does not match the schema: 'city' is a required property" \
        in run.last_error.message
    assert upstream.refusals == 3  # content null, the developer role, json_schema: once each
    tool_rounds = [m for body in accepted for _, m in tool_call_messages(body)]
    assert tool_rounds and all(m["content"] == "" for m in tool_rounds)
    reasoning = next(b for b in accepted if b["model"] == "o3-mini")
    assert reasoning["messages"][0]["role"] == "system" and "temperature" not in reasoning
    last = accepted[-1]
    assert last["response_format"] == {"type": "json_object", "schema": CITY["json_schema"]["schema"]}  # a grammar
    assert json.dumps(CITY["json_schema"]["schema"]) in last["messages"][0]["content"]


def test_a_server_refusing_null_and_empty_content_gets_a_tool_call_message_without_content(contract):
    """null refused (a 500 validation error), then "" refused (a 400): the tool-call message goes with no
    content key, learned once, and the tool round completes."""
    with replica_upstream(absent_content) as upstream, \
            start_server(":memory:", upstream=UpstreamConfig(url=upstream.base_url)) as server, \
            make_client(server, contract) as sdk:
        run, _ = weather_round(sdk, upstream)
    assert run.status == "completed", run.last_error
    assert upstream.refusals == 2  # null, then ""
    sent = [m for r in upstream.requests for _, m in tool_call_messages(r.body)]
    assert [m.get("content", "absent") for m in sent] == [None, "", "absent"]
    assert absent_content(upstream.requests[-1].body) is None and "content" not in sent[-1]


def test_the_role_follows_the_model_actually_sent(contract):
    """o3-mini mapped to a local model: the local model gets `system`, so nothing is refused."""
    config = UpstreamConfig(url="", model_map=[("o3*", "local-7b")])
    with replica_upstream(dashscope) as upstream:
        config.url = upstream.base_url
        with start_server(":memory:", upstream=config) as server, make_client(server, contract) as sdk:
            bot = sdk.beta.assistants.create(model="o3-mini", instructions="Be brief.", temperature=0.5)
            thread = sdk.beta.threads.create(messages=[{"role": "user", "content": "hi"}])
            run = sdk.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=bot.id, poll_interval_ms=10)
            assert run.status == "completed", run.last_error
    (received,) = upstream.requests
    assert received.body["model"] == "local-7b" and received.body["messages"][0]["role"] == "system"
    assert received.body["temperature"] == 0.5  # a local model takes sampling parameters
    assert upstream.refusals == 0


LITELLM = next(r for r in REPLICAS if r.name == "litellm-deepseek")
PROFILED = [(r, r.profile) for r in REPLICAS] + [(LITELLM, "litellm")]  # a proxy: its backend's profile, or its own


def test_every_named_profile_is_run_in_front_of_a_replica():
    """openai is the canonical request (every other test here), azure meets its replica below; each other
    profile meets a replica."""
    assert {name for _, name in PROFILED} == set(dialects.PROFILES) - {"openai", "azure"}


@pytest.mark.parametrize("dialect", [None, "azure"])
def test_azure_on_an_older_api_version_is_learned_with_or_without_its_profile(dialect, contract, monkeypatch):
    """The Azure replica (deployment paths, api-version, the api-key header) refuses max_completion_tokens,
    stream_options and parallel_tool_calls one at a time: each is learned once per upstream model, with
    nothing configured but the Azure endpoint, and with ``engine.dialect: azure`` too."""
    with ScriptedUpstream(refuse=azure) as upstream:
        monkeypatch.setenv("ASSTCTL_TEST_AZURE_KEY", upstream.key)
        config = UpstreamConfig(url=upstream.root_url, api_key_env="ASSTCTL_TEST_AZURE_KEY",
                                azure_api_version=AZURE_OLD_API_VERSION, dialect=dialect)
        with start_server(":memory:", upstream=config) as server, make_client(server, contract) as sdk:
            scenario(sdk, upstream)
            learned = upstream.refusals
            if dialect is None:
                scenario(sdk, upstream)  # the same runs again: nothing refused twice
    assert learned == upstream.refusals == 5 and not upstream.problems  # gpt-4o: 3; o3-mini: stream_options, parallel
    accepted = [r for r in upstream.requests if azure(r.body) is None]
    assert all(r.path.startswith("/openai/deployments/") and r.query == {"api-version": AZURE_OLD_API_VERSION}
               and r.headers["api-key"] == upstream.key for r in upstream.requests)
    assert not any(name in r.body for r in accepted for name in AZURE_UNRECOGNIZED)
    assert any("max_tokens" in r.body for r in accepted)


@pytest.mark.parametrize(("replica", "name"), PROFILED, ids=[f"{r.name}-as-{name}" for r, name in PROFILED])
def test_a_named_profile_sends_the_accepted_shapes_first(replica, name, contract):
    with replica_upstream(replica.refuse) as upstream, \
            start_server(":memory:", upstream=UpstreamConfig(url=upstream.base_url, dialect=name)) as server, \
            make_client(server, contract) as sdk:
        scenario(sdk, upstream)
    assert upstream.refusals == 0


def test_asstctl_serve_upstream_dialect_names_the_profile_and_sends_its_shapes(contract, tmp_path):
    """The real command line: ``asstctl serve --upstream URL --upstream-dialect llama.cpp`` says which
    dialect it speaks, and a tool round reaches the llama.cpp replica refused nothing (one small run:
    the other shapes are the profile tests' above)."""
    with replica_upstream(llama_cpp) as upstream, \
            ServeProcess(tmp_path, "--db", ":memory:", "--upstream", upstream.base_url,
                         "--upstream-dialect", "llama.cpp") as server:
        assert "Dialect: llama.cpp (named)" in server.stdout()
        with make_client(server, contract) as sdk:
            run, _ = weather_round(sdk, upstream)
            assert run.status == "completed", run.last_error
        assert server.stop() == 0
    assert upstream.refusals == 0 and len(upstream.requests) == 2
    assert [m["content"] for _, m in tool_call_messages(upstream.requests[1].body)] == [""]  # the profile's, not null


def test_asstctl_serve_with_only_upstream_learns_llama_cpp_through_a_tool_round_and_json_schema(contract, tmp_path):
    """The real command line with nothing but ``--upstream URL`` in front of the llama.cpp replica: a tool
    round (content null refused, developer refused: learned) and a json_schema answer (refused: json_object
    with the schema stated, the answer checked here) complete, each refusal seen once."""
    with replica_upstream(llama_cpp) as upstream, \
            ServeProcess(tmp_path, "--db", ":memory:", "--upstream", upstream.base_url) as server:
        assert "Dialect: learned from the upstream's refusals" in server.stdout()
        with make_client(server, contract) as sdk:
            run, thread = weather_round(sdk, upstream, model="o3-mini")  # a reasoning model: developer
            assert run.status == "completed", run.last_error
            upstream.queue(Text('{"city": "Paris"}'))
            run = sdk.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=run.assistant_id,
                                                        response_format=CITY, poll_interval_ms=10)
            assert run.status == "completed", run.last_error
        assert server.stop() == 0
    assert upstream.refusals == 3  # content null, the developer role, json_schema: once each
    accepted = [r.body for r in upstream.requests if llama_cpp(r.body) is None]
    assert [m["content"] for _, m in tool_call_messages(accepted[1])] == [""]
    assert accepted[0]["messages"][0]["role"] == "system" and accepted[-1]["response_format"] == {
        "type": "json_object", "schema": CITY["json_schema"]["schema"]}


def test_the_ollama_profile_sends_nothing_ollama_would_refuse_or_ignore(contract):
    """Profile ``ollama``: a forced (named) tool round and a capped reasoning-model run reach the Ollama
    replica with ``content: ""``, ``tool_choice: auto``, ``max_tokens``, ``system`` and nothing it ignores."""
    forced = {"type": "function", "function": {"name": "get_weather"}}
    with replica_upstream(ollama) as upstream, \
            start_server(":memory:", upstream=UpstreamConfig(url=upstream.base_url, dialect="ollama")) as server, \
            make_client(server, contract) as sdk:
        bot = sdk.beta.assistants.create(model="o3-mini", instructions="Be brief.", tools=[WEATHER])
        upstream.queue(ToolCalls([Call("get_weather", {"city": "Paris"})]), Text("Sunny in Paris."))
        thread = sdk.beta.threads.create(messages=[{"role": "user", "content": "Weather in Paris?"}])
        run = sdk.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=bot.id, tool_choice=forced,
                                                    max_completion_tokens=300, poll_interval_ms=10)
        (call,) = run.required_action.submit_tool_outputs.tool_calls
        run = sdk.beta.threads.runs.submit_tool_outputs_and_poll(
            run_id=run.id, thread_id=thread.id, tool_outputs=[{"tool_call_id": call.id, "output": "18 C"}],
            poll_interval_ms=10)
        assert run.status == "completed", run.last_error
    assert upstream.refusals == 0 and len(upstream.requests) == 2
    for received in upstream.requests:
        body = received.body
        assert not [name for name in OLLAMA_IGNORED if name in body and body[name] != "auto"], body
        assert body["tool_choice"] == "auto" and body["max_tokens"] <= 300
        assert body["messages"][0] == {"role": "system", "content": "Be brief."}
    assert [m["content"] for _, m in tool_call_messages(upstream.requests[1].body)] == [""]


def test_a_refusal_that_names_nothing_adaptable_is_not_retried(contract):
    def refuse(body):
        from tests.upstream import Failure
        return Failure(400, "Unsupported parameter: 'logit_bias' is not supported with this model.",
                       "invalid_request_error", "unsupported_parameter")

    with replica_upstream(refuse) as upstream, \
            start_server(":memory:", upstream=UpstreamConfig(url=upstream.base_url)) as server, \
            make_client(server, contract) as sdk:
        bot = sdk.beta.assistants.create(model="gpt-4o")
        thread = sdk.beta.threads.create(messages=[{"role": "user", "content": "hi"}])
        run = sdk.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=bot.id, poll_interval_ms=10)
    assert run.status == "failed" and upstream.refusals == 1
    assert "rejected the request (400): Unsupported parameter: 'logit_bias'" in run.last_error.message


def test_a_list_wrapped_error_body_reads_as_its_message(contract):
    """Gemini's OpenAI-compatible endpoint wraps Google's error in a list: last_error has its message."""
    with replica_upstream(gemini) as upstream, \
            start_server(":memory:", upstream=UpstreamConfig(url=upstream.base_url, dialect="openai")) as server, \
            make_client(server, contract) as sdk:
        bot = sdk.beta.assistants.create(model="gpt-4o", tools=[WEATHER])
        thread = sdk.beta.threads.create(messages=[{"role": "user", "content": "hi"}])
        run = sdk.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=bot.id, poll_interval_ms=10)
    assert run.status == "failed" and upstream.refusals == 1
    assert run.last_error.message.endswith('rejected the request (400): Invalid JSON payload received. Unknown name '
                                           '"parallel_tool_calls": Cannot find field.'), run.last_error.message


def test_the_anthropic_profile_checks_the_schema_the_upstream_ignores(contract):
    """Anthropic's compatibility layer ignores response_format: the profile states the schema in the
    instructions and checks the answer here."""
    config = UpstreamConfig(url="", dialect="anthropic")
    with replica_upstream(anthropic) as upstream:
        config.url = upstream.base_url
        with start_server(":memory:", upstream=config) as server, make_client(server, contract) as sdk:
            upstream.queue(Text("Paris, I think."))
            bot = sdk.beta.assistants.create(model="gpt-4o", instructions="Be brief.")
            thread = sdk.beta.threads.create(messages=[{"role": "user", "content": "Where?"}])
            run = sdk.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=bot.id,
                                                        response_format=CITY, poll_interval_ms=10)
    assert run.status == "failed" and "does not match the schema: it is not JSON" in run.last_error.message
    (received,) = upstream.requests
    assert json.dumps(CITY["json_schema"]["schema"]) in received.body["messages"][0]["content"]
    assert "stream_options" in received.body and upstream.refusals == 0


def test_shape_and_learn_round_trip():
    body = {"model": "m", "stream": True, "stream_options": {"include_usage": True}, "max_completion_tokens": 9,
            "messages": [{"role": "developer", "content": "x"},
                         {"role": "assistant", "content": None, "tool_calls": [{"id": "c"}]}]}
    start = dialects.initial(legacy_max_tokens=True)
    sent = dialects.shape(body, start, reasoning=False)
    assert sent["messages"][0]["role"] == "system" and (sent["max_tokens"], sent["max_completion_tokens"]) == (9, 9)
    learned = dialects.learn("1 validation error: messages.1.content Input should be a valid string", sent, start)
    assert learned.tool_call_content == "empty"
    empty = dialects.shape(body, learned, reasoning=False)
    assert empty["messages"][1]["content"] == ""
    refusal = bedrock(empty)  # Bedrock refuses "" without naming a position: the tool-call content goes
    assert dialects.is_refusal(refusal.status, refusal.message)
    assert dialects.learn(refusal.message, empty, learned).tool_call_content == "absent"
    absent = dialects.learn("messages.1.content: Extra inputs are not permitted", sent, learned)
    assert "content" not in dialects.shape(body, absent, reasoning=False)["messages"][1]
    assert dialects.learn("the server is on fire", sent, start) is None
    developer = dialects.shape(body, start, reasoning=True)
    for refusal in ("'messages.0' : discriminator property 'role' has invalid value",  # Groq
                    "'messages' array must only contain objects with a 'role' field that is in [user, assistant, "
                    "system, tool]. Got 'developer'"):  # LM Studio
        assert dialects.learn(refusal, developer, start).developer_role is False
    assert dialects.learn("'messages.1' : discriminator property 'role' has invalid value", developer, start) is None
    tools = {**developer, "parallel_tool_calls": True}
    assert dialects.learn("Parallel tool calls are not supported.", tools, start).dropped == {"parallel_tool_calls"}
    assert dialects.learn("the stop parameter is not supported", {**sent, "top_p": 1}, start) is None
    assert dialects.learn("Input should be a valid string", sent, dialects.PROFILES["openai"]) is None
    assert body["messages"][1]["content"] is None  # the canonical request is never changed
    schema = CITY["json_schema"]["schema"]
    shaped = dialects.shape({**body, "response_format": CITY}, dialects.PROFILES["llama.cpp"], reasoning=False)
    assert shaped["response_format"] == {"type": "json_object", "schema": schema}  # enforced as a grammar
    strict = replace(start, json_schema=False)  # a stricter server refuses the schema key: json_object alone
    refusal = "1 validation error: response_format.schema Extra inputs are not permitted"
    plain = dialects.learn(refusal, dialects.shape({**body, "response_format": CITY}, strict, False), strict)
    assert plain.json_object_schema is False and plain.json_object is True
    assert dialects.shape({**body, "response_format": CITY}, plain, False)["response_format"] == {"type": "json_object"}
    assert dialects.learn("'response_format.type' must be 'json_schema' or 'text'",  # json_object itself refused
                          shaped, strict).json_object is False
    # llama-cpp-python's grammar lets a raw newline into a string (SmolLM2 wrote one): no client's JSON parser
    # reads that, so the answer is refused, naming it
    assert "raw control character inside a string" in dialects.schema_problem('{"city": "Pa\nris"}', CITY)
    assert dialects.schema_problem('{"city": "Pa\\nris"}', CITY) is None  # an escaped one is JSON


def test_what_is_learned_is_remembered_for_a_bounded_number_of_models_least_recently_used_first(contract, monkeypatch):
    """Any model name a client sends may be learned: past MAX_LEARNED the least recently used goes (learned
    again if asked), so names sent once cannot push out the model in use."""
    from asstctl.server.engine import upstream as upstream_engine

    monkeypatch.setattr(upstream_engine, "MAX_LEARNED", 2)
    with replica_upstream(llama_cpp) as upstream, \
            start_server(":memory:", upstream=UpstreamConfig(url=upstream.base_url)) as server, \
            make_client(server, contract) as sdk:
        bot = sdk.beta.assistants.create(model="gpt-4o", instructions="Be brief.")
        thread = sdk.beta.threads.create()
        refusals = []
        for model in ("main", "junk-1", "main", "junk-2", "main", "junk-1"):
            upstream.queue(Text('{"city": "Paris"}'))
            run = sdk.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=bot.id, model=model,
                                                        response_format=CITY, poll_interval_ms=10)
            assert run.status == "completed", run.last_error
            refusals.append(upstream.refusals)
    # junk-2 pushed out junk-1 (used longest ago), not main (the oldest learned); junk-1 is learned again
    assert refusals == [1, 2, 2, 3, 3, 4]
