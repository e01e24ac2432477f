"""Every normalized field of an assistant is compared for real: a change of that field on a deployed
assistant plans an update naming it, applying it converges, and the replan is a no-op.

Both sides of a diff go through ``normalize.content``, so a normalization that threw a field away
would make every "equivalent forms compare equal" test pass. These tests change one field at a time
against the real server and fail if the change is not planned (mutation testing, docs/testing.md)."""

from __future__ import annotations

import pytest

from asstctl.reconcile.apply import apply_plan
from tests.reconcile.helpers import converge, make_plan, spec

FUNCTION = {"name": "lookup", "description": "Find an order", "parameters": {
    "type": "object", "properties": {"order": {"type": "string"}}}}
SCHEMA = {"name": "answer", "schema": {"type": "object", "properties": {"a": {"type": "string"}}}, "strict": True}


def fn(**changes):
    function = {key: value for key, value in {**FUNCTION, **changes}.items() if value is not None}
    return {"type": "function", "function": function}


def search(**options):
    return {"type": "file_search", "file_search": options}


CASES = {
    # field: (deployed fields, changed fields, a path the plan must name)
    "response_format json_object -> json_schema": (
        dict(response_format={"type": "json_object"}),
        dict(response_format={"type": "json_schema", "json_schema": SCHEMA}), "response_format.json_schema"),
    "response_format json_schema strict": (
        dict(response_format={"type": "json_schema", "json_schema": SCHEMA}),
        dict(response_format={"type": "json_schema", "json_schema": {**SCHEMA, "strict": False}}),
        "response_format.json_schema.strict"),
    "response_format json_schema description": (
        dict(response_format={"type": "json_schema", "json_schema": SCHEMA}),
        dict(response_format={"type": "json_schema", "json_schema": {**SCHEMA, "description": "An answer"}}),
        "response_format.json_schema.description"),
    "response_format auto -> text": (
        dict(), dict(response_format={"type": "text"}), "response_format"),
    "function description": (
        dict(tools=[fn()]), dict(tools=[fn(description="Find an order by number")]),
        'tools["function:lookup"].function.description'),
    "function description removed": (
        dict(tools=[fn()]), dict(tools=[fn(description=None)]), 'tools["function:lookup"].function.description'),
    "function parameters": (
        dict(tools=[fn()]),
        dict(tools=[fn(parameters={"type": "object", "properties": {"order": {"type": "integer"}}})]),
        'tools["function:lookup"].function.parameters.properties.order.type'),
    "function strict": (
        dict(tools=[fn()]), dict(tools=[fn(strict=True)]), 'tools["function:lookup"].function.strict'),
    "function renamed": (
        dict(tools=[fn()]), dict(tools=[fn(name="find")]), 'tools["function:find"]'),  # added, and lookup removed
    "file_search max_num_results": (
        dict(tools=[search()]), dict(tools=[search(max_num_results=7)]), "tools.file_search.file_search"),
    "file_search max_num_results changed": (
        dict(tools=[search(max_num_results=7)]), dict(tools=[search(max_num_results=9)]),
        "tools.file_search.file_search.max_num_results"),
    "file_search score_threshold": (
        dict(tools=[search()]), dict(tools=[search(ranking_options={"score_threshold": 0.5})]),
        "tools.file_search.file_search"),
    "file_search score_threshold changed": (
        dict(tools=[search(ranking_options={"score_threshold": 0.5})]),
        dict(tools=[search(ranking_options={"score_threshold": 0.25})]),
        "tools.file_search.file_search.ranking_options.score_threshold"),
    "temperature": (dict(temperature=0.2), dict(temperature=0.7), "temperature"),
    "temperature from default": (dict(), dict(temperature=0.5), "temperature"),
    "top_p": (dict(top_p=0.9), dict(top_p=0.5), "top_p"),
    "top_p from default": (dict(), dict(top_p=0.25), "top_p"),
    "reasoning_effort": (dict(reasoning_effort="low"), dict(reasoning_effort="high"), "reasoning_effort"),
    "name": (dict(name="A"), dict(name="B"), "name"),
    "description": (dict(description="A"), dict(description="B"), "description"),
    "instructions": (dict(instructions="A"), dict(instructions="B"), "instructions"),
    "model": (dict(), dict(model="gpt-4o-mini"), "model"),
    "metadata value": (dict(metadata={"team": "a"}), dict(metadata={"team": "b"}), "metadata.team"),
    "code_interpreter added": (dict(), dict(tools=[{"type": "code_interpreter"}]), "tools.code_interpreter"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_change_of_one_field_plans_an_update_naming_it_and_converges(client, case):
    before, after, path = CASES[case]
    converge(client, [spec("bot", **before)])
    plan = make_plan(client, [spec("bot", **after)])
    action = plan.actions[0]
    assert action.kind == "update" and not action.drift, (action.kind, action.changes)
    assert path in {change.path for change in action.changes}, [change.path for change in action.changes]
    assert not apply_plan(plan, client).failed
    assert not make_plan(client, [spec("bot", **after)]).has_changes()
    # and back again: the reverse change is planned too
    assert make_plan(client, [spec("bot", **before)]).has_changes()


@pytest.mark.parametrize("model, default", [("gpt-4o", 20), ("gpt-3.5-turbo", 5)])
def test_the_models_default_max_num_results_is_not_a_change_but_another_value_is(client, model, default):
    converge(client, [spec("bot", model=model, tools=[search()])])
    assert not make_plan(client, [spec("bot", model=model, tools=[search(max_num_results=default)])]).has_changes()
    other = make_plan(client, [spec("bot", model=model, tools=[search(max_num_results=default - 1)])])
    assert other.has_changes()


def test_the_default_ranker_spelled_out_is_not_a_change_but_a_threshold_is(client):
    converge(client, [spec("bot", tools=[search()])])
    same = search(ranking_options={"ranker": "default_2024_08_21", "score_threshold": 0})
    assert not make_plan(client, [spec("bot", tools=[same])]).has_changes()
    auto = search(ranking_options={"ranker": "auto"})
    assert not make_plan(client, [spec("bot", tools=[auto])]).has_changes()
    changed = make_plan(client, [spec("bot", tools=[search(ranking_options={"ranker": "auto", "score_threshold": 0.3})])])
    assert changed.has_changes()


def test_sampling_numbers_compare_at_six_places(client):
    converge(client, [spec("bot", temperature=0.3)])
    assert not make_plan(client, [spec("bot", temperature=0.3000000001)]).has_changes()
    assert make_plan(client, [spec("bot", temperature=0.30001)]).has_changes()


def test_removing_reasoning_effort_resets_it_in_the_update_body(client):
    converge(client, [spec("thinker", reasoning_effort="low")])
    plan = make_plan(client, [spec("thinker")])
    action = plan.actions[0]
    assert action.kind == "update" and "reasoning_effort" in {c.path for c in action.changes}
    assert "reasoning_effort" in action.body and action.body["reasoning_effort"] is None
    assert not apply_plan(plan, client).failed
    assert not make_plan(client, [spec("thinker")]).has_changes()


def test_an_unchanged_reasoning_effort_is_not_sent_as_a_reset(client):
    converge(client, [spec("plain", temperature=0.5)])
    plan = make_plan(client, [spec("plain", temperature=0.6)])
    assert "reasoning_effort" not in plan.actions[0].body


def test_metadata_keys_added_and_removed_are_one_change_each(client):
    """An empty mapping that gains (or loses) several keys is shown key by key (diff._split)."""
    converge(client, [spec("bot")])
    added = make_plan(client, [spec("bot", metadata={"a": "1", "b": "2"})]).actions[0].changes
    assert [(c.path, c.old, c.new, c.kind) for c in added] == [
        ("metadata.a", None, "1", "added"), ("metadata.b", None, "2", "added")]
    converge(client, [spec("bot", metadata={"a": "1", "b": "2"})])
    removed = make_plan(client, [spec("bot")]).actions[0].changes
    assert [(c.path, c.old, c.new, c.kind) for c in removed] == [
        ("metadata.a", "1", None, "removed"), ("metadata.b", "2", None, "removed")]
    changed = make_plan(client, [spec("bot", metadata={"a": "9", "b": "2"})]).actions[0].changes
    assert [(c.path, c.old, c.new, c.kind) for c in changed] == [("metadata.a", "1", "9", "changed")]


def test_odd_keys_are_quoted_in_change_paths(client):
    converge(client, [spec("bot")])
    changes = make_plan(client, [spec("bot", metadata={"team-name": "x"})]).actions[0].changes
    assert [c.path for c in changes] == ['metadata["team-name"]']
