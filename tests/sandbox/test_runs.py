"""code_interpreter in runs, end to end through the SDK: the offline engine's ``code:`` rules call
the real tool, which runs the code in the thread's bubblewrap session."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from asstctl.server.embedded import start_server
from asstctl.server.engine.offline import CODE_FUNCTION
from asstctl.server.sandbox import SandboxConfig
from asstctl.server.tools import builtin_tool
from asstctl.server.tools.code_interpreter import NAME
from tests.conftest import make_client
from tests.contract import validator_for
from tests.sandbox.conftest import ROOMY_CPU

RULES = r"""
rules:
  - match: "3x \\+ 11 = 14"
    code: "from sympy import symbols, solve; x = symbols('x'); print(solve(3*x + 11 - 14, x)[0])"
    then: "Solving 3x + 11 = 14 gives x = {output}."
  - match: "remember (?P<n>\\d+)"
    code: "total = {n}\nprint('stored')"
    then: "Stored."
  - match: "recall"
    code: "print(total + 2)"
    then: "It is {output}."
  - match: "chart"
    code: "import matplotlib.pyplot as plt\nplt.plot([1, 2, 3], [1, 4, 9])\nplt.show()\nprint('drawn')"
    then: "Here is the chart."
  - match: "table"
    code: "import pandas as pd\npd.DataFrame({'n': [1, 2]}).to_csv('/mnt/data/table.csv', index=False)"
    then: "Download it: sandbox:/mnt/data/table.csv"
  - match: "wait"
    code: "import time\ntime.sleep(25)"
    then: "Waited."
  - match: "bomb"
    code: "hog = bytearray(8 * 1024 ** 3)"
    then: "That did not work: {output}"
