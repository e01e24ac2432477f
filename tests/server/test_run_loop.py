"""The async run executor through the real SDK, its engine the upstream engine on the scripted
Chat Completions upstream: streamed deltas as they arrive, native tool-call ids, the tool loop with
its request messages, parallel_tool_calls, tool_choice, the model-call cap, usage, cancel closing
the upstream stream, and no thread per run. Each test runs on both stores."""

from __future__ import annotations

import base64
import json
import threading
import time

from asstctl.server.embedded import start_server
from tests.conftest import make_client
from tests.server.test_streaming import check_payloads
from tests.upstream import Call, Text, ToolCalls

TIME_TOOL = {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}}}
DATE_TOOL = {"type": "function", "function": {"name": "get_date"}}


def ask(sdk, text="hi", **assistant):
    assistant.setdefault("model", "gpt-4o")
    bot = sdk.beta.assistants.create(**assistant)
    thread = sdk.beta.threads.create(messages=[{"role": "user", "content": text}])
    return bot, thread


def wait_for(predicate, what: str, seconds: float = 20):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"never happened: {what}")


def raw_events(response) -> list[tuple[str, dict | str]]:
    events, name = [], None
    for line in response.iter_lines():
        if line.startswith("event: "):
            name = line[len("event: "):]
        elif line.startswith("data: "):
            data = line[len("data: "):]
            events.append((name, data))
    check_payloads(events)
    return [(n, d if d == "[DONE]" else json.loads(d)) for n, d in events]


def sent(upstream, n=-1) -> dict:
    """The body of the upstream's n-th request."""
    return upstream.requests[n].body


# -- streaming -------------------------------------------------------------------------------------
def test_each_text_delta_is_one_message_delta_as_it_arrives(scripted, upstream):
    sdk, _ = scripted.start()
    upstream.queue(Text("Hello, world", deltas=["Hel", "lo, ", "world"]))
    bot, thread = ask(sdk)
    with sdk.beta.threads.runs.with_streaming_response.create(
        thread_id=thread.id, assistant_id=bot.id, stream=True
    ) as response:
        events = raw_events(response)
    deltas = [d["delta"]["content"][0]["text"]["value"] for n, d in events if n == "thread.message.delta"]
    assert deltas == ["Hel", "lo, ", "world"]
    names = [n for n, _ in events]
    assert names.index("thread.message.created") < names.index("thread.message.delta") < names.index("thread.message.completed")


def test_polling_clients_see_the_message_grow(scripted, upstream):
    sdk, _ = scripted.start()
    gate = threading.Event()
    upstream.queue(Text("first part and the rest", deltas=["first part", " and the rest"], gate=gate))
    bot, thread = ask(sdk)
    run = sdk.beta.threads.runs.create(thread_id=thread.id, assistant_id=bot.id)

    def partial():
        messages = sdk.beta.threads.messages.list(thread_id=thread.id, run_id=run.id).data
        return messages and messages[0].content and messages[0]

    message = wait_for(partial, "the partial message in the store")
    assert message.status == "in_progress" and message.content[0].text.value == "first part"
    assert sdk.beta.threads.runs.retrieve(run_id=run.id, thread_id=thread.id).status == "in_progress"
    gate.set()
    run = sdk.beta.threads.runs.poll(run_id=run.id, thread_id=thread.id)
    final = sdk.beta.threads.messages.list(thread_id=thread.id, run_id=run.id).data[0]
    assert run.status == "completed" and final.status == "completed"
    assert final.content[0].text.value == "first part and the rest"
    assert upstream.gate_timeouts == 0


def test_tool_call_fragments_stream_as_step_deltas_and_keep_the_upstream_ids(scripted, upstream):
    sdk, _ = scripted.start()
    upstream.queue(ToolCalls([Call("get_time", '{"tz": "UTC"}', id="call_upstream1")], fragments=2))
    bot, thread = ask(sdk, tools=[TIME_TOOL])
    with sdk.beta.threads.runs.with_streaming_response.create(
        thread_id=thread.id, assistant_id=bot.id, stream=True
    ) as response:
        events = raw_events(response)
    fragments = [d["delta"]["step_details"]["tool_calls"][0] for n, d in events if n == "thread.run.step.delta"]
    assert fragments[0]["id"] == "call_upstream1" and fragments[0]["function"]["name"] == "get_time"
    assert [f["function"] for f in fragments[1:]] == [{"arguments": '{"tz": '}, {"arguments": '"UTC"}'}]
    assert not any("id" in f for f in fragments[1:])
    required = next(d for n, d in events if n == "thread.run.requires_action")["required_action"]
    call = required["submit_tool_outputs"]["tool_calls"][0]
    assert call["id"] == "call_upstream1" and call["function"]["arguments"] == '{"tz": "UTC"}'


