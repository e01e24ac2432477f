"""Built-in tool calls run by the executor itself, with the real tools: the model (the scripted
Chat Completions upstream, reached by the real upstream engine) calls the function offered for an
attached tool, the server runs it (file_search on a real vector store, code_interpreter in the
thread's bubblewrap sandbox), records the step, streams its progress, sends the output back to the
model as a ``tool`` message and continues; citations, images and written files land on the final
message. A ``ToolError`` (no sandbox on this server) fails the run with its code. While another
transaction holds the store's write lock, the tools' store work waits off the event loop."""

from __future__ import annotations

import json
import re
import threading
import time

import httpx2 as httpx
import openai
import pytest

from asstctl.server.runs.builtin import lenient_object
from asstctl.server.sandbox import SandboxConfig
from tests.sandbox.conftest import TEST_LIMITS
from tests.server.test_run_loop import raw_events
from tests.upstream import Call, Text, ToolCalls

INCLUDE = "step_details.tool_calls[*].file_search.results[*].content"
GUIDE = b"# Refunds\n\nRefunds reach the card within 5 business days of the return."
CODE = """import matplotlib.pyplot as plt
plt.plot([1, 2, 3], [1, 4, 9])
plt.show()
open('/mnt/data/data.csv', 'w').write('x,y\\n1,1\\n')
open('/mnt/data/other.txt', 'w').write("not mentioned")
print("ok \\u00e9")
"""


def marker_in(body: dict) -> str:
    """The citation marker of the first result in the last ``tool`` message (a marker alone on its line)."""
    tool = [m for m in body["messages"] if m["role"] == "tool"][-1]
    return re.search(r"^【\d+:\d+†guide\.md】$", tool["content"], re.MULTILINE).group(0)


def knowledge(sdk):
    guide = sdk.files.create(file=("guide.md", GUIDE), purpose="assistants")
    store = sdk.vector_stores.create(file_ids=[guide.id])
    deadline = time.monotonic() + 30
    while sdk.vector_stores.retrieve(store.id).file_counts.completed < 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    bot = sdk.beta.assistants.create(model="gpt-4o", tools=[{"type": "file_search"}],
                                     tool_resources={"file_search": {"vector_store_ids": [store.id]}})
    return guide, bot


def test_file_search_runs_in_the_server_cites_its_source_and_goes_back_as_a_tool_message(scripted, upstream):
    sdk, _ = scripted.start()
    guide, bot = knowledge(sdk)
    upstream.queue(ToolCalls([Call("file_search", {"queries": ["refund card days"]}, id="call_up7")]))
    upstream.default = lambda body: Text(f"Within 5 business days {marker_in(body)}.")
    thread = sdk.beta.threads.create(messages=[{"role": "user", "content": "How long do refunds take?"}])
    run = sdk.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=bot.id,
                                                tool_choice={"type": "file_search"}, include=[INCLUDE])
    assert run.status == "completed" and run.required_action is None
    first, second = (r.body for r in upstream.requests)
    assert first["tool_choice"] == {"type": "function", "function": {"name": "file_search"}}
    assert [t["function"]["name"] for t in first["tools"]] == ["file_search"]
    assert second["tool_choice"] == "auto"  # a forced tool is forced once, not in a loop
    assistant_turn, tool_message = second["messages"][-2:]
    assert assistant_turn == {"role": "assistant", "content": None, "tool_calls": [{
        "id": "call_up7", "type": "function",
        "function": {"name": "file_search", "arguments": '{"queries": ["refund card days"]}'}}]}
    assert tool_message["role"] == "tool" and tool_message["tool_call_id"] == "call_up7"
    assert "Refunds reach the card within 5 business days" in tool_message["content"]

    steps = sdk.beta.threads.runs.steps.list(thread_id=thread.id, run_id=run.id, order="asc", include=[INCLUDE]).data
    assert [s.type for s in steps] == ["tool_calls", "message_creation"] and steps[0].status == "completed"
    (call,) = steps[0].step_details.tool_calls
    assert call.type == "file_search" and call.id == "call_up7"
    assert call.file_search.ranking_options.model_dump() == {"ranker": "default_2024_08_21", "score_threshold": 0.0}
    result = call.file_search.results[0]
    assert (result.file_id, result.file_name) == (guide.id, "guide.md")
    assert result.content[0].text == GUIDE.decode()  # include[] asked for the content
    text = sdk.beta.threads.messages.list(thread_id=thread.id, run_id=run.id).data[0].content[0].text
    marker = marker_in(second)
    assert text.value == f"Within 5 business days {marker}."
    (citation,) = text.annotations
    assert citation.type == "file_citation" and citation.text == marker
    assert text.value[citation.start_index:citation.end_index] == marker
    assert citation.file_citation.file_id == guide.id


