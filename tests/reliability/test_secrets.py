"""The API key never shows: not in stdout, stderr, a saved plan, a JUnit report or the server's log,
with --debug and with a wrong key. The server refuses a public bind without a key and answers a
wrong key with 401 in the real error envelope."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
import uuid

import pytest

from tests.reliability.helpers import numbered_specs, write_project
from tests.serve_process import ServeProcess

KEY = f"sk-test-SECRET-{uuid.uuid4()}"
WRONG = f"sk-test-WRONG-{uuid.uuid4()}"
CONVERSATION = "conversations:\n  - name: greets\n    turns:\n      - user: hello there\n"


@pytest.fixture(scope="module")
def keyed(tmp_path_factory):
    with ServeProcess(tmp_path_factory.mktemp("serve"), "--db", ":memory:",
                      env={"ASSTCTL_SERVER_API_KEY": KEY}) as server:
        yield server


@pytest.fixture
def project(tmp_path):
    root = write_project(tmp_path / "project", numbered_specs(2))
    (root / "assistants" / "bot-000.test.yaml").write_text(CONVERSATION)
    return root


def asstctl(root, server, key: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OPENAI_API_KEY": key, "NO_COLOR": "1"}
    env.pop("OPENAI_BASE_URL", None)
    command = [sys.executable, "-m", "asstctl", "--debug", *args, "--base-url", server.base_url]
    return subprocess.run(command, cwd=root, env=env, capture_output=True, text=True, timeout=60)


def test_no_command_ever_shows_the_key(keyed, project):
    steps = [("apply", "--yes"), ("plan", "--out", "plan.json"), ("test", "--junit-xml", "junit.xml"),
             ("destroy", "--yes")]
    texts = []
    for step in steps:
        done = asstctl(project, keyed, KEY, *step)
        assert done.returncode == 0, f"{step}: {done.stdout}{done.stderr}"
        texts += [done.stdout, done.stderr]
    for step in [("plan",), ("apply", "--yes"), ("test",), ("destroy", "--yes")]:
        done = asstctl(project, keyed, WRONG, *step)
        assert done.returncode != 0 and "401" in done.stdout + done.stderr, f"{step}: {done.stdout}{done.stderr}"
        texts += [done.stdout, done.stderr]
    texts += [(project / "plan.json").read_text(), (project / "junit.xml").read_text(), keyed.stdout(), keyed.stderr()]
    assert json.loads(texts[-4])["actions"], "the saved plan is empty: nothing was checked"
    leaks = [text for text in texts if KEY in text or WRONG in text or KEY[:20] in text]
    assert not leaks, leaks[0]


def test_wrong_key_is_401_in_the_real_envelope(keyed):
    request = urllib.request.Request(keyed.base_url + "/assistants",
                                     headers={"Authorization": f"Bearer {WRONG}", "OpenAI-Beta": "assistants=v2"})
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request, timeout=10)
    body = caught.value.read().decode()
    assert caught.value.code == 401
    error = json.loads(body)["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["code"] == "invalid_api_key"
    assert WRONG not in body and KEY not in body


@pytest.mark.parametrize("host", ["0.0.0.0", "::"])
def test_no_public_bind_without_a_key(tmp_path, host):
    env = {key: value for key, value in os.environ.items() if key != "ASSTCTL_SERVER_API_KEY"}
    command = [sys.executable, "-m", "asstctl", "serve", "--host", host, "--port", "0", "--db", ":memory:"]
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=30)
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    assert done.stderr.startswith(f"Error: refusing to listen on {host} without an API key"), done.stderr
