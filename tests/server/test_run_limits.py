"""Run limits through the real SDK: truncation (last_messages, auto to the context window),
max_prompt_tokens (truncate to fit, else incomplete), max_completion_tokens (the budget left is
sent; a cut-off reply keeps its partial message as incomplete), options passed through, restart
recovery of an interrupted model call, and the token counting module. The model is the scripted
Chat Completions upstream, reached by the real upstream engine; those tests run on both stores."""

from __future__ import annotations

import threading
import time

import pytest

from asstctl.server.embedded import start_server
from asstctl.server.runs import tokens
from tests.conftest import make_client
from tests.upstream import Call, Text, ToolCalls

TIME_TOOL = {"type": "function", "function": {"name": "get_time"}}
LONG = "word " * 800  # ~1000 tokens by the estimate


@pytest.fixture
def offline(contract):
    with start_server(":memory:") as server:
        sdk = make_client(server, contract)
        yield sdk, server
        sdk.close()


def conversation(sdk, *texts, model="gpt-4o", **assistant):
    bot = sdk.beta.assistants.create(model=model, **assistant)
    thread = sdk.beta.threads.create(messages=[{"role": "user", "content": t} for t in texts])
    return bot, thread


def run_messages(sdk, run):
    return sdk.beta.threads.messages.list(thread_id=run.thread_id, run_id=run.id).data


# -- prompt limits ---------------------------------------------------------------------------------
def test_max_prompt_tokens_drops_the_oldest_messages_to_fit(offline):
    sdk, _ = offline
    bot, thread = conversation(sdk, LONG, "hello")
    run = sdk.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=bot.id, max_prompt_tokens=256)
    assert run.status == "completed"
    assert run.usage.prompt_tokens == 2  # the offline engine saw "hello" only
    assert run_messages(sdk, run)[0].content[0].text.value == '[offline gpt-4o] You said: "hello"'


def test_max_prompt_tokens_too_small_for_the_last_message_makes_the_run_incomplete(offline):
    sdk, _ = offline
    bot, thread = conversation(sdk, "hi", LONG)
    run = sdk.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=bot.id, max_prompt_tokens=256)
    assert run.status == "incomplete" and run.incomplete_details.reason == "max_prompt_tokens"
    assert run_messages(sdk, run) == [] and run.usage.total_tokens == 0


def test_auto_truncation_fits_the_context_window(offline):
    sdk, server = offline
    server.state.config.context_windows = {"tiny-*": 300}
    bot, thread = conversation(sdk, LONG, "second", "third", model="tiny-model")
    run = sdk.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=bot.id)
    assert run.status == "completed" and run.usage.prompt_tokens == 3  # "secondthird": the long one went
    bot, thread = conversation(sdk, LONG, model="tiny-model")
    run = sdk.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=bot.id)
    assert run.status == "failed" and run.last_error.code == "invalid_prompt"
    assert "context window of tiny-model (300 tokens)" in run.last_error.message


def sent(upstream, n=-1) -> dict:
    return upstream.requests[n].body


def wait_for(predicate, what: str, seconds: float = 20):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError(f"never happened: {what}")


def test_last_messages_keeps_the_last_n_and_the_run_rounds(scripted, upstream):
    sdk, _ = scripted.start()
    upstream.queue(ToolCalls([Call("get_time", {}, id="call_t")]), Text("ok"))
    bot, thread = conversation(sdk, "one", "two", "three", tools=[TIME_TOOL])
    run = sdk.beta.threads.runs.create_and_poll(
        thread_id=thread.id, assistant_id=bot.id, truncation_strategy={"type": "last_messages", "last_messages": 2})
    sdk.beta.threads.runs.submit_tool_outputs_and_poll(
        thread_id=thread.id, run_id=run.id, tool_outputs=[{"tool_call_id": "call_t", "output": "noon"}])
    first, second = (r.body["messages"] for r in upstream.requests)
    assert [m["content"] for m in first] == ["two", "three"]
    assert [m["role"] for m in second] == ["user", "user", "assistant", "tool"]


