"""The README's main job on a machine without bubblewrap: the example project's offline `code:` rule
(the project's own code) runs as a plain subprocess with a one-line notice; code that a template
fills in from a message, like a model's code, never runs unsandboxed."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import asstctl
from asstctl.server.embedded import start_server
from asstctl.server.sandbox import SandboxConfig
from tests.conftest import make_client
from tests.sandbox.conftest import TEST_LIMITS

PROJECT = Path(asstctl.__file__).resolve().parents[1]
RULES = r"""
rules:
  - match: "literal"
    code: "import os; print(os.getcwd() == '/mnt/data')"
    then: "in /mnt/data: {output}"
  - match: "templated (?P<n>\d+)"
    code: "print({n} * 2)"
    then: "{output}"
"""


def test_the_readme_main_job_passes_without_bwrap_on_the_path(tmp_path):
    work = tmp_path / "project"
    work.mkdir()
    for name in ("asstctl.yaml", "engine-rules.yaml"):
        shutil.copy(PROJECT / name, work / name)
    shutil.copytree(PROJECT / "assistants", work / "assistants")
    (tmp_path / "bin").mkdir()  # a PATH without bwrap (nor anything else: asstctl needs only its Python)
    env = {**os.environ, "PATH": str(tmp_path / "bin"), "PYTHONPATH": str(PROJECT)}
    outputs = []
    for args in (["apply", "--yes"], ["test"]):
        done = subprocess.run([sys.executable, "-m", "asstctl", *args], cwd=work, env=env, capture_output=True,
                              text=True, timeout=180)
        outputs.append(done.stdout + done.stderr)
        assert done.returncode == 0, outputs[-1]
    assert "math-tutor" in outputs[1] and "FAIL" not in outputs[1]
    notices = [line for line in outputs[1].splitlines() if "bwrap is not installed" in line]
    assert len(notices) == 1 and "plain subprocess" in notices[0], outputs[1]


def test_without_bwrap_only_the_projects_own_code_runs(tmp_path, contract):
    (tmp_path / "rules.yaml").write_text(RULES)
    config = SandboxConfig(**{**TEST_LIMITS, "bwrap": str(tmp_path / "no-bwrap")})
    with start_server(":memory:", rules_path=str(tmp_path / "rules.yaml"), sandbox=config) as server:
        client = make_client(server, contract)
        bot = client.beta.assistants.create(model="gpt-4o", tools=[{"type": "code_interpreter"}])

        def ask(text):
            thread = client.beta.threads.create(messages=[{"role": "user", "content": text}])
            return client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=bot.id), thread

        run, thread = ask("literal")
        assert run.status == "completed", run.last_error
        reply = client.beta.threads.messages.list(thread_id=thread.id).data[0].content[0].text.value
        assert reply == "in /mnt/data: False"  # a plain subprocess in a temporary directory
        run, _ = ask("templated 21")  # text from a message is in the code: only a sandbox may run it
        assert run.status == "failed" and "apt-get install bubblewrap" in run.last_error.message
        client.close()
