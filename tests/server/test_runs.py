"""Runs and run steps through the real SDK (polling helpers): lifecycle, overrides, tool calls,
cancellation, the one-active-run rule, rules-file steering, expiry and crash recovery."""

from __future__ import annotations

import json
import time

import openai
import pytest

from asstctl.server.embedded import start_server
from asstctl.server.store import Store
from tests.conftest import make_client
from tests.upstream import Failure

TIME_TOOL = {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}}}
WEATHER_TOOL = {"type": "function", "function": {"name": "get_weather"}}

RULES = """
rules:
  - match: "weather in (?P<city>[A-Za-z]+)"
    assistant: "weather-bot"
    tool_calls:
      - name: get_weather
        arguments: {city: "{city}"}
    then: "It is {output} in {city}."
  - match: "flaky"
    replies: ["yes", "no"]
  - match: "slow"
    reply: "finally"
    latency_ms: 60000
  - match: "^hello (?P<name>\\\\w+)"
    reply: "Hello, {name}! I am {assistant_name} on {model}."
"""


def assistant(client, **fields):
    fields.setdefault("model", "gpt-4o")
    return client.beta.assistants.create(**fields)


def ask(client, text: str):
    return client.beta.threads.create(messages=[{"role": "user", "content": text}])


def reply_of(client, run) -> str:
    messages = client.beta.threads.messages.list(thread_id=run.thread_id, run_id=run.id)
    return messages.data[0].content[0].text.value


def test_create_and_poll_completes_with_an_assistant_message(client):
    bot = assistant(client, name="Echo", instructions="Be brief.")
    thread = ask(client, "Hi there")
    run = client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=bot.id, metadata={"k": "v"})
    assert run.status == "completed"
    assert run.started_at and run.completed_at and run.expires_at is None
    assert run.usage.total_tokens == run.usage.prompt_tokens + run.usage.completion_tokens > 0
    assert (run.instructions, run.model, run.metadata) == ("Be brief.", "gpt-4o", {"k": "v"})
    assert run.truncation_strategy.type == "auto" and run.truncation_strategy.last_messages is None
    assert (run.tool_choice, run.parallel_tool_calls, run.response_format) == ("auto", True, "auto")
    messages = client.beta.threads.messages.list(thread_id=thread.id, order="asc").data
    assert [m.role for m in messages] == ["user", "assistant"]
    answer = messages[1]
    assert (answer.run_id, answer.assistant_id, answer.status) == (run.id, bot.id, "completed")
    assert answer.content[0].text.value == '[offline gpt-4o] You said: "Hi there" (instructions: "Be brief.")'
    only_run = client.beta.threads.messages.list(thread_id=thread.id, run_id=run.id).data
    assert [m.id for m in only_run] == [answer.id]


def test_message_creation_step(client):
    bot = assistant(client)
    run = client.beta.threads.runs.create_and_poll(thread_id=ask(client, "x").id, assistant_id=bot.id)
    steps = client.beta.threads.runs.steps.list(thread_id=run.thread_id, run_id=run.id).data
    assert [(s.type, s.status) for s in steps] == [("message_creation", "completed")]
    step = client.beta.threads.runs.steps.retrieve(step_id=steps[0].id, thread_id=run.thread_id, run_id=run.id)
    assert step.step_details.message_creation.message_id == reply_of_id(client, run)
    assert step.usage.completion_tokens > 0 and step.completed_at


def reply_of_id(client, run) -> str:
    return client.beta.threads.messages.list(thread_id=run.thread_id, run_id=run.id).data[0].id


def test_per_run_instructions_model_and_tools_are_honoured(client):
    bot = assistant(client, instructions="Be formal.")
    thread = ask(client, "please get_time")
    run = client.beta.threads.runs.create_and_poll(
        thread_id=thread.id, assistant_id=bot.id, model="local-test-model",
        instructions="Please address the user as Jane Doe.", additional_instructions="Keep it short.",
    )
    assert run.instructions == "Please address the user as Jane Doe.\nKeep it short."
    assert reply_of(client, run) == (
        '[offline local-test-model] Jane Doe, you said: "please get_time" '
        '(instructions: "Please address the user as Jane Doe. Keep it short.")'
    )
    run = client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=bot.id, tools=[TIME_TOOL])
    assert run.status == "requires_action" and run.tools[0].function.name == "get_time"
    assert run.instructions == "Be formal."


def test_additional_messages_are_added_first(client):
    bot = assistant(client)
    thread = client.beta.threads.create()
    run = client.beta.threads.runs.create_and_poll(
        thread_id=thread.id, assistant_id=bot.id, additional_messages=[{"role": "user", "content": "extra"}]
    )
    assert reply_of(client, run) == '[offline gpt-4o] You said: "extra"'


