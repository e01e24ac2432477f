"""The Responses API upstream (``engine.api: responses``, ``asstctl serve --upstream-api responses``):
the real openai SDK against asstctl's server whose engine runs each turn as one streamed, stateless
``POST /v1/responses`` on the scripted Responses server (tests/responses_upstream.py), which
validates every request against ``CreateResponse`` and every stream event it sends against the
official ``ResponseStreamEvent`` schemas. Every Assistants response is contract-checked too."""

from __future__ import annotations

import json
import time

import pytest

from asstctl.errors import ConfigError
from asstctl.server.embedded import start_server
from asstctl.server.engine.config import UpstreamConfig, from_flags
from asstctl.server.engine.responses import CARRY_ROUND_BYTES, Carried, ResponseParser, ResponsesEngine, Round
from asstctl.server.sandbox import SandboxConfig
from asstctl.spec.project import parse_project
from tests.conftest import make_client
from tests.engine.conftest import FAST, KEY_ENV, cancel_at_first_delta, chat_request, collect, text_of
from tests.engine.test_runs_e2e import TIME, WEATHER
from tests.responses_upstream import Reply, ScriptedResponses
from tests.sandbox.conftest import TEST_LIMITS
from tests.upstream import DEFAULT_KEY, Call, Failure

GUIDE = b"# Refunds\n\nRefunds reach the card within 5 business days of the return."


@pytest.fixture(scope="module")
def upstream():
    with ScriptedResponses() as running:
        yield running


@pytest.fixture(scope="module")
def served(upstream):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(KEY_ENV, upstream.key)
        config = UpstreamConfig(url=upstream.base_url, api_key_env=KEY_ENV, model_map=[("gpt-4*", "scripted-4")],
                                api="responses")
        with start_server(":memory:", upstream=config, sandbox=SandboxConfig(**TEST_LIMITS)) as server:
            yield server


@pytest.fixture
def sdk(served, upstream, contract):
    upstream.requests.clear()
    upstream.problems.clear()
    client = make_client(served, contract)
    yield client
    client.close()
    assert not upstream.problems, "the scripted Responses server saw schema violations:\n" + "\n".join(upstream.problems)


def assistant(sdk, **fields):
    fields.setdefault("model", "gpt-4o")
    fields.setdefault("instructions", "You are a weather bot.")
    return sdk.beta.assistants.create(**fields)


def poll(sdk, bot, text: str, **options):
    thread = sdk.beta.threads.create(messages=[{"role": "user", "content": text}])
    run = sdk.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=bot.id, poll_interval_ms=10,
                                                **options)
    return thread, run


def submit(sdk, run, call_id: str, output: str):
    assert run.status == "requires_action"
    assert [c.id for c in run.required_action.submit_tool_outputs.tool_calls] == [call_id]
    return sdk.beta.threads.runs.submit_tool_outputs_and_poll(
        run_id=run.id, thread_id=run.thread_id, tool_outputs=[{"tool_call_id": call_id, "output": output}],
        poll_interval_ms=10)


def reply_text(sdk, thread_id: str) -> str:
    return sdk.beta.threads.messages.list(thread_id, order="desc").data[0].content[0].text.value


def test_a_reply_is_one_stateless_streamed_response(upstream, sdk):
    upstream.queue(Reply("Sunny in Paris.", usage=(31, 6)))
    bot = assistant(sdk, temperature=0.3)
    thread, run = poll(sdk, bot, "Weather in Paris?", additional_instructions="Be brief.")
    assert run.status == "completed"
    assert (run.usage.prompt_tokens, run.usage.completion_tokens, run.usage.total_tokens) == (31, 6, 37)
    assert reply_text(sdk, thread.id) == "Sunny in Paris."
    (request,) = upstream.requests
    assert request.path == "/v1/responses" and request.headers["authorization"] == f"Bearer {upstream.key}"
    assert request.body == {"model": "scripted-4", "stream": True, "store": False, "temperature": 0.3, "top_p": 1.0,
                            "instructions": "You are a weather bot.\nBe brief.",
                            "input": [{"type": "message", "role": "user", "content": "Weather in Paris?"}]}


