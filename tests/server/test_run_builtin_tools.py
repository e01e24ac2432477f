"""Built-in tool calls run by the executor itself, through the ``BuiltinTool`` contract: the
offline engine (steered by a rules file) calls the function offered for an attached tool, the
server runs it, records the step, streams its progress, feeds the output back and continues;
citations, images and written files land on the final message.

The tools here are minimal implementations of the public contract (like a test engine), so the
dispatch is proven without the real file_search / code_interpreter modules."""

from __future__ import annotations

import json

import pytest

from asstctl.server.embedded import start_server
from asstctl.server.tools.base import Source, ToolError, ToolOutcome
from tests.conftest import make_client
from tests.server.test_streaming import check_payloads

RULES = """
rules:
  - match: "search (?P<q>\\\\w+)"
    tool_calls:
      - name: file_search
        arguments: {query: "{q}"}
    then: "Per the guide {output} 【4:0†guide.md】."
  - match: "plot"
    tool_calls:
      - name: code_interpreter
        arguments: {code: "plot()"}
    then: "Here is the chart, data in sandbox:/mnt/data/data.csv and sandbox:/mnt/data/data.csv."
  - match: "broken"
    tool_calls:
      - name: code_interpreter
        arguments: {code: "boom"}
"""


class SearchTool:
    type = "file_search"

    def __init__(self, file_id: str):
        self.file_id = file_id
        self.seen = []

    def definition(self, tool):
        return {"type": "function", "function": {"name": "file_search", "description": "Search the files.",
                                                 "parameters": {"type": "object", "properties": {"query": {"type": "string"}}}}}

    async def run(self, ctx, arguments):
        self.seen.append((ctx.call_id, arguments, ctx.tool, ctx.include))
        call = {"id": ctx.call_id, "type": "file_search",
                "file_search": {"ranking_options": {"ranker": "default_2024_08_21", "score_threshold": 0.0}, "results": []}}
        return ToolOutcome(call=call, output="says yes",
                           sources=[Source("【4:0†guide.md】", self.file_id, "guide.md", "yes")])


class CodeTool:
    type = "code_interpreter"

    def __init__(self, image_id: str, csv_id: str):
        self.image_id, self.csv_id = image_id, csv_id

    def definition(self, tool):
        return {"type": "function", "function": {"name": "code_interpreter", "parameters": {
            "type": "object", "properties": {"code": {"type": "string"}}}}}

    async def run(self, ctx, arguments):
        if arguments["code"] == "boom":
            raise ToolError("No sandbox is available on this server.", "server_error")
        ctx.progress({"code_interpreter": {"input": arguments["code"]}})
        ctx.progress({"code_interpreter": {"outputs": [{"index": 0, "type": "logs", "logs": "ok"}]}})
        call = {"id": ctx.call_id, "type": "code_interpreter", "code_interpreter": {
            "input": arguments["code"], "outputs": [{"type": "image", "image": {"file_id": self.image_id}}]}}
        return ToolOutcome(call=call, output="plotted", image_file_ids=[self.image_id],
                           written_files=[("/mnt/data/data.csv", self.csv_id), ("/mnt/data/other.txt", self.csv_id)])


@pytest.fixture
def setup(tmp_path, contract):
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    with start_server(":memory:", rules_path=str(rules)) as server:
        sdk = make_client(server, contract)
        guide = sdk.files.create(file=("guide.md", b"yes"), purpose="assistants")
        image = sdk.files.create(file=("chart.png", b"\x89PNG"), purpose="assistants")
        tools = {"file_search": SearchTool(guide.id), "code_interpreter": CodeTool(image.id, guide.id)}
        server.state.extra["tools"] = tools
        yield sdk, tools
        sdk.close()


def run_for(sdk, text, tools):
    bot = sdk.beta.assistants.create(model="gpt-4o", tools=tools)
    thread = sdk.beta.threads.create(messages=[{"role": "user", "content": text}])
    return sdk.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=bot.id)


def test_file_search_call_runs_in_the_server_and_cites_its_source(setup):
    sdk, tools = setup
    run = run_for(sdk, "search refunds", [{"type": "file_search"}])
    assert run.status == "completed" and run.required_action is None
    steps = sdk.beta.threads.runs.steps.list(thread_id=run.thread_id, run_id=run.id, order="asc").data
    assert [s.type for s in steps] == ["tool_calls", "message_creation"]
    call = steps[0].step_details.tool_calls[0]
    assert call.type == "file_search" and call.id.startswith("call_") and steps[0].status == "completed"
    (call_id, arguments, tool, include), = tools["file_search"].seen
    assert call_id == call.id and arguments == {"query": "refunds"}
    assert tool == {"type": "file_search",  # the run's tool entry as the API returns it
                    "file_search": {"ranking_options": {"ranker": "default_2024_08_21", "score_threshold": 0.0}}}
    message = sdk.beta.threads.messages.list(thread_id=run.thread_id, run_id=run.id).data[0]
    text = message.content[0].text
    assert text.value == "Per the guide says yes 【4:0†guide.md】."
    (citation,) = text.annotations
    assert citation.type == "file_citation" and citation.text == "【4:0†guide.md】"
    assert text.value[citation.start_index:citation.end_index] == "【4:0†guide.md】"
    assert citation.file_citation.file_id == tools["file_search"].file_id