# -- the tool loop ---------------------------------------------------------------------------------
def test_tool_round_trip_sends_tool_messages_with_the_call_ids(scripted, upstream):
    sdk, _ = scripted.start()
    upstream.queue(
        ToolCalls([Call("get_time", {}, id="call_a"), Call("get_date", {}, id="call_b")], content="Let me check. "),
        Text("It is noon on Monday."),
    )
    bot, thread = ask(sdk, "time and date?", tools=[TIME_TOOL, DATE_TOOL], instructions="Be brief.")
    run = sdk.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=bot.id)
    calls = run.required_action.submit_tool_outputs.tool_calls
    assert [c.id for c in calls] == ["call_a", "call_b"]
    run = sdk.beta.threads.runs.submit_tool_outputs_and_poll(
        thread_id=thread.id, run_id=run.id,
        tool_outputs=[{"tool_call_id": "call_a", "output": "12:00"}, {"tool_call_id": "call_b", "output": "Monday"}],
    )
    assert run.status == "completed"
    chat = sent(upstream, 1)["messages"]
    assert chat == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "time and date?"},
        {"role": "assistant", "content": "Let me check. ", "tool_calls": [
            {"id": "call_a", "type": "function", "function": {"name": "get_time", "arguments": "{}"}},
            {"id": "call_b", "type": "function", "function": {"name": "get_date", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "call_a", "content": "12:00"},
        {"role": "tool", "tool_call_id": "call_b", "content": "Monday"},
    ]
    assert not any(m["role"] == "user" and "12:00" in str(m["content"]) for m in chat)
    steps = sdk.beta.threads.runs.steps.list(thread_id=thread.id, run_id=run.id, order="asc").data
    assert [s.type for s in steps] == ["message_creation", "tool_calls", "message_creation"]
    texts = [m.content[0].text.value for m in sdk.beta.threads.messages.list(thread_id=thread.id, order="asc").data]
    assert texts == ["time and date?", "Let me check. ", "It is noon on Monday."]


def test_offered_tools_and_mapped_tool_choice(scripted, upstream):
    sdk, _ = scripted.start()
    bot, thread = ask(sdk, tools=[TIME_TOOL, DATE_TOOL])
    forced = {"type": "function", "function": {"name": "get_date"}}
    for choice, expected in (("none", "none"), ("required", "required"), (forced, forced), (None, "auto")):
        if choice in ("required", forced):
            upstream.queue(ToolCalls([Call("get_date", {}, id=f"call_{len(upstream.requests)}")]))
        run = sdk.beta.threads.runs.create_and_poll(
            thread_id=thread.id, assistant_id=bot.id, **({"tool_choice": choice} if choice else {}))
        assert run.status == ("requires_action" if choice in ("required", forced) else "completed"), run.last_error
        assert sent(upstream)["tool_choice"] == expected
        if run.status == "requires_action":
            call = run.required_action.submit_tool_outputs.tool_calls[0]
            sdk.beta.threads.runs.submit_tool_outputs_and_poll(
                thread_id=thread.id, run_id=run.id, tool_outputs=[{"tool_call_id": call.id, "output": "Monday"}])
    offered = sent(upstream)["tools"]
    assert [t["function"]["name"] for t in offered] == ["get_time", "get_date"]
    assert offered[0]["function"]["parameters"] == TIME_TOOL["function"]["parameters"]
    plain, thread2 = ask(sdk)
    sdk.beta.threads.runs.create_and_poll(thread_id=thread2.id, assistant_id=plain.id)
    assert "tools" not in sent(upstream) and "tool_choice" not in sent(upstream)


def test_a_tool_choice_the_upstream_ignores_is_asked_once_more_then_fails_the_run(scripted, upstream):
    """llama.cpp ignores tool_choice required: with one tool it goes as that tool, named (which llama.cpp
    enforces); a text answer anyway fails its step and the model is asked again, once; twice fails the run."""
    sdk, _ = scripted.start()
    upstream.queue(Text("It is noon, I guess."), ToolCalls([Call("get_time", {}, id="call_t")]), Text("a"), Text("b"))
    bot, thread = ask(sdk, "time?", tools=[TIME_TOOL])
    run = sdk.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=bot.id, tool_choice="required")
    assert run.status == "requires_action" and len(upstream.requests) == 2
    assert sent(upstream, 0)["tool_choice"] == {"type": "function", "function": {"name": "get_time"}}
    assert [m["role"] for m in sent(upstream, 1)["messages"]] == ["user"]  # the ignored answer is not sent back
    first, _ = sdk.beta.threads.runs.steps.list(thread_id=thread.id, run_id=run.id, order="asc").data
    assert first.status == "failed" and "ignored tool_choice (required)" in first.last_error.message
    assert sdk.beta.threads.messages.list(thread_id=thread.id, run_id=run.id).data[0].status == "incomplete"
    other = sdk.beta.threads.create(messages=[{"role": "user", "content": "time?"}])
    run = sdk.beta.threads.runs.create_and_poll(thread_id=other.id, assistant_id=bot.id, tool_choice="required")
    assert run.status == "failed" and len(upstream.requests) == 4
    assert "ignored tool_choice (required)" in run.last_error.message and "asked twice" in run.last_error.message


def test_a_call_of_a_tool_the_run_never_declared_is_answered_to_the_model_not_the_client(scripted, upstream):
    sdk, _ = scripted.start()
    upstream.queue(ToolCalls([Call("rm_rf", {"path": "/"}, id="call_rm"), Call("file_search", {}, id="call_fs")]),
                   ToolCalls([Call("rm_rf", {}, id="call_rm2"), Call("get_time", {}, id="call_ok")]), Text("noon"))
    bot, thread = ask(sdk, "time?", tools=[TIME_TOOL])  # file_search is not enabled: undeclared too
    run = sdk.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=bot.id)
    assert run.status == "requires_action" and len(upstream.requests) == 2  # the first round never paused
    assert [c.id for c in run.required_action.submit_tool_outputs.tool_calls] == ["call_ok"]
    answered = {m["tool_call_id"]: m["content"] for m in sent(upstream, 1)["messages"] if m["role"] == "tool"}
    assert answered == {"call_rm": "Error: there is no tool named 'rm_rf'; the tools are: get_time.",
                        "call_fs": "Error: there is no tool named 'file_search'; the tools are: get_time."}
    run = sdk.beta.threads.runs.submit_tool_outputs_and_poll(
        thread_id=thread.id, run_id=run.id, tool_outputs=[{"tool_call_id": "call_ok", "output": "12:00"}])
    assert run.status == "completed"
    answered = {m["tool_call_id"]: m["content"] for m in sent(upstream, 2)["messages"] if m["role"] == "tool"}
    assert answered["call_rm2"].startswith("Error: there is no tool named 'rm_rf'") and answered["call_ok"] == "12:00"


