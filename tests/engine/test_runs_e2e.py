"""End to end: the real openai SDK against asstctl's server whose engine is the upstream engine,
talking over real loopback HTTP to the scripted Chat Completions upstream. Every Assistants response
is contract-checked (tests/contract.py), every upstream request and answer schema-checked."""

from __future__ import annotations

import json
import logging

import pytest

from asstctl.server.embedded import start_server
from asstctl.server.engine.config import UpstreamConfig
from tests.conftest import make_client
from tests.engine.conftest import KEY_ENV, cancel_at_first_delta
from tests.upstream import Call, Failure, Text, ToolCalls

WEATHER = {"type": "function", "function": {"name": "get_weather", "description": "Weather of a city",
                                            "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                                                           "required": ["city"]}}}
TIME = {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}}}


@pytest.fixture
def served(keyed):
    config = UpstreamConfig(url=keyed.base_url, api_key_env=KEY_ENV, model_map=[("gpt-4*", "scripted-4")])
    with start_server(":memory:", upstream=config) as server:
        yield server


@pytest.fixture
def sdk(served, contract):
    client = make_client(served, contract)
    yield client
    client.close()


def assistant(sdk, **fields):
    fields.setdefault("model", "gpt-4o")
    fields.setdefault("instructions", "You are a weather bot.")
    return sdk.beta.assistants.create(**fields)


def test_a_streamed_run_relays_each_upstream_delta_with_the_upstreams_usage(keyed, sdk):
    keyed.queue(Text("Sunny in Paris today.", deltas=["Sunny", " in", " Paris", " today."], usage=(31, 6)))
    bot = assistant(sdk)
    events = list(sdk.beta.threads.create_and_run(
        assistant_id=bot.id, thread={"messages": [{"role": "user", "content": "Weather in Paris?"}]}, stream=True))
    deltas = [e.data.delta.content[0].text.value for e in events if e.event == "thread.message.delta"]
    # one event per upstream delta, as sent, except that a delta's end that could begin the upstream's key
    # (its "s" of "sk-...") waits for the next delta, which shows it is not the key
    assert deltas == ["Sunny", " in", " Pari", "s today."]
    run = events[-1].data
    assert events[-1].event == "thread.run.completed" and run.status == "completed"
    assert (run.usage.prompt_tokens, run.usage.completion_tokens, run.usage.total_tokens) == (31, 6, 37)
    (step,) = sdk.beta.threads.runs.steps.list(run.id, thread_id=run.thread_id).data
    assert step.type == "message_creation" and step.usage.total_tokens == 37
    (message,) = [m for m in sdk.beta.threads.messages.list(run.thread_id).data if m.role == "assistant"]
    assert message.content[0].text.value == "Sunny in Paris today." and message.run_id == run.id
    body = keyed.requests[0].body
    assert body["model"] == "scripted-4" and body["stream"] is True
    assert body["messages"] == [{"role": "system", "content": "You are a weather bot."},
                                {"role": "user", "content": "Weather in Paris?"}]
    assert "tools" not in body


def test_the_function_tool_loop_carries_call_ids_and_outputs_back_to_the_upstream(keyed, sdk):
    keyed.queue(ToolCalls([Call("get_weather", {"city": "Paris"}, id="call_Wx1")], usage=(40, 10)),
                ToolCalls([Call("get_time", {}, id="call_Tm2")], usage=(60, 5)),
                Text("18 degrees at noon.", usage=(80, 6)))
    bot = assistant(sdk, tools=[WEATHER, TIME])
    thread = sdk.beta.threads.create(messages=[{"role": "user", "content": "Weather and time in Paris?"}])
    run = sdk.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=bot.id, poll_interval_ms=10)
    assert run.status == "requires_action"
    (call,) = run.required_action.submit_tool_outputs.tool_calls
    assert (call.id, call.function.name, json.loads(call.function.arguments)) == ("call_Wx1", "get_weather",
                                                                                  {"city": "Paris"})
    run = sdk.beta.threads.runs.submit_tool_outputs_and_poll(
        run_id=run.id, thread_id=thread.id, tool_outputs=[{"tool_call_id": "call_Wx1", "output": "18 C"}],
        poll_interval_ms=10)
    assert run.status == "requires_action"  # a second tool call in the same run
    (call,) = run.required_action.submit_tool_outputs.tool_calls
    assert (call.id, call.function.name) == ("call_Tm2", "get_time")
    second = keyed.requests[1].body["messages"]
    assert second[-2:] == [
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_Wx1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]},
        {"role": "tool", "tool_call_id": "call_Wx1", "content": "18 C"}]
    run = sdk.beta.threads.runs.submit_tool_outputs_and_poll(
        run_id=run.id, thread_id=thread.id, tool_outputs=[{"tool_call_id": "call_Tm2", "output": "12:00"}],
        poll_interval_ms=10)
    assert run.status == "completed"
    third = keyed.requests[2].body["messages"]
    assert [m["role"] for m in third] == ["system", "user", "assistant", "tool", "assistant", "tool"]
    assert third[-1] == {"role": "tool", "tool_call_id": "call_Tm2", "content": "12:00"}
    assert (run.usage.prompt_tokens, run.usage.completion_tokens) == (180, 21)  # summed over 3 upstream calls
    steps = sdk.beta.threads.runs.steps.list(run.id, thread_id=thread.id, order="asc").data
    assert [s.type for s in steps] == ["tool_calls", "tool_calls", "message_creation"]
    assert [s.usage.total_tokens for s in steps] == [50, 65, 86]
    assert steps[0].step_details.tool_calls[0].function.output == "18 C"
    reply = sdk.beta.threads.messages.list(thread.id, order="desc").data[0]
    assert reply.content[0].text.value == "18 degrees at noon."