# -- completion limits -----------------------------------------------------------------------------
def test_completion_budget_left_is_sent_and_a_cut_off_reply_stays_incomplete(scripted, upstream):
    sdk, _ = scripted.start()
    upstream.queue(ToolCalls([Call("get_time", {}, id="call_t")], usage=(50, 200)),
                   Text("It is no", finish_reason="length", usage=(60, 56)))
    bot, thread = conversation(sdk, "time?", tools=[TIME_TOOL])
    run = sdk.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=bot.id, max_completion_tokens=256)
    assert sent(upstream, 0)["max_completion_tokens"] == 256
    run = sdk.beta.threads.runs.submit_tool_outputs_and_poll(
        thread_id=thread.id, run_id=run.id, tool_outputs=[{"tool_call_id": "call_t", "output": "noon"}])
    assert sent(upstream, 1)["max_completion_tokens"] == 56
    assert run.status == "incomplete" and run.incomplete_details.reason == "max_completion_tokens"
    assert (run.usage.prompt_tokens, run.usage.completion_tokens) == (110, 256)
    message = run_messages(sdk, run)[0]
    assert message.status == "incomplete" and message.incomplete_details.reason == "max_tokens"
    assert message.content[0].text.value == "It is no"


def test_spent_completion_budget_ends_the_run_before_another_call(scripted, upstream):
    sdk, _ = scripted.start()
    upstream.queue(ToolCalls([Call("get_time", {}, id="call_t")], usage=(50, 300)))
    bot, thread = conversation(sdk, "time?", tools=[TIME_TOOL])
    run = sdk.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=bot.id, max_completion_tokens=256)
    run = sdk.beta.threads.runs.submit_tool_outputs_and_poll(
        thread_id=thread.id, run_id=run.id, tool_outputs=[{"tool_call_id": "call_t", "output": "noon"}])
    assert run.status == "incomplete" and run.incomplete_details.reason == "max_completion_tokens"
    assert len(upstream.requests) == 1


def test_tool_call_cut_off_by_the_budget_makes_the_run_incomplete(scripted, upstream):
    sdk, _ = scripted.start()
    upstream.queue(ToolCalls([Call("get_time", '{"tz": "Eur', id="call_t")], finish_reason="length", usage=(9, 256)))
    bot, thread = conversation(sdk, "time?", tools=[TIME_TOOL])
    run = sdk.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=bot.id, max_completion_tokens=256)
    assert run.status == "incomplete" and run.incomplete_details.reason == "max_completion_tokens"
    assert run.required_action is None
    step = sdk.beta.threads.runs.steps.list(thread_id=thread.id, run_id=run.id).data[0]
    assert step.status == "cancelled"


def test_a_reply_without_a_finish_fails_the_run(scripted, upstream):
    sdk, _ = scripted.start()
    upstream.queue(Text("half", cut=True))  # the stream closes: no finish_reason, no [DONE]
    bot, thread = conversation(sdk, "hi")
    run = sdk.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=bot.id)
    assert run.status == "failed" and run.last_error.code == "server_error"
    assert "ended the stream before the answer was finished" in run.last_error.message
    message = run_messages(sdk, run)[0]
    assert message.status == "incomplete" and message.incomplete_details.reason == "run_failed"


def test_sampling_options_pass_through(scripted, upstream):
    sdk, _ = scripted.start()
    upstream.queue(Text("{}"), Text("{}"))
    bot, thread = conversation(sdk, "json please")
    sdk.beta.threads.runs.create_and_poll(
        thread_id=thread.id, assistant_id=bot.id, temperature=0.2, top_p=0.9, response_format={"type": "json_object"})
    body = sent(upstream)
    assert (body["temperature"], body["top_p"], body["response_format"]) == (0.2, 0.9, {"type": "json_object"})
    sdk.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=bot.id, model="o3-mini",
                                          reasoning_effort="low", temperature=0.2)
    body = sent(upstream)
    assert body["reasoning_effort"] == "low" and "temperature" not in body  # reasoning models reject sampling


# -- restart ---------------------------------------------------------------------------------------
def test_a_model_call_interrupted_by_a_restart_is_made_again_from_its_start(scripted, upstream):
    sdk, server = scripted.start()
    gate = threading.Event()
    upstream.queue(Text("half an answer", deltas=["half an ans", "wer"], gate=gate))
    bot, thread = conversation(sdk, "question")
    run = sdk.beta.threads.runs.create(thread_id=thread.id, assistant_id=bot.id)
    wait_for(lambda: run_messages(sdk, run) and run_messages(sdk, run)[0].content, "the partial message")
    scripted.stop(server)  # the server goes away mid-reply
    gate.set()
    upstream.queue(Text("the whole answer"))
    sdk, _ = scripted.start()
    run = sdk.beta.threads.runs.poll(run_id=run.id, thread_id=thread.id)
    assert run.status == "completed"
    assert [m.content[0].text.value for m in run_messages(sdk, run)] == ["the whole answer"]
    steps = sdk.beta.threads.runs.steps.list(thread_id=thread.id, run_id=run.id).data
    assert [s.type for s in steps] == ["message_creation"] and len(upstream.requests) == 2