def test_function_call_round_trip_fills_the_step_output(client):
    bot = assistant(client, tools=[TIME_TOOL])
    run = client.beta.threads.runs.create_and_poll(thread_id=ask(client, "call get_time").id, assistant_id=bot.id)
    assert run.status == "requires_action" and run.usage is None and run.expires_at
    call = run.required_action.submit_tool_outputs.tool_calls[0]
    assert (call.type, call.function.name, json.loads(call.function.arguments)) == ("function", "get_time", {})
    run = client.beta.threads.runs.submit_tool_outputs_and_poll(
        thread_id=run.thread_id, run_id=run.id, tool_outputs=[{"tool_call_id": call.id, "output": "12:00"}]
    )
    assert run.status == "completed" and run.required_action is None
    assert reply_of(client, run) == "[offline gpt-4o] get_time returned 12:00."
    steps = client.beta.threads.runs.steps.list(thread_id=run.thread_id, run_id=run.id, order="asc").data
    assert [(s.type, s.status) for s in steps] == [("tool_calls", "completed"), ("message_creation", "completed")]
    tool_call = steps[0].step_details.tool_calls[0]
    assert (tool_call.id, tool_call.function.output) == (call.id, "12:00")
    assert run.usage.total_tokens == sum(s.usage.total_tokens for s in steps)


def test_submit_tool_outputs_must_answer_every_call(client):
    bot = assistant(client, tools=[TIME_TOOL, WEATHER_TOOL])
    run = client.beta.threads.runs.create_and_poll(
        thread_id=ask(client, "get_time and get_weather please").id, assistant_id=bot.id
    )
    calls = run.required_action.submit_tool_outputs.tool_calls
    assert [c.function.name for c in calls] == ["get_time", "get_weather"]
    with pytest.raises(openai.BadRequestError, match="Expected tool outputs for call_ids"):
        client.beta.threads.runs.submit_tool_outputs(
            thread_id=run.thread_id, run_id=run.id, tool_outputs=[{"tool_call_id": calls[0].id, "output": "1"}]
        )
    outputs = [{"tool_call_id": c.id, "output": str(i)} for i, c in enumerate(calls)]
    done = client.beta.threads.runs.submit_tool_outputs_and_poll(
        thread_id=run.thread_id, run_id=run.id, tool_outputs=outputs
    )
    assert reply_of(client, done) == "[offline gpt-4o] get_time returned 0; get_weather returned 1."
    with pytest.raises(openai.BadRequestError, match='status "completed" do not accept tool outputs'):
        client.beta.threads.runs.submit_tool_outputs(thread_id=run.thread_id, run_id=run.id, tool_outputs=outputs)


def test_one_active_run_per_thread_and_no_messages_meanwhile(client):
    bot = assistant(client, tools=[TIME_TOOL])
    thread = ask(client, "get_time")
    run = client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=bot.id)
    assert run.status == "requires_action"
    with pytest.raises(openai.BadRequestError, match=f"Thread {thread.id} already has an active run {run.id}."):
        client.beta.threads.runs.create(thread_id=thread.id, assistant_id=bot.id)
    with pytest.raises(openai.BadRequestError, match=f"while a run {run.id} is active"):
        client.beta.threads.messages.create(thread_id=thread.id, role="user", content="more")
    cancelled = client.beta.threads.runs.cancel(thread_id=thread.id, run_id=run.id)
    assert cancelled.status in ("cancelling", "cancelled")
    cancelled = client.beta.threads.runs.poll(thread_id=thread.id, run_id=run.id)
    assert cancelled.status == "cancelled" and cancelled.cancelled_at and cancelled.expires_at is None
    step = client.beta.threads.runs.steps.list(thread_id=thread.id, run_id=run.id).data[0]
    assert step.status == "cancelled"
    client.beta.threads.messages.create(thread_id=thread.id, role="user", content="more")
    assert client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=bot.id).status == "completed"


def test_cancel_terminal_run_is_refused(client):
    bot = assistant(client)
    run = client.beta.threads.runs.create_and_poll(thread_id=ask(client, "x").id, assistant_id=bot.id)
    with pytest.raises(openai.BadRequestError, match="Cannot cancel run with status 'completed'"):
        client.beta.threads.runs.cancel(thread_id=run.thread_id, run_id=run.id)


