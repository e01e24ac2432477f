"""Saved plans and the plan as data, where mutation testing found them unpinned (docs/testing.md):
which remote a saved plan's freshness is checked against (assistants, or the stores and uploads),
what reading it costs, and what a saved plan carries."""

from __future__ import annotations

import pytest

from asstctl.errors import PlanError
from asstctl.reconcile.apply import apply_plan, verified_remote
from asstctl.reconcile.plan import load_plan, save_plan
from tests.knowledge.helpers import converge as kb_converge
from tests.knowledge.helpers import managed_store, plan as kb_plan, project, write
from tests.reconcile.helpers import converge, make_plan, spec
from tests.strength.conftest import FILES, KNOWLEDGE_BOT, assistant

CODE_BOT = "model: gpt-4o\ntools:\n  - code_interpreter: {files: [data/*.csv]}\n"
REPLAN = "Run `asstctl plan` again (and `--out FILE` to save the new plan)."


def saved(made, root, name="plan.json"):
    save_plan(made, str(root / name))
    return load_plan(str(root / name))


def test_a_saved_create_of_a_store_and_its_assistant_names_both_once_they_exist(client, root):
    """Each action is checked against its own kind: the store against the stores, the assistant
    against the assistants (both share the key `bot`), stores first."""
    proj = project(root, {"assistants/bot.yaml": KNOWLEDGE_BOT, **FILES})
    loaded = saved(kb_plan(client, proj), root)
    kb_converge(client, proj)  # someone else applied first
    store, bot = managed_store(client, "bot"), assistant(client)
    with pytest.raises(PlanError) as raised:
        verified_remote(loaded, client)
    assert str(raised.value) == ("the saved plan is stale, the remote changed since it was made: "
                                 f"bot: now exists ({store.id}); bot: now exists ({bot.id})")
    assert raised.value.hint == REPLAN


def test_a_saved_plan_for_an_assistant_that_already_has_code_files_applies(client, root):
    """Its uploads are known by reference: applying it reads them, and they are still there."""
    proj = project(root, {"assistants/bot.yaml": CODE_BOT, **FILES})
    kb_converge(client, proj)
    write(root, {"assistants/bot.yaml": CODE_BOT + "temperature: 0.5\n"})
    made = kb_plan(client, proj)
    assert made.refs and not made.uploads and not made.file_deletions
    assert {a.object for a in made.actions} == {"assistant"}
    loaded = saved(made, root)
    verified_remote(loaded, client)  # fresh: no error
    assert not apply_plan(loaded, client, root=proj.root).failed
    assert assistant(client).temperature == 0.5 and not kb_plan(client, proj).has_changes()


def test_a_saved_plan_without_knowledge_never_reads_stores_or_files(client, server, root):
    """A project of plain assistants costs no vector store or file requests, planning or applying."""
    converge(client, [spec("bot")])
    loaded = saved(make_plan(client, [spec("bot", temperature=0.5)]), root)
    before = dict(server.state.stats)
    verified_remote(loaded, client)
    assert not apply_plan(loaded, client).failed
    after = server.state.stats
    read = {key for key in after if after[key] != before.get(key, 0)}
    assert read == {"total", "GET /v1/assistants", "POST /v1/assistants/{id}"}, read


PLAN_FIELDS = ["format_version", "project", "target", "mode", "prune", "actions", "remote_fingerprint", "foreign",
               "uploads", "file_deletions", "refs"]
ACTION_FIELDS = {"kind", "key", "remote_id", "fingerprint", "changes", "instructions_diff", "drift", "reason", "blocked",
                 "body", "source", "object", "files", "duplicate"}