def test_without_include_the_results_carry_no_content(scripted, upstream):
    sdk, _ = scripted.start()
    _, bot = knowledge(sdk)
    upstream.queue(ToolCalls([Call("file_search", {"queries": ["refunds"]})]), Text("Five days."))
    thread = sdk.beta.threads.create(messages=[{"role": "user", "content": "refunds?"}])
    run = sdk.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=bot.id)
    step = sdk.beta.threads.runs.steps.list(thread_id=thread.id, run_id=run.id, order="asc").data[0]
    assert run.status == "completed" and step.step_details.tool_calls[0].file_search.results[0].content is None


def test_code_interpreter_streams_its_input_then_outputs_images_and_written_files(scripted, upstream):
    sdk, _ = scripted.start(sandbox=SandboxConfig(**TEST_LIMITS))
    upstream.queue(
        ToolCalls([Call("python", {"code": CODE}, id="call_ci1")], fragments=6),
        Text("Here is the chart, data in sandbox:/mnt/data/data.csv and sandbox:/mnt/data/data.csv."),
    )
    bot = sdk.beta.assistants.create(model="gpt-4o", tools=[{"type": "code_interpreter"}])
    thread = sdk.beta.threads.create(messages=[{"role": "user", "content": "plot it"}])
    with sdk.beta.threads.runs.with_streaming_response.create(
        thread_id=thread.id, assistant_id=bot.id, stream=True
    ) as response:
        events = raw_events(response)
    parts = [d["delta"]["step_details"]["tool_calls"][0] for n, d in events if n == "thread.run.step.delta"]
    assert parts[0]["type"] == "code_interpreter" and parts[0]["id"] == "call_ci1" and parts[0]["index"] == 0
    bodies = [p["code_interpreter"] for p in parts[1:]]
    inputs = [b["input"] for b in bodies if "input" in b]
    assert len(inputs) >= 4 and "".join(inputs) == CODE  # as the model wrote it, piece by piece
    assert list(bodies[-1]) == ["outputs"] and all("outputs" not in b for b in bodies[:-1])
    logs, image = bodies[-1]["outputs"]
    assert (logs["type"], logs["logs"]) == ("logs", "ok \u00e9\n") and image["type"] == "image"

    run = sdk.beta.threads.runs.list(thread_id=thread.id).data[0]
    assert run.status == "completed"
    step = sdk.beta.threads.runs.steps.list(thread_id=thread.id, run_id=run.id, order="asc").data[0]
    assert step.step_details.tool_calls[0].code_interpreter.input == CODE
    tool_message = upstream.requests[1].body["messages"][-1]
    assert tool_message["tool_call_id"] == "call_ci1" and tool_message["content"].startswith("ok \u00e9\n")
    message = sdk.beta.threads.messages.list(thread_id=thread.id, run_id=run.id).data[0]
    assert [c.type for c in message.content] == ["text", "image_file"]
    assert message.content[1].image_file.file_id == image["image"]["file_id"]
    assert sdk.files.content(image["image"]["file_id"]).read().startswith(b"\x89PNG")
    text = message.content[0].text
    assert [(a.type, a.text) for a in text.annotations] == [("file_path", "sandbox:/mnt/data/data.csv")] * 2
    assert all(text.value[a.start_index:a.end_index] == a.text for a in text.annotations)
    (csv_id,) = {a.file_path.file_id for a in text.annotations}
    assert sdk.files.content(csv_id).read() == b"x,y\n1,1\n"
    (attachment,) = message.attachments  # other.txt: written, not mentioned
    assert sdk.files.content(attachment.file_id).read() == b"not mentioned"