def test_parallel_tool_calls_false_keeps_one_call(scripted, upstream):
    sdk, _ = scripted.start()
    upstream.queue(ToolCalls([Call("get_time", {}, id="call_1"), Call("get_date", {}, id="call_2")]))
    bot, thread = ask(sdk, tools=[TIME_TOOL, DATE_TOOL])
    run = sdk.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=bot.id, parallel_tool_calls=False)
    assert sent(upstream)["parallel_tool_calls"] is False
    assert [c.id for c in run.required_action.submit_tool_outputs.tool_calls] == ["call_1"]
    step = sdk.beta.threads.runs.steps.list(thread_id=thread.id, run_id=run.id).data[0]
    assert [c.id for c in step.step_details.tool_calls] == ["call_1"]


def test_an_upstream_without_ids_gets_generated_call_ids(scripted, upstream):
    sdk, _ = scripted.start()
    upstream.queue(ToolCalls([Call("get_time", {}, omit_id=True)]))
    bot, thread = ask(sdk, tools=[TIME_TOOL])
    run = sdk.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=bot.id)
    call_id = run.required_action.submit_tool_outputs.tool_calls[0].id
    assert call_id.startswith("call_") and not call_id.startswith("call_scripted")


def test_model_call_cap_fails_the_run_with_a_clear_error(scripted, upstream):
    sdk, server = scripted.start()
    upstream.default = lambda body: ToolCalls([Call("get_time", {}, id=f"call_n{len(upstream.requests)}")],
                                              usage=(10, 2))
    server.state.config.max_model_calls = 3
    bot, thread = ask(sdk, tools=[TIME_TOOL])
    run = sdk.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=bot.id)
    while run.status == "requires_action":
        call = run.required_action.submit_tool_outputs.tool_calls[0]
        run = sdk.beta.threads.runs.submit_tool_outputs_and_poll(
            thread_id=thread.id, run_id=run.id, tool_outputs=[{"tool_call_id": call.id, "output": "noon"}])
    assert run.status == "failed" and run.last_error.code == "server_error"
    assert "limit of 3 model calls" in run.last_error.message and "max_model_calls" in run.last_error.message
    assert len(upstream.requests) == 3
    assert run.usage.prompt_tokens == 30 and run.usage.completion_tokens == 6


