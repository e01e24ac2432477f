"""What the plan shows for normalized fields and how changes are split and named, against the real
server: the spec-hash tag's exact form (deployed objects carry it across asstctl versions), numbers
compared at six places, defaults shown as the server has them, duplicate tools made outside asstctl,
empty descriptions, a mapping that goes from empty to full (or back) shown key by key while any other
value is one change, quoted keys, removed values, and instruction diffs. Mutation testing found these
unpinned (docs/testing.md)."""

from __future__ import annotations

import hashlib

from asstctl.reconcile.report import render_text
from tests.reconcile.helpers import converge, make_plan, spec
from tests.strength.conftest import assistant


def sha16(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def changes(plan) -> list[tuple]:
    return [(c.path, c.old, c.new, c.kind) for a in plan.actions for c in a.changes]


def change_lines(plan) -> list[str]:
    return [line.strip() for line in render_text(plan).splitlines() if line.startswith("    ")]


# -- the spec-hash tag -----------------------------------------------------------------------
def test_the_spec_hash_tag_is_the_sha256_of_the_canonical_json_of_the_normalized_fields(client):
    """Objects deployed by one asstctl version are read by the next: the tag's form must not move, or
    every deployed assistant would show as drifted. Canonical JSON: sorted keys, no spaces, UTF-8 as is."""
    converge(client, [spec("bot", name="Café ☕", metadata={"team": "Zürich"}, reasoning_effort="low")])
    content = ('{"metadata":{"team":"Zürich"},"model":"gpt-4o","name":"Café ☕","response_format":"auto",'
               '"temperature":1.0,"tool_resources":{},"tools":{},"top_p":1.0}')
    hidden = '{"reasoning_effort":"low"}'
    assert assistant(client).metadata["asstctl.spec-hash"] == f"{sha16(content)}.{sha16(hidden)}"
    assert not make_plan(client, [spec("bot", name="Café ☕", metadata={"team": "Zürich"},
                                       reasoning_effort="low")]).has_changes()


# -- numbers and defaults --------------------------------------------------------------------
def test_sampling_numbers_differing_only_after_six_places_are_no_change(client):
    converge(client, [spec("bot", temperature=0.3)])
    assert not make_plan(client, [spec("bot", temperature=0.3000004)]).has_changes()
    assert changes(make_plan(client, [spec("bot", temperature=0.300001)])) == [
        ("temperature", 0.3, 0.300001, "changed")]


def test_a_server_default_is_shown_as_the_server_has_it(client):
    converge(client, [spec("bot")])
    plan = make_plan(client, [spec("bot", response_format={"type": "text"}, top_p=0.5)])
    assert changes(plan) == [("response_format", "auto", {"type": "text"}, "changed"), ("top_p", 1.0, 0.5, "changed")]
    assert change_lines(plan) == ['~ response_format: "auto" → {"type": "text"}', "~ top_p: 1.0 → 0.5"]


# -- tools -----------------------------------------------------------------------------------
def test_a_duplicate_tool_made_outside_asstctl_is_planned_away_by_name(client):
    converge(client, [spec("bot", tools=[{"type": "code_interpreter"}])])
    client.beta.assistants.update(assistant(client).id, tools=[{"type": "code_interpreter"}] * 2)
    plan = make_plan(client, [spec("bot", tools=[{"type": "code_interpreter"}])])
    assert changes(plan) == [("tools[\"code_interpreter'\"]", {"type": "code_interpreter"}, None, "removed")]
    assert plan.actions[0].drift


FUNCTION = {"name": "lookup", "parameters": {"type": "object", "properties": {"order": {"type": "string"}}}}
SCHEMA = {"name": "answer", "schema": {"type": "object"}}


def test_an_empty_description_is_no_description(client):
    """The server keeps `description: ""` as given; a spec that drops it (or adds it) changes nothing."""
    empty = dict(tools=[{"type": "function", "function": {**FUNCTION, "description": ""}}],
                 response_format={"type": "json_schema", "json_schema": {**SCHEMA, "description": ""}})
    absent = dict(tools=[{"type": "function", "function": FUNCTION}],
                  response_format={"type": "json_schema", "json_schema": SCHEMA})
    converge(client, [spec("bot", **empty)])
    assert not make_plan(client, [spec("bot", **absent)]).has_changes()
    converge(client, [spec("bot", **absent)])
    assert not make_plan(client, [spec("bot", **empty)]).has_changes()


# -- how changes are split -------------------------------------------------------------------
def parameters(x) -> dict:
    schema = {"type": "object", "properties": {"x": x}}
    return {"type": "function", "function": {"name": "lookup", "parameters": schema}}


def test_a_value_that_becomes_a_mapping_is_one_change(client):
    """Only an empty mapping that fills up (or empties) is split key by key; `false` (a JSON schema that
    accepts nothing) becoming a schema is one change of that property."""
    path = 'tools["function:lookup"].function.parameters.properties.x'
    converge(client, [spec("bot", tools=[parameters(False)])])
    plan = make_plan(client, [spec("bot", tools=[parameters({"type": "string"})])])
    assert changes(plan) == [(path, False, {"type": "string"}, "changed")]
    assert change_lines(plan) == [f'~ {path}: false → {{"type": "string"}}']
    converge(client, [spec("bot", tools=[parameters({"type": "string"})])])
    assert changes(make_plan(client, [spec("bot", tools=[parameters(False)])])) == [
        (path, {"type": "string"}, False, "changed")]


def test_a_mapping_filled_with_several_odd_keys_names_each_key_quoted(client):
    converge(client, [spec("bot")])
    plan = make_plan(client, [spec("bot", metadata={"team-name": "x", "cost center": "y"})])
    assert changes(plan) == [
        ('metadata["cost center"]', None, "y", "added"), ('metadata["team-name"]', None, "x", "added")]
    assert change_lines(plan) == ['+ metadata["cost center"]: "y"', '+ metadata["team-name"]: "x"']


def test_one_key_removed_shows_the_value_it_had(client):
    converge(client, [spec("bot", metadata={"team": "a", "owner": "b"})])
    plan = make_plan(client, [spec("bot", metadata={"owner": "b"})])
    assert changes(plan) == [("metadata.team", "a", None, "removed")]
    assert change_lines(plan) == ['- metadata.team: "a"']


# -- instructions ----------------------------------------------------------------------------
def test_instructions_are_shown_as_a_unified_diff_of_remote_and_spec(client):
    created = make_plan(client, [spec("bot", instructions="Be brief.\nSay hi.")])
    assert created.actions[0].instructions_diff == (
        "--- bot (remote)\n+++ bot (spec)\n@@ -0,0 +1,2 @@\n+Be brief.\n+Say hi.")
    converge(client, [spec("bot", instructions="Be brief.\nSay hi.")])
    changed = make_plan(client, [spec("bot", instructions="Be brief.\nSay hello.")])
    assert change_lines(changed) == [
        "instructions:", "--- bot (remote)", "+++ bot (spec)", "@@ -1,2 +1,2 @@",
        "Be brief.", "-Say hi.", "+Say hello."]
    removed = make_plan(client, [spec("bot")])
    assert removed.actions[0].instructions_diff == (
        "--- bot (remote)\n+++ bot (spec)\n@@ -1,2 +0,0 @@\n-Be brief.\n-Say hi.")
