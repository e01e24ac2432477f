"""YAML with positions: the shared loader of specs and conversation files."""

from __future__ import annotations

import pytest

from asstctl.errors import SpecError
from asstctl.spec.schema import schema_problems
from asstctl.spec.yamlpos import load_yaml, parse_path, parse_yaml

TEXT = """\
a: 1
b:
  - x
  - {c: 2, "d e": 3}
"""


def test_positions_of_keys_and_items():
    doc = parse_yaml(TEXT, "f.yaml")
    assert doc.data == {"a": 1, "b": ["x", {"c": 2, "d e": 3}]}
    assert doc.positions == {("a",): (1, 1), ("b",): (2, 1), ("b", 0): (3, 5), ("b", 1): (4, 5),
                             ("b", 1, "c"): (4, 6), ("b", 1, "d e"): (4, 12)}


@pytest.mark.parametrize("path, where", [
    (("b", 1, "c"), "f.yaml:4:6"),
    ("$.b[1].c", "f.yaml:4:6"),
    ("$.b[1]['d e']", "f.yaml:4:12"),
    (("b", 1, "missing", 3), "f.yaml:4:5"),  # the nearest parent with a position
    ("$.nothing", "f.yaml:1:1"),
    ((), "f.yaml:1:1"),
])
def test_where(path, where):
    assert parse_yaml(TEXT, "f.yaml").where(path) == where


def test_parse_path():
    assert parse_path("$.conversations[0].turns[12].expect") == ("conversations", 0, "turns", 12, "expect")
    assert parse_path("$") == ()


def test_load_yaml_names_the_file_as_given(tmp_path):
    path = tmp_path / "x.yaml"
    path.write_text("a: [1, 2]\n")
    doc = load_yaml(path, display="shown.yaml")
    assert doc.where(("a", 1)) == "shown.yaml:1:8" and load_yaml(path).where() == f"{path}:1:1"


def test_unreadable_file(tmp_path):
    with pytest.raises(SpecError) as raised:
        load_yaml(tmp_path / "nope.yaml", display="nope.yaml")
    assert raised.value.problems == ["nope.yaml:1:1: this file does not exist"]


def test_every_duplicate_key_at_once():
    with pytest.raises(SpecError) as raised:
        parse_yaml("a: 1\nb: {x: 1, x: 2}\na: 3\n", "f.yaml")
    assert raised.value.problems == ["f.yaml:2:11: duplicate key `x` (first on line 2); remove one of them",
                                     "f.yaml:3:1: duplicate key `a` (first on line 1); remove one of them"]


def test_alias_bombs_are_refused():
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 8)]
    with pytest.raises(SpecError) as raised:
        parse_yaml("\n".join(lines) + "\n", "bomb.yaml")
    assert raised.value.problems[0].startswith("bomb.yaml:") and "too many values" in raised.value.problems[0]


def test_a_byte_order_mark_is_fine():
    from asstctl.spec.yamlpos import decode

    assert decode("\ufeffa: 1\n".encode("utf-8"), "f.yaml") == "a: 1\n"


def test_schema_problems_work_for_any_schema():
    schema = {"type": "object", "required": ["name"], "additionalProperties": False,
              "properties": {"name": {"type": "string"}, "turns": {"type": "array", "items": {"type": "integer"}}}}
    doc = parse_yaml("nmae: x\nturns: [1, two]\n", "c.yaml")
    assert schema_problems(doc, schema) == [
        "c.yaml:1:1: 'name' is a required property",
        "c.yaml:1:1: unknown field `nmae` (did you mean `name`?)",
        'c.yaml:2:12: `turns[1]` must be a whole number (got "two")',
    ]


def test_alternatives_are_described_by_the_branch_that_fits():
    one = {"anyOf": [{"type": "string"}, {"type": "object", "properties": {"name": {"type": "string"}}}]}
    schema = {"type": "object", "properties": {"call": {"anyOf": [one, {"type": "array", "items": one}]},
                                               "flag": {"anyOf": [{"const": True}, {"enum": ["a", "b"]}]}}}
    doc = parse_yaml("call: [x, {name: 3}]\nflag: 5\n", "c.yaml")
    assert schema_problems(doc, schema) == [
        "c.yaml:1:12: `call[1].name` must be a string (got 3)",
        "c.yaml:2:1: `flag` must be true or one of a, b (got 5)",
    ]
    assert schema_problems(parse_yaml("call: 7\n", "c.yaml"), schema) == [
        "c.yaml:1:1: `call` must be a string or a mapping or a list (got 7)"]


def test_merge_keys():
    doc = parse_yaml("base: &b {x: 1, y: 1}\nd:\n  <<: *b\n  y: 2\n", "f.yaml")
    assert doc.data["d"] == {"x": 1, "y": 2} and doc.where(("d", "y")) == "f.yaml:4:3"


def test_merged_keys_are_not_duplicates_but_own_ones_are():
    with pytest.raises(SpecError) as raised:
        parse_yaml("b: &b {x: 1}\nc: &c {x: 2}\nd:\n  <<: [*b, *c]\n  y: 1\n  y: 2\n", "f.yaml")
    assert raised.value.problems == ["f.yaml:6:3: duplicate key `y` (first on line 5); remove one of them"]
    assert parse_yaml("b: &b {x: 1}\nc: &c {x: 2}\nd:\n  <<: [*b, *c]\n", "f.yaml").data["d"] == {"x": 1}
    with pytest.raises(SpecError) as raised:
        parse_yaml("d:\n  <<: 3\n", "f.yaml")
    assert raised.value.problems[0].startswith("f.yaml:2:3: ")
