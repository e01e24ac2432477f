"""Normalization and diffing: server defaults never show up as changes; real changes always do."""

from __future__ import annotations

import pytest

from asstctl.reconcile import normalize
from asstctl.reconcile.diff import ADDED, REMOVED, field_changes, render_path, text_diff
from asstctl.errors import PlanError
from asstctl.ownership import hash_tag, split_hash_tag, tags
from asstctl.reconcile.model import Action, Plan
from asstctl.reconcile.diff import FieldChange

SERVER_DEFAULTS = {
    "id": "asst_1",
    "object": "assistant",
    "created_at": 1,
    "model": "gpt-4o",
    "name": None,
    "description": None,
    "instructions": None,
    "tools": [],
    "tool_resources": {"code_interpreter": {"file_ids": []}, "file_search": None},
    "metadata": {},
    "temperature": 1,
    "top_p": 1.0,
    "response_format": "auto",
}


def test_a_minimal_spec_equals_the_servers_defaults():
    assert normalize.content({"model": "gpt-4o"}) == normalize.content(SERVER_DEFAULTS)


@pytest.mark.parametrize(
    "spec_fields, remote_fields",
    [
        ({"temperature": 1}, {"temperature": 1.0}),
        ({"temperature": 0.7}, {"temperature": 0.70000001}),
        ({"top_p": None}, {"top_p": 1}),
        ({"name": ""}, {"name": None}),
        ({"response_format": None}, {"response_format": "auto"}),
        ({"metadata": None}, {"metadata": {}}),
        ({"metadata": {"team": "a"}}, {"metadata": {"team": "a", **tags("demo", "k", "h")}}),
        ({"tool_resources": {}}, {"tool_resources": {"file_search": {"vector_store_ids": []}}}),
        ({"tool_resources": {"code_interpreter": {"file_ids": ["b", "a"]}}},
         {"tool_resources": {"code_interpreter": {"file_ids": ["a", "b"]}}}),
    ],
)
def test_equivalent_forms_normalize_alike(spec_fields, remote_fields):
    assert normalize.content({"model": "m", **spec_fields}) == normalize.content({"model": "m", **remote_fields})


def test_tools_are_compared_without_order_and_with_their_defaults():
    spec_tools = [
        {"type": "code_interpreter"},
        {"type": "function", "function": {"name": "f"}},
        {"type": "file_search"},
    ]
    remote_tools = [
        {"type": "file_search", "file_search": {"max_num_results": 20,
                                                "ranking_options": {"ranker": "default_2024_08_21", "score_threshold": 0}}},
        {"type": "function", "function": {"name": "f", "description": None, "strict": None,
                                          "parameters": {"type": "object", "properties": {}}}},
        {"type": "code_interpreter"},
    ]
    assert normalize.tools(spec_tools, "gpt-4o") == normalize.tools(remote_tools, "gpt-4o")


def test_non_default_tool_settings_are_kept():
    search = [{"type": "file_search", "file_search": {"max_num_results": 20}}]
    assert normalize.tools(search, "gpt-3.5-turbo")["file_search"]["file_search"] == {"max_num_results": 20}
    strict = [{"type": "function", "function": {"name": "f", "strict": True}}]
    assert normalize.tools(strict, "m")["function:f"]["function"]["strict"] is True


def test_json_schema_strict_defaults_to_false():
    plain = {"type": "json_schema", "json_schema": {"name": "out", "schema": {}}}
    explicit = {"type": "json_schema", "json_schema": {"name": "out", "schema": {}, "strict": False, "description": None}}
    assert normalize.response_format(plain) == normalize.response_format(explicit)
    assert normalize.response_format({"type": "text"}) != "auto"


