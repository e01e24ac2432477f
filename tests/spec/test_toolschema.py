"""Function `parameters` are checked offline: the JSON Schema meta-schema, OpenAI's function-calling rules and,
with `strict: true`, the Structured Outputs rules; each problem at its `path:line:col` with what to do."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from asstctl.cli import cli
from asstctl.spec.loader import validate_project
from tests.spec.conftest import problems, write

SPEC = "model: gpt-4o\ntools:\n  - type: function\n    function:\n      name: lookup\n{extra}      parameters:\n{body}"


def spec(body: str, strict: bool = False) -> str:
    indented = "".join(f"        {line}\n" for line in body.strip("\n").splitlines())
    return SPEC.format(extra="      strict: true\n" if strict else "", body=indented)


ROOT_ANY_OF = ("with `strict: true` the top of `parameters` must be one object, not `anyOf`; move the alternatives "
               "into a property (`{type: object, properties: {choice: {anyOf: [...]}}, required: [choice], "
               "additionalProperties: false}`), or set `strict: false`")

def nested(levels: int) -> str:
    """``parameters`` whose innermost property is ``levels`` levels deep: objects in a list in an object."""
    inner = "{type: string}"
    for _ in range(levels - 2):
        inner = "{type: object, additionalProperties: false, required: [a], properties: {a: %s}}" % inner
    return f"type: object\nadditionalProperties: false\nrequired: [a]\nproperties:\n  a:\n    type: array\n" \
           f"    items: {inner}\n"


CASES = {
    "a misspelled type": (
        "type: object\nproperties:\n  order_id: {type: strng}\n", False,
        ["assistants/a.yaml:9:22: `parameters.properties.order_id.type` must be one of string, number, integer, "
         "boolean, object, array, null (or a list of them), not \"strng\"; did you mean `string`?"]),
    "required as a string": (
        "type: object\nproperties:\n  order_id: {type: string}\nrequired: order_id\n", False,
        ["assistants/a.yaml:10:9: `parameters.required` must be a list of property names, e.g. "
         "`required: [order_id]` (got \"order_id\")"]),
    "an array at the top": (
        "type: array\nitems: {type: string}\n", False,
        ["assistants/a.yaml:7:9: function parameters must be an object schema (`type: object` with `properties`), "
         "got `type: array`; put other values inside a property, e.g. "
         "`{type: object, properties: {items: {type: array, items: {...}}}}`"]),
    "a list of types at the top, shown as written": (
        "type: [object, \"null\"]\nproperties: {}\n", False,
        ["assistants/a.yaml:7:9: function parameters must be an object schema (`type: object` with `properties`), "
         "got `type: [object, \"null\"]`; put other values inside a property, e.g. "
         "`{type: object, properties: {items: {type: array, items: {...}}}}`"]),
    "no type at the top": (
        "properties:\n  q: {type: string}\n", False,
        ["assistants/a.yaml:6:7: function parameters must be an object schema (`type: object` with `properties`), "
         "got no `type`; put other values inside a property, e.g. "
         "`{type: object, properties: {items: {type: array, items: {...}}}}`"]),
    "required names a property that is not there": (
        "type: object\nproperties:\n  order_id: {type: string}\nrequired: [orderid]\n", False,
        ["assistants/a.yaml:10:20: `required` names `orderid`, which is not one of `parameters.properties` "
         "(did you mean `order_id`?)"]),
    "a bare type name where a schema belongs": (
        "type: object\nproperties:\n  a: string\n  b: [string, \"null\"]\n", False,
        ["assistants/a.yaml:9:11: `parameters.properties.a` must be a schema, not \"string\": write `a: {type: string}`",
         "assistants/a.yaml:10:11: `parameters.properties.b` must be a schema, not [string, \"null\"]: write "
         "`b: {type: [string, \"null\"]}`"]),
    "enum, items, numbers and additionalProperties written loosely (a property named type too)": (
        "type: object\nadditionalProperties: \"no\"\nproperties:\n  color: {type: string, enum: \"red, green\"}\n"
        "  tags: {type: array, items: [{type: string}]}\n  n: {type: integer, minimum: \"5\"}\n"
        "  type: {type: string, description: 5}\n", False,
        ["assistants/a.yaml:8:9: `parameters.additionalProperties` must be false, true or a schema (got \"no\"): "
         "write `additionalProperties: false`",
         "assistants/a.yaml:10:33: `parameters.properties.color.enum` must be a list of the allowed values: "
         "write `enum: [red, green]`",
         "assistants/a.yaml:11:31: `parameters.properties.tags.items` must be one schema, not a list: write "
         "`items: {type: string}` for a list of such items (`prefixItems: [...]` for a fixed sequence)",
         "assistants/a.yaml:12:30: `parameters.properties.n.minimum` must be a number, not a string: write "
         "`minimum: 5` (without quotes)",
         "assistants/a.yaml:13:32: `parameters.properties.type.description` must be a string (got 5): quote it, "
         "`description: \"5\"`"]),
    "a number in required, a boolean where a string belongs (shown as YAML writes them)": (
        "type: object\nproperties:\n  \"1\": {type: string, description: true}\nrequired: [1]\n", False,
        ["assistants/a.yaml:9:31: `parameters.properties.1.description` must be a string (got true): quote it, "
         "`description: \"true\"`",
         "assistants/a.yaml:10:20: `parameters.required[0]` must be a string (got 1): quote it, `- \"1\"`"]),
    "strict: a property not required, no additionalProperties": (
        "type: object\nproperties:\n  a: {type: string}\n  b: {type: integer}\nrequired: [a]\n", True,
        ["assistants/a.yaml:7:7: with `strict: true` every object needs `additionalProperties: false` "
         "(`parameters`); add it, or set `strict: false`",
         "assistants/a.yaml:12:9: with `strict: true` `required` must list every property of `parameters`: "
         "add `b` to it (make an optional one nullable: `type: [string, \"null\"]`), or set `strict: false`"]),
    "strict: unsupported keywords and formats, nested objects too": (
        "type: object\nadditionalProperties: false\nrequired: [when, tags]\nproperties:\n"
        "  when: {type: string, format: iso-week, default: now}\n"
        "  tags:\n    type: array\n    uniqueItems: true\n    items:\n      type: object\n"
        "      properties: {x: {type: string}}\n", True,
        ["assistants/a.yaml:12:32: format `iso-week` is not supported with `strict: true` (supported: date-time, "
         "time, date, duration, email, hostname, ipv4, ipv6, uuid); use `pattern` instead, or set `strict: false`",
         "assistants/a.yaml:12:50: `default` is not supported with `strict: true`; remove it, or set `strict: false` "
         "(supported: $defs, $ref, additionalProperties, anyOf, const, definitions, description, enum, "
         "exclusiveMaximum, exclusiveMinimum, format, items, maxItems, maximum, minItems, minimum, multipleOf, "
         "pattern, properties, required, title, type)",
         "assistants/a.yaml:15:13: `uniqueItems` is not supported with `strict: true`; remove it, or set "
         "`strict: false` (supported: $defs, $ref, additionalProperties, anyOf, const, definitions, description, "
         "enum, exclusiveMaximum, exclusiveMinimum, format, items, maxItems, maximum, minItems, minimum, "
         "multipleOf, pattern, properties, required, title, type)",
         "assistants/a.yaml:16:13: with `strict: true` every object needs `additionalProperties: false` "
         "(`parameters.properties.tags.items`); add it, or set `strict: false`",
         "assistants/a.yaml:16:13: with `strict: true` `required` must list every property of "
         "`parameters.properties.tags.items`: add `x` to it (make an optional one nullable: `type: [string, \"null\"]`), "
         "or set `strict: false`"]),
    "strict: anyOf at the top, without a type": (
        "anyOf:\n  - {type: object, properties: {a: {type: string}}}\n  - {type: object, properties: {b: {type: string}}}\n",
        True, [f"assistants/a.yaml:8:9: {ROOT_ANY_OF}"]),
    "strict: anyOf at the top of an object": (
        "type: object\nadditionalProperties: false\nproperties: {}\nanyOf: [{required: []}]\n", True,
        [f"assistants/a.yaml:11:9: {ROOT_ANY_OF}"]),
    "strict: 11 levels of nesting": (
        nested(11), True,
        ["assistants/a.yaml:14:692: `parameters.properties.a.items.properties.a.properties.a.properties.a"
         ".properties.a.properties.a.properties.a.properties.a.properties.a.properties.a` is nested 11 levels deep; `strict: true` "
         "allows at most 10: flatten it (move this object's fields into its parent), or set `strict: false`"]),
    "strict: a string enum of more than 250 values and 15,000 characters": (
        "type: object\nadditionalProperties: false\nrequired: [a]\nproperties:\n  a:\n    type: string\n"
        f"    enum: [{', '.join(f'v{i:059d}' for i in range(251))}]\n", True,
        ["assistants/a.yaml:14:13: `parameters.properties.a.enum` has 251 values of 15,060 characters in all; with "
         "`strict: true` an enum of more than 250 strings may have at most 15,000: shorten the values, or use "
         "`type: string` and name them in `description`, or set `strict: false`"]),
    "a $ref to a definition that is not there": (
        "type: object\n$defs:\n  unit: {type: string}\nproperties:\n  a: {$ref: '#/$defs/units'}\n"
        "  b: {$ref: '#/definitions/unit'}\n  c: {$ref: '#/$defs/zone'}\n  d: {$ref: '#/$defs/unit'}\n", False,
        ["assistants/a.yaml:11:15: `$ref: \"#/$defs/units\"` points at nothing: `#/$defs` has no `units` "
         "(did you mean `#/$defs/unit`?)",
         "assistants/a.yaml:12:15: `$ref: \"#/definitions/unit\"` points at nothing: `parameters` has no "
         "`definitions`; define it at the top of `parameters`, e.g. `definitions: {unit: {type: string}}`",
         "assistants/a.yaml:13:15: `$ref: \"#/$defs/zone\"` points at nothing: `#/$defs` has no `zone` "
         "(defined: unit); add it there or correct the name"]),
    "`type: object` without properties at the top (OpenAI refuses it, strict or not)": (
        "type: object\n", False,
        ["assistants/a.yaml:7:9: function parameters of `type: object` need `properties`, which OpenAI refuses "
         "without (\"object schema missing properties\"); add `properties: {}` for a function without arguments"]),
    "an array without items, in a property and in a list of types": (
        "type: object\nproperties:\n  ids: {type: array, description: ids}\n  tags: {type: [array, \"null\"]}\n"
        "  meta: {type: object}\n", False,  # an object inside: OpenAI takes it without `strict` (prism-php/prism#746)
        ["assistants/a.yaml:9:17: `parameters.properties.ids` is an array without `items`, which OpenAI refuses "
         "(\"array schema missing items\"); say what the list holds, e.g. `items: {type: string}`",
         "assistants/a.yaml:10:18: `parameters.properties.tags` is an array without `items`, which OpenAI refuses "
         "(\"array schema missing items\"); say what the list holds, e.g. `items: {type: string}`"]),
    "an enum of no values and a pattern that does not compile (the meta-schema takes both, OpenAI does not)": (
        "type: object\nproperties:\n  code: {type: string, pattern: '([a-z'}\n  unit: {enum: []}\n"
        "  name: {type: string, pattern: '^\\\\p{L}+(?<rest>-\\\\d)?$'}\n", False,
        ["assistants/a.yaml:9:32: `parameters.properties.code.pattern` is not a regular expression (unterminated "
         "character set at position 5), which OpenAI refuses; correct it (e.g. close each `(` and `[`, escape a "
         "literal one as `\\(`), or remove it",
         "assistants/a.yaml:10:18: `parameters.properties.unit.enum` lists no values, so nothing could match it, "
         "which OpenAI refuses; list the allowed values, e.g. `enum: [a, b]`, or remove it"]),
    "strict: a schema without a type, an object without properties": (
        "type: object\nadditionalProperties: false\nrequired: [a, b, c, d]\nproperties:\n  a: {}\n"
        "  b: {description: the unit, enum: [c, f]}\n  c: {type: object, additionalProperties: false}\n"
        "  d: {type: array, items: {}}\n", True,
        ["assistants/a.yaml:12:11: with `strict: true` every schema needs a `type` (`parameters.properties.a` has "
         "none); add one, e.g. `type: string`, or set `strict: false`",
         "assistants/a.yaml:13:11: with `strict: true` every schema needs a `type` (`parameters.properties.b` has "
         "none); add one, e.g. `type: string`, or set `strict: false`",
         "assistants/a.yaml:14:15: with `strict: true` every object needs `properties` (`parameters.properties.c`); "
         "add `properties: {}` (with `additionalProperties: false`, an empty object), or set `strict: false`",
         "assistants/a.yaml:15:28: with `strict: true` every schema needs a `type` (`parameters.properties.d.items` "
         "has none); add one, e.g. `type: string`, or set `strict: false`"]),
    "strict: a `$ref` with a description beside it (OpenAI: \"$ref cannot have keywords {'description'}\")": (
        "type: object\nadditionalProperties: false\nrequired: [a, b]\n$defs:\n  unit: {type: string, enum: [c, f]}\n"
        "properties:\n  a: {$ref: '#/$defs/unit', description: the unit}\n  b: {$ref: '#/$defs/unit'}\n", True,
        ["assistants/a.yaml:14:37: with `strict: true` a `$ref` cannot have other keywords beside it (`description`), "
         "which OpenAI refuses (\"$ref cannot have keywords\"); move `description` into the definition "
         "`#/$defs/unit`, or inline it (write the definition here instead of the `$ref`), or set `strict: false`"]),
    "strict: empty parameters (OpenAI wants `additionalProperties: false` even there)": (
        "{}", True,
        ["assistants/a.yaml:7:7: with `strict: true` empty `parameters` are refused by OpenAI (\"'additionalProperties' "
         "is required to be supplied and to be false\"); for a function without arguments write "
         "`{type: object, properties: {}, required: [], additionalProperties: false}`, or set `strict: false`"]),
}


@pytest.mark.parametrize("name", CASES)
def test_a_broken_parameters_schema_is_reported_where_it_is_with_a_fix(project, name):
    body, strict, expected = CASES[name]
    assert problems(project, {"a.yaml": spec(body, strict)}) == expected


VALID = {
    "no parameters": ("{}", False),
    "strict, no arguments": ("type: object\nproperties: {}\nrequired: []\nadditionalProperties: false\n", True),
    "a plain object": ("type: object\nproperties:\n  city: {type: string}\n  unit: {enum: [c, f]}\nrequired: [city]\n",
                       False),
    "strict, with a nullable optional, $defs and anyOf": (
        "type: object\nadditionalProperties: false\nrequired: [city, unit, when]\n$defs:\n"
        "  unit: {type: string, enum: [c, f]}\nproperties:\n  city: {type: string, pattern: '^[A-Z]'}\n"
        "  unit: {$ref: '#/$defs/unit'}\n  when:\n    anyOf: [{type: string, format: date}, {type: 'null'}]\n", True),
    "not strict: anything JSON Schema allows inside the object": (
        "type: object\nproperties:\n  tags: {type: array, uniqueItems: true, items: {type: string, minLength: 1}}\n",
        False),
}


@pytest.mark.parametrize("name", VALID)
def test_valid_parameters_pass(project, name):
    body, strict = VALID[name]
    assert problems(project, {"a.yaml": spec(body, strict)}) == []


def test_a_parameters_file_is_checked_at_its_own_lines(project):
    write(project, {"schemas/lookup.json": '{\n  "type": "object",\n  "properties": {\n    "id": {"type": "strng"}\n  }\n}\n'})
    found = problems(project, {"a.yaml": "model: gpt-4o\ntools:\n  - function: {name: f, parameters_file: schemas/lookup.json}\n"})
    assert found == ["assistants/schemas/lookup.json:4:12: `parameters.properties.id.type` must be one of string, "
                     "number, integer, boolean, object, array, null (or a list of them), not \"strng\"; "
                     "did you mean `string`?"]


def test_a_json_parameters_file_is_read_as_json_not_as_lenient_yaml(project):
    """YAML would read each of these (and the schema would validate): a trailing comma, single quotes, a comment;
    JSON's own parser finds them, at their line:col, with the fix. A valid one keeps YAML's positions."""
    write(project, {"s/comma.json": '{"type": "object",\n "properties": {"id": {"type": "string"},}}\n',
                    "s/quotes.json": "{'type': 'object', 'properties': {}}\n",
                    "s/comment.json": '{"type": "object", "properties": {}}  # the lookup\n',
                    "s/ok.json": '{"type": "object",\n "properties": {"id": {"type": "strng"}}}\n'})
    functions = "".join(f"  - function: {{name: {name}, parameters_file: s/{name}.json}}\n"
                        for name in ("comma", "quotes", "comment", "ok"))
    assert sorted(problems(project, {"a.yaml": f"model: gpt-4o\ntools:\n{functions}"})) == [
        "assistants/s/comma.json:2:42: malformed JSON: a comma after the last item; remove the `,` before `}` "
        "(JSON allows none there)",
        "assistants/s/comment.json:1:39: malformed JSON: a comment; JSON has none: remove it (or use a .yaml file, "
        "where `#` starts a comment)",
        "assistants/s/ok.json:2:24: `parameters.properties.id.type` must be one of string, number, integer, boolean, "
        "object, array, null (or a list of them), not \"strng\"; did you mean `string`?",
        "assistants/s/quotes.json:1:2: malformed JSON: single quotes; JSON needs double quotes: write `\"...\"`"]


def test_the_repositorys_examples_pass_and_validate_reports_a_broken_schema(project):
    """The repository is itself an asstctl project: its weather bot has a `strict: true` function from a
    `parameters_file` and an inline one, both valid."""
    from pathlib import Path

    from asstctl.spec.loader import load_specs
    from asstctl.spec.project import load_project

    repository = load_project(Path(__file__).resolve().parents[2])
    functions = [tool["function"] for spec in load_specs(repository) for tool in spec.fields.get("tools") or []
                 if tool["type"] == "function"]
    assert [f.get("strict", False) for f in functions if f.get("parameters")] == [True, False]
    assert validate_project(repository) == []
    write(project, {"a.yaml": spec("type: array\n")})
    result = CliRunner().invoke(cli, ["validate"])
    assert result.exit_code == 1 and "must be an object schema" in result.output and "Traceback" not in result.output


@pytest.mark.parametrize("command", [["plan"], ["apply", "--yes"]])
def test_plan_and_apply_exit_1_on_a_broken_schema_and_change_nothing(project, command):
    write(project, {"a.yaml": spec("type: object\nproperties:\n  order_id: string\n")})
    result = CliRunner().invoke(cli, command, env={"OPENAI_BASE_URL": None})
    assert result.exit_code == 1, result.output
    assert "assistants/a.yaml:9:11: `parameters.properties.order_id` must be a schema, not \"string\": write " \
           "`order_id: {type: string}`" in result.output
    assert "Traceback" not in result.output and "create" not in result.output and "Apply complete" not in result.output


def strict_object(properties: dict, **more) -> dict:
    return {"type": "object", "additionalProperties": False, "required": list(properties), "properties": properties,
            **more}


SIZES = {  # OpenAI's Structured Outputs limits, one past each
    "5,001 properties": (strict_object({f"p{i}": {"type": "string"} for i in range(5001)}),
                         "5,001 properties; `strict: true` allows at most 5,000 in one schema: split the function "
                         "into smaller ones"),
    "1,001 enum values": (strict_object({"a": {"type": "integer", "enum": list(range(600))},
                                        "b": {"type": "integer", "enum": list(range(401))}}),
                          "1,001 enum values; `strict: true` allows at most 1,000 in one schema: for a long list of "
                          "allowed values use `type: string` and name them in `description`"),
    "120,001 characters of names and values": (
        strict_object({"a" * 1000: {"type": "string", "enum": ["v" * 500] * 200},
                       "b": {"type": "string", "const": "c" * 18_999}},
                      **{"$defs": {"d": {"type": "string"}}}),
        "120,001 characters in property and definition names, enum and const values; `strict: true` allows at most "
        "120,000 in one schema: shorten them or split the function into smaller ones"),
}


@pytest.mark.parametrize("name", SIZES)
def test_a_strict_schema_over_a_size_limit_is_told_the_limit_and_a_fix(name):
    from asstctl.spec.toolschema import parameters_problems

    schema, message = SIZES[name]
    where = lambda path: "a.yaml:" + ".".join(map(str, path))  # noqa: E731
    assert parameters_problems(schema, True, where) == [f"a.yaml:: {message}, or set `strict: false`"]
    assert parameters_problems(schema, False, where) == []  # limits of `strict: true` only


EDGES = [  # beside every schema above: what the quick check must not wave through
    {"type": "object", "properties": {"a": {"minLength": 1.5}}}, {"minItems": -1}, {"minItems": True},
    {"multipleOf": 0}, {"type": []}, {"type": ["string", "string"]}, {"required": ["a", "a"]}, {"anyOf": []},
    {"$id": "a#b"}, {"$ref": 5}, {"examples": "x"}, {"dependencies": {"a": 3}}, {"properties": {"a": 5}},
    {"x-vendor": {"anything": 1}, "type": "string"}, {"minimum": "5"}, {"uniqueItems": "yes"}, {"enum": "a, b"},
    {"$defs": {"a": {"type": "strng"}}}, {"contentSchema": {"type": 1}}, {"patternProperties": {"^a": {}}}, True,
]


def test_the_quick_meta_schema_check_agrees_with_the_meta_schema():
    """`plainly_valid` (microseconds) never passes what the draft 2020-12 meta-schema rejects, and the compiled,
    reference-free meta-schema gives the same errors as jsonschema's own (which repeats some, once per
    vocabulary)."""
    import yaml
    from jsonschema import Draft202012Validator

    from asstctl.spec.metaschema import CONSTRAINED, meta_validator, plainly_valid

    ours, theirs = meta_validator(), Draft202012Validator(Draft202012Validator.META_SCHEMA)
    assert CONSTRAINED == set(ours.schema["properties"])
    schemas = [yaml.safe_load(body) for body, _, _ in CASES.values()] + \
              [yaml.safe_load(body) for body, _ in VALID.values()] + EDGES
    for schema in schemas:
        errors = {(tuple(e.absolute_path), e.validator, e.message) for e in ours.iter_errors(schema)}
        assert errors == {(tuple(e.absolute_path), e.validator, e.message) for e in theirs.iter_errors(schema)}
        assert not plainly_valid(schema) or not errors, schema
    assert sum(map(plainly_valid, schemas)) > len(VALID)  # the quick check does answer the usual schemas


def test_schemas_the_openai_sdk_makes_for_strict_functions_pass():
    """No false positives on what `openai.pydantic_function_tool` sends as a strict function: Optional, an enum,
    Literal (one value and several), a date, a recursive model, minimum/maximum, a list."""
    import datetime
    import enum
    from typing import Literal, Optional

    import openai
    from pydantic import BaseModel, Field

    from asstctl.spec.toolschema import parameters_problems

    class Unit(str, enum.Enum):
        c = "c"
        f = "f"

    class Node(BaseModel):
        name: str
        children: list["Node"]

    class Query(BaseModel):
        city: str = Field(description="the city")
        unit: Unit
        when: Optional[datetime.date]
        kind: Literal["daily", "hourly"]
        one: Literal["x"]
        days: int = Field(ge=1, le=14)
        ratio: Optional[float] = Field(gt=0, lt=1)
        tree: Node
        tags: list[str]

    function = openai.pydantic_function_tool(Query)["function"]
    assert function["strict"] is True
    where = lambda path: ".".join(map(str, path))  # noqa: E731
    assert parameters_problems(function["parameters"], True, where) == []
    assert parameters_problems(function["parameters"], False, where) == []
    typeless = {**function["parameters"], "properties": {**function["parameters"]["properties"], "city": {}}}
    assert parameters_problems(typeless, True, where) == ["properties.city: with `strict: true` every schema needs a "
                                                         "`type` (`parameters.properties.city` has none); add one, "
                                                         "e.g. `type: string`, or set `strict: false`"]


FIX = ("write `", "e.g. `", "use `", "did you mean `", "quote it, `", "add `", "add it", "remove it", "flatten it", "shorten",
       "move the alternatives", "move `")


def test_every_message_says_what_to_do():
    """Each message of CASES and of the quick check's EDGES carries a fix, none is jsonschema's raw text
    (`[] should be non-empty`, `0 is less than or equal to the minimum of 0`)."""
    from asstctl.spec.toolschema import parameters_problems

    where = lambda path: ".".join(map(str, path))  # noqa: E731
    messages = [message for _, _, expected in CASES.values() for message in expected]
    messages += [message for schema in EDGES if isinstance(schema, dict)
                 for message in parameters_problems({"type": "object", "properties": {"a": schema}}, False, where)]
    assert len(messages) > len(CASES) + len(EDGES) - 5
    for message in messages:
        assert any(fix in message for fix in FIX), message
        assert "is not valid JSON Schema" not in message and "should be" not in message and "is not of type" not in message, \
            message