def test_a_restart_discards_every_step_of_the_interrupted_call(scripted, upstream):
    sdk, server = scripted.start()
    gate = threading.Event()
    upstream.queue(ToolCalls([Call("get_time", {}, id="call_a")]),
                   ToolCalls([Call("get_time", {}, id="call_b")], content="Let me look. ", gate=gate))
    bot, thread = conversation(sdk, "question", tools=[TIME_TOOL])
    run = sdk.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=bot.id)
    sdk.beta.threads.runs.submit_tool_outputs(
        thread_id=thread.id, run_id=run.id, tool_outputs=[{"tool_call_id": "call_a", "output": "noon"}])
    wait_for(lambda: upstream.gated == 1, "the second call held mid-answer")
    wait_for(lambda: len(sdk.beta.threads.runs.steps.list(thread_id=thread.id, run_id=run.id).data) == 3,
             "the interrupted call's message and tool steps")
    scripted.stop(server)
    gate.set()
    upstream.queue(Text("It is noon."))
    sdk, _ = scripted.start()
    run = sdk.beta.threads.runs.poll(run_id=run.id, thread_id=thread.id)
    assert run.status == "completed"
    steps = sdk.beta.threads.runs.steps.list(thread_id=thread.id, run_id=run.id, order="asc").data
    assert [(s.type, s.status) for s in steps] == [("tool_calls", "completed"), ("message_creation", "completed")]
    assert [m.content[0].text.value for m in run_messages(sdk, run)] == ["It is noon."]
    assert len(upstream.requests) == 3
    assert [m["role"] for m in sent(upstream)["messages"]] == ["user", "assistant", "tool"]


def test_cancel_during_offline_latency_is_prompt(tmp_path, contract):
    rules = tmp_path / "rules.yaml"
    rules.write_text('rules:\n  - match: "slow"\n    reply: "late"\n    latency_ms: 60000\n')
    with start_server(":memory:", rules_path=str(rules)) as server:
        sdk = make_client(server, contract)
        bot, thread = conversation(sdk, "slow")
        run = sdk.beta.threads.runs.create(thread_id=thread.id, assistant_id=bot.id)
        sdk.beta.threads.runs.cancel(run_id=run.id, thread_id=thread.id)
        run = sdk.beta.threads.runs.poll(run_id=run.id, thread_id=thread.id)
        assert run.status == "cancelled" and run_messages(sdk, run) == []
        assert not [t for t in server.state.extra["runs"]._tasks.values() if not t.done()]
        sdk.close()


# -- the token module ------------------------------------------------------------------------------
def test_context_windows_are_known_and_overridable():
    assert tokens.context_window("gpt-4o-mini") == 128_000
    assert tokens.context_window("gpt-4.1-nano") == 1_047_576
    assert tokens.context_window("o3") == 200_000
    assert tokens.context_window("gpt-3.5-turbo") == 16_385
    assert tokens.context_window("llama3.1:8b") == 128_000
    assert tokens.context_window("something-new") == tokens.DEFAULT_CONTEXT_WINDOW
    assert tokens.context_window("gpt-4o", {"gpt-4o": 1000}) == 1000


def test_token_estimate_and_message_overhead():
    count = tokens.counter("llama3.1:8b")  # no tokenizer for this family: the estimate
    assert count is tokens.estimate and count("abcdefghi") == 3
    message = {"role": "user", "content": [{"type": "text", "text": "abcd"},
                                           {"type": "image_url", "image_url": {"url": "x", "detail": "low"}}]}
    assert tokens.message_tokens(message, count) == tokens.MESSAGE_OVERHEAD + 1 + tokens.IMAGE_LOW
    assert tokens.prompt_tokens([message], [], count) == tokens.REPLY_PRIMING + tokens.message_tokens(message, count)


def test_exact_counts_only_with_a_local_tokenizer(tmp_path, monkeypatch):
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))  # an empty cache: nothing to count with
    tokens._encoding.cache_clear()
    try:
        assert tokens.counter("gpt-4o") is tokens.estimate
    finally:
        tokens._encoding.cache_clear()


def test_gpt_4_counts_are_exact_with_the_shipped_cl100k_file(tmp_path, monkeypatch):
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))  # nothing cached: only what a package ships
    tokens._encoding.cache_clear()
    try:
        assert tokens.exact_for("gpt-4") and tokens.exact_for("gpt-3.5-turbo")
        assert tokens.counter("gpt-4")("tiktoken is great!") == 6  # tiktoken's own README example
    finally:
        tokens._encoding.cache_clear()