def test_a_cancel_during_a_code_interpreter_call_reaches_cancelled_within_a_second(scripted, upstream):
    """Cancels sent around the moment the cell answers (a cancel that arrives with the answer must not be
    lost: the server waits with asyncio.wait, never wait_for); the thread's next run works."""
    sdk, _ = scripted.start(sandbox=SandboxConfig(**TEST_LIMITS))
    bot = sdk.beta.assistants.create(model="gpt-4o", tools=[{"type": "code_interpreter"}])
    thread = sdk.beta.threads.create()
    upstream.default = lambda body: Text("Done.")
    cancelled = 0
    for trial, delay in enumerate((0.0, 0.15, 0.25, 0.3, 0.35)):
        upstream.queue(ToolCalls([Call("python", {"code": "import time\ntime.sleep(0.3)\nprint('done')"},
                                       id=f"call_c{trial}")]))
        sdk.beta.threads.messages.create(thread_id=thread.id, role="user", content="sleep a little")
        run = sdk.beta.threads.runs.create(thread_id=thread.id, assistant_id=bot.id)
        deadline = time.monotonic() + 20
        while not sdk.beta.threads.runs.steps.list(thread_id=thread.id, run_id=run.id).data:
            assert time.monotonic() < deadline, "the code_interpreter step never began"
            time.sleep(0.02)
        time.sleep(delay)
        try:
            sdk.beta.threads.runs.cancel(run.id, thread_id=thread.id)
        except openai.BadRequestError as error:  # a loaded machine: the cell and the answer were quicker
            assert "Cannot cancel run with status 'completed'" in str(error), error
            continue
        began = time.monotonic()
        while (status := sdk.beta.threads.runs.retrieve(run.id, thread_id=thread.id).status) not in (
                "cancelled", "completed"):
            assert time.monotonic() - began < 1.0, f"trial {trial}: the run stayed {status}"
            time.sleep(0.01)
        cancelled += status == "cancelled"
    assert cancelled, "no cancel met a running cell (the first comes 0.3 s before the cell ends)"
    sdk.beta.threads.messages.create(thread_id=thread.id, role="user", content="hello")
    last = sdk.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=bot.id)
    assert last.status == "completed"


def test_a_tool_error_fails_the_run_with_its_code_and_message(scripted, upstream, tmp_path):
    sdk, _ = scripted.start(sandbox=SandboxConfig(bwrap=str(tmp_path / "no-bwrap")))  # no sandbox here
    upstream.queue(ToolCalls([Call("python", {"code": "print(1)"})]))
    bot = sdk.beta.assistants.create(model="gpt-4o", tools=[{"type": "code_interpreter"}])
    thread = sdk.beta.threads.create(messages=[{"role": "user", "content": "run it"}])
    run = sdk.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=bot.id)
    assert run.status == "failed" and run.last_error.code == "server_error"
    assert "apt-get install bubblewrap" in run.last_error.message
    step = sdk.beta.threads.runs.steps.list(thread_id=thread.id, run_id=run.id).data[0]
    assert step.status == "failed" and len(upstream.requests) == 1


def test_arguments_that_are_not_an_object_are_an_answer_for_the_model(scripted, upstream):
    sdk, _ = scripted.start(sandbox=SandboxConfig(**TEST_LIMITS))
    upstream.queue(ToolCalls([Call("python", '["print(1)"]', id="call_bad")]), Text("Sorry."))
    bot = sdk.beta.assistants.create(model="gpt-4o", tools=[{"type": "code_interpreter"}])
    thread = sdk.beta.threads.create(messages=[{"role": "user", "content": "run it"}])
    run = sdk.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=bot.id)
    assert run.status == "completed"
    tool_message = upstream.requests[1].body["messages"][-1]
    assert tool_message["tool_call_id"] == "call_bad"
    assert tool_message["content"].startswith("Error: the arguments are not a JSON object")
    assert json.loads(upstream.requests[1].body["messages"][-2]["tool_calls"][0]["function"]["arguments"]) == ["print(1)"]


