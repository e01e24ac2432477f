"""Fixtures of the upstream engine tests: the scripted upstream (every request and answer checked
against the official Chat Completions schemas) and helpers that drive ``UpstreamEngine.stream``."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from asstctl.server.engine.base import EngineRequest, TextDelta, ToolCallDelta, TurnEnd
from asstctl.server.engine.config import UpstreamConfig
from asstctl.server.engine.http import Timeouts
from asstctl.server.engine.upstream import RetryPolicy, UpstreamEngine
from tests.upstream import ScriptedUpstream

KEY_ENV = "ASSTCTL_TEST_UPSTREAM_KEY"
FAST = RetryPolicy(retries=3, backoff=0.01, max_wait=2.0)


@pytest.fixture
def upstream():
    with ScriptedUpstream() as running:
        yield running
    assert not running.problems, "the scripted upstream saw schema violations:\n" + "\n".join(running.problems)


@pytest.fixture
def keyed(monkeypatch, upstream):
    """The upstream's key in the variable the engine is configured with."""
    monkeypatch.setenv(KEY_ENV, upstream.key)
    return upstream


def make_engine(upstream: ScriptedUpstream, *, retry: RetryPolicy = FAST, timeouts: Timeouts | None = None,
                **config) -> UpstreamEngine:
    config.setdefault("url", upstream.base_url)
    config.setdefault("api_key_env", KEY_ENV)
    return UpstreamEngine(UpstreamConfig(**config), retry=retry, timeouts=timeouts)


def chat_request(text: str = "Hello", model: str = "gpt-4o", **fields) -> EngineRequest:
    chat = [{"role": "system", "content": "You are terse."}, {"role": "user", "content": text}]
    return EngineRequest(assistant={}, model=model, instructions="You are terse.", tools=[], messages=[],
                         chat=fields.pop("chat", chat), **fields)


def collect(engine: UpstreamEngine, request: EngineRequest) -> list:
    """All events of one turn, on a fresh event loop (the engine's pool is closed afterwards)."""

    async def main():
        try:
            return [event async for event in engine.stream(request)]
        finally:
            await engine.aclose()

    return asyncio.run(main())


def text_of(events: list) -> str:
    return "".join(e.text for e in events if isinstance(e, TextDelta))


def calls_of(events: list) -> dict[int, dict]:
    calls: dict[int, dict] = {}
    for event in events:
        if isinstance(event, ToolCallDelta):
            call = calls.setdefault(event.index, {"id": None, "name": None, "arguments": ""})
            call["id"] = call["id"] or event.id
            call["name"] = call["name"] or event.name
            call["arguments"] += event.arguments
    return calls


def end_of(events: list) -> TurnEnd:
    assert isinstance(events[-1], TurnEnd) and sum(isinstance(e, TurnEnd) for e in events) == 1
    return events[-1]


def cancel_at_first_delta(sdk, assistant_id: str, upstream) -> Any:
    """Stream a run and cancel it at its first message delta; asserts the upstream saw its request
    closed (``upstream.disconnected``) and returns the run once it is ``cancelled`` (or after 5 s)."""
    thread = sdk.beta.threads.create(messages=[{"role": "user", "content": "count slowly"}])
    with sdk.beta.threads.runs.stream(thread_id=thread.id, assistant_id=assistant_id) as stream:
        for event in stream:
            if event.event == "thread.message.delta":
                sdk.beta.threads.runs.cancel(stream.current_run.id, thread_id=thread.id)
                break
    assert upstream.disconnected.wait(5), "the upstream request stayed open after the cancel"
    deadline = time.monotonic() + 5
    while (run := sdk.beta.threads.runs.list(thread.id).data[0]).status != "cancelled" and time.monotonic() < deadline:
        time.sleep(0.01)
    return run
