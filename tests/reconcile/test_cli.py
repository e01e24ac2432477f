"""`asstctl plan` / `apply` / `destroy` through click's CliRunner (and once as a subprocess),
against the embedded server of the test via --base-url."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from asstctl.cli import cli
from asstctl.ownership import KEY, MANAGED_BY, PROJECT, SPEC_HASH
from asstctl.reconcile.remote import read_remote
from asstctl.reconcile.report import render_text
from asstctl.server.embedded import start_server
from tests.reconcile.helpers import foreign

GOLDEN = Path(__file__).parent.parent / "golden"
NAME = "cli-demo"
SECRET = "sk-test-never-print-this-4242"


@pytest.fixture
def keyed_server():
    with start_server(":memory:", api_key=SECRET) as running:
        yield running


@pytest.fixture
def project(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "asstctl.yaml").write_text(f"project: {NAME}\n")
    (tmp_path / "assistants").mkdir()
    write_spec(tmp_path, "triage", name="Triage", instructions="Be kind.\nBe brief.\n", temperature=0.2)
    write_spec(tmp_path, "faq", instructions="Answer from the FAQ.")
    return tmp_path


def write_spec(root: Path, key: str, model: str = "gpt-4o", **fields) -> None:
    (root / "assistants" / f"{key}.yaml").write_text(yaml.safe_dump({"model": model, **fields}, sort_keys=False))


def run(server, *args, input=None):
    runner = CliRunner()
    env = {"OPENAI_API_KEY": server.api_key, "NO_COLOR": None, "FORCE_COLOR": None, "OPENAI_BASE_URL": None}
    return runner.invoke(cli, [*args, "--base-url", server.base_url], env=env, input=input, catch_exceptions=False)


def sdk(server):
    from asstctl.backends.targets import make_client

    return make_client(server.base_url, server.api_key, max_retries=0)


def masked(text: str, server) -> str:
    text = text.replace(server.base_url, "<target>")
    return re.sub(r"asst_[0-9a-f]+", "asst_<id>", text)


def check_golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("UPDATE_GOLDEN"):
        path.write_text(text)
    assert text == path.read_text(), f"differs from {path} (UPDATE_GOLDEN=1 rewrites it)"


def test_apply_creates_then_plan_has_no_changes(server, project):
    result = run(server, "apply", "--yes")
    assert result.exit_code == 0, result.output
    assert "Apply complete: 2 created, 0 updated, 0 deleted, 0 failed." in result.output
    again = run(server, "plan", "--detailed-exitcode")
    assert again.exit_code == 0, again.output
    assert "\033[" not in again.output  # not a terminal: no colour
    assert "Plan: 0 to create, 0 to update, 0 to delete. No changes." in again.output
    assert run(server, "apply", "--yes").output.count("no-op") == 2


def test_an_edited_spec_plans_an_update_with_exit_code_2(server, project):
    run(server, "apply", "--yes")
    write_spec(project, "triage", name="Triage", instructions="Be kind.\nBe thorough.\n", temperature=0.5)
    result = run(server, "diff", "--detailed-exitcode")
    assert result.exit_code == 2, result.output
    check_golden("plan-update.txt", masked(result.output, server))


def test_the_first_plan_text(server, client, project):
    foreign(client)
    result = run(server, "plan")
    assert result.exit_code == 0, result.output
    check_golden("plan-create.txt", masked(result.output, server))


def test_drift_prune_and_duplicates_in_one_plan(server, client, project):
    run(server, "apply", "--yes")
    remote = read_remote(client, NAME)
    client.beta.assistants.update(remote.managed["triage"]["id"], temperature=1.5)
    client.beta.assistants.create(model="gpt-4o", metadata=remote.managed["faq"]["metadata"])
    (project / "assistants" / "faq.yaml").unlink()
    result = run(server, "plan", "--prune", "--detailed-exitcode")
    assert result.exit_code == 2, result.output
    check_golden("plan-drift-prune.txt", masked(result.output, server))


def test_without_a_terminal_apply_refuses_unless_yes(server, client, project):
    result = run(server, "apply", input="y\n")
    assert result.exit_code == 1
    assert "re-run with --yes" in result.output
    assert read_remote(client, NAME).managed == {}


def test_a_removed_spec_is_deleted_only_with_prune(server, client, project):
    run(server, "apply", "--yes")
    (project / "assistants" / "faq.yaml").unlink()
    kept = run(server, "apply", "--yes")
    assert "re-run with --prune" in kept.output and "faq" in read_remote(client, NAME).managed
    pruned = run(server, "apply", "--yes", "--prune")
    assert pruned.exit_code == 0 and "1 deleted" in pruned.output
    assert set(read_remote(client, NAME).managed) == {"triage"}


def test_destroy_removes_only_this_projects_assistants(server, client, project):
    by_hand = foreign(client)
    other = foreign(client, "other", **{MANAGED_BY: "asstctl", PROJECT: "other", KEY: "triage", SPEC_HASH: "x"})
    run(server, "apply", "--yes")
    refused = run(server, "destroy")
    assert refused.exit_code == 1 and "re-run with --yes" in refused.output
    result = run(server, "destroy", "--yes")
    assert result.exit_code == 0, result.output
    assert "2 deleted" in result.output and "2 foreign assistants left alone" in result.output
    assert result.output.splitlines()[-1] == "Destroy complete: 2 deleted, 0 failed."
    assert {a.id for a in client.beta.assistants.list()} == {by_hand.id, other.id}


def test_prevent_destroy_makes_destroy_fail_for_that_object(server, client, project):
    write_spec(project, "vault", prevent_destroy=True)
    run(server, "apply", "--yes")
    result = run(server, "destroy", "--yes")
    assert result.exit_code == 1
    summary = result.output.index("\n", result.output.index("Plan:"))
    check_golden("destroy-blocked.txt", masked(result.output[:summary + 1], server))
    assert "! keep vault" in result.output and "vault: delete failed: prevent_destroy" in result.output
    assert set(read_remote(client, NAME).managed) == {"vault"}


def test_a_failing_object_is_reported_and_the_others_are_applied(server, client, project):
    write_spec(project, "broken", tool_resources={"file_search": {"vector_store_ids": ["vs_missing"]}},
               tools=[{"type": "file_search"}])
    result = run(server, "apply", "--yes")
    assert result.exit_code == 1
    assert re.search(r"! broken: create failed: .*vs_missing", result.output)
    assert "1 operation(s) failed (broken)" in result.output
    assert set(read_remote(client, NAME).managed) == {"triage", "faq"}


def test_a_saved_plan_is_json_without_the_key_and_applies(keyed_server, project):
    result = run(keyed_server, "plan", "--out", "plan.json", "--output", "json")
    assert result.exit_code == 0, result.output
    saved = (project / "plan.json").read_text()
    assert SECRET not in saved and SECRET not in result.output
    assert json.loads(saved)["format_version"] == 1 == json.loads(result.output)["format_version"]
    applied = run(keyed_server, "apply", "plan.json", "--yes")
    assert applied.exit_code == 0, applied.output
    with sdk(keyed_server) as client:
        assert set(read_remote(client, NAME).managed) == {"triage", "faq"}


def test_a_stale_saved_plan_is_refused_naming_the_object(server, client, project):
    run(server, "apply", "--yes")
    write_spec(project, "triage", name="Triage v2")
    write_spec(project, "faq", name="FAQ v2")
    assert run(server, "plan", "--out", "plan.json").exit_code == 0
    client.beta.assistants.update(read_remote(client, NAME).managed["faq"]["id"], name="changed by hand")
    result = run(server, "apply", "plan.json", "--yes")
    assert result.exit_code == 1
    assert re.search(r"stale.*faq: asst_\w+ was changed", result.output) and "triage:" not in result.output
    assert read_remote(client, NAME).managed["triage"]["name"] == "Triage"


def test_an_unreachable_target_is_one_line_without_a_traceback(project):
    result = CliRunner().invoke(cli, ["plan", "--detailed-exitcode", "--base-url", "http://127.0.0.1:9/v1"],
                               env={"OPENAI_API_KEY": SECRET})
    assert result.exit_code == 1
    assert result.output.startswith("Error: cannot reach http://127.0.0.1:9/v1")
    assert "Traceback" not in result.output and SECRET not in result.output


def test_colour_codes_wrap_the_action_lines():
    from asstctl.reconcile.model import Action, Plan

    text = render_text(Plan("p", "t", actions=[Action("create", "bot")]), color=True)
    assert "\033[32m+ create bot\033[0m" in text


def test_apply_and_plan_as_a_subprocess(server, project):
    env = {**os.environ, "OPENAI_API_KEY": server.api_key, "NO_COLOR": "1"}
    command = [sys.executable, "-m", "asstctl"]
    applied = subprocess.run([*command, "apply", "--yes", "--base-url", server.base_url],
                             env=env, capture_output=True, text=True, timeout=60)
    assert applied.returncode == 0, applied.stderr
    assert "2 created" in applied.stdout and "Warning" not in applied.stderr
    planned = subprocess.run([*command, "plan", "--detailed-exitcode", "--base-url", server.base_url],
                             env=env, capture_output=True, text=True, timeout=60)
    assert planned.returncode == 0, planned.stdout + planned.stderr


def test_on_a_terminal_apply_asks_first(server, project):
    import pty

    env = {**os.environ, "OPENAI_API_KEY": server.api_key, "NO_COLOR": "1"}
    primary, secondary = pty.openpty()
    try:
        process = subprocess.Popen([sys.executable, "-m", "asstctl", "apply", "--base-url", server.base_url],
                                   stdin=secondary, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)
        os.write(primary, b"y\n")
        out, err = process.communicate(timeout=60)
    finally:
        os.close(primary)
        os.close(secondary)
    assert process.returncode == 0, err
    assert "Apply these changes? [y/N]" in out and "2 created" in out


def test_a_named_target_with_per_target_overrides(server, client, project, monkeypatch):
    (project / "asstctl.yaml").write_text(
        f"project: {NAME}\ntargets:\n  shared:\n    base_url: {server.base_url}\n    api_key_env: SHARED_KEY\n")
    write_spec(project, "triage", name="Triage", targets={"shared": {"temperature": 0.9}})
    env = {"SHARED_KEY": server.api_key, "OPENAI_BASE_URL": None, "NO_COLOR": "1"}
    result = CliRunner().invoke(cli, ["apply", "--target", "shared", "--yes"], env=env, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert read_remote(client, NAME).managed["triage"]["temperature"] == 0.9
    missing = CliRunner().invoke(cli, ["plan", "--target", "shared"], env={"SHARED_KEY": None})
    assert missing.exit_code == 1 and "$SHARED_KEY is not set" in missing.output


def test_plan_of_knowledge_free_specs_costs_exactly_ceil_n_over_100_requests(server, project):
    for index in range(150):
        write_spec(project, f"bot-{index:03d}", name=f"Bot {index}")
    assert run(server, "apply", "--yes").exit_code == 0
    before = server.state.stats["total"]
    result = run(server, "plan", "--detailed-exitcode")
    assert result.exit_code == 0, result.output
    # ceil(152 / 100) list pages and the model check's GET /models, nothing else
    assert server.state.stats["total"] - before == 3
    status = run(server, "status")
    assert status.exit_code == 0 and server.state.stats["total"] - before == 3 + 2 + 1  # + the locks' list


def test_plan_reads_knowledge_when_pruning(server, project):
    assert run(server, "apply", "--yes").exit_code == 0
    before = server.state.stats["GET /v1/vector_stores"]
    assert run(server, "plan", "--prune").exit_code == 0
    assert server.state.stats["GET /v1/vector_stores"] == before + 1
