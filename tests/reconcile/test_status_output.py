"""`asstctl status` (issue 10 item 15), `--output json` on apply and destroy and the order of their
outcomes (item 16, item 13), duplicates kept without --prune (item 3), `--out` for files."""

from __future__ import annotations

import json

import pytest
import yaml
from click.testing import CliRunner

from asstctl.cli import cli
from asstctl.reconcile.remote import read_remote
from tests.knowledge.helpers import write

NAME = "stat"


@pytest.fixture
def here(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write(tmp_path, {"asstctl.yaml": f"project: {NAME}\n",
                     **{f"assistants/{key}.yaml": f"model: gpt-4o\nname: {key}\n" for key in ("a", "b", "c", "d")}})
    return tmp_path


def run(server, *args, input=None):
    env = {"OPENAI_API_KEY": server.api_key, "NO_COLOR": None, "FORCE_COLOR": None, "OPENAI_BASE_URL": None}
    return CliRunner().invoke(cli, [*args, "--base-url", server.base_url], env=env, input=input, catch_exceptions=False)


def test_status_names_every_state_with_its_spec_file(server, client, here):
    assert run(server, "apply", "--yes").exit_code == 0
    remote = read_remote(client, NAME)
    client.beta.assistants.update(remote.managed["a"]["id"], name="changed by hand")  # drift
    write(here, {"assistants/b.yaml": "model: gpt-4o\nname: b v2\n"})  # pending
    client.beta.assistants.create(model="gpt-4o", metadata=remote.managed["c"]["metadata"])  # duplicate
    (here / "assistants/d.yaml").unlink()  # no spec
    write(here, {"assistants/e.yaml": "model: gpt-4o\n"})  # missing
    result = run(server, "status", "--output", "json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    states = sorted((row["key"], row["state"], row["spec"]) for row in data["objects"])
    assert states == [("a", "drift", "assistants/a.yaml"), ("b", "pending", "assistants/b.yaml"),
                      ("c", "duplicate", None), ("c", "in sync", "assistants/c.yaml"), ("d", "no spec", None),
                      ("e", "missing", "assistants/e.yaml")]
    ids = {row["key"]: row["id"] for row in data["objects"] if row["state"] not in ("duplicate", "missing")}
    assert ids == {key: obj["id"] for key, obj in read_remote(client, NAME).managed.items()}
    assert data["lock"] is None and data["in_sync"] is False and data["counts"]["duplicate"] == 1
    text = run(server, "status", "--detailed-exitcode")
    assert text.exit_code == 2
    assert "not locked" in text.output and "1 drift" in text.output and "`asstctl apply --prune` deletes" in text.output
    assert not read_remote(client, NAME).managed["a"]["name"] == "a"  # status changed nothing


def test_status_of_a_project_in_sync_exits_0(server, here):
    assert run(server, "apply", "--yes").exit_code == 0
    result = run(server, "status", "--detailed-exitcode")
    assert result.exit_code == 0 and "4 objects: 4 in sync." in result.output, result.output


def test_apply_and_destroy_report_json_in_the_order_they_ran(server, client, here):
    result = run(server, "apply", "--yes", "--output", "json", "--parallelism", "1")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)  # stdout is one JSON document: no plan text, no summary line
    assert report["kind"] == "apply-report" and report["status"] == "applied" and report["mode"] == "apply"
    assert report["totals"] == {"created": 4, "updated": 0, "deleted": 0, "uploaded": 0, "failed": 0}
    made = {obj["id"]: key for key, obj in read_remote(client, NAME).managed.items()}
    assert [(o["key"], o["action"]) for o in report["outcomes"]] == [(made[o["id"]], "create") for o in report["outcomes"]]
    assert [o["id"] for o in report["outcomes"]] == [a.id for a in client.beta.assistants.list(order="asc")]
    again = json.loads(run(server, "apply", "--yes", "--output", "json").output)
    assert again["status"] == "no-changes" and again["outcomes"] == []
    gone = run(server, "destroy", "--yes", "--output", "json")
    assert gone.exit_code == 0, gone.output
    report = json.loads(gone.output)
    assert report["mode"] == "destroy" and report["totals"]["deleted"] == 4
    assert {(o["object"], o["action"], o["ok"]) for o in report["outcomes"]} == {("assistant", "delete", True)}


def test_a_failed_apply_still_prints_its_json_report_and_exits_1(server, here):
    write(here, {"assistants/broken.yaml": yaml.safe_dump({"model": "gpt-4o", "tools": [{"type": "file_search"}],
                                                           "tool_resources": {"file_search": {"vector_store_ids": ["vs_x"]}}})})
    result = CliRunner().invoke(
        cli, ["apply", "--yes", "--output", "json", "--base-url", server.base_url],
        env={"OPENAI_API_KEY": server.api_key, "OPENAI_BASE_URL": None})
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    assert report["status"] == "failed" and report["totals"]["failed"] == 1 and report["totals"]["created"] == 4
    assert [o["key"] for o in report["outcomes"] if not o["ok"]] == ["broken"]
    assert result.stderr.startswith("Error: 1 operation(s) failed (broken)")


def test_duplicates_are_kept_by_apply_and_named_in_the_plan(server, client, here):
    assert run(server, "apply", "--yes").exit_code == 0
    extra = client.beta.assistants.create(model="gpt-4o", metadata=read_remote(client, NAME).managed["a"]["metadata"])
    result = run(server, "apply", "--yes")
    assert result.exit_code == 0
    assert "= no-op duplicate a  (another object with this key is managed; kept: `asstctl apply --prune` deletes it)" \
        in result.output
    assert "1 duplicate kept (`asstctl apply --prune` deletes it)." in result.output
    assert extra.id in {obj["id"] for obj in read_remote(client, NAME).duplicates["a"]}
    pruned = run(server, "apply", "--yes", "--prune")
    assert "- delete duplicate a  (--prune: the oldest object with this key is kept)" in pruned.output
    assert "1 deleted" in pruned.output and not read_remote(client, NAME).duplicates


def test_apply_prints_outcomes_in_the_order_they_ran_not_by_name(server, here):
    assert run(server, "apply", "--yes").exit_code == 0
    (here / "assistants/a.yaml").unlink()
    write(here, {"assistants/z.yaml": "model: gpt-4o\n"})
    result = run(server, "apply", "--yes", "--prune")
    assert result.exit_code == 0, result.output
    done = [line for line in result.output.splitlines() if line.startswith(("+ z:", "- a:"))]
    assert [line[:4] for line in done] == ["+ z:", "- a:"]  # creates run before deletions; by name, a came first


def test_output_is_a_format_and_out_a_file_on_every_command():
    from asstctl.cli.reference import context

    group = context(cli, "asstctl")
    for name in cli.list_commands(group):
        for param in cli.get_command(group, name).params:
            if "--output" in param.opts and not getattr(param, "hidden", False):
                assert list(param.type.choices) == ["text", "json"], f"asstctl {name} --output is not a format"
            if "--out" in param.opts:
                assert param.metavar == "FILE", f"asstctl {name} --out is not a file"


def test_schema_writes_with_out_and_still_accepts_the_old_output_with_a_note(tmp_path):
    new, old = tmp_path / "a" / "s.json", tmp_path / "b" / "s.json"
    result = CliRunner().invoke(cli, ["schema", "--out", str(new)])
    assert result.exit_code == 0 and json.loads(new.read_text())["type"] == "object"
    assert "deprecated" not in result.output
    result = CliRunner().invoke(cli, ["schema", "--output", str(old)])
    assert result.exit_code == 0 and old.read_text() == new.read_text()
    assert "`asstctl schema --output FILE` is deprecated: use --out FILE" in result.stderr
