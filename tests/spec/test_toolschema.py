"""Function `parameters` are checked offline: the JSON Schema meta-schema, OpenAI's function-calling rules and,
with `strict: true`, the Structured Outputs rules; each problem at its `path:line:col` with what to do."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from asstctl.cli import cli
from tests.spec.conftest import problems, write

SPEC = "model: gpt-4o\ntools:\n  - type: function\n    function:\n      name: lookup\n{extra}      parameters:\n{body}"


def spec(body: str, strict: bool = False) -> str:
    indented = "".join(f"        {line}\n" for line in body.strip("\n").splitlines())
    return SPEC.format(extra="      strict: true\n" if strict else "", body=indented)


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
    "strict: a property not required, no additionalProperties": (
        "type: object\nproperties:\n  a: {type: string}\n  b: {type: integer}\nrequired: [a]\n", True,
        ["assistants/a.yaml:7:7: with `strict: true` every object needs `additionalProperties: false` "
         "(`parameters`); add it, or set `strict: false`",
         "assistants/a.yaml:12:9: with `strict: true` `required` must list every property of `parameters`; "
         "missing: b (make an optional one nullable: `type: [string, \"null\"]`), or set `strict: false`"]),
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
         "`parameters.properties.tags.items`; missing: x (make an optional one nullable: `type: [string, \"null\"]`), "
         "or set `strict: false`"]),
}


@pytest.mark.parametrize("name", CASES)
def test_a_broken_parameters_schema_is_reported_where_it_is_with_a_fix(project, name):
    body, strict, expected = CASES[name]
    assert problems(project, {"a.yaml": spec(body, strict)}) == expected


VALID = {
    "no parameters": ("{}", True),
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


def test_the_repositorys_examples_pass_and_validate_reports_a_broken_schema(project):
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
