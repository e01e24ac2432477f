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
        "c.yaml:1:1: 'name' is a required property: add it, e.g. `name: ...`",
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


MALFORMED = {  # one input per known PyYAML (libyaml) message, and the fix each gets
    "a: b: c\n": "1:5: malformed YAML: mapping values are not allowed in this context; a value that contains `: ` "
                 "must be quoted (`key: \"a: b\"`), or this line is indented more than the key above it",
    "a: 1\nb\nc: 2\n": "3:1: malformed YAML: could not find expected ':' (while scanning a simple key started at line "
                      "2, column 1); every line of a mapping is `key: value`; check for a missing `:` or an unclosed "
                      "quote above",
    "a: \"abc\n": "2:1: malformed YAML: found unexpected end of stream (while scanning a quoted scalar started at "
                  "line 1, column 4); a quote or bracket is never closed",
    "a: 'abc\n---\nx'\n": "2:1: malformed YAML: found unexpected document indicator (while scanning a quoted scalar "
                         "started at line 1, column 4); a quote is never closed",
    "a: @x\n": "1:4: malformed YAML: found character that cannot start any token (while scanning for the next token "
               "started at line 1, column 4); quote the value (`key: \"@value\"`): YAML reserves this character at "
               "the start",
    "a: *x\n": "1:4: malformed YAML: found undefined alias; define the anchor (`&name`) before using `*name`, or quote "
               "a value starting with `*`",
    "a: [1, 2\nb: 3\n": "2:2: malformed YAML: did not find expected ',' or ']' (while parsing a flow sequence started "
                       "at line 1, column 4); a `[` is not closed, or an item inside it needs quotes",
    "a: {b: 1\nc: 2\n": "2:2: malformed YAML: did not find expected ',' or '}' (while parsing a flow mapping started "
                       "at line 1, column 4); a `{` is not closed, or an item inside it needs quotes",
    "a: [1, :]\n": "1:8: malformed YAML: did not find expected node content (while parsing a flow node started at "
                   "line 1, column 8); a `[` or `{` is not closed, or items inside it need quotes",
    "a:\n  b: 1\n  - c\n": "3:3: malformed YAML: did not find expected key (while parsing a block mapping started at "
                          "line 2, column 3); indentation: a line is indented less or more than its mapping; or a `-` "
                          "list item sits where a `key:` is expected",
    "- a\nb: 1\n": "2:1: malformed YAML: did not find expected '-' indicator (while parsing a block collection started "
                  "at line 1, column 1); indentation: every item of a list starts with `-` at the same column",
    "  a: 1\nb: 2\n": "2:1: malformed YAML: did not find expected <document start>; check the indentation (spaces "
                     "only) and quote values with `: `, `#` or a leading `*&!@`",  # none of the above: the general hint
}


@pytest.mark.parametrize("text", MALFORMED)
def test_each_known_yaml_mistake_gets_its_fix(text):
    with pytest.raises(SpecError) as raised:
        parse_yaml(text, "f.yaml")
    assert raised.value.problems == [f"f.yaml:{MALFORMED[text]}"]


def test_the_pure_python_parsers_words_get_a_fix_too():
    """Without libyaml, PyYAML says `expected <block end>` where libyaml says `did not find expected key`."""
    import yaml

    from asstctl.spec.yamlpos import yaml_fix

    with pytest.raises(yaml.MarkedYAMLError) as raised:
        yaml.compose("a:\n  b: 1\n c: 2\n", Loader=yaml.SafeLoader)
    assert yaml_fix(raised.value) == ("; this line's indentation does not match its siblings: indent items of one "
                                      "mapping or list by the same number of spaces")


def test_an_invisible_control_character_is_shown_where_it_is_with_a_fix(tmp_path, monkeypatch):
    """libyaml words it `unacceptable character #x0007 ... position 30` (a byte offset) at 1:1; we give the line and
    column an editor shows, after non-ASCII text too, for a spec and for asstctl.yaml."""
    from asstctl.spec.project import load_project

    def message(at: str, code: str) -> str:
        return (f"{at}: YAML does not allow the character U+{code.upper()} (a control character, invisible in most "
                f"editors); remove the invisible character U+{code.upper()}, or write it as `\\u{code}` in a "
                f"double-quoted string if it is meant")

    spec = tmp_path / "a.yaml"
    spec.write_bytes("model: gpt-4o\n# é ü\ninstructions: \"be \x07brief\"\nname: x\x1b\n".encode())
    with pytest.raises(SpecError) as raised:
        load_yaml(spec, display="a.yaml")
    assert raised.value.problems == [message("a.yaml:3:19", "0007"), message("a.yaml:4:8", "001b")]
    (tmp_path / "asstctl.yaml").write_text("project: demo\x07\n")
    monkeypatch.chdir(tmp_path)
    from asstctl.errors import ConfigError

    with pytest.raises(ConfigError) as raised:
        load_project(tmp_path)
    assert str(raised.value) == message("asstctl.yaml:1:14", "0007")