def test_tool_call_argument_fragments_stream_as_run_step_deltas(keyed, sdk):
    keyed.queue(ToolCalls([Call("get_weather", {"city": "Oslo"}, id="call_Os1")], fragments=4))
    bot = assistant(sdk, tools=[WEATHER])
    events = list(sdk.beta.threads.create_and_run(
        assistant_id=bot.id, thread={"messages": [{"role": "user", "content": "Oslo?"}]}, stream=True))
    pieces = [c.function.arguments for e in events if e.event == "thread.run.step.delta"
              for c in e.data.delta.step_details.tool_calls if c.function and c.function.arguments]
    assert len(pieces) >= 2 and "".join(pieces) == '{"city": "Oslo"}'
    assert events[-1].event == "thread.run.requires_action"
    assert events[-1].data.required_action.submit_tool_outputs.tool_calls[0].id == "call_Os1"


@pytest.mark.parametrize("choice, sent", [
    ("none", "none"),
    ("auto", "auto"),
    ("required", {"type": "function", "function": {"name": "get_weather"}}),  # the one tool: the same, named
    ({"type": "function", "function": {"name": "get_weather"}}, {"type": "function", "function": {"name": "get_weather"}}),
])
def test_tool_choice_is_mapped_to_the_upstream(keyed, sdk, choice, sent):
    forced = choice not in ("none", "auto")
    keyed.queue(ToolCalls([Call("get_weather", {"city": "Oslo"})]) if forced else Text("ok"))
    bot = assistant(sdk, tools=[WEATHER])
    thread = sdk.beta.threads.create(messages=[{"role": "user", "content": "hi"}])
    run = sdk.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=bot.id, tool_choice=choice,
                                                parallel_tool_calls=False, poll_interval_ms=10)
    assert run.status == ("requires_action" if forced else "completed")
    body = keyed.requests[0].body
    assert body["tool_choice"] == sent and body["parallel_tool_calls"] is False
    assert [t["function"]["name"] for t in body["tools"]] == ["get_weather"]


def test_run_parameters_reach_the_upstream(keyed, sdk):
    keyed.queue(Text("{}"))
    bot = assistant(sdk, model="gpt-4o-mini", temperature=0.3, top_p=0.8,
                    response_format={"type": "json_object"})
    thread = sdk.beta.threads.create(messages=[{"role": "user", "content": "json please"}])
    sdk.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=bot.id, max_completion_tokens=300,
                                          additional_instructions="Answer in JSON.", poll_interval_ms=10)
    body = keyed.requests[0].body
    assert (body["temperature"], body["top_p"], body["response_format"]) == (0.3, 0.8, {"type": "json_object"})
    assert 0 < body["max_completion_tokens"] <= 300
    assert body["messages"][0] == {"role": "system", "content": "You are a weather bot.\nAnswer in JSON."}


def test_a_length_cut_off_ends_the_run_incomplete_with_the_partial_message(keyed, sdk):
    keyed.queue(Text("Once upon a time there", finish_reason="length", usage=(12, 5)))
    bot = assistant(sdk)
    thread = sdk.beta.threads.create(messages=[{"role": "user", "content": "Tell me a story"}])
    run = sdk.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=bot.id, poll_interval_ms=10,
                                                max_completion_tokens=256)
    assert run.status == "incomplete" and run.incomplete_details.reason == "max_completion_tokens"
    reply = sdk.beta.threads.messages.list(thread.id, order="desc").data[0]
    assert reply.status == "incomplete" and reply.content[0].text.value == "Once upon a time there"
    assert keyed.requests[0].body["max_completion_tokens"] <= 256


