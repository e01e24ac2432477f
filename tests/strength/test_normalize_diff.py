"""What the plan shows for normalized fields and how changes are split and named, against the real
server: the spec-hash tag's exact form (deployed objects carry it across asstctl versions), numbers
compared at six places, defaults shown as the server has them, duplicate tools made outside asstctl,
and a mapping that goes from empty to full (or back) shown key by key. Mutation testing found these
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