def test_code_interpreter_progress_images_and_written_files(setup):
    sdk, tools = setup
    bot = sdk.beta.assistants.create(model="gpt-4o", tools=[{"type": "code_interpreter"}])
    thread = sdk.beta.threads.create(messages=[{"role": "user", "content": "plot it"}])
    with sdk.beta.threads.runs.with_streaming_response.create(
        thread_id=thread.id, assistant_id=bot.id, stream=True
    ) as response:
        lines = [line for line in response.iter_lines() if line.startswith(("event: ", "data: "))]
    events = [(lines[i][7:], lines[i + 1][6:]) for i in range(0, len(lines), 2)]
    check_payloads(events)
    deltas = [json.loads(d)["delta"]["step_details"]["tool_calls"][0] for n, d in events if n == "thread.run.step.delta"]
    assert deltas[0]["type"] == "code_interpreter" and deltas[0]["id"].startswith("call_")
    assert deltas[1]["code_interpreter"] == {"input": "plot()"} and deltas[1]["index"] == 0
    assert deltas[2]["code_interpreter"]["outputs"][0]["logs"] == "ok"
    run = sdk.beta.threads.runs.list(thread_id=thread.id).data[0]
    assert run.status == "completed"
    message = sdk.beta.threads.messages.list(thread_id=thread.id, run_id=run.id).data[0]
    assert [c.type for c in message.content] == ["text", "image_file"]
    assert message.content[1].image_file.file_id == tools["code_interpreter"].image_id
    paths = message.content[0].text.annotations
    assert [(a.type, a.text) for a in paths] == [("file_path", "sandbox:/mnt/data/data.csv")] * 2
    assert [a.file_path.file_id for a in paths] == [tools["code_interpreter"].csv_id] * 2
    assert [a.file_id for a in message.attachments] == [tools["code_interpreter"].csv_id]  # other.txt: not mentioned


def test_tool_error_fails_the_run_with_its_message(setup):
    sdk, _ = setup
    run = run_for(sdk, "broken", [{"type": "code_interpreter"}])
    assert run.status == "failed"
    assert (run.last_error.code, run.last_error.message) == ("server_error", "No sandbox is available on this server.")
    step = sdk.beta.threads.runs.steps.list(thread_id=run.thread_id, run_id=run.id).data[0]
    assert step.status == "failed"


def test_tool_choice_names_the_builtin_function(setup):
    sdk, tools = setup
    bot = sdk.beta.assistants.create(model="gpt-4o", tools=[{"type": "file_search"}])
    thread = sdk.beta.threads.create(messages=[{"role": "user", "content": "search x"}])
    run = sdk.beta.threads.runs.create_and_poll(
        thread_id=thread.id, assistant_id=bot.id, tool_choice={"type": "file_search"},
        include=["step_details.tool_calls[*].file_search.results[*].content"])
    assert run.status == "completed"
    assert tools["file_search"].seen[-1][3] == ("step_details.tool_calls[*].file_search.results[*].content",)


def test_builtin_round_goes_back_to_the_engine_as_tool_messages(contract):
    from tests.server.engines import ScriptedEngine, TextDelta, ToolCallDelta, TurnEnd

    engine = ScriptedEngine(
        [ToolCallDelta(0, "call_up7", "file_search", '{"query": "refunds"}'), TurnEnd("tool_calls")],
        [TextDelta("Yes 【4:0†guide.md】"), TurnEnd()],
    )
    with start_server(":memory:", engine=engine) as server:
        sdk = make_client(server, contract)
        server.state.extra["tools"] = {"file_search": SearchTool("file-abc")}
        bot = sdk.beta.assistants.create(model="gpt-4o", tools=[{"type": "file_search"}])
        thread = sdk.beta.threads.create(messages=[{"role": "user", "content": "refunds?"}])
        run = sdk.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=bot.id,
                                                    tool_choice={"type": "file_search"})
        assert run.status == "completed"
        first, second = engine.requests
        assert first.tool_choice == {"type": "function", "function": {"name": "file_search"}}
        assert [t["function"]["name"] for t in first.offered_tools] == ["file_search"]
        assert second.tool_choice == "auto"  # a forced tool is forced once, not in a loop
        assert second.chat[-2:] == [
            {"role": "assistant", "content": None, "tool_calls": [{"id": "call_up7", "type": "function", "function": {
                "name": "file_search", "arguments": '{"query": "refunds"}'}}]},
            {"role": "tool", "tool_call_id": "call_up7", "content": "says yes"},
        ]
        step = sdk.beta.threads.runs.steps.list(thread_id=thread.id, run_id=run.id, order="asc").data[0]
        assert step.step_details.tool_calls[0].id == "call_up7"
        sdk.close()