def test_modify_retrieve_and_list_runs(client):
    bot = assistant(client)
    thread = ask(client, "x")
    first = client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=bot.id)
    second = client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=bot.id)
    changed = client.beta.threads.runs.update(run_id=first.id, thread_id=thread.id, metadata={"team": "a"})
    assert changed.metadata == {"team": "a"}
    assert client.beta.threads.runs.retrieve(run_id=first.id, thread_id=thread.id).metadata == {"team": "a"}
    listed = client.beta.threads.runs.list(thread_id=thread.id)
    assert [r.id for r in listed.data] == [second.id, first.id] and listed.has_more is False
    with pytest.raises(openai.BadRequestError, match="Unknown parameter: 'model'"):
        client.beta.threads.runs.update(run_id=first.id, thread_id=thread.id, extra_body={"model": "x"})


def test_run_requests_are_validated(client):
    bot = assistant(client)
    thread = ask(client, "x")
    with pytest.raises(openai.NotFoundError, match="No assistant found with id 'asst_missing'."):
        client.beta.threads.runs.create(thread_id=thread.id, assistant_id="asst_missing")
    with pytest.raises(openai.NotFoundError, match="No thread found with id 'thread_missing'."):
        client.beta.threads.runs.create(thread_id="thread_missing", assistant_id=bot.id)
    with pytest.raises(openai.BadRequestError, match="Unknown parameter: 'colour'"):
        client.beta.threads.runs.create(thread_id=thread.id, assistant_id=bot.id, extra_body={"colour": "red"})
    with pytest.raises(openai.BadRequestError, match="max_completion_tokens"):
        client.beta.threads.runs.create(thread_id=thread.id, assistant_id=bot.id, max_completion_tokens=10)
    with pytest.raises(openai.BadRequestError, match="array too long"):
        client.beta.threads.runs.create(thread_id=thread.id, assistant_id=bot.id, tools=[TIME_TOOL] * 21)
    with pytest.raises(openai.NotFoundError, match="No run found with id 'run_missing'."):
        client.beta.threads.runs.retrieve(run_id="run_missing", thread_id=thread.id)
    with pytest.raises(openai.NotFoundError, match="No run found with id 'run_missing'."):
        client.beta.threads.runs.update(run_id="run_missing", thread_id=thread.id, metadata={"k": "v"})
    with pytest.raises(openai.NotFoundError, match="No thread found with id 'thread_missing'."):
        client.beta.threads.runs.update(run_id="run_missing", thread_id="thread_missing", metadata={"k": "v"})
    with pytest.raises(openai.BadRequestError, match="Invalid value: .nope."):
        client.beta.threads.runs.create(thread_id=thread.id, assistant_id=bot.id, include=["nope"])


def test_create_thread_and_run_poll(client):
    bot = assistant(client, instructions="Help.")
    run = client.beta.threads.create_and_run_poll(
        assistant_id=bot.id, thread={"messages": [{"role": "user", "content": "hello"}], "metadata": {"a": "b"}},
    )
    assert run.status == "completed"
    assert client.beta.threads.retrieve(run.thread_id).metadata == {"a": "b"}
    assert reply_of(client, run) == '[offline gpt-4o] You said: "hello" (instructions: "Help.")'


def test_truncation_strategy_limits_what_the_engine_sees(client):
    bot = assistant(client)
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "first"}, {"role": "user", "content": "second"}])
    run = client.beta.threads.runs.create_and_poll(
        thread_id=thread.id, assistant_id=bot.id, truncation_strategy={"type": "last_messages", "last_messages": 1}
    )
    assert run.truncation_strategy.last_messages == 1 and run.usage.prompt_tokens == 2  # "second" ≈ 2 tokens


# -- rules file steering ----------------------------------------------------------------------
@pytest.fixture
def steered(tmp_path, contract):
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    with start_server(":memory:", rules_path=str(rules)) as server:
        sdk = make_client(server, contract)
        yield sdk
        sdk.close()


def test_rules_reply_with_named_groups(steered):
    bot = assistant(steered, name="Greeter", model="gpt-4o-mini")
    run = steered.beta.threads.runs.create_and_poll(thread_id=ask(steered, "hello Ann").id, assistant_id=bot.id)
    assert reply_of(steered, run) == "Hello, Ann! I am Greeter on gpt-4o-mini."


def test_rules_tool_call_arguments_and_then(steered):
    bot = assistant(steered, name="weather-bot", tools=[WEATHER_TOOL])
    run = steered.beta.threads.runs.create_and_poll(thread_id=ask(steered, "weather in Paris?").id, assistant_id=bot.id)
    call = run.required_action.submit_tool_outputs.tool_calls[0]
    assert json.loads(call.function.arguments) == {"city": "Paris"}
    run = steered.beta.threads.runs.submit_tool_outputs_and_poll(
        thread_id=run.thread_id, run_id=run.id, tool_outputs=[{"tool_call_id": call.id, "output": "sunny"}]
    )
    assert reply_of(steered, run) == "It is sunny in Paris."