def test_each_text_delta_streams_as_a_message_delta_and_a_refusal_is_the_reply(upstream, sdk):
    upstream.queue(Failure(503, retry_after="0"),  # retried, as on Chat Completions
                   Reply("Sunny in Paris today.", deltas=["Sunny", " in", " Paris", " today."], usage=(31, 6)),
                   Reply(refusal="I can't help with that."))
    bot = assistant(sdk)
    events = list(sdk.beta.threads.create_and_run(
        assistant_id=bot.id, thread={"messages": [{"role": "user", "content": "Weather?"}]}, stream=True))
    deltas = [e.data.delta.content[0].text.value for e in events if e.event == "thread.message.delta"]
    assert deltas == ["Sunny", " in", " Pari", "s today."]  # an "s" that could begin the key waits for the next
    assert events[-1].event == "thread.run.completed" and events[-1].data.usage.total_tokens == 37
    assert len(upstream.requests) == 2
    thread, run = poll(sdk, bot, "Something forbidden")
    assert run.status == "completed" and reply_text(sdk, thread.id) == "I can't help with that."


def test_a_function_tool_round_carries_call_ids_and_outputs_as_items(upstream, sdk):
    upstream.queue(Reply(calls=[Call("get_weather", {"city": "Paris"}, id="call_Wx1")], usage=(40, 10)),
                   Reply("18 degrees at noon.", usage=(80, 6)))
    bot = assistant(sdk, tools=[WEATHER, TIME])
    thread, run = poll(sdk, bot, "Weather in Paris?", tool_choice={"type": "function", "function": {"name": "get_weather"}},
                       parallel_tool_calls=False)
    (call,) = run.required_action.submit_tool_outputs.tool_calls
    assert (call.function.name, json.loads(call.function.arguments)) == ("get_weather", {"city": "Paris"})
    run = submit(sdk, run, "call_Wx1", "18 C")
    assert run.status == "completed" and reply_text(sdk, thread.id) == "18 degrees at noon."
    assert (run.usage.prompt_tokens, run.usage.completion_tokens) == (120, 16)
    first, second = upstream.bodies()
    assert first["tools"] == [
        {"type": "function", "name": "get_weather", "description": "Weather of a city", "strict": False,
         "parameters": WEATHER["function"]["parameters"]},
        {"type": "function", "name": "get_time", "strict": False, "parameters": {"type": "object", "properties": {}}}]
    assert first["tool_choice"] == {"type": "function", "name": "get_weather"} and first["parallel_tool_calls"] is False
    assert second["tool_choice"] == "auto"  # forced once, as on Chat Completions
    assert second["input"][1:] == [
        {"type": "function_call", "call_id": "call_Wx1", "name": "get_weather", "arguments": '{"city": "Paris"}'},
        {"type": "function_call_output", "call_id": "call_Wx1", "output": "18 C"}]
    steps = sdk.beta.threads.runs.steps.list(run.id, thread_id=thread.id, order="asc").data
    assert [s.type for s in steps] == ["tool_calls", "message_creation"]
    assert steps[0].step_details.tool_calls[0].function.output == "18 C"


def test_a_streamed_round_of_text_and_two_calls_then_the_answer(upstream, sdk):
    upstream.queue(Reply("Checking.", calls=[Call("get_weather", {"city": "Oslo"}, id="call_Os1"),
                                             Call("get_time", {}, id="call_Tm1")], fragments=4),
                   Reply("Cold in Oslo at noon.", deltas=["Cold", " in Oslo", " at noon."]))
    bot = assistant(sdk, tools=[WEATHER, TIME])
    events = list(sdk.beta.threads.create_and_run(
        assistant_id=bot.id, thread={"messages": [{"role": "user", "content": "Oslo?"}]}, stream=True))
    kinds = [e.event for e in events]
    assert kinds.index("thread.message.delta") < kinds.index("thread.run.step.delta")  # the text came first
    fragments: dict[int, str] = {}
    for event in events:
        for call in event.data.delta.step_details.tool_calls if event.event == "thread.run.step.delta" else []:
            fragments[call.index] = fragments.get(call.index, "") + (call.function.arguments or "")
    assert fragments == {0: '{"city": "Oslo"}', 1: "{}"}
    run = events[-1].data
    assert events[-1].event == "thread.run.requires_action"
    assert [c.id for c in run.required_action.submit_tool_outputs.tool_calls] == ["call_Os1", "call_Tm1"]
    outputs = [{"tool_call_id": "call_Os1", "output": "-3 C"}, {"tool_call_id": "call_Tm1", "output": "12:00"}]
    with sdk.beta.threads.runs.submit_tool_outputs_stream(run_id=run.id, thread_id=run.thread_id,
                                                          tool_outputs=outputs) as stream:
        after = list(stream)
    assert [e.data.delta.content[0].text.value for e in after if e.event == "thread.message.delta"] == [
        "Cold", " in Oslo", " at noon."]
    assert after[-1].event == "thread.run.completed"
    assert [(i["type"], i.get("call_id") or i.get("content")) for i in upstream.bodies()[1]["input"][1:]] == [
        ("message", "Checking."), ("function_call", "call_Os1"), ("function_call", "call_Tm1"),
        ("function_call_output", "call_Os1"), ("function_call_output", "call_Tm1")]