def test_the_plan_document_has_exactly_the_documented_fields(client, root):
    """docs/plan-format.md: the document, an action, a change, a file change, an upload, a file deletion."""
    import json

    proj = project(root, {"assistants/bot.yaml": KNOWLEDGE_BOT, **FILES})
    kb_converge(client, proj)
    write(root, {"assistants/bot.yaml": KNOWLEDGE_BOT + "temperature: 0.5\n",
                 "assistants/knowledge/faq.md": "# FAQ\nReturns within 60 days.\n"})
    save_plan(kb_plan(client, proj), str(root / "plan.json"))
    data = json.loads((root / "plan.json").read_text())
    assert list(data) == PLAN_FIELDS
    assert data["actions"] and all(set(action) == ACTION_FIELDS for action in data["actions"])
    changes = [change for action in data["actions"] for change in action["changes"]]
    assert changes and all(list(change) == ["path", "old", "new", "kind"] for change in changes)
    ops = [op for action in data["actions"] for op in action["files"]]
    assert ops and all(list(op) == ["op", "path", "ref", "file_id", "reason", "attributes", "chunking_strategy"]
                       for op in ops)
    assert [list(item) for item in data["uploads"]] == [["ref", "path", "source", "sha256", "bytes", "filename"]]
    assert [list(item) for item in data["file_deletions"]] == [["file_id", "filename", "path", "reason"]]


def test_prune_deletes_stores_and_files_left_after_their_assistant_and_spec_are_gone(client, root):
    """No spec and no assistant names them any more, but they are the project's: --prune reads them."""
    proj = project(root, {"assistants/bot.yaml": KNOWLEDGE_BOT, **FILES})
    kb_converge(client, proj)
    client.beta.assistants.delete(assistant(client).id)
    (root / "assistants/bot.yaml").unlink()
    write(root, {"assistants/plain.yaml": "model: gpt-4o\n"})
    assert [(a.object, a.key, a.kind) for a in kb_plan(client, proj).actions] == [("assistant", "plain", "create")]
    made = kb_plan(client, proj, prune=True)
    assert [(a.object, a.key, a.kind) for a in made.actions] == [("vector_store", "bot", "delete"),
                                                                 ("assistant", "plain", "create")]
    assert len(made.file_deletions) == 3
    _, result = kb_converge(client, proj, prune=True)
    assert not result.failed
    assert list(client.vector_stores.list()) == [] and list(client.files.list()) == []


def test_the_remote_fingerprint_covers_the_stores_and_files(client, root):
    proj = project(root, {"assistants/bot.yaml": KNOWLEDGE_BOT, **FILES})
    kb_converge(client, proj)
    first = kb_plan(client, proj).remote_fingerprint
    assert kb_plan(client, proj).remote_fingerprint == first
    client.vector_stores.update(managed_store(client, "bot").id, name="by hand")
    assert kb_plan(client, proj).remote_fingerprint != first


def test_an_override_for_the_base_url_target_applies_when_planning_against_a_base_url(client, root):
    """docs/spec-format.md: `base-url`, `env` and `embedded` name the targets chosen without --target;
    their overrides apply to them (and only to them), never silently dropped."""
    proj = project(root, {"assistants/bot.yaml": "model: gpt-4o\ntargets:\n  base-url: {temperature: 0.3}\n"
                                                 "  env: {temperature: 0.9}\n"})
    [action] = kb_plan(client, proj).actions  # the helper plans against a --base-url target
    assert action.body["temperature"] == 0.3
    kb_converge(client, proj)
    assert assistant(client).temperature == 0.3 and not kb_plan(client, proj).has_changes()


def test_a_shared_store_no_assistant_uses_yet_is_planned_and_made(client, root):
    proj = project(root, {"assistants/plain.yaml": "model: gpt-4o\n",
                          "vector_stores/library.yaml": "name: Library\nfiles: [../assistants/knowledge/*.md]\n", **FILES})
    made = kb_plan(client, proj)
    assert [(a.object, a.key, a.kind) for a in made.actions] == [("vector_store", "library", "create"),
                                                                 ("assistant", "plain", "create")]
    kb_converge(client, proj)
    assert managed_store(client, "library").name == "Library" and not kb_plan(client, proj).has_changes()


def test_a_plan_built_without_saying_prune_keeps_what_no_spec_declares(client):
    """The library's ``build_plan`` prunes only when asked, like ``asstctl plan`` without ``--prune``."""
    from asstctl.reconcile.plan import build_plan
    from asstctl.reconcile.remote import read_remote
    from tests.reconcile.helpers import PROJECT, converge, spec

    converge(client, [spec("keep"), spec("orphan")])
    made = build_plan([spec("keep")], read_remote(client, PROJECT), project=PROJECT, target="test")
    assert made.prune is False
    assert [(a.key, a.kind) for a in made.actions] == [("keep", "no-op"), ("orphan", "no-op")]