def test_a_rate_limited_upstream_fails_the_run_with_rate_limit_exceeded(keyed, sdk, caplog):
    keyed.queue(*[Failure.rate_limit(retry_after="0")] * 4)
    bot = assistant(sdk)
    thread = sdk.beta.threads.create(messages=[{"role": "user", "content": "hi"}])
    with caplog.at_level(logging.DEBUG):
        run = sdk.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=bot.id, poll_interval_ms=10)
    assert f"upstream 127.0.0.1:{keyed.port} answered 429; retry 3 of 3" in caplog.text
    assert keyed.key not in caplog.text
    assert run.status == "failed" and run.last_error.code == "rate_limit_exceeded"
    assert run.last_error.message.startswith(f"the upstream 127.0.0.1:{keyed.port} is rate limiting requests")
    assert keyed.key not in run.model_dump_json()
    assert len(keyed.requests) == 4


def test_a_refused_key_fails_the_run_naming_the_variable_never_the_key(monkeypatch, upstream, contract):
    monkeypatch.setenv(KEY_ENV, "sk-not-the-right-one-31337")
    config = UpstreamConfig(url=upstream.base_url, api_key_env=KEY_ENV)
    with start_server(":memory:", upstream=config) as server, make_client(server, contract) as client:
        bot = assistant(client)
        events = list(client.beta.threads.create_and_run(
            assistant_id=bot.id, thread={"messages": [{"role": "user", "content": "hi"}]}, stream=True))
    failed = events[-1].data
    assert events[-1].event == "thread.run.failed" and failed.last_error.code == "server_error"
    assert f"${KEY_ENV}" in failed.last_error.message
    assert all("31337" not in e.data.model_dump_json() and upstream.key not in e.data.model_dump_json()
               for e in events)


def test_cancelling_a_run_closes_the_upstream_request(keyed, sdk):
    keyed.queue(Text("a b c", deltas=["a", " b", " c"], delay=30))
    run = cancel_at_first_delta(sdk, assistant(sdk).id, keyed)
    assert run.status == "cancelled"


def test_asstctl_serve_with_upstream_flags(keyed, tmp_path, contract):
    from tests.serve_process import ServeProcess

    keyed.queue(Text("Served by the upstream."))
    args = ("--db", ":memory:", "--upstream", keyed.base_url, "--upstream-key-env", KEY_ENV,
            "--model-map", "gpt-4o-mini=small", "--model-map", "gpt-4*=big")
    with ServeProcess(tmp_path, *args) as server:
        assert server.stdout().splitlines()[1] == f"Engine: upstream 127.0.0.1:{keyed.port} (key from ${KEY_ENV})"
        with make_client(server, contract) as client:
            bot = assistant(client)
            thread = client.beta.threads.create(messages=[{"role": "user", "content": "hi"}])
            run = client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=bot.id,
                                                           poll_interval_ms=10)
            assert run.status == "completed"
            reply = client.beta.threads.messages.list(thread.id, order="desc").data[0]
            assert reply.content[0].text.value == "Served by the upstream."
        assert server.stop() == 0
        assert server.stderr() == "asstctl serve: stopped\n"  # no traceback, no warning, no key
    assert keyed.requests[0].body["model"] == "big"


def test_a_lone_surrogate_in_built_in_tool_arguments_is_replaced_and_the_thread_stays_usable(keyed, sdk):
    """``\\ud800`` (a JSON escape of half a character) inside code_interpreter's and file_search's
    arguments, split across the fragments the calls stream in: both calls run, with U+FFFD instead."""
    code = json.dumps({"code": "print(len('a\ud800b'), 'a\ud800b')"})  # json.dumps escapes it: \ud800
    assert "\\ud800" in code
    keyed.queue(ToolCalls([Call("python", code), Call("file_search", json.dumps({"queries": ["refunds \ud800"]}))],
                          fragments=4))
    keyed.queue(Text("Done."), Text("Still here."))
    bot = assistant(sdk, tools=[{"type": "code_interpreter"}, {"type": "file_search"}])
    thread = sdk.beta.threads.create(messages=[{"role": "user", "content": "Run it."}])
    run = sdk.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=bot.id, poll_interval_ms=20)
    assert run.status == "completed", run.last_error
    (step, _) = sdk.beta.threads.runs.steps.list(run.id, thread_id=thread.id, order="asc").data
    interpreter, search = step.step_details.tool_calls
    assert interpreter.code_interpreter.input == "print(len('a\ufffdb'), 'a\ufffdb')"
    assert interpreter.code_interpreter.outputs[0].logs.strip() == "3 a\ufffdb"
    assert search.type == "file_search"
    outputs = [m["content"] for m in keyed.requests[1].body["messages"] if m["role"] == "tool"]
    assert len(outputs) == 2 and "3 a\ufffdb" in outputs[0]
    sdk.beta.threads.messages.create(thread.id, role="user", content="Still there?")
    run = sdk.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=bot.id, poll_interval_ms=20)
    assert run.status == "completed", run.last_error
