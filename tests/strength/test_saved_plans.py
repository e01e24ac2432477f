"""Saved plans (`plan --out`, then `apply PLANFILE`): a plan survives its JSON form whole, a fresh one
applies, a stale one is refused, and vector stores carry their reasons and fingerprints like
assistants do (mutation testing, docs/testing.md)."""

from __future__ import annotations

import json

import pytest

from asstctl.reconcile.apply import check_fresh
from asstctl.errors import PlanError
from asstctl.reconcile.knowledge import read_knowledge
from asstctl.reconcile.model import Plan
from asstctl.reconcile.plan import load_plan, save_plan
from asstctl.reconcile.remote import read_remote
from asstctl.reconcile.report import render_text
from tests.knowledge.helpers import PROJECT as KB
from tests.knowledge.helpers import converge, managed_store, plan, project, write
from tests.strength.conftest import FILES, KNOWLEDGE_BOT

BOT = KNOWLEDGE_BOT.replace("model: gpt-4o\n", "model: gpt-4o\ninstructions: Be brief.\n", 1)
LIBRARY = "name: Library\nfiles: [../assistants/knowledge/*.md]\n"


def round_trip(made: Plan, path) -> Plan:
    save_plan(made, str(path))
    return load_plan(str(path))


def test_a_rich_plan_survives_its_json_form_whole(client, root):
    """Changes of every kind, file operations, uploads, file deletions, drift and blocked deletions."""
    proj = project(root, {"assistants/bot.yaml": BOT, "assistants/vault.yaml": "model: gpt-4o\nprevent_destroy: true\n",
                          **FILES})
    converge(client, proj)
    bot = next(a for a in client.beta.assistants.list() if a.metadata.get("asstctl.key") == "bot")
    client.beta.assistants.update(bot.id, temperature=1.5)  # drift
    write(root, {"assistants/bot.yaml": BOT.replace("Be brief.", "Be thorough.").replace("name: Docs", "name: Docs 2")
                 + "metadata: {team: a}\n",
                 "assistants/knowledge/faq.md": "# FAQ\nchanged\n", "assistants/knowledge/new.md": "new\n",
                 "assistants/data/b.csv": "x\n"})
    (root / "assistants/knowledge/shipping.md").unlink()
    made = plan(client, proj)
    kinds = {c.kind for a in made.actions for c in a.changes}
    assert kinds == {"added", "changed"} and any(a.drift for a in made.actions)
    assert made.uploads and made.file_deletions and any(a.files for a in made.actions)
    loaded = round_trip(made, root / "plan.json")
    assert loaded == made
    assert render_text(loaded) == render_text(made)
    destroy = plan(client, proj, destroy=True)
    assert any(a.blocked for a in destroy.actions)
    assert round_trip(destroy, root / "destroy.json") == destroy


def test_removed_fields_keep_their_kind_in_a_saved_plan(client, root):
    proj = project(root, {"assistants/bot.yaml": "model: gpt-4o\nname: Bot\nmetadata: {team: a}\n"})
    converge(client, proj)
    write(root, {"assistants/bot.yaml": "model: gpt-4o\n"})
    made = plan(client, proj)
    assert {c.kind for c in made.actions[0].changes} == {"removed"}
    assert round_trip(made, root / "plan.json").actions[0].changes == made.actions[0].changes


def test_a_saved_plan_with_a_kept_orphan_store_applies_and_goes_stale_when_the_store_changes(client, root):
    """A store no spec declares any more is kept (no-op) with its fingerprint: the saved plan applies
    while it is unchanged, and is refused once someone changes it."""
    proj = project(root, {"assistants/bot.yaml": BOT, "vector_stores/library.yaml": LIBRARY,
                          "assistants/other.yaml": "model: gpt-4o\ntools: [{file_search: {vector_store: library}}]\n",
                          **FILES})
    converge(client, proj)
    (root / "assistants/other.yaml").unlink()
    (root / "vector_stores/library.yaml").unlink()
    made = plan(client, proj)
    orphan = next(a for a in made.actions if a.object == "vector_store" and a.key == "library")
    assert orphan.kind == "no-op" and orphan.fingerprint and "re-run with --prune" in orphan.reason
    loaded = round_trip(made, root / "plan.json")
    check_fresh(loaded, read_remote(client, KB), read_knowledge(client, KB))  # fresh: no error
    library = managed_store(client, "library")
    client.vector_stores.update(library.id, name="renamed by hand")
    with pytest.raises(PlanError, match="library: .* was changed"):
        check_fresh(loaded, read_remote(client, KB), read_knowledge(client, KB))


def test_store_deletions_say_why(client, root):
    proj = project(root, {"assistants/bot.yaml": BOT, "vector_stores/library.yaml": LIBRARY,
                          "assistants/other.yaml": "model: gpt-4o\ntools: [{file_search: {vector_store: library}}]\n",
                          **FILES})
    converge(client, proj)
    destroy = render_text(plan(client, proj, destroy=True))
    assert "- delete vector store bot  (destroy)" in destroy and "- delete vector store library  (destroy)" in destroy
    (root / "assistants/other.yaml").unlink()
    (root / "vector_stores/library.yaml").unlink()
    kept = render_text(plan(client, proj))
    assert "vector store library  (not in the specs: kept (re-run with --prune to delete it))" in kept
    pruned = plan(client, proj, prune=True)
    assert "- delete vector store library  (removed from the specs (--prune))" in render_text(pruned)
    _, result = converge(client, proj, prune=True)
    assert not result.failed
    assert {s.metadata.get("asstctl.key") for s in client.vector_stores.list()} == {"bot"}


def test_a_stale_plan_names_every_changed_object(client, root):
    proj = project(root, {"assistants/bot.yaml": BOT, **FILES})
    converge(client, proj)
    write(root, {"assistants/bot.yaml": BOT.replace("Be brief.", "Be kind.")})
    loaded = round_trip(plan(client, proj), root / "plan.json")
    bot = next(a for a in client.beta.assistants.list() if a.metadata.get("asstctl.key") == "bot")
    client.beta.assistants.update(bot.id, name="by hand")
    with pytest.raises(PlanError, match=f"bot: {bot.id} was changed"):
        check_fresh(loaded, read_remote(client, KB), read_knowledge(client, KB))
    assert json.loads((root / "plan.json").read_text())["format_version"] == 1