def test_rules_replies_cycle_one_per_run(steered):
    bot = assistant(steered)
    thread = ask(steered, "flaky?")
    answers = []
    for _ in range(3):
        run = steered.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=bot.id)
        answers.append(reply_of(steered, run))
    assert answers == ["yes", "no", "yes"]


def test_slow_engine_blocks_neither_the_server_nor_cancel(steered):
    bot = assistant(steered)
    slow = steered.beta.threads.runs.create(thread_id=ask(steered, "slow please").id, assistant_id=bot.id)
    quick = steered.beta.threads.runs.create_and_poll(thread_id=ask(steered, "quick").id, assistant_id=bot.id)
    assert quick.status == "completed"
    assert steered.beta.threads.runs.retrieve(run_id=slow.id, thread_id=slow.thread_id).status in ("queued", "in_progress")
    steered.beta.threads.runs.cancel(run_id=slow.id, thread_id=slow.thread_id)
    assert steered.beta.threads.runs.poll(run_id=slow.id, thread_id=slow.thread_id).status == "cancelled"
    messages = steered.beta.threads.messages.list(thread_id=slow.thread_id).data
    assert [m.role for m in messages] == ["user"]


# -- expiry and recovery ----------------------------------------------------------------------
def test_requires_action_run_expires(server, client):
    bot = assistant(client, tools=[TIME_TOOL])
    run = client.beta.threads.runs.create_and_poll(thread_id=ask(client, "get_time").id, assistant_id=bot.id)
    server.store.update("run", run.id, lambda r: r.update(expires_at=r["created_at"] - 1), run.thread_id)
    expired = run
    while expired.status == "requires_action":  # the poll helper stops at requires_action
        time.sleep(0.05)
        expired = client.beta.threads.runs.retrieve(run_id=run.id, thread_id=run.thread_id)
    assert expired.status == "expired" and expired.expires_at is None
    assert client.beta.threads.runs.steps.list(thread_id=run.thread_id, run_id=run.id).data[0].status == "expired"


def test_runs_left_active_by_a_crash_are_resumed(tmp_path, contract):
    db = str(tmp_path / "server.sqlite3")
    with start_server(db) as server:
        sdk = make_client(server, contract)
        bot = assistant(sdk)
        run = sdk.beta.threads.runs.create_and_poll(thread_id=ask(sdk, "again").id, assistant_id=bot.id)
        sdk.close()
    store = Store(db)  # simulate a crash in the middle of the run: it was in progress, no reply yet
    store.update("run", run.id, lambda r: r.update(status="in_progress", completed_at=None, usage=None), run.thread_id)
    store.delete_children(run.id)
    for message in store.all("message", run.thread_id):
        if message["run_id"]:
            store.delete("message", message["id"], run.thread_id)
    store.close()
    with start_server(db) as server:
        sdk = make_client(server, contract)
        resumed = sdk.beta.threads.runs.poll(run_id=run.id, thread_id=run.thread_id)
        assert resumed.status == "completed"
        assert reply_of(sdk, resumed) == '[offline gpt-4o] You said: "again"'
        sdk.close()


def test_max_completion_tokens_makes_the_run_incomplete(client):
    bot = assistant(client)
    run = client.beta.threads.runs.create_and_poll(
        thread_id=ask(client, "x" * 2000).id, assistant_id=bot.id, max_completion_tokens=256
    )
    assert run.status == "incomplete" and run.incomplete_details.reason == "max_completion_tokens"
    assert run.usage.completion_tokens == 256
    message = client.beta.threads.messages.list(thread_id=run.thread_id, run_id=run.id).data[0]
    assert message.status == "incomplete" and message.incomplete_details.reason == "max_tokens"
    assert len(message.content[0].text.value) == 1024


def test_upstream_errors_fail_the_run(scripted, upstream):
    sdk, _ = scripted.start()
    upstream.queue(*[Failure.rate_limit()] * 4)  # the first attempt and every retry
    bot = assistant(sdk)
    run = sdk.beta.threads.runs.create_and_poll(thread_id=ask(sdk, "x").id, assistant_id=bot.id)
    assert run.status == "failed" and run.failed_at and run.expires_at is None
    assert run.last_error.code == "rate_limit_exceeded"
    assert run.last_error.message.startswith(f"the upstream 127.0.0.1:{upstream.port} is rate limiting requests")
    assert "Rate limit reached for requests." in run.last_error.message and len(upstream.requests) == 4