def test_arguments_as_small_models_write_them_are_parsed_and_the_step_shows_the_code(scripted, upstream):
    """Raw newlines inside the JSON string, text after the object: what grammar-constrained small models emit."""
    sdk, _ = scripted.start(sandbox=SandboxConfig(**TEST_LIMITS))
    written = '{"code": "x = 6 * 7\nprint(x)"}\nThat is the code.'
    upstream.queue(ToolCalls([Call("python", written, id="call_raw")]), Text("42."))
    bot = sdk.beta.assistants.create(model="gpt-4o", tools=[{"type": "code_interpreter"}])
    thread = sdk.beta.threads.create(messages=[{"role": "user", "content": "run it"}])
    run = sdk.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=bot.id)
    assert run.status == "completed", run.last_error
    step = sdk.beta.threads.runs.steps.list(run.id, thread_id=thread.id, order="asc").data[0]
    call = step.step_details.tool_calls[0]
    assert call.code_interpreter.input == "x = 6 * 7\nprint(x)"
    assert upstream.requests[1].body["messages"][-1]["content"].strip().startswith("42")


@pytest.mark.parametrize("text, value", [
    ('{"code": "a\n\tb"}', {"code": "a\n\tb"}),
    ('```json\n{"queries": ["x"]}\n```', {"queries": ["x"]}),
    ('Sure: {"queries": ["x"]} done', {"queries": ["x"]}),
    ("", {}),
])
def test_lenient_object(text, value):
    assert lenient_object(text) == value


@pytest.mark.parametrize("text", ['["a"]', "no json", '{"code": "unterminated'])
def test_lenient_object_still_refuses_what_is_no_object(text):
    with pytest.raises(ValueError):
        lenient_object(text)


def test_tool_calls_waiting_for_the_write_lock_do_not_stall_the_event_loop(scripted, upstream):
    """From the end of the model's tool calls, a write transaction holds the store's write lock twice for
    0.7 s (as a long ingestion would; 20 ms between): the round's code_interpreter call (an input file to
    copy, an output file to store) and file_search call wait for it on the store's threads while
    ``GET /v1/models`` keeps answering, and the run completes as it would have."""
    sdk, server = scripted.start(sandbox=SandboxConfig(**TEST_LIMITS))
    guide, bot = knowledge(sdk)
    data = sdk.files.create(file=("data.csv", b"x,y\n1,2\n"), purpose="assistants")
    bot = sdk.beta.assistants.update(bot.id, tools=[{"type": "file_search"}, {"type": "code_interpreter"}],
                                     tool_resources={"code_interpreter": {"file_ids": [data.id]}})
    gate = threading.Event()
    code = "print(open('/mnt/data/data.csv').read())\nopen('/mnt/data/out.txt', 'w').write('hi')"
    upstream.queue(ToolCalls([Call("python", {"code": code}, id="call_py"),
                              Call("file_search", {"queries": ["refund card days"]}, id="call_fs")], gate=gate),
                   Text("Done."))
    thread = sdk.beta.threads.create(messages=[{"role": "user", "content": "Read it and look up refunds."}])
    run = sdk.beta.threads.runs.create(thread_id=thread.id, assistant_id=bot.id)
    deadline = time.monotonic() + 20
    while not upstream.gated:  # the model is writing its calls
        assert time.monotonic() < deadline, "the model's tool calls never began"
        time.sleep(0.01)
    holding = threading.Event()

    def hold() -> None:
        for n in range(2):
            with server.store.transaction():
                server.store.save("lock_holder", {"id": "holder", "created_at": 1, "n": n})
                assert server.store.get("lock_holder", "holder")  # a read sends the write (PostgreSQL)
                holding.set()
                time.sleep(0.7)
            time.sleep(0.02)

    holder = threading.Thread(target=hold)
    holder.start()
    assert holding.wait(10)
    gate.set()
    lags = []
    with httpx.Client(base_url=server.base_url, timeout=10) as plain:
        while holder.is_alive():
            started = time.perf_counter()
            plain.get("/v1/models", headers={"Authorization": f"Bearer {server.api_key}"})
            lags.append(time.perf_counter() - started)
            time.sleep(0.05)
    holder.join()
    while (run := sdk.beta.threads.runs.retrieve(run.id, thread_id=thread.id)).status in ("queued", "in_progress"):
        assert time.monotonic() < deadline + 10, "the run never ended"
        time.sleep(0.02)
    assert run.status == "completed", run.last_error
    assert max(lags) < 0.3, lags  # stalled, a probe would wait for the end of a hold (0.7 s)
    outputs = {m["tool_call_id"]: m["content"] for m in upstream.requests[1].body["messages"] if m["role"] == "tool"}
    assert outputs["call_py"].startswith("x,y\n1,2\n") and "sandbox:/mnt/data/out.txt" in outputs["call_py"]
    assert "Refunds reach the card within 5 business days" in outputs["call_fs"]
    step = sdk.beta.threads.runs.steps.list(thread_id=thread.id, run_id=run.id, order="asc").data[0]
    assert [c.type for c in step.step_details.tool_calls] == ["code_interpreter", "file_search"]
    assert step.step_details.tool_calls[1].file_search.results[0].file_id == guide.id


