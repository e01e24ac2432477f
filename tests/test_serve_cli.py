"""``asstctl serve``: the real command in a subprocess, and its errors through click's runner."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
import time

import openai
import pytest
from click.testing import CliRunner

from asstctl.cli import cli
from tests.conftest import make_client
from tests.serve_process import ServeProcess


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_serves_the_api_and_stops_cleanly(tmp_path, sig):
    with ServeProcess(tmp_path, "--db", ":memory:") as server:
        assert server.base_url.startswith("http://127.0.0.1:")
        with make_client(server) as client:
            made = client.beta.assistants.create(model="gpt-4o", name="hello")
            assert [a.id for a in client.beta.assistants.list()] == [made.id]
        assert server.stop(sig) == 0
        lines = server.stdout().splitlines()
        assert lines == [f"Serving the Assistants API at {server.base_url} (db: :memory:, nothing is kept; "
                         "no API key needed (any string works))"]
        assert server.stderr() == "asstctl serve: stopped\n"
    assert not (tmp_path / ".asstctl").exists()


def test_an_upstream_key_variable_that_is_unset_is_said_so(tmp_path):
    variable = "ASSTCTL_TEST_NEVER_SET_KEY"
    args = ("--db", ":memory:", "--upstream", "http://127.0.0.1:9/v1", "--upstream-key-env", variable)
    with ServeProcess(tmp_path, *args) as server:
        assert server.stdout().splitlines()[1] == f"Engine: upstream 127.0.0.1:9 (no key: ${variable} is not set)"
    with ServeProcess(tmp_path, *args, env={variable: "k"}) as server:
        assert server.stdout().splitlines()[1] == f"Engine: upstream 127.0.0.1:9 (key from ${variable})"


def test_default_db_is_under_the_project_root_and_persists(tmp_path):
    (tmp_path / "asstctl.yaml").write_text("project: demo\n")
    db = tmp_path / ".asstctl" / "server.sqlite3"
    with ServeProcess(tmp_path / "sub" / "dir") as server, make_client(server) as client:
        assert f"(db: {db};" in server.stdout()
        made = client.beta.assistants.create(model="gpt-4o", name="kept")
        assert server.stop() == 0
    with ServeProcess(tmp_path) as server, make_client(server) as client:
        assert "(db: .asstctl/server.sqlite3;" in server.stdout()
        assert client.beta.assistants.retrieve(made.id).name == "kept"


def test_without_a_project_the_db_is_in_the_current_directory(tmp_path):
    with ServeProcess(tmp_path) as server:
        assert "(db: .asstctl/server.sqlite3;" in server.stdout()
    assert (tmp_path / ".asstctl" / "server.sqlite3").is_file()


def test_injected_faults_reach_the_client_without_tracebacks_on_the_server(tmp_path):
    with ServeProcess(tmp_path, "--db", ":memory:", "--faults", "1:drop,lost", "--fault-seed", "1",
                      "--latency-ms", "1") as server:
        with make_client(server, max_retries=0) as client:
            for _ in range(6):
                with pytest.raises(openai.APIConnectionError):
                    client.beta.assistants.create(model="gpt-4o", name="x")
        assert server.stop() == 0
        assert server.stderr() == "asstctl serve: stopped\n"


def test_bad_fault_spec_is_one_clear_error():
    result = CliRunner().invoke(cli, ["serve", "--db", ":memory:", "--faults", "0.5:teapot"])
    assert result.exit_code == 1
    assert result.output.startswith("Error: invalid fault spec '0.5:teapot': unknown fault kind(s) teapot\n")
    assert "Traceback" not in result.output


def test_busy_port_is_one_clear_error():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = CliRunner().invoke(cli, ["serve", "--db", ":memory:", "--port", str(port)])
    assert result.exit_code == 1
    assert result.output.startswith(f"Error: cannot listen on 127.0.0.1:{port}: ")
    assert "--port" in result.output


def test_help_ends_with_an_example():
    result = CliRunner().invoke(cli, ["serve", "--help"])
    assert result.exit_code == 0
    description = result.output.split("Options:")[0].rstrip()
    assert "Example:\n" in description and description.splitlines()[-1].strip().endswith("python app.py")
    for option in ("--host", "--port", "--db", "--api-key", "--rules", "--latency-ms", "--faults", "--fault-seed"):
        assert option in result.output
    assert "ASSTCTL_SERVER_API_KEY" in result.output


def test_importing_the_command_stays_cheap():
    heavy = ("uvicorn", "starlette", "openai", "asstctl.server.app")
    code = f"import sys, asstctl.cli.serve_cmd; print([m for m in {heavy!r} if m in sys.modules])"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout == "[]\n"


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_keys_commands_manage_projects_in_the_database(tmp_path, kind, request):
    from asstctl.server.embedded import start_server

    db = str(tmp_path / "server.sqlite3") if kind == "sqlite" else request.getfixturevalue("postgres_url")
    runner = CliRunner()
    project = runner.invoke(cli, ["serve", "keys", "new-project", "billing", "--db", db])
    assert project.exit_code == 0, project.output
    project_id = project.stdout.strip()
    made = runner.invoke(cli, ["serve", "keys", "create", project_id, "--name", "web", "--db", db])
    assert made.exit_code == 0 and "not shown again" in made.stderr
    key = made.stdout.strip()
    assert key.startswith("sk-asst-")
    listed = runner.invoke(cli, ["serve", "keys", "list", project_id, "--db", db])
    (line,) = listed.stdout.splitlines()
    key_id, access, name = line.split("\t")
    assert (access, name) == ("active", "web") and key not in listed.output
    assert project_id in runner.invoke(cli, ["serve", "keys", "projects", "--db", db]).stdout
    shown = runner.invoke(cli, ["serve", "keys", "show", key_id, "--db", db])
    fields = dict(line.split("\t") for line in shown.stdout.splitlines())
    assert fields.keys() == {"id", "name", "project", "access", "created", "last_used"}, shown.output
    assert (fields["id"], fields["name"], fields["project"], fields["last_used"]) == (key_id, "web", project_id, "never")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", fields["created"]) and key not in shown.output
    about = runner.invoke(cli, ["serve", "keys", "project", project_id, "--db", db])
    assert about.stdout.splitlines()[:3] == [f"id\t{project_id}", "name\tbilling", "status\tactive"], about.output
    assert about.stdout.splitlines()[4] == "archived\tnever"
    nowhere = runner.invoke(cli, ["serve", "keys", "project", "proj_nope", "--db", db])
    assert nowhere.exit_code == 1 and "No project found with id 'proj_nope'" in nowhere.output
    with start_server(db, api_key="default-" + "d" * 24) as server:
        keyed = type("Keyed", (), {"base_url": server.base_url, "api_key": key})
        with make_client(keyed) as client:
            assert client.beta.assistants.list().data == []
            waited = time.monotonic()  # last_used_at is written after the answer
            while (used := runner.invoke(cli, ["serve", "keys", "show", key_id, "--db", db]).stdout) \
                    .endswith("last_used\tnever\n") and time.monotonic() - waited < 10:
                time.sleep(0.05)
            assert re.search(r"^last_used\t\d{4}-", used, re.M), used
            assert runner.invoke(cli, ["serve", "keys", "revoke", key_id, "--db", db]).exit_code == 0
            with pytest.raises(openai.AuthenticationError):
                client.beta.assistants.list()
    for command in ("revoke", "show"):
        again = runner.invoke(cli, ["serve", "keys", command, key_id, "--db", db])
        assert again.exit_code == 1 and f"no API key with id {key_id}" in again.output
    gone = runner.invoke(cli, ["serve", "keys", "create", "proj_nope", "--db", db])
    assert gone.exit_code == 1 and "No project found with id 'proj_nope'" in gone.output and "Traceback" not in gone.output


def test_keys_commands_rename_delete_accounts_and_archive(tmp_path):
    from asstctl.server.embedded import start_server

    db, runner = str(tmp_path / "server.sqlite3"), CliRunner()

    def keys(*args: str):
        result = runner.invoke(cli, ["serve", "keys", *args, "--db", db])
        assert "Traceback" not in result.output
        return result

    project_id = keys("new-project", "billing").stdout.strip()
    assert keys("rename", project_id, "invoicing").exit_code == 0
    assert f"{project_id}\tactive\tinvoicing" in keys("projects").stdout.splitlines()
    web, cron = (keys("create", project_id, "--name", name).stdout.strip() for name in ("web", "cron"))
    (web_account,) = [line.split("\t")[0] for line in keys("accounts", project_id).stdout.splitlines()
                      if line.endswith("\tweb")]
    assert web_account.startswith("svc_acct_")
    with start_server(db, api_key="default-" + "d" * 24) as server:
        clients = [make_client(type("Keyed", (), {"base_url": server.base_url, "api_key": key})) for key in (web, cron)]
        assert keys("delete-account", project_id, web_account).exit_code == 0
        with pytest.raises(openai.AuthenticationError):
            clients[0].beta.assistants.list()
        assert clients[1].beta.assistants.list().data == []  # the other account's key still works
        assert [line.split("\t")[2] for line in keys("list", project_id).stdout.splitlines()] == ["cron"]
        assert keys("archive", project_id).exit_code == 0
        with pytest.raises(openai.AuthenticationError):
            clients[1].beta.assistants.list()
        for client in clients:
            client.close()
    assert project_id not in keys("projects").stdout and f"{project_id}\tarchived" in keys("projects", "--all").stdout
    refused = keys("create", project_id)
    assert refused.exit_code == 1 and "archived" in refused.output
    again = keys("delete-account", project_id, web_account)
    assert again.exit_code == 1 and "No service account found" in again.output


def test_an_admin_key_variable_that_is_not_set_is_one_clear_error(monkeypatch):
    monkeypatch.delenv("NO_SUCH_ADMIN_KEY", raising=False)
    result = CliRunner().invoke(cli, ["serve", "--db", ":memory:", "--admin-key-env", "NO_SUCH_ADMIN_KEY"])
    assert result.exit_code == 2 and "the environment variable NO_SUCH_ADMIN_KEY is not set" in result.output
    monkeypatch.setenv("NO_SUCH_ADMIN_KEY", "two words")
    result = CliRunner().invoke(cli, ["serve", "--db", ":memory:", "--admin-key-env", "NO_SUCH_ADMIN_KEY"])
    assert result.exit_code == 2 and "spaces" in result.output and "two words" not in result.output