"""


@pytest.fixture
def sdk(tmp_path, contract):
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    with start_server(":memory:", rules_path=str(rules), sandbox=SandboxConfig(**ROOMY_CPU)) as server:
        client = make_client(server, contract)
        yield client
        client.close()


def ask(sdk, text, thread_id=None):
    bot = sdk.beta.assistants.create(model="gpt-4o", tools=[{"type": "code_interpreter"}])
    if thread_id is None:
        thread_id = sdk.beta.threads.create().id
    sdk.beta.threads.messages.create(thread_id, role="user", content=text)
    run = sdk.beta.threads.runs.create_and_poll(thread_id=thread_id, assistant_id=bot.id)
    assert run.status == "completed", run.last_error
    message = sdk.beta.threads.messages.list(thread_id=thread_id, run_id=run.id).data[0]
    return run, message


def test_the_engines_function_is_the_tools():
    assert CODE_FUNCTION == NAME


def test_a_streamed_run_shows_the_code_and_its_output_as_step_deltas(sdk):
    bot = sdk.beta.assistants.create(model="gpt-4o", tools=[{"type": "code_interpreter"}])
    thread = sdk.beta.threads.create(messages=[{"role": "user", "content": "Solve 3x + 11 = 14 please"}])
    with sdk.beta.threads.runs.with_streaming_response.create(
        thread_id=thread.id, assistant_id=bot.id, stream=True
    ) as response:
        lines = [line for line in response.iter_lines() if line.startswith(("event: ", "data: "))]
    events = [(lines[i][7:], json.loads(lines[i + 1][6:]) if lines[i + 1] != "data: [DONE]" else None)
              for i in range(0, len(lines), 2)]
    calls = [d["delta"]["step_details"]["tool_calls"][0] for n, d in events if n == "thread.run.step.delta"]
    code = "from sympy import symbols, solve; x = symbols('x'); print(solve(3*x + 11 - 14, x)[0])"
    assert [c["code_interpreter"] for c in calls if c.get("code_interpreter")] == [
        {"input": code}, {"outputs": [{"index": 0, "type": "logs", "logs": "1\n"}]}]
    for call in calls:
        validator_for("#/components/schemas/RunStepDeltaStepDetailsToolCallsCodeObject").validate(call)
    assert events[-2][0] == "thread.run.completed"
    steps = sdk.beta.threads.runs.steps.list(thread_id=thread.id, run_id=events[-2][1]["id"], order="asc").data
    assert [s.type for s in steps] == ["tool_calls", "message_creation"]
    (call,) = steps[0].step_details.tool_calls
    assert call.type == "code_interpreter" and call.code_interpreter.input == code
    assert [(o.type, o.logs) for o in call.code_interpreter.outputs] == [("logs", "1\n")]
    message = sdk.beta.threads.messages.list(thread_id=thread.id).data[0]
    assert message.content[0].text.value == "Solving 3x + 11 = 14 gives x = 1."


def test_variables_live_on_between_runs_of_a_thread_and_not_in_another_thread(sdk):
    _, stored = ask(sdk, "remember 40")
    thread_id = stored.thread_id
    _, recalled = ask(sdk, "recall", thread_id)
    assert recalled.content[0].text.value == "It is 42."
    run, elsewhere = ask(sdk, "recall")
    assert "NameError: name 'total' is not defined" in elsewhere.content[0].text.value


def test_a_figure_becomes_image_file_content_of_the_message(sdk):
    run, message = ask(sdk, "draw a chart")
    assert [c.type for c in message.content] == ["text", "image_file"]
    image_id = message.content[1].image_file.file_id
    step = sdk.beta.threads.runs.steps.list(thread_id=run.thread_id, run_id=run.id, order="asc").data[0]
    outputs = step.step_details.tool_calls[0].code_interpreter.outputs
    assert [o.type for o in outputs] == ["logs", "image"] and outputs[1].image.file_id == image_id
    assert sdk.files.retrieve(image_id).purpose == "assistants_output"
    assert sdk.files.content(image_id).read().startswith(b"\x89PNG\r\n\x1a\n")


def test_a_written_file_becomes_a_file_path_annotation(sdk):
    _, message = ask(sdk, "make a table")
    text = message.content[0].text
    assert text.value == "Download it: sandbox:/mnt/data/table.csv"
    (annotation,) = text.annotations
    assert annotation.type == "file_path" and annotation.text == "sandbox:/mnt/data/table.csv"
    assert text.value[annotation.start_index:annotation.end_index] == annotation.text
    assert sdk.files.content(annotation.file_path.file_id).read() == b"n\n1\n2\n"
    assert sdk.files.retrieve(annotation.file_path.file_id).filename == "/mnt/data/table.csv"


def test_a_limit_breaking_call_is_an_answer_and_the_server_goes_on(sdk):
    run, message = ask(sdk, "bomb")
    assert "MemoryError" in message.content[0].text.value
    assert ask(sdk, "Solve 3x + 11 = 14")[1].content[0].text.value.endswith("x = 1.")


def test_without_bwrap_only_the_projects_own_code_runs_and_anything_else_fails_saying_how_to_install_it(
        tmp_path, contract):
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    config = SandboxConfig(bwrap=str(tmp_path / "no-bwrap"))
    with start_server(":memory:", rules_path=str(rules), sandbox=config) as server:
        client = make_client(server, contract)
        bot = client.beta.assistants.create(model="gpt-4o", tools=[{"type": "code_interpreter"}])
        runs = []
        for text in ("Solve 3x + 11 = 14", "remember 40"):
            thread = client.beta.threads.create(messages=[{"role": "user", "content": text}])
            runs.append((client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=bot.id), thread))
        solved = client.beta.threads.messages.list(thread_id=runs[0][1].id).data[0].content[0].text.value
        client.close()
    # A rule's literal code is the project's own: a plain subprocess runs it (with a one-line notice).
    assert runs[0][0].status == "completed" and solved == "Solving 3x + 11 = 14 gives x = 1."
    # Code a message filled in (like a model's code) never runs without the sandbox.
    run = runs[1][0]
    assert run.status == "failed" and run.last_error.code == "server_error"
    assert "apt-get install bubblewrap" in run.last_error.message


def test_the_shipped_math_tutor_solves_its_equation_with_code(contract):
    root = Path(__file__).resolve().parents[2]
    with start_server(":memory:", rules_path=str(root / "engine-rules.yaml"),
                      sandbox=SandboxConfig(**ROOMY_CPU)) as server:
        client = make_client(server, contract)
        tutor = client.beta.assistants.create(
            model="gpt-4o", name="Math Tutor", tools=[{"type": "code_interpreter"}], metadata={"asstctl.key": "math-tutor"},
            instructions="You are a personal math tutor. Write and run code to answer math questions.")
        thread = client.beta.threads.create(messages=[
            {"role": "user", "content": "I need to solve the equation `3x + 11 = 14`. Can you help me?"}])
        run = client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=tutor.id)
        steps = client.beta.threads.runs.steps.list(thread_id=thread.id, run_id=run.id, order="asc").data
        reply = client.beta.threads.messages.list(thread_id=thread.id).data[0].content[0].text.value
        client.close()
    assert run.status == "completed"
    (call,) = steps[0].step_details.tool_calls
    assert "Fraction(c - b, a)" in call.code_interpreter.input
    assert [o.logs for o in call.code_interpreter.outputs] == ["1\n"]
    assert reply == "Subtract 11 from both sides: 3x = 3. Divide both sides by 3: x = 1."


def test_a_code_rule_needs_code_interpreter_among_the_runs_tools(sdk):
    bot = sdk.beta.assistants.create(model="gpt-4o")
    thread = sdk.beta.threads.create(messages=[{"role": "user", "content": "Solve 3x + 11 = 14"}])
    run = sdk.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=bot.id)
    steps = sdk.beta.threads.runs.steps.list(thread_id=thread.id, run_id=run.id).data
    assert run.status == "completed" and [s.type for s in steps] == ["message_creation"]
    reply = sdk.beta.threads.messages.list(thread_id=thread.id).data[0].content[0].text.value
    assert reply == '[offline gpt-4o] You said: "Solve 3x + 11 = 14"'


def test_code_and_tool_calls_exclude_each_other(tmp_path):
    from asstctl.server.engine.offline import RulesError, load_rules

    rules = tmp_path / "rules.yaml"
    rules.write_text("rules:\n  - match: x\n    code: print(1)\n    tool_calls: [{name: f}]\n")
    with pytest.raises(RulesError, match="rule 0: 'code' and 'tool_calls' exclude each other"):
        load_rules(str(rules))
    rules.write_text("rules:\n  - match: x\n    code: [1]\n")
    with pytest.raises(RulesError, match="rule 0: 'code' must be a string"):
        load_rules(str(rules))


def test_a_full_pool_fails_the_run_with_rate_limit_exceeded_naming_the_flag(tmp_path, contract):
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    config = SandboxConfig(**dict(ROOMY_CPU, max_sessions=1))
    with start_server(":memory:", rules_path=str(rules), sandbox=config) as server:
        client = make_client(server, contract)
        bot = client.beta.assistants.create(model="gpt-4o", tools=[{"type": "code_interpreter"}])
        busy = client.beta.threads.create(messages=[{"role": "user", "content": "wait"}])
        first = client.beta.threads.runs.create(thread_id=busy.id, assistant_id=bot.id)
        pool = builtin_tool(server.state, "code_interpreter").pool
        for _ in range(600):  # its code runs (the call holds the only session)
            if any(session.in_call for session in list(pool.sessions.values())):
                break
            time.sleep(0.05)
        config.wall_seconds = 0.5  # how long the other call waits for a free session (the first keeps its 30 s)
        other = client.beta.threads.create(messages=[{"role": "user", "content": "remember 1"}])
        run = client.beta.threads.runs.create_and_poll(thread_id=other.id, assistant_id=bot.id, poll_interval_ms=100)
        still = client.beta.threads.runs.retrieve(thread_id=busy.id, run_id=first.id).status
        client.beta.threads.runs.cancel(thread_id=busy.id, run_id=first.id)
        client.close()
    assert run.status == "failed" and run.last_error.code == "rate_limit_exceeded", run.last_error
    assert "all 1 sandbox sessions (--code-max-sessions 1) are starting or busy" in run.last_error.message
    assert still == "in_progress"
