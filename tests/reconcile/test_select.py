"""Selecting assistants (issue 10 item 14): `plan/apply/destroy KEY...` touch those assistants and
their knowledge (their vector stores and uploads), nothing else; an unknown key is a clear error."""

from __future__ import annotations

import pytest
import yaml
from click.testing import CliRunner

from asstctl.cli import cli
from asstctl.reconcile.remote import read_remote
from tests.knowledge.helpers import write

NAME = "pick"
FILES = {
    "asstctl.yaml": f"project: {NAME}\n",
    "assistants/triage.yaml": "model: gpt-4o\nname: Triage\n",
    "assistants/faq.yaml": "model: gpt-4o\nname: FAQ\n",
    "assistants/billing.yaml": "model: gpt-4o\nname: Billing\n",
}
KNOWLEDGE = {
    "asstctl.yaml": f"project: {NAME}\n",
    "assistants/bot.yaml": yaml.safe_dump({"model": "gpt-4o", "tools": [
        {"code_interpreter": {"files": ["data/bot.csv"]}},
        {"file_search": {"vector_store": {"name": "Bot docs", "files": ["docs/bot.md"]}}}]}),
    "assistants/helper.yaml": yaml.safe_dump({"model": "gpt-4o", "tools": [
        {"code_interpreter": {"files": ["data/helper.csv"]}}, {"file_search": {"vector_store": "handbook"}}]}),
    "assistants/other.yaml": yaml.safe_dump({"model": "gpt-4o", "tools": [{"file_search": {"vector_store": "handbook"}}]}),
    "assistants/data/bot.csv": "a\n1\n", "assistants/data/helper.csv": "b\n2\n",
    "assistants/docs/bot.md": "bot docs\n",
    "vector_stores/handbook.yaml": "name: Handbook\nfiles: [docs/*.md]\n",
    "vector_stores/docs/h.md": "handbook\n",
}


@pytest.fixture
def here(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


def run(server, *args):
    env = {"OPENAI_API_KEY": server.api_key, "NO_COLOR": None, "FORCE_COLOR": None, "OPENAI_BASE_URL": None}
    return CliRunner().invoke(cli, [*args, "--base-url", server.base_url], env=env, catch_exceptions=False)


def test_plan_and_apply_of_keys_touch_only_those(server, client, here):
    write(here, FILES)
    planned = run(server, "plan", "triage", "faq")
    assert planned.exit_code == 0, planned.output
    assert "+ create triage" in planned.output and "+ create faq" in planned.output and "billing" not in planned.output
    assert "Plan: 2 to create" in planned.output
    applied = run(server, "apply", "triage", "--yes")
    assert applied.exit_code == 0 and "1 created" in applied.output, applied.output
    assert set(read_remote(client, NAME).managed) == {"triage"}
    write(here, {"assistants/triage.yaml": "model: gpt-4o\nname: Triage v2\n"})
    rest = run(server, "plan", "faq", "billing")
    assert "triage" not in rest.output and "Plan: 2 to create, 0 to update" in rest.output


def test_destroy_of_a_key_deletes_only_it(server, client, here):
    write(here, FILES)
    assert run(server, "apply", "--yes").exit_code == 0
    result = run(server, "destroy", "faq", "--yes")
    assert result.exit_code == 0 and "1 deleted" in result.output, result.output
    assert set(read_remote(client, NAME).managed) == {"triage", "billing"}


def test_a_removed_spec_can_be_selected_by_its_key_on_the_target(server, client, here):
    write(here, FILES)
    assert run(server, "apply", "--yes").exit_code == 0
    (here / "assistants/billing.yaml").unlink()
    result = run(server, "apply", "billing", "--prune", "--yes")
    assert result.exit_code == 0 and "1 deleted" in result.output, result.output
    assert set(read_remote(client, NAME).managed) == {"triage", "faq"}


def test_an_unknown_key_is_one_error_with_did_you_mean(server, client, here):
    write(here, FILES)
    for command in ("plan", "apply", "destroy"):
        result = run(server, command, "tirage", "--yes") if command != "plan" else run(server, command, "tirage")
        assert result.exit_code == 1, result.output
        assert result.output.startswith("Error: unknown assistant `tirage`: did you mean `triage`?"), result.output
        assert "Traceback" not in result.output
    assert read_remote(client, NAME).managed == {}


def test_a_plan_file_and_keys_together_are_a_usage_error(server, here):
    write(here, FILES)
    assert run(server, "plan", "--out", "plan.json").exit_code == 0
    result = run(server, "apply", "plan.json", "triage", "--yes")
    assert result.exit_code == 2 and "either one saved plan or assistant keys" in result.output
    missing = run(server, "apply", "plans/old.json", "--yes")
    assert missing.exit_code == 2 and "plans/old.json: no such plan file" in missing.output
    assert run(server, "apply", "plan.json", "--yes").exit_code == 0


def uploads(client) -> set[str]:
    return {f.filename.split("--")[-1] for f in client.files.list()}


def stores(client) -> set[str]:
    return {s.name for s in client.vector_stores.list()}


def test_selected_assistants_bring_their_knowledge_and_nothing_else(server, client, here):
    write(here, KNOWLEDGE)
    planned = run(server, "plan", "bot")
    assert "+ create vector store bot" in planned.output and "handbook" not in planned.output, planned.output
    assert "Files: 2 to upload" in planned.output  # bot.csv and docs/bot.md, not helper.csv nor the handbook's
    assert run(server, "apply", "bot", "--yes").exit_code == 0
    assert uploads(client) == {"bot.csv", "bot.md"} and stores(client) == {"Bot docs"}
    assert set(read_remote(client, NAME).managed) == {"bot"}
    assert run(server, "apply", "helper", "--yes").exit_code == 0  # the shared store comes with it
    assert uploads(client) == {"bot.csv", "bot.md", "helper.csv", "h.md"} and stores(client) == {"Bot docs", "Handbook"}
    assert run(server, "apply", "--yes").exit_code == 0
    assert not run(server, "plan", "--detailed-exitcode").exit_code


def test_destroy_of_a_key_keeps_knowledge_others_use(server, client, here):
    write(here, KNOWLEDGE)
    assert run(server, "apply", "--yes").exit_code == 0
    result = run(server, "destroy", "helper", "--yes")
    assert result.exit_code == 0, result.output
    assert set(read_remote(client, NAME).managed) == {"bot", "other"}
    assert stores(client) == {"Bot docs", "Handbook"}  # the handbook: `other` still uses it
    assert uploads(client) == {"bot.csv", "bot.md", "h.md"}  # helper.csv went with it
    result = run(server, "destroy", "bot", "--yes")
    assert result.exit_code == 0, result.output
    assert stores(client) == {"Handbook"} and uploads(client) == {"h.md"}
    assert not run(server, "plan", "other", "--detailed-exitcode").exit_code