def test_field_changes_name_the_field_and_both_values():
    old = normalize.content({"model": "m", "temperature": 0.2, "tools": [{"type": "function", "function": {"name": "f"}}]})
    new = normalize.content({"model": "m", "temperature": 0.5, "metadata": {"team": "x"}})
    changes = {change.path: change for change in field_changes(old, new)}
    assert (changes["temperature"].old, changes["temperature"].new) == (0.2, 0.5)
    assert changes["metadata.team"].kind == ADDED and changes["metadata.team"].new == "x"
    assert changes['tools["function:f"]'].kind == REMOVED


def test_paths_and_instruction_diffs_render_readably():
    assert render_path(["tools", "function:f", "function", "name"]) == 'tools["function:f"].function.name'
    assert render_path(["metadata", "a.b", 0]) == 'metadata["a.b"][0]'
    diff = text_diff("one\ntwo\n", "one\nthree\n", "bot")
    assert "--- bot (remote)" in diff and "-two" in diff and "+three" in diff
    assert text_diff("same", "same", "bot") == ""


def test_the_hash_tag_separates_readable_content_from_hidden_fields():
    assert "." not in hash_tag({"model": "m"}, {"reasoning_effort": None})
    tag = hash_tag({"model": "m"}, {"reasoning_effort": "low"})
    content, hidden = split_hash_tag({"asstctl.spec-hash": tag})
    assert tag == f"{content}.{hidden}" and hidden
    assert split_hash_tag({}) == (None, "")


def test_a_plan_round_trips_through_plain_data():
    action = Action("update", "bot", "asst_1", "f1", [FieldChange("temperature", 0.2, 0.5)], drift=True, body={"model": "m"})
    plan = Plan("demo", "test", actions=[action], remote_fingerprint="x", foreign=2)
    data = plan.to_dict()
    assert data["format_version"] == 1
    assert Plan.from_dict(data) == plan
    data["added_later"] = data["actions"][0]["added_later"] = "fields may be added within a version"
    assert Plan.from_dict(data) == plan


def test_an_unknown_plan_version_is_refused():
    with pytest.raises(PlanError, match="format_version"):
        Plan.from_dict({"format_version": 99, "actions": []})
    with pytest.raises(PlanError, match="damaged"):
        Plan.from_dict({"format_version": 1, "actions": [{"nonsense": 1}]})


def test_a_saved_plan_belongs_to_one_project_and_target():
    from asstctl.reconcile.apply import check_plan_target

    plan = Plan("demo", "http://127.0.0.1:1/v1")
    check_plan_target(plan, "demo", "http://127.0.0.1:1/v1")
    with pytest.raises(PlanError, match="for project `demo`, this is `other`"):
        check_plan_target(plan, "other", "http://127.0.0.1:1/v1")
    with pytest.raises(PlanError, match="made for http://127.0.0.1:1/v1, not embedded"):
        check_plan_target(plan, "demo", "embedded")


def test_field_changes_of_lists_types_and_nested_mappings():
    old = {"tools": {"function:f": {"function": {"parameters": {"required": ["a", "b"]}}}}, "top_p": 1, "x": [1, 2]}
    new = {"tools": {"function:f": {"function": {"parameters": {"required": ["a", "c", "d"]}}}}, "top_p": 1.0,
           "x": [1]}
    changes = [(c.path, c.old, c.new, c.kind) for c in field_changes(old, new)]
    assert changes == [
        ('tools["function:f"].function.parameters.required[1]', "b", "c", "changed"),
        ('tools["function:f"].function.parameters.required[2]', None, "d", ADDED),
        ("top_p", 1, 1.0, "changed"),  # an int where a float was: the API would store it differently
        ("x[1]", 2, None, REMOVED),
    ]
    assert field_changes({"a": {"b": [1, {"c": True}]}}, {"a": {"b": [1, {"c": True}]}}) == []
    assert [(c.path, c.kind) for c in field_changes({"m": {}}, {"m": {"k": "v"}, "n": None})] == [
        ("m.k", ADDED), ("n", ADDED)]
    assert [(c.path, c.old, c.new) for c in field_changes({"v": True}, {"v": 1})] == [("v", True, 1)]