def test_file_search_runs_in_the_server_as_a_function_round(upstream, sdk):
    guide = sdk.files.create(file=("guide.md", GUIDE), purpose="assistants")
    store = sdk.vector_stores.create(file_ids=[guide.id])
    deadline = time.monotonic() + 30
    while sdk.vector_stores.retrieve(store.id).file_counts.completed < 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    upstream.queue(Reply(calls=[Call("file_search", {"queries": ["refund card days"]}, id="call_Fs1")]),
                   Reply("Within 5 business days."))
    bot = assistant(sdk, tools=[{"type": "file_search"}], tool_resources={"file_search": {"vector_store_ids": [store.id]}})
    thread, run = poll(sdk, bot, "How long do refunds take?")
    assert run.status == "completed" and reply_text(sdk, thread.id).startswith("Within 5 business days")
    first, second = upstream.bodies()
    assert [(t["type"], t["name"]) for t in first["tools"]] == [("function", "file_search")]
    call, output = second["input"][-2:]
    assert call == {"type": "function_call", "call_id": "call_Fs1", "name": "file_search",
                    "arguments": '{"queries": ["refund card days"]}'}
    assert output["type"] == "function_call_output" and output["call_id"] == "call_Fs1"
    assert "Refunds reach the card within 5 business days" in output["output"]
    (step_call,) = sdk.beta.threads.runs.steps.list(run.id, thread_id=thread.id, order="asc").data[0] \
        .step_details.tool_calls
    assert step_call.type == "file_search" and step_call.id == "call_Fs1"


def test_code_interpreter_runs_in_the_servers_sandbox_as_a_function_round(upstream, sdk):
    upstream.queue(Reply(calls=[Call("python", {"code": "print(6 * 7)"}, id="call_Ci1")]), Reply("It is 42."))
    bot = assistant(sdk, tools=[{"type": "code_interpreter"}])
    thread, run = poll(sdk, bot, "What is 6 times 7?")
    assert run.status == "completed" and reply_text(sdk, thread.id) == "It is 42."
    (call,) = sdk.beta.threads.runs.steps.list(run.id, thread_id=thread.id, order="asc").data[0].step_details.tool_calls
    assert call.type == "code_interpreter" and call.id == "call_Ci1" and call.code_interpreter.input == "print(6 * 7)"
    assert [(o.type, o.logs) for o in call.code_interpreter.outputs] == [("logs", "42\n")]
    first, second = upstream.bodies()
    assert [t["name"] for t in first["tools"]] == ["python"]
    output = second["input"][-1]
    assert output["type"] == "function_call_output" and output["call_id"] == "call_Ci1" and "42" in output["output"]