def test_attached_tools_that_are_never_called_do_not_fail_a_run(scripted, upstream):
    sdk, _ = scripted.start()
    upstream.queue(Text("plain answer"))
    bot, thread = ask(sdk, tools=[TIME_TOOL, {"type": "code_interpreter"}, {"type": "file_search"}])
    run = sdk.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=bot.id)
    assert run.status == "completed"


# -- usage -----------------------------------------------------------------------------------------
def test_usage_is_summed_over_model_calls_and_each_step_has_its_call_usage(scripted, upstream):
    sdk, _ = scripted.start()
    upstream.queue(ToolCalls([Call("get_time", {}, id="call_x")], usage=(100, 7)), Text("done", usage=(120, 3)))
    bot, thread = ask(sdk, tools=[TIME_TOOL])
    run = sdk.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=bot.id)
    run = sdk.beta.threads.runs.submit_tool_outputs_and_poll(
        thread_id=thread.id, run_id=run.id, tool_outputs=[{"tool_call_id": "call_x", "output": "noon"}])
    assert (run.usage.prompt_tokens, run.usage.completion_tokens, run.usage.total_tokens) == (220, 10, 230)
    steps = sdk.beta.threads.runs.steps.list(thread_id=thread.id, run_id=run.id, order="asc").data
    assert [(s.usage.prompt_tokens, s.usage.completion_tokens) for s in steps] == [(100, 7), (120, 3)]


def test_an_upstream_without_usage_gets_the_estimate(scripted, upstream):
    sdk, _ = scripted.start()
    upstream.queue(Text("abcdefgh", omit_usage=True))  # no usage chunk, as some local servers do
    bot, thread = ask(sdk, "12345678", instructions="Be brief.", model="llama3.1:8b")
    run = sdk.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=bot.id)
    # 3 reply priming + system (3 + 3) + user (3 + 2) = 14 prompt tokens; "abcdefgh" = 2
    assert (run.usage.prompt_tokens, run.usage.completion_tokens) == (14, 2)
    # one that ignores max_tokens too: the reply is counted here, cut at the cap and the run ends incomplete
    long = "".join(f"word{i:04d} " for i in range(800))  # 8000 characters, about 2000 tokens
    upstream.queue(Text(long, deltas=[long[i:i + 200] for i in range(0, len(long), 200)], omit_usage=True))
    run = sdk.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=bot.id, max_completion_tokens=256)
    assert sent(upstream)["max_tokens"] == 256
    assert run.status == "incomplete" and run.incomplete_details.reason == "max_completion_tokens"
    assert run.usage.completion_tokens == 256
    message = sdk.beta.threads.messages.list(thread_id=thread.id, run_id=run.id).data[0]
    assert message.status == "incomplete" and message.content[0].text.value == long[:1024]  # 4 characters a token


# -- request messages ------------------------------------------------------------------------------
def test_o_series_models_get_a_developer_message_and_run_instructions_replace(scripted, upstream):
    sdk, _ = scripted.start()
    bot, thread = ask(sdk, instructions="Assistant's own.")
    sdk.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=bot.id, model="o3-mini",
                                          instructions="Run's instead.")
    assert sent(upstream)["messages"][0] == {"role": "developer", "content": "Run's instead."}
    sdk.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=bot.id, additional_instructions="More.")
    assert sent(upstream)["messages"][0] == {"role": "system", "content": "Assistant's own.\nMore."}
    assert [m["role"] for m in sent(upstream)["messages"]] == ["system", "user", "assistant"]


