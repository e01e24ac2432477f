"""The upstream engine against the scripted Chat Completions upstream over real loopback HTTP:
what it sends, and the events it yields as the upstream streams."""

from __future__ import annotations

import asyncio
import json
import threading

from asstctl.server.engine.base import TextDelta, ToolCallDelta
from tests.engine.conftest import calls_of, chat_request, collect, end_of, make_engine, text_of
from tests.upstream import Call, Text, ToolCalls

WEATHER = {"type": "function", "function": {"name": "get_weather", "description": "Weather of a city",
                                            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}
TIME = {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}}}


def test_text_streams_with_usage_and_the_request_is_chat_completions(keyed):
    keyed.queue(Text("Hello there, friend", deltas=["Hello", " there", ",", " friend"], usage=(21, 4)))
    events = collect(make_engine(keyed), chat_request("Hi"))
    assert [e.text for e in events if isinstance(e, TextDelta)] == ["Hello", " there", ",", " friend"]
    end = end_of(events)
    assert (end.finish_reason, end.usage.prompt_tokens, end.usage.completion_tokens) == ("stop", 21, 4)
    (received,) = keyed.requests
    assert received.path == "/v1/chat/completions"
    assert received.headers["authorization"] == f"Bearer {keyed.key}"
    body = received.body
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    assert body["model"] == "gpt-4o"
    assert body["messages"] == chat_request("Hi").chat
    for absent in ("tools", "tool_choice", "parallel_tool_calls", "max_completion_tokens", "response_format",
                   "reasoning_effort", "temperature", "top_p"):
        assert absent not in body, absent


def test_each_delta_is_yielded_as_it_arrives_not_after_the_answer(keyed):
    gate = threading.Event()
    keyed.queue(Text("first second third", deltas=["first", " second", " third"], gate=gate))
    seen: list[str] = []

    async def main():
        engine = make_engine(keyed)
        try:
            async for event in engine.stream(chat_request()):
                if isinstance(event, TextDelta):
                    # the upstream holds " second" until the gate opens: this delta came on its own
                    seen.append(f"{event.text}|gate {'open' if gate.is_set() else 'shut'}")
                    gate.set()
        finally:
            await engine.aclose()

    asyncio.run(main())
    assert seen == ["first|gate shut", " second|gate open", " third|gate open"]
    assert keyed.gate_timeouts == 0


def test_tool_call_fragments_keep_the_upstreams_ids(keyed):
    keyed.queue(ToolCalls([Call("get_weather", {"city": "Paris"}, id="call_Wx1"),
                           Call("get_time", {}, id="call_Tm2")], fragments=4, usage=(50, 12)))
    request = chat_request("Weather and time?", offered_tools=[WEATHER, TIME], tool_choice="auto")
    events = collect(make_engine(keyed), request)
    fragments = [e for e in events if isinstance(e, ToolCallDelta)]
    assert len(fragments) > 4  # the arguments came in pieces, passed on piece by piece
    assert calls_of(events) == {
        0: {"id": "call_Wx1", "name": "get_weather", "arguments": json.dumps({"city": "Paris"})},
        1: {"id": "call_Tm2", "name": "get_time", "arguments": "{}"},
    }
    end = end_of(events)
    assert end.finish_reason == "tool_calls" and end.usage.total_tokens == 62
    body = keyed.requests[0].body
    assert body["tools"] == [WEATHER, TIME] and body["tool_choice"] == "auto"
    assert body["parallel_tool_calls"] is True


def test_tool_choice_parallel_calls_and_sampling_pass_through(keyed):
    named = {"type": "function", "function": {"name": "get_weather"}}
    schema = {"type": "json_schema", "json_schema": {"name": "reply", "schema": {"type": "object"}}}
    request = chat_request(offered_tools=[WEATHER], tool_choice=named, parallel_tool_calls=False,
                           max_completion_tokens=77, temperature=0.2, top_p=0.9, response_format=schema,
                           reasoning_effort="high")
    collect(make_engine(keyed), request)
    body = keyed.requests[0].body
    assert body["tool_choice"] == named and body["parallel_tool_calls"] is False
    assert (body["max_completion_tokens"], body["temperature"], body["top_p"]) == (77, 0.2, 0.9)
    assert body["max_tokens"] == 77  # a local server (not OpenAI, not Azure) may only read the legacy name
    assert body["response_format"] == schema
    assert "reasoning_effort" not in body  # gpt-4o is no reasoning model