def test_reasoning_items_are_carried_across_the_tool_rounds_of_a_run(upstream, sdk):
    upstream.queue(Reply(reasoning=["enc-first"], calls=[Call("get_weather", {"city": "Rome"}, id="call_R1")]),
                   Reply(reasoning=["enc-second"], calls=[Call("get_time", {}, id="call_R2")]),
                   Reply("Warm, and it is noon."))
    bot = assistant(sdk, model="o4-mini", tools=[WEATHER, TIME], temperature=0.3)
    thread, run = poll(sdk, bot, "Rome?", reasoning_effort="low")
    run = submit(sdk, submit(sdk, run, "call_R1", "25 C"), "call_R2", "12:00")
    assert run.status == "completed" and reply_text(sdk, thread.id) == "Warm, and it is noon."
    first, second, third = upstream.bodies()
    assert first["model"] == "o4-mini" and first["reasoning"] == {"effort": "low"}
    assert first["include"] == ["reasoning.encrypted_content"] and "temperature" not in first
    assert first["instructions"] == "You are a weather bot."  # the developer message
    reasoning = [item for item in third["input"] if item.get("type") == "reasoning"]
    assert [r["encrypted_content"] for r in reasoning] == ["enc-first", "enc-second"]
    kinds = [(item.get("type"), item.get("call_id") or item.get("encrypted_content")) for item in third["input"][1:]]
    assert kinds == [("reasoning", "enc-first"), ("function_call", "call_R1"), ("function_call_output", "call_R1"),
                     ("reasoning", "enc-second"), ("function_call", "call_R2"), ("function_call_output", "call_R2")]
    assert second["input"][1:3] == third["input"][1:3]
    assert third["input"][2]["id"].startswith("fc_")  # the call item its reasoning belongs to, by its id


def test_max_output_tokens_ends_the_run_incomplete_with_the_partial_message(upstream, sdk):
    upstream.queue(Reply("Once upon a time there", incomplete="max_output_tokens", usage=(12, 256)))
    bot = assistant(sdk)
    thread, run = poll(sdk, bot, "Tell me a story", max_completion_tokens=256)
    assert run.status == "incomplete" and run.incomplete_details.reason == "max_completion_tokens"
    reply = sdk.beta.threads.messages.list(thread.id, order="desc").data[0]
    assert reply.status == "incomplete" and reply.content[0].text.value == "Once upon a time there"
    assert upstream.bodies()[0]["max_output_tokens"] == 256 and run.usage.completion_tokens == 256


def test_a_content_filter_cut_ends_the_turn_as_content_filter_and_the_run_completes_with_what_came(upstream, sdk):
    """``response.incomplete`` with reason ``content_filter``: the turn ends as Chat Completions'
    ``finish_reason: content_filter``; the run completes with the reply as far as it came (only
    ``max_output_tokens`` makes a run incomplete)."""
    cut = Reply("The first step is", incomplete="content_filter", usage=(12, 4))
    body = {"model": "m", "input": [], "stream": True, "store": False}
    parser = ResponseParser()
    for _, event in upstream._events(cut, body):
        parser.feed(f"data: {json.dumps(event)}")
    assert parser.complete and parser.end().finish_reason == "content_filter"
    upstream.queue(cut)
    thread, run = poll(sdk, assistant(sdk), "How is it done?")
    assert run.status == "completed" and run.incomplete_details is None, run.last_error
    reply = sdk.beta.threads.messages.list(thread.id, order="desc").data[0]
    assert reply.status == "completed" and reply.content[0].text.value == "The first step is"
    assert run.usage.completion_tokens == 4


def test_a_budget_under_the_apis_minimum_asks_16_and_counts_no_more_than_the_budget(upstream, sdk):
    upstream.queue(Reply(calls=[Call("get_time", {}, id="call_B1")], usage=(40, 250)),
                   Reply("It is noon and the sun", incomplete="max_output_tokens", usage=(60, 16)))
    bot = assistant(sdk, tools=[TIME])
    thread, run = poll(sdk, bot, "Time?", max_completion_tokens=256)
    run = submit(sdk, run, "call_B1", "12:00")
    assert run.status == "incomplete" and run.incomplete_details.reason == "max_completion_tokens"
    assert [b["max_output_tokens"] for b in upstream.bodies()] == [256, 16]  # 6 left; the API's minimum is 16
    assert run.usage.completion_tokens == 256


def test_lone_surrogates_in_the_stream_are_replaced_and_the_run_completes(upstream, sdk):
    upstream.queue(Reply("Caf\ud800 ok", deltas=["Caf\ud800", " ok"]))
    thread, run = poll(sdk, assistant(sdk), "hi")
    assert run.status == "completed" and reply_text(sdk, thread.id) == "Caf\ufffd ok"


