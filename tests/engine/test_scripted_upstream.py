"""The scripted upstream itself: it must reject what the real API would not send or accept, or the
engine tests could pass against a server that drifted from the official schemas."""

from __future__ import annotations

import httpx2

from tests.upstream import DEFAULT_KEY, Call, ScriptedUpstream, Text, ToolCalls

AUTH = {"authorization": f"Bearer {DEFAULT_KEY}"}


def test_a_request_outside_the_schema_is_a_problem():
    with ScriptedUpstream() as upstream:
        body = {"model": "m", "messages": [{"role": "robot", "content": "hi"}], "temprature": 1}
        httpx2.post(upstream.base_url + "/chat/completions", json=body, headers=AUTH)
    assert any("CreateChatCompletionRequest: messages/0" in p for p in upstream.problems)
    assert "request: CreateChatCompletionRequest: unknown key `temprature`" in upstream.problems


def test_an_answer_outside_the_schema_is_a_problem():
    with ScriptedUpstream() as upstream:
        upstream.queue(Text("hi", finish_reason="tired"), Text("hi", finish_reason="tired"))
        body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
        httpx2.post(upstream.base_url + "/chat/completions", json=body, headers=AUTH)
        httpx2.post(upstream.base_url + "/chat/completions", json={**body, "stream": True}, headers=AUTH)
    assert any(p.startswith("response: CreateChatCompletionResponse: choices/0/finish_reason") for p in upstream.problems)
    assert any(p.startswith("stream chunk: CreateChatCompletionStreamResponse: choices/0/finish_reason")
               for p in upstream.problems)


def test_non_streamed_answers_conform():
    with ScriptedUpstream() as upstream:
        upstream.queue(ToolCalls([Call("f", {"a": 1}, id="call_1")]))
        body = {"model": "m", "messages": [{"role": "user", "content": "hi"}],
                "tools": [{"type": "function", "function": {"name": "f"}}]}
        answer = httpx2.post(upstream.base_url + "/chat/completions", json=body, headers=AUTH).json()
        text = httpx2.post(upstream.base_url + "/chat/completions", json=body, headers=AUTH).json()
    assert answer["choices"][0]["message"]["tool_calls"][0]["id"] == "call_1"
    assert text["choices"][0]["message"]["content"] == "You said: hi"
    assert upstream.problems == []