def test_images_go_as_image_parts(scripted, upstream):
    sdk, _ = scripted.start()
    upstream.queue(Text("a cat"))
    png = base64.b64decode(
        "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==")
    image = sdk.files.create(file=("cat.png", png), purpose="vision")
    bot = sdk.beta.assistants.create(model="gpt-4o")
    thread = sdk.beta.threads.create(messages=[{"role": "user", "content": [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg", "detail": "low"}},
        {"type": "image_file", "image_file": {"file_id": image.id}},
    ]}])
    sdk.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=bot.id)
    parts = sent(upstream)["messages"][-1]["content"]
    assert parts[0] == {"type": "text", "text": "What is this?"}
    assert parts[1] == {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg", "detail": "low"}}
    assert parts[2] == {"type": "image_url",
                        "image_url": {"url": "data:image/png;base64," + base64.b64encode(png).decode()}}


# -- cancel and concurrency ------------------------------------------------------------------------
def test_cancel_closes_the_upstream_stream(scripted, upstream):
    sdk, _ = scripted.start()
    gate = threading.Event()
    upstream.queue(Text("partial never", deltas=["partial", " never"], gate=gate))
    bot, thread = ask(sdk)
    run = sdk.beta.threads.runs.create(thread_id=thread.id, assistant_id=bot.id)
    wait_for(lambda: upstream.gated == 1, "the upstream call to start")
    wait_for(lambda: sdk.beta.threads.messages.list(thread_id=thread.id, run_id=run.id).data, "the partial message")
    sdk.beta.threads.runs.cancel(run_id=run.id, thread_id=thread.id)
    run = sdk.beta.threads.runs.poll(run_id=run.id, thread_id=thread.id)
    assert run.status == "cancelled"
    assert upstream.disconnected.wait(10) and upstream.disconnects == 1 and upstream.completed == 0
    wait_for(lambda: upstream.gated == 0, "the upstream to see the stream closed")
    assert upstream.gate_timeouts == 0
    message = sdk.beta.threads.messages.list(thread_id=thread.id, run_id=run.id).data[0]
    assert message.status == "incomplete" and message.incomplete_details.reason == "run_cancelled"
    assert message.content[0].text.value == "partial"


def test_two_hundred_runs_in_flight_hold_no_thread_each(scripted, upstream):
    sdk, _ = scripted.start()
    gate = threading.Event()
    upstream.gate_limit = 300.0
    upstream.default = lambda body: Text("done", deltas=["do", "ne"], gate=gate)
    bot = sdk.beta.assistants.create(model="gpt-4o")
    before = threading.active_count()
    runs = [sdk.beta.threads.create_and_run(assistant_id=bot.id, thread={"messages": [{"role": "user", "content": "x"}]})
            for _ in range(200)]
    wait_for(lambda: upstream.gated == 200, "200 upstream calls in flight", seconds=120)
    in_flight = threading.active_count()
    gate.set()
    done = [sdk.beta.threads.runs.poll(run_id=r.id, thread_id=r.thread_id).status for r in runs]
    assert done == ["completed"] * 200
    assert in_flight - before <= 4  # no thread per run (the old pool had 8 workers and capped turns at 8)


def test_two_hundred_offline_runs_with_latency_share_the_event_loop(tmp_path, contract):
    rules = tmp_path / "rules.yaml"
    rules.write_text('rules:\n  - match: "."\n    reply: "slowly"\n    latency_ms: 1000\n')
    with start_server(":memory:", rules_path=str(rules)) as server:
        sdk = make_client(server, contract)
        bot = sdk.beta.assistants.create(model="gpt-4o")
        before, peak = threading.active_count(), 0
        runs = []
        for _ in range(200):
            runs.append(sdk.beta.threads.create_and_run(
                assistant_id=bot.id, thread={"messages": [{"role": "user", "content": "x"}]}))
            peak = max(peak, threading.active_count())
        statuses = []
        for run in runs:
            statuses.append(sdk.beta.threads.runs.poll(run_id=run.id, thread_id=run.thread_id).status)
            peak = max(peak, threading.active_count())
        assert statuses == ["completed"] * 200
        assert peak - before <= 4
        sdk.close()