def test_text_and_arguments_sent_only_in_done_events_are_relayed(upstream):
    """Some servers send no deltas: the ``.done`` events (validated like the rest) carry it all."""
    body = {"model": "m", "input": [], "stream": True, "store": False}
    events = [e for _, e in upstream._events(Reply("Hello.", calls=[Call("get_time", {"tz": "UTC"})]), body)
              if not e["type"].endswith(".delta")]
    parser = ResponseParser()
    out = [event for e in events for event in parser.feed(f"data: {json.dumps(e)}")]
    assert text_of(out) == "Hello." and "".join(e.arguments for e in out if hasattr(e, "arguments")) == '{"tz": "UTC"}'
    assert parser.complete and parser.end().finish_reason == "tool_calls"
    assert not upstream.problems


def test_reasoning_over_the_carry_limit_is_not_kept(upstream):
    body = {"model": "o3", "input": [], "stream": True, "store": False}
    big = "x" * (CARRY_ROUND_BYTES // 2 + 1)
    kept: list = []
    parser = ResponseParser(keep=kept.append)
    for _, event in upstream._events(Reply(reasoning=["small", big, big], calls=[Call("get_time")]), body):
        parser.feed(f"data: {json.dumps(event)}")
    parser.end()
    (round,) = kept
    assert round.reasoning == [] and round.oversized and len(round.item_ids) == 1
    carried = Carried()
    carried.keep("run_1", round)
    assert carried.lookup("run_1")(next(iter(round.item_ids))) is None


def test_azure_openai_responses_path_api_version_and_deployment(upstream, monkeypatch):
    monkeypatch.setenv(KEY_ENV, upstream.key)
    upstream.requests.clear()
    upstream.queue(Reply("From Azure."))
    engine = ResponsesEngine(UpstreamConfig(url=upstream.root_url, api_key_env=KEY_ENV, api="responses",
                                            azure_api_version="2025-03-01-preview",
                                            azure_deployments={"gpt-4o": "prod-4o"}), retry=FAST)
    assert text_of(collect(engine, chat_request())) == "From Azure."
    (request,) = upstream.requests
    assert (request.path, request.query) == ("/openai/responses", {"api-version": "2025-03-01-preview"})
    assert request.headers["api-key"] == upstream.key and "authorization" not in request.headers
    assert request.body["model"] == "prod-4o" and not upstream.problems


def test_images_and_a_json_schema_response_format_reach_the_upstream_in_responses_form(upstream, sdk):
    upstream.queue(Reply('{"city": "Paris"}'))
    schema = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"],
              "additionalProperties": False}
    bot = assistant(sdk, response_format={"type": "json_schema",
                                          "json_schema": {"name": "place", "schema": schema, "strict": True}})
    thread = sdk.beta.threads.create(messages=[{"role": "user", "content": [
        {"type": "text", "text": "Where is this?"},
        {"type": "image_url", "image_url": {"url": "https://example.com/eiffel.png", "detail": "low"}}]}])
    run = sdk.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=bot.id, poll_interval_ms=10)
    assert run.status == "completed"
    (body,) = upstream.bodies()
    assert body["input"] == [{"type": "message", "role": "user", "content": [
        {"type": "input_text", "text": "Where is this?"},
        {"type": "input_image", "image_url": "https://example.com/eiffel.png", "detail": "low"}]}]
    assert body["text"] == {"format": {"type": "json_schema", "name": "place", "schema": schema, "strict": True}}


def test_cancelling_a_run_closes_the_upstream_response(upstream, sdk):
    upstream.disconnected.clear()
    upstream.queue(Reply("a b c", deltas=["a", " b", " c"], delay=30))
    run = cancel_at_first_delta(sdk, assistant(sdk).id, upstream)
    assert run.status == "cancelled"


def test_carried_reasoning_is_bounded_in_rounds_bytes_and_age():
    def round(n: int, size: int = 1) -> Round:
        return Round([{"type": "reasoning", "id": f"rs_{n}", "summary": [], "encrypted_content": "x" * size}],
                     {f"call_{n}": f"fc_{n}", f"call_{n}b": f"fc_{n}b"})

    carried = Carried(rounds=2, seconds=60, total=100)
    for n in range(3):
        carried.keep("run_1", round(n))
    find = carried.lookup("run_1")
    assert find("call_0") is None and find("call_2").item_ids["call_2b"] == "fc_2b"  # the oldest went first
    assert carried.lookup("run_2")("call_2") is None  # another run's rounds are not its own
    carried.keep("run_1", round(3, 100))
    assert find("call_3") is not None and find("call_2") is None  # 100 bytes at most: 1 + 100 is over
    carried.keep("run_1", round(4, CARRY_ROUND_BYTES + 1))
    assert find("call_4") is None
    carried.seconds = 0.0
    time.sleep(0.01)
    assert find("call_3") is None  # too old


