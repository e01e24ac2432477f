"""What a user reads when something is off: saved-plan errors with their fixes, duplicate vector
stores with their reasons, file citation expectations, and one-line API errors. Exact texts, because
mutation testing showed nothing else pins them (docs/testing.md)."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from asstctl.backends.base import describe
from asstctl.reconcile.apply import verified_remote
from asstctl.errors import PlanError
from asstctl.testing.expectations import TurnOutcome, check
from asstctl.reconcile.plan import load_plan, save_plan
from asstctl.reconcile.report import render_text
from tests.knowledge.helpers import converge, managed_store, plan, project
from tests.strength.conftest import FILES, KNOWLEDGE_BOT

REDO = "Create one with `asstctl plan --out FILE`."


def write_json(path, data) -> str:
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return str(path)


@pytest.mark.parametrize("content, message, hint", [
    ({"format_version": 2, "actions": []}, "unsupported plan format_version 2 (this asstctl reads 1)",
     "Create the plan again with `asstctl plan --out FILE`."),
    ([1, 2], "unsupported plan format_version None (this asstctl reads 1)",
     "Create the plan again with `asstctl plan --out FILE`."),
    ({"format_version": 1, "project": "p"}, "the plan file is damaged", "Create it again with `asstctl plan --out FILE`."),
    ("{not json", "not a readable plan file", REDO),
])
def test_an_unusable_plan_file_says_what_is_wrong_and_how_to_fix_it(tmp_path, content, message, hint):
    with pytest.raises(PlanError) as raised:
        load_plan(write_json(tmp_path / "plan.json", content))
    assert message in str(raised.value) and raised.value.hint == hint


def test_a_missing_plan_file_names_the_path(tmp_path):
    with pytest.raises(PlanError) as raised:
        load_plan(str(tmp_path / "nowhere.json"))
    assert str(raised.value).startswith(f"{tmp_path / 'nowhere.json'}: not a readable plan file (")
    assert raised.value.hint == REDO


def test_describe_gives_one_line():
    assert describe(SimpleNamespace(message="first\nsecond")) == "first"  # an API error's message
    assert describe(ValueError("plain\nmore")) == "plain"
    assert describe(ValueError()) == "ValueError"
    assert describe(SimpleNamespace(message="")) == "namespace(message='')"  # no message: the error's text


def test_a_duplicate_store_is_kept_without_prune_deleted_with_it_and_under_destroy(client, root):
    proj = project(root, {"assistants/bot.yaml": KNOWLEDGE_BOT, **FILES})
    converge(client, proj)
    kept = managed_store(client, "bot")
    extra = client.vector_stores.create(name="Docs", metadata=kept.metadata)

    def action(made):
        return next(a for a in made.actions if a.remote_id == extra.id)

    plain = action(plan(client, proj))
    assert (plain.kind, plain.key, plain.duplicate, plain.object) == ("no-op", "bot", True, "vector_store")
    assert plain.reason == "another vector store with this key is managed; kept: `asstctl apply --prune` deletes it"
    assert plain.fingerprint
    pruned = action(plan(client, proj, prune=True))
    assert (pruned.kind, pruned.key, pruned.blocked) == ("delete", "bot", False)
    assert pruned.reason == "--prune: the oldest vector store with this key is kept" and pruned.fingerprint
    destroyed = action(plan(client, proj, destroy=True))
    assert (destroyed.kind, destroyed.reason) == ("delete", "destroy")
    text = render_text(plan(client, proj, prune=True))
    assert "- delete duplicate vector store bot" in text
    saved = root / "plan.json"
    save_plan(plan(client, proj, prune=True), str(saved))
    verified_remote(load_plan(str(saved)), client)  # fresh: no error


def test_a_duplicate_store_of_a_protected_spec_is_never_deleted(client, root):
    proj = project(root, {"assistants/bot.yaml": KNOWLEDGE_BOT + "prevent_destroy: true\n", **FILES})
    converge(client, proj)
    kept = managed_store(client, "bot")
    extra = client.vector_stores.create(name="Docs", metadata=kept.metadata)
    for options in ({"prune": True}, {"destroy": True}):
        action = next(a for a in plan(client, proj, **options).actions if a.remote_id == extra.id)
        assert action.blocked and action.reason.endswith("; blocked: used by bot, which sets prevent_destroy"), action.reason


def test_a_shared_store_of_a_protected_assistant_says_so(client, root):
    proj = project(root, {"vector_stores/library.yaml": "name: Library\nfiles: [../assistants/knowledge/*.md]\n",
                          "assistants/bot.yaml": "model: gpt-4o\nprevent_destroy: true\n"
                                                 "tools: [{file_search: {vector_store: library}}]\n", **FILES})
    converge(client, proj)
    action = next(a for a in plan(client, proj, destroy=True).actions if a.object == "vector_store")
    assert action.blocked and action.reason == "destroy; blocked: used by bot, which sets prevent_destroy"


def test_a_saved_plan_is_checked_against_the_stores_and_files_it_touches(client, root):
    proj = project(root, {"assistants/bot.yaml": KNOWLEDGE_BOT, **FILES})
    converge(client, proj)
    (root / "assistants/knowledge/shipping.md").unlink()
    saved = root / "plan.json"
    save_plan(plan(client, proj), str(saved))
    loaded = load_plan(str(saved))
    assert loaded.file_deletions
    gone = loaded.file_deletions[0]
    client.files.delete(gone.file_id)
    with pytest.raises(PlanError, match=f"file {gone.path}: {gone.file_id} is gone"):
        verified_remote(loaded, client)


def test_a_saved_plan_with_only_a_store_change_is_checked_against_the_store(client, root):
    proj = project(root, {"assistants/bot.yaml": KNOWLEDGE_BOT, **FILES})
    converge(client, proj)
    project(root, {"assistants/bot.yaml": KNOWLEDGE_BOT.replace("name: Docs", "name: Docs 2"), **FILES})
    saved = root / "plan.json"
    save_plan(plan(client, proj), str(saved))
    loaded = load_plan(str(saved))
    assert not loaded.uploads and not loaded.file_deletions
    store = managed_store(client, "bot")
    client.vector_stores.update(store.id, name="by hand")
    with pytest.raises(PlanError, match=f"bot: {store.id} was changed"):
        verified_remote(loaded, client)


# -- file citations -----------------------------------------------------------------------------
def reasons(expect, outcome):
    return [failure.reason for failure in check(expect, outcome)]


def test_file_cited_messages():
    none = TurnOutcome(reply="x")
    some = TurnOutcome(reply="x", cited=["asstctl--kb--0123456789abcdef--returns.md", "notes.txt"])
    assert reasons({"file_cited": True}, none) == ["no file was cited"]
    assert reasons({"file_cited": True}, some) == []
    assert reasons({"file_cited": "returns.md"}, some) == []
    assert reasons({"file_cited": "knowledge/returns.md"}, some) == []
    assert reasons({"file_cited": "notes.txt"}, some) == []
    assert reasons({"file_cited": ["returns.md", "faq.md"]}, some) == [
        '"faq.md" was not cited; cited: returns.md, notes.txt']  # an upload by its own name
    assert reasons({"file_cited": "faq.md"}, none) == ['"faq.md" was not cited; no file was cited']


def test_file_cited_with_known_content_needs_the_same_upload():
    outcome = TurnOutcome(reply="x", cited=["asstctl--kb--0123456789abcdef--returns.md"],
                          cited_shas={"knowledge/returns.md": "0123456789abcdef"})
    assert reasons({"file_cited": "knowledge/returns.md"}, outcome) == []
    stale = TurnOutcome(reply="x", cited=["asstctl--kb--0123456789abcdef--returns.md"],
                        cited_shas={"knowledge/returns.md": "fedcba9876543210"})
    assert reasons({"file_cited": "knowledge/returns.md"}, stale) == [
        '"knowledge/returns.md" was not cited; cited: returns.md (content 0123456789abcdef)']
    other_tool = TurnOutcome(reply="x", cited=["tool--returns.md"])
    assert reasons({"file_cited": "returns.md"}, other_tool) == []


def test_schema_problems_at_the_root_say_root():
    assert reasons({"json": {"schema": {"type": "object"}}}, TurnOutcome(reply="[1]")) == [
        "reply JSON at (root): [1] is not of type 'object'"]


def test_a_shared_store_with_its_own_prevent_destroy_says_so(client, root):
    proj = project(root, {"vector_stores/library.yaml": "name: Library\nprevent_destroy: true\n"
                                                        "files: [../assistants/knowledge/*.md]\n",
                          "assistants/bot.yaml": "model: gpt-4o\ntools: [{file_search: {vector_store: library}}]\n",
                          **FILES})
    converge(client, proj)
    action = next(a for a in plan(client, proj, destroy=True).actions if a.object == "vector_store")
    assert action.blocked and action.reason == "destroy; blocked by prevent_destroy"
