"""Edges of the reconciler that mutation testing found unguarded (docs/testing.md): vector store drift
and expiry, equivalent function and resource forms, stale saved plans (a create that now exists, a
wrong target), retry delays, blocked outcomes, and the wording of expectation failures."""

from __future__ import annotations

import json

import pytest

from asstctl.reconcile.apply import RetryPolicy, apply_plan, check_fresh, check_plan_target
from asstctl.errors import PlanError
from asstctl.testing.expectations import TurnOutcome, check, excerpt
from asstctl.reconcile.plan import load_plan, save_plan
from asstctl.reconcile.remote import read_remote
from asstctl.reconcile.report import render_json
from tests.knowledge.helpers import converge as kb_converge
from tests.knowledge.helpers import managed_store, plan as kb_plan, project, write
from tests.reconcile.helpers import PROJECT, converge, destroy_plan, make_plan, spec

STORE_BOT = """\
model: gpt-4o
tools:
  - file_search:
      vector_store:
        name: Docs
        files: [knowledge/*.md]
{extra}"""
FILES = {"assistants/knowledge/faq.md": "# FAQ\nReturns within 30 days.\n"}


@pytest.fixture
def root(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


def store_bot(extra: str = "") -> str:
    return STORE_BOT.format(extra=extra)


def test_a_store_renamed_behind_asstctls_back_is_drift_and_converges_back(client, root):
    proj = project(root, {"assistants/bot.yaml": store_bot(), **FILES})
    kb_converge(client, proj)
    store = managed_store(client, "bot")
    client.vector_stores.update(store.id, name="by hand")
    action = next(a for a in kb_plan(client, proj).actions if a.object == "vector_store")
    assert action.kind == "update" and action.drift
    assert [(c.path, c.old, c.new) for c in action.changes] == [("name", "by hand", "Docs")]
    assert action.body["name"] == "Docs"
    kb_converge(client, proj)
    assert managed_store(client, "bot").name == "Docs" and not kb_plan(client, proj).has_changes()


def test_a_store_with_a_stale_tag_gets_its_tag_refreshed_without_drift(client, root):
    proj = project(root, {"assistants/bot.yaml": store_bot(), **FILES})
    kb_converge(client, proj)
    store = managed_store(client, "bot")
    client.vector_stores.update(store.id, metadata={**store.metadata, "asstctl.spec-hash": "0000000000000000"})
    action = next(a for a in kb_plan(client, proj).actions if a.object == "vector_store")
    assert action.kind == "update"
    assert [(c.path, c.old) for c in action.changes] == [("metadata.asstctl.spec-hash", "0000000000000000")]
    assert action.changes[0].new and action.changes[0].new != "0000000000000000"
    kb_converge(client, proj)
    assert not kb_plan(client, proj).has_changes()


def test_removing_a_stores_expiry_removes_it_on_the_server(client, root):
    expiring = store_bot().replace("        name: Docs\n", "        name: Docs\n        expires_after: {anchor: last_active_at, days: 7}\n")
    proj = project(root, {"assistants/bot.yaml": expiring, **FILES})
    kb_converge(client, proj)
    assert managed_store(client, "bot").expires_after.days == 7
    write(root, {"assistants/bot.yaml": store_bot()})
    action = next(a for a in kb_plan(client, proj).actions if a.object == "vector_store")
    assert action.kind == "update" and "expires_after" in action.body and action.body["expires_after"] is None
    kb_converge(client, proj)
    assert managed_store(client, "bot").expires_after is None and not kb_plan(client, proj).has_changes()


def test_a_new_stores_plan_lists_its_settings_and_source(client, root):
    proj = project(root, {"assistants/bot.yaml": store_bot(), **FILES})
    action = next(a for a in kb_plan(client, proj).actions if a.object == "vector_store")
    assert action.kind == "create" and action.source.endswith("bot.yaml")
    assert "name" in {c.path for c in action.changes} and "expires_after" not in action.body


def test_equivalent_function_forms_are_not_a_change(client):
    fn = {"name": "lookup", "parameters": {"type": "object", "properties": {}}}
    converge(client, [spec("bot", tools=[{"type": "function", "function": fn}])])
    same = {**fn, "strict": False, "description": ""}
    assert not make_plan(client, [spec("bot", tools=[{"type": "function", "function": same}])]).has_changes()
    bare = {"name": "lookup"}
    assert not make_plan(client, [spec("bot", tools=[{"type": "function", "function": bare}])]).has_changes()


def test_tool_resource_ids_are_a_set(client):
    ids = [client.files.create(file=(f"{n}.csv", b"x\n"), purpose="assistants").id for n in "abc"]
    converge(client, [spec("bot", tools=[{"type": "code_interpreter"}],
                           tool_resources={"code_interpreter": {"file_ids": ids}})])
    reordered = spec("bot", tools=[{"type": "code_interpreter"}],
                     tool_resources={"code_interpreter": {"file_ids": list(reversed(ids)) + [ids[0]]}})
    assert not make_plan(client, [reordered]).has_changes()
    fewer = spec("bot", tools=[{"type": "code_interpreter"}], tool_resources={"code_interpreter": {"file_ids": ids[:2]}})
    assert make_plan(client, [fewer]).has_changes()


def test_plan_counts_and_the_remote_fingerprint(client):
    converge(client, [spec("a"), spec("b")])
    first = make_plan(client, [spec("a"), spec("b", temperature=0.5), spec("c")])
    assert first.counts() == {"create": 1, "update": 1, "delete": 0, "no-op": 1, "blocked": 0}
    same = make_plan(client, [spec("a")])
    assert same.remote_fingerprint == first.remote_fingerprint
    client.beta.assistants.update(read_remote(client, PROJECT).managed["a"]["id"], name="by hand")
    assert make_plan(client, [spec("a")]).remote_fingerprint != first.remote_fingerprint


def test_a_destroy_plan_never_prunes_and_says_so(client):
    converge(client, [spec("a")])
    destroy = destroy_plan(client, [spec("a")])
    assert json.loads(render_json(destroy))["prune"] is False and destroy.mode == "destroy"


def test_a_saved_create_is_stale_once_the_object_exists(client, tmp_path):
    saved = tmp_path / "plan.json"
    save_plan(make_plan(client, [spec("new")]), str(saved))
    converge(client, [spec("new")])
    made = read_remote(client, PROJECT).managed["new"]["id"]
    with pytest.raises(PlanError, match=f"new: now exists \\({made}\\)") as raised:
        check_fresh(load_plan(str(saved)), read_remote(client, PROJECT))
    assert "asstctl plan" in raised.value.hint


def test_a_stale_plan_lists_every_reason(client, tmp_path):
    converge(client, [spec("a"), spec("b")])
    saved = tmp_path / "plan.json"
    save_plan(make_plan(client, [spec("a", temperature=0.1), spec("b", temperature=0.1)]), str(saved))
    remote = read_remote(client, PROJECT)
    for key in ("a", "b"):
        client.beta.assistants.update(remote.managed[key]["id"], name="by hand")
    with pytest.raises(PlanError) as raised:
        check_fresh(load_plan(str(saved)), read_remote(client, PROJECT))
    message = str(raised.value)
    assert message.startswith("the saved plan is stale, the remote changed since it was made: ")
    assert f"a: {remote.managed['a']['id']} was changed; b: {remote.managed['b']['id']} was changed" in message


def test_a_saved_plan_for_another_target_is_refused_with_the_fix():
    from asstctl.reconcile.model import Plan

    with pytest.raises(PlanError) as raised:
        check_plan_target(Plan(project="demo", target="staging"), "demo", "production")
    assert "staging" in str(raised.value) and raised.value.hint == "Pass the same --target/--base-url as when planning."
    with pytest.raises(PlanError):
        check_plan_target(Plan(project="other", target="staging"), "demo", "staging")
    check_plan_target(Plan(project="demo", target="staging"), "demo", "staging")


def test_retry_delays_double_up_to_the_cap():
    policy = RetryPolicy()
    assert [policy.delay(n) for n in range(6)] == [0.25, 0.5, 1.0, 2.0, 4.0, 4.0]
    assert RetryPolicy(base_delay=1.0, max_delay=100.0).delay(3) == 8.0


def test_a_blocked_deletion_is_a_failed_outcome_naming_the_object(client):
    converge(client, [spec("vault", prevent_destroy=True)])
    vault = read_remote(client, PROJECT).managed["vault"]["id"]
    result = apply_plan(destroy_plan(client, [spec("vault", prevent_destroy=True)]), client)
    assert [(o.key, o.ok, o.remote_id) for o in result.failed] == [("vault", False, vault)]
    assert "prevent_destroy" in result.failed[0].error


def test_a_failed_write_reports_the_servers_message(client):
    bad = spec("broken", tool_resources={"file_search": {"vector_store_ids": ["vs_missing"]}}, tools=[{"type": "file_search"}])
    result = converge(client, [bad])
    assert len(result.failed) == 1
    error = result.failed[0].error
    assert error == "Error code: 404 - No vector store found with id 'vs_missing'."


# -- expectation wording --------------------------------------------------------------------
CALL = {"name": "lookup", "arguments": {"city": "Zürich", "n": 2}}


def reasons(expect, outcome):
    return [failure.reason for failure in check(expect, outcome)]


def test_tool_expectation_messages_show_calls_as_compact_json():
    outcome = TurnOutcome(reply="ok", tool_calls=[CALL])
    wanted = {"name": "lookup", "arguments": {"city": "Bern"}}
    assert [(f.expectation, f.reason) for f in check({"tool_called": wanted}, outcome)] == [(
        'tool_called: {"name": "lookup", "arguments": {"city": "Bern"}}',
        'no matching call of {"name": "lookup", "arguments": {"city": "Bern"}}; called: lookup({"city": "Zürich", "n": 2})')]
    assert reasons({"no_tool_called": True}, outcome) == ['called: lookup({"city": "Zürich", "n": 2})']
    assert reasons({"no_tool_called": "lookup"}, outcome) == ['`lookup` was called; called: lookup({"city": "Zürich", "n": 2})']
    assert reasons({"no_tool_called": ["other", "lookup"]}, outcome) == [
        '`lookup` was called; called: lookup({"city": "Zürich", "n": 2})']
    assert check({"no_tool_called": False}, outcome) == []
    assert reasons({"tool_called": "other"}, TurnOutcome(reply="ok")) == ['no matching call of "other"; no tool was called']


def test_excerpts_cut_at_the_limit():
    assert excerpt("a" * 10, limit=10) == json.dumps("a" * 10)
    assert excerpt("a" * 11, limit=10) == json.dumps("a" * 9 + "…", ensure_ascii=False)
    assert excerpt("  two\n lines ") == '"two lines"'


def test_json_schema_problems_are_listed_in_path_order():
    schema = {"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
              "required": ["a", "b"]}
    assert reasons({"json": {"schema": schema}}, TurnOutcome(reply='{"b": "x", "a": "y"}')) == [
        "reply JSON at ['a']: 'y' is not of type 'integer'", "reply JSON at ['b']: 'x' is not of type 'integer'"]