@pytest.mark.parametrize("answers, code, message", [
    ([Failure.rate_limit(retry_after="0")] * 4, "rate_limit_exceeded", "is rate limiting requests (429 after 4 attempts)"),
    ([Reply("Half", failed=("server_error", "The model produced invalid content."))], "server_error",
     "failed mid-answer: The model produced invalid content. (server_error)"),
    ([Reply(error=("invalid_prompt", "The prompt was flagged."))], "server_error",
     "failed mid-answer: The prompt was flagged. (invalid_prompt)"),
    ([Reply("Half an ans", cut=True)], "server_error", "ended the stream before the answer was finished"),
    ([Reply(failed=("server_error", f"bad header Authorization: Bearer {DEFAULT_KEY}"))], "server_error",
     "failed mid-answer: bad header Authorization: Bearer "),
    ([Failure.model_not_found("scripted-4")], "server_error",
     "has no model `scripted-4` (the run's model `gpt-4o`, mapped): map `gpt-4o` to a model it serves"),
    ([Failure(404, "Not found.", "invalid_request_error")], "server_error",
     "has no Responses API at /v1/responses (404): check the --upstream URL"),
], ids=["429", "response.failed", "error-event", "cut", "echoed-key", "model_not_found", "404"])
def test_upstream_errors_fail_the_run_as_on_chat_completions(upstream, sdk, answers, code, message):
    upstream.queue(*answers)
    bot = assistant(sdk)
    events = list(sdk.beta.threads.create_and_run(
        assistant_id=bot.id, thread={"messages": [{"role": "user", "content": "hi"}]}, stream=True))
    failed = events[-1].data
    assert events[-1].event == "thread.run.failed" and failed.last_error.code == code
    assert failed.last_error.message.startswith(f"the upstream 127.0.0.1:{upstream.port} ")
    assert message in failed.last_error.message
    assert len(upstream.requests) == len(answers)
    assert all(upstream.key not in e.data.model_dump_json() for e in events)


def test_the_engine_api_setting_and_flag(tmp_path):
    (tmp_path / "asstctl.yaml").write_text("project: demo\nengine: {upstream: http://127.0.0.1:9/v1, api: responses}\n")
    assert parse_project(tmp_path).engine.api == "responses"
    assert from_flags("http://127.0.0.1:9/v1", None, [], api="responses").api == "responses"
    assert from_flags("http://127.0.0.1:9/v1", None, []).api == "chat"
    (tmp_path / "asstctl.yaml").write_text("project: demo\nengine: {upstream: http://127.0.0.1:9/v1, api: soap}\n")
    with pytest.raises(ConfigError) as caught:
        parse_project(tmp_path)
    assert "engine.api" in str(caught.value) and "responses" in str(caught.value)


def test_asstctl_serve_upstream_api_responses(upstream, tmp_path, contract, monkeypatch):
    from tests.serve_process import ServeProcess

    monkeypatch.setenv(KEY_ENV, upstream.key)
    upstream.requests.clear()
    upstream.queue(Reply("Served by the Responses API."))
    args = ("--db", ":memory:", "--upstream", upstream.base_url, "--upstream-key-env", KEY_ENV,
            "--upstream-api", "responses")
    with ServeProcess(tmp_path, *args) as server:
        assert server.stdout().splitlines()[1] == \
            f"Engine: upstream 127.0.0.1:{upstream.port} (key from ${KEY_ENV}, Responses API)"
        with make_client(server, contract) as client:
            thread, run = poll(client, assistant(client), "hi")
            assert run.status == "completed" and reply_text(client, thread.id) == "Served by the Responses API."
        assert server.stop() == 0
    assert upstream.requests[0].path == "/v1/responses" and not upstream.problems
