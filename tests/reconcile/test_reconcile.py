"""The reconciler library against the local server: plan → apply → plan again is a no-op."""

from __future__ import annotations

import pytest

from asstctl.reconcile.apply import apply_plan, check_fresh
from asstctl.errors import PlanError, TargetError
from asstctl.ownership import KEY, MANAGED_BY, PROJECT, SPEC_HASH
from asstctl.reconcile.model import Plan
from asstctl.reconcile.remote import read_remote
from asstctl.server.embedded import start_server
from asstctl.backends.targets import make_client
from tests.reconcile.helpers import PROJECT as NAME
from tests.reconcile.helpers import converge, destroy_plan, foreign, kinds, make_plan, spec

FULL = dict(
    name="Triage",
    description="Routes tickets",
    instructions="Be kind.\nBe brief.",
    tools=[{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object", "properties": {}}}},
           {"type": "file_search"}, {"type": "code_interpreter"}],
    temperature=0.3,
    top_p=0.9,
    response_format={"type": "json_object"},
    reasoning_effort="low",
    metadata={"team": "support"},
)


def test_apply_creates_tagged_objects_and_a_second_apply_is_a_no_op(client):
    result = converge(client, [spec("triage", **FULL), spec("faq")])
    assert not result.failed and result.count("create") == 2
    remote = read_remote(client, NAME)
    metadata = remote.managed["triage"]["metadata"]
    assert metadata["team"] == "support" and metadata[MANAGED_BY] == "asstctl"
    assert (metadata[PROJECT], metadata[KEY]) == (NAME, "triage") and metadata[SPEC_HASH]
    again = make_plan(client, [spec("triage", **FULL), spec("faq")])
    assert kinds(again) == {"triage": "no-op", "faq": "no-op"} and not again.has_changes()


def test_editing_a_spec_updates_with_field_changes_and_an_instructions_diff(client):
    converge(client, [spec("triage", **FULL)])
    edited = {**FULL, "instructions": "Be kind.\nBe thorough.", "temperature": 0.5}
    plan = make_plan(client, [spec("triage", **edited)])
    action = plan.actions[0]
    assert action.kind == "update" and not action.drift
    assert {c.path: (c.old, c.new) for c in action.changes}["temperature"] == (0.3, 0.5)
    assert "-Be brief." in action.instructions_diff and "+Be thorough." in action.instructions_diff
    assert not apply_plan(plan, client).failed
    assert not make_plan(client, [spec("triage", **edited)]).has_changes()


def test_fields_removed_from_a_spec_go_back_to_server_defaults(client):
    converge(client, [spec("triage", **FULL)])
    plan = make_plan(client, [spec("triage")])
    assert {c.path for c in plan.actions[0].changes} >= {"name", "temperature", "reasoning_effort", "metadata.team"}
    assert not apply_plan(plan, client).failed
    obj = read_remote(client, NAME).managed["triage"]
    assert (obj["name"], obj["tools"], obj["temperature"], obj["response_format"]) == (None, [], 1.0, "auto")
    assert set(obj["metadata"]) == {MANAGED_BY, PROJECT, KEY, SPEC_HASH}
    assert not make_plan(client, [spec("triage")]).has_changes()


def test_a_hidden_field_change_is_detected_through_the_tag(client):
    converge(client, [spec("thinker", reasoning_effort="low")])
    plan = make_plan(client, [spec("thinker", reasoning_effort="high")])
    assert [(c.path, c.new) for c in plan.actions[0].changes] == [("reasoning_effort", "high")]
    apply_plan(plan, client)
    assert not make_plan(client, [spec("thinker", reasoning_effort="high")]).has_changes()


def test_a_change_behind_asstctls_back_is_drift(client):
    converge(client, [spec("triage", **FULL)])
    obj = read_remote(client, NAME).managed["triage"]
    client.beta.assistants.update(obj["id"], temperature=1.5)
    action = make_plan(client, [spec("triage", **FULL)]).actions[0]
    assert action.kind == "update" and action.drift
    assert [(c.path, c.old, c.new) for c in action.changes] == [("temperature", 1.5, 0.3)]


def test_foreign_and_other_projects_objects_survive_prune_and_destroy(client):
    mine = foreign(client, "mine-by-hand")
    theirs = foreign(client, "theirs", **{MANAGED_BY: "asstctl", PROJECT: "other", KEY: "triage", SPEC_HASH: "x"})
    converge(client, [spec("triage"), spec("gone")])
    plan = make_plan(client, [spec("triage")], prune=True)
    assert kinds(plan) == {"triage": "no-op", "gone": "delete"} and plan.foreign == 2
    apply_plan(plan, client)
    assert not apply_plan(destroy_plan(client, [spec("triage")]), client).failed
    remaining = {a.id for a in client.beta.assistants.list(limit=100)}
    assert remaining == {mine.id, theirs.id}


def test_a_removed_spec_is_deleted_only_with_prune(client):
    converge(client, [spec("keep"), spec("gone")])
    plan = make_plan(client, [spec("keep")])
    assert kinds(plan) == {"keep": "no-op", "gone": "no-op"} and "--prune" in plan.actions[0].reason
    apply_plan(plan, client)
    assert set(read_remote(client, NAME).managed) == {"keep", "gone"}
    converge(client, [spec("keep")], prune=True)
    assert set(read_remote(client, NAME).managed) == {"keep"}


def test_duplicates_are_kept_without_prune_and_deleted_with_it_keeping_the_oldest(client):
    converge(client, [spec("bot")])
    first = read_remote(client, NAME).managed["bot"]
    for _ in range(2):
        client.beta.assistants.create(model="gpt-4o", metadata=first["metadata"])
    remote = read_remote(client, NAME)
    assert remote.managed["bot"]["id"] == first["id"] and len(remote.duplicates["bot"]) == 2
    kept = make_plan(client, [spec("bot")])
    extras = [a for a in kept.actions if a.duplicate]
    assert len(extras) == 2 and {a.kind for a in extras} == {"no-op"} and not kept.has_changes()
    assert all("--prune" in a.reason for a in extras)
    apply_plan(kept, client)
    assert len(read_remote(client, NAME).duplicates["bot"]) == 2  # a plain apply deletes nothing
    plan = make_plan(client, [spec("bot")], prune=True)
    deletes = [a for a in plan.actions if a.kind == "delete"]
    assert len(deletes) == 2 and all(a.duplicate for a in deletes)
    assert first["id"] not in {a.remote_id for a in deletes}
    apply_plan(plan, client)
    remote = read_remote(client, NAME)
    assert remote.managed["bot"]["id"] == first["id"] and not remote.duplicates


def test_prevent_destroy_blocks_deletion(client):
    converge(client, [spec("vault", prevent_destroy=True), spec("temp")])
    plan = destroy_plan(client, [spec("vault", prevent_destroy=True), spec("temp")])
    assert kinds(plan) == {"vault": "delete!", "temp": "delete"}
    result = apply_plan(plan, client)
    assert [(f.key, "prevent_destroy" in f.error) for f in result.failed] == [("vault", True)]
    assert set(read_remote(client, NAME).managed) == {"vault"}


def test_a_saved_plan_made_stale_by_a_remote_change_is_refused(client):
    converge(client, [spec("a"), spec("b")])
    saved = Plan.from_dict(make_plan(client, [spec("a", name="A"), spec("b", name="B")]).to_dict())
    check_fresh(saved, read_remote(client, NAME))  # still fresh
    client.beta.assistants.update(read_remote(client, NAME).managed["b"]["id"], name="by hand")
    with pytest.raises(PlanError, match=r"stale.*b: asst_\w+ was changed") as error:
        check_fresh(saved, read_remote(client, NAME))
    assert "a:" not in str(error.value)


def test_one_failing_object_does_not_stop_the_others(client):
    bad = spec("bad", tools=[{"type": "function", "function": {"name": "not a valid name!"}}])
    result = converge(client, [spec("good-1"), bad, spec("good-2")])
    assert [f.key for f in result.failed] == ["bad"] and "400" in result.failed[0].error
    assert set(read_remote(client, NAME).managed) == {"good-1", "good-2"}


def test_lost_create_responses_never_make_duplicates(server, client):
    server.faults.kinds = ("lost",)
    server.faults.rate = 0.5
    specs = [spec(f"bot-{i}") for i in range(12)]
    result = converge(client, specs, parallelism=4)
    server.faults.rate = 0
    assert server.faults.injected.get("lost", 0) > 0
    assert not result.failed
    remote = read_remote(client, NAME)
    assert len(remote.managed) == 12 and not remote.duplicates
    assert any(outcome.note for outcome in result.outcomes)


def test_reading_the_remote_takes_ceil_n_over_100_list_requests(server, client):
    for index in range(201):
        client.beta.assistants.create(model="gpt-4o", name=f"a{index}")
    before = server.state.stats["GET /v1/assistants"]
    remote = read_remote(client, NAME)
    assert remote.requests == 3 == server.state.stats["GET /v1/assistants"] - before
    assert len(remote.foreign) == 201


def test_a_wrong_key_is_one_clear_target_error():
    refused = r"refused the API key \(401\): check \$OPENAI_API_KEY"
    with start_server(":memory:", api_key="right-key") as guarded:
        bad = make_client(guarded.base_url, "sk-wrong-secret", max_retries=0)
        with bad, pytest.raises(TargetError, match=refused) as error:
            read_remote(bad, NAME)
    assert "sk-wrong-secret" not in str(error.value)


def test_an_endpoint_without_the_assistants_api_is_named(server):
    elsewhere = make_client(server.base_url.removesuffix("/v1") + "/nothing-here", server.api_key, max_retries=0)
    with elsewhere, pytest.raises(TargetError, match="does not serve the Assistants API.*asstctl serve"):
        read_remote(elsewhere, NAME)


def test_a_refused_connection_is_one_clear_target_error(server):
    dead = make_client("http://127.0.0.1:9/v1", "key", max_retries=0)
    with dead, pytest.raises(TargetError, match="cannot reach http://127.0.0.1:9/v1"):
        read_remote(dead, NAME)


@pytest.fixture
def retrying(server, contract):
    """A client that retries like asstctl's own (the SDK's backoff for reads, updates, deletes)."""
    from tests.conftest import make_client as strict_client

    sdk = strict_client(server, contract, max_retries=4)
    yield sdk
    sdk.close()


def test_under_every_kind_of_fault_apply_never_duplicates_and_converges(server, retrying):
    specs = [spec(f"bot-{i}", name=f"Bot {i}") for i in range(10)]
    server.faults.rate = 0.25  # 429, 500, 503, drop, lost
    first = converge(retrying, specs, parallelism=4)
    edited = [spec(s.key, name=s.fields["name"] + "!") for s in specs[:5]]
    second = converge(retrying, edited, prune=True, parallelism=4)
    server.faults.rate = 0
    assert sum(server.faults.injected.values()) > 0
    remote = read_remote(retrying, NAME)
    assert not remote.duplicates  # whatever failed, nothing was made twice
    converge(retrying, edited, prune=True)
    assert not make_plan(retrying, edited, prune=True).has_changes()
    assert len(first.outcomes) == 10 and len(second.outcomes) >= 5


def test_every_field_round_trips_without_a_perpetual_diff(client):
    store = client.vector_stores.create(name="docs")
    rich = spec(
        "rich",
        **{**FULL, "tools": [
            {"type": "file_search", "file_search": {"max_num_results": 7,
                                                    "ranking_options": {"ranker": "auto", "score_threshold": 0.4}}},
            {"type": "function", "function": {"name": "b", "description": "B", "strict": True,
                                              "parameters": {"type": "object", "properties": {"x": {"type": "string"}},
                                                             "required": ["x"], "additionalProperties": False}}},
            {"type": "function", "function": {"name": "a"}},
        ],
           "tool_resources": {"file_search": {"vector_store_ids": [store.id]}},
           "response_format": {"type": "json_schema", "json_schema": {"name": "out", "schema": {"type": "object"}}}},
    )
    assert not converge(client, [rich]).failed
    assert not make_plan(client, [rich]).has_changes()
    plain = spec("rich", model="gpt-4o-mini")
    assert not converge(client, [plain]).failed
    obj = read_remote(client, NAME).managed["rich"]
    assert not (obj["tool_resources"] or {}).get("file_search", {}).get("vector_store_ids")  # cleared on update
    assert not make_plan(client, [plain]).has_changes()