@pytest.mark.parametrize("store_db", ["sqlite"], indirect=True)  # the blob reads counted from SQLite's trace
def test_attachments_are_copied_into_the_session_once_per_file_version(scripted, upstream):
    """The assistant's code_interpreter files: read from the store for the session's first call only (the
    second call of the run reads no blob), again once the file's stored bytes change (a new version);
    a file over the sandbox's file limit is never read and the model's tool output says why."""
    sdk, server = scripted.start(sandbox=SandboxConfig(**dict(TEST_LIMITS, file_mb=1)))
    small = sdk.files.create(file=("a.csv", b"x,y\n1,2\n"), purpose="assistants")
    big = sdk.files.create(file=("big.bin", b"\0" * (1 << 20) + b"\0" * 100_000), purpose="assistants")
    bot = sdk.beta.assistants.create(model="gpt-4o", tools=[{"type": "code_interpreter"}],
                                     tool_resources={"code_interpreter": {"file_ids": [small.id, big.id]}})
    thread = sdk.beta.threads.create(messages=[{"role": "user", "content": "Read a.csv."}])
    read = "import os\nprint(open('/mnt/data/a.csv').read(), os.path.exists('/mnt/data/big.bin'))"
    sent: list[str] = []

    def run(*answers) -> list[str]:
        """The model's tool outputs of one run; ``sent``: the blob chunk reads it made."""
        sent.clear()
        asked = len(upstream.requests)
        upstream.queue(*answers)
        with server.store.sql() as db:
            db.set_trace_callback(sent.append)
        try:
            done = sdk.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=bot.id, poll_interval_ms=20)
        finally:
            with server.store.sql() as db:
                db.set_trace_callback(None)
        assert done.status == "completed", done.last_error
        return [r.body["messages"][-1]["content"] for r in upstream.requests[asked + 1:]]

    def blob_reads(file_id: str) -> int:
        (key,) = server.store._fetch("SELECT key FROM blob_index WHERE id = ?", (file_id,))[0]
        return sum(s.startswith("SELECT data FROM blob_chunks") and f"'{key}'" in s for s in sent)

    first, second = run(ToolCalls([Call("python", {"code": read})]), ToolCalls([Call("python", {"code": read})]),
                        Text("Read twice."))
    assert first.startswith("x,y\n1,2\n False") and second.startswith("x,y\n1,2\n False")
    assert "[not copied into /mnt/data: big.bin (1.1 MB, over the sandbox's file limit of 1 MB)]" in first
    assert (blob_reads(small.id), blob_reads(big.id)) == (1, 0)
    with server.store.transaction():  # a new version of the file: its stored bytes (and size) change
        server.store.write_blob(small.id, [b"x,y\n3,4,5\n"])
        server.store.update("file", small.id, lambda file: file.update(bytes=10))
    (third,) = run(ToolCalls([Call("python", {"code": read})]), Text("Read again."))
    assert third.startswith("x,y\n3,4,5\n False") and (blob_reads(small.id), blob_reads(big.id)) == (1, 0)
