"""Knowledge through the CLI (`asstctl plan` / `apply` / `destroy` --base-url the test's server):
the text and JSON plan show file-level changes, a failed ingestion names the file and fails the
apply, a saved plan is refused when a store or upload changed since."""

from __future__ import annotations

import json

import pytest

from tests.knowledge.helpers import counts, project, write
from tests.knowledge.test_sync import FILES
from tests.reconcile.test_cli import run


@pytest.fixture
def proj(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return project(tmp_path, FILES)


def test_the_plan_shows_files_under_the_store_and_the_assistant(server, proj, tmp_path):
    assert run(server, "apply", "--yes").exit_code == 0
    write(tmp_path, {"assistants/knowledge/faq.md": "# FAQ\nchanged\n", "assistants/knowledge/new.md": "new\n",
                     "assistants/data/a.csv": "changed\n"})
    (tmp_path / "assistants/knowledge/shipping.md").unlink()
    result = run(server, "plan")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    store = lines.index("~ update vector store bot")
    assert lines[store + 1:store + 4] == ["    ~ file assistants/knowledge/faq.md (content changed)",
                                          "    + file assistants/knowledge/new.md",
                                          "    - file assistants/knowledge/shipping.md"]
    bot = lines.index("~ update bot")
    assert lines[bot + 1] == "    ~ file assistants/data/a.csv (content changed)"
    assert "- delete file assistants/knowledge/shipping.md  (no longer used)" in lines
    assert "- delete file assistants/knowledge/faq.md  (replaced by its new content)" in lines
    assert lines[-1] == "Plan: 0 to create, 2 to update, 0 to delete. Files: 3 to upload, 3 to delete."


def test_the_json_plan_lists_uploads_file_changes_and_deletions(server, proj, tmp_path):
    result = run(server, "plan", "--output", "json")
    plan = json.loads(result.output)
    assert plan["format_version"] == 1
    assert sorted(u["path"] for u in plan["uploads"]) == ["assistants/data/a.csv", "assistants/data/b.csv",
                                                          "assistants/knowledge/faq.md", "assistants/knowledge/shipping.md"]
    assert all(u["filename"].startswith("asstctl--kb--") and len(u["sha256"]) == 64 for u in plan["uploads"])
    store, bot = plan["actions"]
    assert (store["object"], store["kind"], bot["object"], bot["kind"]) == ("vector_store", "create", "assistant", "create")
    assert [(f["op"], f["path"]) for f in store["files"]] == [("+", "assistants/knowledge/faq.md"),
                                                               ("+", "assistants/knowledge/shipping.md")]
    assert store["files"][0]["attributes"]["asstctl.path"] == "assistants/knowledge/faq.md"
    assert bot["body"]["tool_resources"]["file_search"] == {"vector_store_ids": ["vector_store:bot"]}
    assert plan["file_deletions"] == [] and plan["refs"] == {}


def test_a_failed_ingestion_names_the_file_and_fails_the_apply(server, proj, tmp_path):
    server.faults.ingest_fail_marker = b"ASSTCTL-INGEST-FAIL"
    write(tmp_path, {"assistants/knowledge/bad.md": "ASSTCTL-INGEST-FAIL\n"})
    result = run(server, "apply", "--yes", "--ingestion-timeout", "5")
    assert result.exit_code == 1
    assert "! assistants/knowledge/bad.md: ingest failed: The file" in result.output
    assert "(invalid_file)" in result.output and "Traceback" not in result.output


def test_a_saved_plan_is_refused_when_an_upload_it_uses_is_gone(server, proj, tmp_path):
    assert run(server, "apply", "--yes").exit_code == 0
    write(tmp_path, {"assistants/knowledge/faq.md": "# FAQ\nchanged\n"})
    assert run(server, "plan", "--out", "plan.json").exit_code == 0
    from tests.reconcile.test_cli import sdk

    client = sdk(server)
    shipping = next(f for f in client.files.list() if f.filename.endswith("--shipping.md"))
    client.files.delete(shipping.id)
    result = run(server, "apply", "plan.json", "--yes")
    assert result.exit_code == 1 and "stale" in result.output
    uploads = counts(server)[0]
    assert run(server, "apply", "--yes").exit_code == 0
    assert counts(server)[0] == uploads + 2  # the changed file and the one deleted behind asstctl's back


def test_a_saved_plan_applies_and_destroy_removes_everything(server, proj):
    assert run(server, "plan", "--out", "plan.json").exit_code == 0
    assert run(server, "apply", "plan.json", "--yes").exit_code == 0
    assert counts(server) == (4, 0)
    result = run(server, "destroy", "--yes")
    assert result.exit_code == 0, result.output
    assert counts(server) == (4, 4)
    assert "- vector store bot: deleted" in result.output
