"""Run streaming (SSE) through the SDK's helpers and raw events: names, order, payload schemas."""

from __future__ import annotations

import json

import openai
import pytest
from openai import AssistantEventHandler

from tests.contract import validator_for

TIME_TOOL = {"type": "function", "function": {"name": "get_time"}}

TEXT_EVENTS = [
    "thread.run.created", "thread.run.queued", "thread.run.in_progress",
    "thread.run.step.created", "thread.run.step.in_progress",
    "thread.message.created", "thread.message.in_progress",
    "thread.message.delta",  # one or more
    "thread.message.completed", "thread.run.step.completed", "thread.run.completed",
]
CALL_EVENTS = [
    "thread.run.created", "thread.run.queued", "thread.run.in_progress",
    "thread.run.step.created", "thread.run.step.in_progress",
    "thread.run.step.delta",  # one or more
    "thread.run.requires_action",
]
SCHEMAS = {
    "thread.created": "ThreadObject",
    "thread.run.step.delta": "RunStepDeltaObject",
    "thread.message.delta": "MessageDeltaObject",
    "thread.run.step.": "RunStepObject",
    "thread.message.": "MessageObject",
    "thread.run.": "RunObject",
}


class Recorder(AssistantEventHandler):
    def __init__(self) -> None:
        super().__init__()
        self.names: list[str] = []
        self.text = ""

    def on_event(self, event) -> None:
        self.names.append(event.event)

    def on_text_delta(self, delta, snapshot) -> None:
        self.text += delta.value


def collapse(names: list[str]) -> list[str]:
    """Repeated delta events count once."""
    return [n for i, n in enumerate(names) if not (n.endswith(".delta") and i and names[i - 1] == n)]


def raw_events(response) -> list[tuple[str, str]]:
    events, name = [], None
    for line in response.iter_lines():
        if line.startswith("event: "):
            name = line[len("event: "):]
        elif line.startswith("data: "):
            events.append((name, line[len("data: "):]))
    return events


def check_payloads(events: list[tuple[str, str]]) -> None:
    assert events[-1] == ("done", "[DONE]")
    for name, data in events[:-1]:
        schema = next(SCHEMAS[prefix] for prefix in SCHEMAS if name.startswith(prefix))
        errors = [e.message for e in validator_for(f"#/components/schemas/{schema}").iter_errors(json.loads(data))]
        assert errors == [], (name, errors)


@pytest.fixture
def bot(client):
    return client.beta.assistants.create(model="gpt-4o", instructions="Stream it.", tools=[TIME_TOOL])


def test_stream_helper_text_reply(client, bot):
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "a rather long question, to get several deltas"}])
    handler = Recorder()
    with client.beta.threads.runs.stream(thread_id=thread.id, assistant_id=bot.id, event_handler=handler) as stream:
        stream.until_done()
        final = stream.get_final_run()
        messages = stream.get_final_messages()
    assert collapse(handler.names) == TEXT_EVENTS
    assert handler.names.count("thread.message.delta") > 1
    assert final.status == "completed" and final.usage.total_tokens > 0
    stored = client.beta.threads.messages.list(thread_id=thread.id, run_id=final.id).data[0]
    assert handler.text == messages[0].content[0].text.value == stored.content[0].text.value
    assert handler.text.startswith('[offline gpt-4o] You said: "a rather long question')


def test_raw_events_follow_the_spec_and_its_schemas(client, bot):
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "hello"}])
    with client.beta.threads.runs.with_streaming_response.create(
        thread_id=thread.id, assistant_id=bot.id, stream=True
    ) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        events = raw_events(response)
    assert collapse([name for name, _ in events[:-1]]) == TEXT_EVENTS
    check_payloads(events)


def test_sdk_stream_true_yields_typed_events(client, bot):
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "hello"}])
    stream = client.beta.threads.runs.create(thread_id=thread.id, assistant_id=bot.id, stream=True)
    events = list(stream)
    assert collapse([e.event for e in events]) == TEXT_EVENTS
    assert events[-1].data.status == "completed"