def test_reasoning_models_get_reasoning_effort_and_no_sampling_parameters(keyed):
    request = chat_request(model="o3-mini", reasoning_effort="low", temperature=1.0, top_p=1.0,
                           response_format="auto")
    collect(make_engine(keyed), request)
    body = keyed.requests[0].body
    assert body["reasoning_effort"] == "low"
    assert not {"temperature", "top_p", "response_format"} & set(body)


def test_length_cut_off_is_reported(keyed):
    keyed.queue(Text("It was the best of", finish_reason="length", usage=(9, 5)))
    events = collect(make_engine(keyed), chat_request("Tell a long story", max_completion_tokens=5))
    assert text_of(events) == "It was the best of"
    assert end_of(events).finish_reason == "length"


def test_no_usage_from_the_upstream_is_reported_as_none_for_the_executor_to_count(keyed):
    keyed.queue(Text("a reply of some length", omit_usage=True))
    end = end_of(collect(make_engine(keyed), chat_request()))
    assert end.usage.total_tokens == 0


def test_connections_are_kept_alive_across_turns(keyed):
    engine = make_engine(keyed)

    async def two_turns():
        try:
            for _ in range(2):
                assert text_of([e async for e in engine.stream(chat_request("again"))]) == "You said: again"
        finally:
            await engine.aclose()

    asyncio.run(two_turns())
    first, second = keyed.requests
    assert first.client_port == second.client_port


def test_model_map_first_match_wins_and_unmatched_names_go_as_they_are(keyed):
    engine = make_engine(keyed, model_map=[("gpt-4o-mini", "small-model"), ("gpt-4*", "big-model")])
    for model in ("gpt-4o-mini", "gpt-4o", "gpt-3.5-turbo"):
        collect(engine, chat_request(model=model))
    assert [r.body["model"] for r in keyed.requests] == ["small-model", "big-model", "gpt-3.5-turbo"]


def test_a_loopback_upstream_without_a_key_gets_a_placeholder(monkeypatch):
    from tests.upstream import ScriptedUpstream

    monkeypatch.delenv("ASSTCTL_TEST_UPSTREAM_KEY", raising=False)
    with ScriptedUpstream(key=None) as open_upstream:
        events = collect(make_engine(open_upstream), chat_request("ping"))
        assert text_of(events) == "You said: ping"
        assert open_upstream.requests[0].headers["authorization"] == "Bearer asstctl-no-key"
        assert not open_upstream.problems


def test_azure_openai_paths_api_version_and_api_key_header(keyed):
    engine = make_engine(keyed, url=keyed.root_url, azure_api_version="2024-10-21",
                         model_map=[("gpt-4*", "gpt-4o")], azure_deployments={"gpt-4o": "prod-gpt4o"})
    events = collect(engine, chat_request("Hello Azure", model="gpt-4-turbo", max_completion_tokens=20))
    assert text_of(events) == "You said: Hello Azure"
    (received,) = keyed.requests
    assert received.path == "/openai/deployments/prod-gpt4o/chat/completions"
    assert received.query == {"api-version": "2024-10-21"}
    assert received.headers["api-key"] == keyed.key and "authorization" not in received.headers
    assert received.body["max_completion_tokens"] == 20 and "max_tokens" not in received.body
    # without a deployments entry the (mapped) model name is the deployment
    engine = make_engine(keyed, url=keyed.root_url + "/openai", azure_api_version="2024-10-21")
    collect(engine, chat_request(model="gpt-4o-mini"))
    assert keyed.requests[1].deployment == "gpt-4o-mini"
