"""`asstctl serve --code-*` flags reach the sandbox; `--unsafe-code-interpreter` warns loudly."""

from __future__ import annotations

from tests.conftest import make_client
from tests.serve_process import ServeProcess

RULES = r"""
rules:
  - match: "spam"
    code: "print('spam' * 100)"
    then: "{output}"
  - match: "sleep"
    code: "import time\ntime.sleep(60)"
    then: "{output}"
  - match: "where"
    code: "import os\nprint(os.getcwd() == '/mnt/data')"
    then: "{output}"
"""


def ask(client, text):
    bot = client.beta.assistants.create(model="gpt-4o", tools=[{"type": "code_interpreter"}])
    thread = client.beta.threads.create(messages=[{"role": "user", "content": text}])
    run = client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=bot.id)
    assert run.status == "completed", run.last_error
    return client.beta.threads.messages.list(thread_id=thread.id).data[0].content[0].text.value


def test_limits_from_the_command_line(tmp_path):
    (tmp_path / "rules.yaml").write_text(RULES)
    with ServeProcess(tmp_path, "--db", ":memory:", "--rules", "rules.yaml", "--code-output-bytes", "100",
                      "--code-timeout", "2", "--code-cgroup", "none") as server, make_client(server, timeout=30) as client:
        spam = ask(client, "spam")
        assert spam.startswith("spam" * 25 + "\n[output truncated: 301 more bytes")
        assert "wall-time limit of 2 s" in ask(client, "sleep")
        assert ask(client, "where") == "True"
        assert server.stop() == 0
    *said, last = server.stderr().splitlines()  # sessions ended cleanly, no warning
    assert last == "asstctl serve: stopped" and len(said) == 1, said
    assert said[0].endswith("code_interpreter: total sandbox memory enforced by the watchdog only (--code-cgroup "
                            "none): no cgroup"), said


def test_unsafe_mode_is_announced(tmp_path):
    (tmp_path / "rules.yaml").write_text(RULES)
    with ServeProcess(tmp_path, "--db", ":memory:", "--rules", "rules.yaml", "--unsafe-code-interpreter") as server:
        with make_client(server, timeout=30) as client:
            assert ask(client, "where") == "False"  # no sandbox: a temporary directory, not /mnt/data
        assert server.stop() == 0
    assert "WARNING: --unsafe-code-interpreter" in server.stderr()


def test_the_shm_and_file_count_limits_have_flags():
    from asstctl.cli.serve_cmd import _sandbox_config, serve

    params = serve.make_context("serve", ["--code-shm-mb", "16", "--code-max-inodes", "500"]).params
    config = _sandbox_config({name: value for name, value in params.items() if name.startswith("code_")})
    assert (config.shm_mb, config.max_inodes) == (16, 500)
    default = serve.make_context("serve", []).params
    assert (default["code_shm_mb"], default["code_max_inodes"]) == (64, 100_000)  # SandboxConfig's, as documented