def test_function_call_stream_then_submit_tool_outputs_stream(client, bot):
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "get_time please"}])
    first = Recorder()
    with client.beta.threads.runs.stream(thread_id=thread.id, assistant_id=bot.id, event_handler=first) as stream:
        stream.until_done()
        run = stream.current_run
        steps = stream.get_final_run_steps()
    assert collapse(first.names) == CALL_EVENTS
    assert run.status == "requires_action"
    call = run.required_action.submit_tool_outputs.tool_calls[0]
    assert steps[0].step_details.tool_calls[0].function.name == "get_time"  # accumulated from the deltas
    assert steps[0].step_details.tool_calls[0].id == call.id
    second = Recorder()
    with client.beta.threads.runs.submit_tool_outputs_stream(
        thread_id=thread.id, run_id=run.id, tool_outputs=[{"tool_call_id": call.id, "output": "noon"}],
        event_handler=second,
    ) as stream:
        stream.until_done()
    assert collapse(second.names) == ["thread.run.step.completed", *TEXT_EVENTS[1:]]
    assert second.text == "[offline gpt-4o] get_time returned noon."


def test_raw_submit_tool_outputs_stream_payloads(client, bot):
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "get_time"}])
    with client.beta.threads.runs.with_streaming_response.create(
        thread_id=thread.id, assistant_id=bot.id, stream=True
    ) as response:
        events = raw_events(response)
    check_payloads(events)
    run = json.loads(events[-2][1])
    assert events[-2][0] == "thread.run.requires_action"
    outputs = [{"tool_call_id": c["id"], "output": "1"} for c in run["required_action"]["submit_tool_outputs"]["tool_calls"]]
    with client.beta.threads.runs.with_streaming_response.submit_tool_outputs(
        thread_id=thread.id, run_id=run["id"], tool_outputs=outputs, stream=True
    ) as response:
        events = raw_events(response)
    check_payloads(events)
    step = json.loads(events[0][1])
    assert step["step_details"]["tool_calls"][0]["function"]["output"] == "1"


def test_create_and_run_stream_starts_with_thread_created(client, bot):
    handler = Recorder()
    with client.beta.threads.create_and_run_stream(
        assistant_id=bot.id, thread={"messages": [{"role": "user", "content": "hi"}]}, event_handler=handler
    ) as stream:
        stream.until_done()
    assert collapse(handler.names) == ["thread.created", *TEXT_EVENTS]
    assert handler.text == '[offline gpt-4o] You said: "hi" (instructions: "Stream it.")'


def test_raw_create_and_run_stream_payloads(client, bot):
    with client.beta.threads.with_streaming_response.create_and_run(
        assistant_id=bot.id, thread={"messages": [{"role": "user", "content": "hi"}]}, stream=True
    ) as response:
        events = raw_events(response)
    assert events[0][0] == "thread.created"
    check_payloads(events)


def test_errors_before_the_stream_are_plain_json(client, bot):
    with pytest.raises(openai.NotFoundError, match="No thread found"):
        client.beta.threads.runs.create(thread_id="thread_nope", assistant_id=bot.id, stream=True)


def test_the_events_at_hand_go_out_in_one_chunk_with_the_same_bytes():
    """A stream writes the frames of every event already there in one chunk (one pass through the
    ASGI stack), byte for byte the frames one per event would give; a later event, its own chunk."""
    import asyncio

    from asstctl.server.store import DONE, open_store

    store = open_store(":memory:")

    async def chunks() -> list[bytes]:
        sub = store.subscribe("run_x", after=0)
        with store.transaction():
            for name in ("thread.run.created", "thread.run.queued"):
                store.publish_event("run_x", name, {"id": "run_x", "status": name[11:]})
        frames = sub.sse([("thread.created", {"id": "thread_x"})])
        first = await frames.__anext__()
        store.publish_event("run_x", "thread.run.completed", {"id": "run_x"})
        store.publish_event("run_x", DONE, None)
        return [first, *[chunk async for chunk in frames]]

    try:
        got = asyncio.run(asyncio.wait_for(chunks(), 10))
    finally:
        store.close()
    assert got[0] == (b'event: thread.created\ndata: {"id": "thread_x"}\n\n'
                      b'event: thread.run.created\ndata: {"id": "run_x", "status": "created"}\n\n'
                      b'event: thread.run.queued\ndata: {"id": "run_x", "status": "queued"}\n\n')
    assert b"".join(got[1:]) == b'event: thread.run.completed\ndata: {"id": "run_x"}\n\nevent: done\ndata: [DONE]\n\n'
