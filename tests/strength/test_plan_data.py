"""The plan as data: what a saved plan carries, what counts as a change, the order of actions, and
deletions under destroy (duplicates, prevent_destroy). Each test shows a behaviour a mutation of the
planner would break (docs/testing.md)."""

from __future__ import annotations

import io
import json

from asstctl.reconcile.apply import apply_plan
from asstctl.reconcile.plan import load_plan, save_plan
from asstctl.reconcile.remote import read_remote
from asstctl.testing.expectations import TurnOutcome, check
from tests.knowledge.helpers import PROJECT as KB
from tests.knowledge.helpers import converge as kb_converge
from tests.knowledge.helpers import managed_store, plan as kb_plan, project, store_files, write
from tests.reconcile.helpers import PROJECT, converge, destroy_plan, kinds, make_plan, spec
from tests.strength.conftest import FILES, KNOWLEDGE_BOT, assistant

CODE_BOT = "model: gpt-4o\ntools:\n  - code_interpreter: {files: [data/*.csv]}\n"


def test_dropping_code_interpreter_files_from_a_spec_clears_them_on_the_server(client, root):
    proj = project(root, {"assistants/bot.yaml": CODE_BOT, **FILES})
    kb_converge(client, proj)
    assert len(assistant(client).tool_resources.code_interpreter.file_ids) == 1
    write(root, {"assistants/bot.yaml": "model: gpt-4o\ntools: [code_interpreter]\n"})
    made, result = kb_converge(client, proj)
    assert not result.failed, result.failed
    resources = assistant(client).tool_resources
    assert resources.code_interpreter is None or resources.code_interpreter.file_ids == []
    assert not kb_plan(client, proj).has_changes()


def test_a_saved_plan_with_knowledge_carries_its_file_operations(client, server, root):
    """plan --out then apply PLANFILE: vector store file changes, uploads and file deletions survive JSON."""
    proj = project(root, {"assistants/bot.yaml": KNOWLEDGE_BOT, **FILES})
    kb_converge(client, proj)
    store = managed_store(client, "bot")
    old_faq = store_files(client, store.id)["assistants/knowledge/faq.md"]["id"]
    write(root, {"assistants/knowledge/faq.md": "# FAQ\nReturns within 60 days.\n",
                  "assistants/knowledge/new.md": "# New\nA new page.\n"})
    (root / "assistants/knowledge/shipping.md").unlink()
    save_plan(kb_plan(client, proj), str(root / "plan.json"))
    loaded = load_plan(str(root / "plan.json"))
    ops = {(op.op, op.path) for action in loaded.actions for op in action.files}
    assert ops == {("~", "assistants/knowledge/faq.md"), ("+", "assistants/knowledge/new.md"),
                   ("-", "assistants/knowledge/shipping.md")}
    assert {d.path for d in loaded.file_deletions} == {"assistants/knowledge/faq.md", "assistants/knowledge/shipping.md"}
    assert {u.path for u in loaded.uploads} == {"assistants/knowledge/faq.md", "assistants/knowledge/new.md"}
    result = apply_plan(loaded, client, root=proj.root)
    assert not result.failed, result.failed
    files = store_files(client, store.id)
    assert set(files) == {"assistants/knowledge/faq.md", "assistants/knowledge/new.md"}
    assert files["assistants/knowledge/faq.md"]["id"] != old_faq
    assert old_faq not in {f.id for f in client.files.list()}
    assert not kb_plan(client, proj).has_changes()


def test_a_plan_whose_only_work_is_a_file_deletion_has_changes(client, server, root):
    """An upload of this project that nothing uses (left by a crashed apply) is deleted: that is a change."""
    proj = project(root, {"assistants/bot.yaml": CODE_BOT, **FILES})
    kb_converge(client, proj)
    stray = client.files.create(file=(f"asstctl--{KB}--0123456789abcdef--old.csv", io.BytesIO(b"x\n")),
                                purpose="assistants")
    made = kb_plan(client, proj)
    assert not [a for a in made.actions if a.executable] and not made.uploads
    assert [d.file_id for d in made.file_deletions] == [stray.id]
    assert made.has_changes()
    from tests.reconcile.test_cli import run

    assert run(server, "plan", "--detailed-exitcode").exit_code == 2
    _, result = kb_converge(client, proj)
    assert not result.failed and stray.id not in {f.id for f in client.files.list()}
    assert not kb_plan(client, proj).has_changes()


def _duplicate(client, key):
    first = read_remote(client, PROJECT).managed[key]
    return client.beta.assistants.create(model="gpt-4o", metadata=first["metadata"]).id


def test_destroy_deletes_duplicates_too(client):
    converge(client, [spec("bot"), spec("faq")])
    extra = _duplicate(client, "bot")
    plan = destroy_plan(client, [spec("bot"), spec("faq")])
    deleted = {a.remote_id for a in plan.actions if a.kind == "delete" and not a.blocked}
    assert extra in deleted and len(deleted) == 3
    assert plan.counts()["delete"] == 3
    assert not apply_plan(plan, client).failed
    assert read_remote(client, PROJECT).managed == {} and {a.id for a in client.beta.assistants.list()} == set()


def test_prevent_destroy_also_protects_the_duplicates_of_its_key(client):
    converge(client, [spec("vault", prevent_destroy=True)])
    extra = _duplicate(client, "vault")
    plan = destroy_plan(client, [spec("vault", prevent_destroy=True)])
    assert all(a.blocked for a in plan.actions) and extra in {a.remote_id for a in plan.actions}
    counted = plan.counts()
    assert (counted["delete"], counted["blocked"]) == (0, 2) and not plan.has_changes()
    apply_plan(plan, client)
    assert len({a.id for a in client.beta.assistants.list()}) == 2


def test_actions_are_ordered_stores_first_then_by_key_deletions_before_writes(client, root):
    proj = project(root, {"assistants/bot.yaml": KNOWLEDGE_BOT, "assistants/zeta.yaml": "model: gpt-4o\n",
                           "assistants/alpha.yaml": "model: gpt-4o\n", **FILES})
    kb_converge(client, proj)
    (root / "assistants/alpha.yaml").unlink()
    write(root, {"assistants/beta.yaml": "model: gpt-4o\n", "assistants/zeta.yaml": "model: gpt-4o-mini\n"})
    made = kb_plan(client, proj, prune=True)
    order = [(a.object, a.key, a.kind) for a in made.actions]
    assert order == [("vector_store", "bot", "no-op"), ("assistant", "alpha", "delete"), ("assistant", "beta", "create"),
                     ("assistant", "bot", "no-op"), ("assistant", "zeta", "update")]


def test_a_saved_plan_with_a_delete_applies_it(client, root):
    converge(client, [spec("keep"), spec("gone")])
    plan = make_plan(client, [spec("keep")], prune=True)
    assert kinds(plan) == {"keep": "no-op", "gone": "delete"}
    save_plan(plan, str(root / "plan.json"))
    loaded = load_plan(str(root / "plan.json"))
    assert json.loads((root / "plan.json").read_text())["prune"] is True
    result = apply_plan(loaded, client)
    assert not result.failed and result.count("delete") == 1
    assert set(read_remote(client, PROJECT).managed) == {"keep"}


def test_json_true_passes_a_reply_that_parses():
    for reply in ('{"a": 1}', "[1, 2]", '```json\n{"a": 1}\n```', "```\n[true]\n```"):
        assert check({"json": True}, TurnOutcome(reply=reply)) == [], reply
    assert check({"json": True}, TurnOutcome(reply="not json"))
