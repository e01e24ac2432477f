"""A function tool's ``parameters``, checked offline: what a model would otherwise reject at run time.

Three layers, each reported as ``path:line:col: message`` with what to do:

1. the JSON Schema meta-schema (draft 2020-12): ``type: strng``, ``required: order_id``...;
2. OpenAI's function-calling rules: the top is an object schema (``type: object``), ``required``
   names properties that exist;
3. with ``strict: true``, the Structured Outputs rules: every object has ``additionalProperties: false``
   and lists every property in ``required``, only the supported keywords and formats, the root is not
   ``anyOf``, at most 10 levels of nesting, 5,000 properties and 1,000 enum values.

``where(path)`` gives the ``file:line:col`` of a JSON path inside ``parameters`` (inline in the spec,
or in its ``parameters_file``).
"""

from __future__ import annotations

import difflib
from typing import Any, Callable, Iterator

SIMPLE_TYPES = ["string", "number", "integer", "boolean", "object", "array", "null"]
STRICT_KEYWORDS = frozenset({
    "type", "description", "title", "$comment", "enum", "const", "anyOf", "$ref", "$defs", "definitions",
    "properties", "required", "additionalProperties", "items", "pattern", "format", "multipleOf", "minimum",
    "maximum", "exclusiveMinimum", "exclusiveMaximum", "minItems", "maxItems", "$schema", "$id",
})
STRICT_FORMATS = ("date-time", "time", "date", "duration", "email", "hostname", "ipv4", "ipv6", "uuid")
MAX_DEPTH, MAX_PROPERTIES, MAX_ENUM_VALUES = 10, 5000, 1000
NON_STRICT = "or set `strict: false`"

Where = Callable[[tuple], str]


def parameters_problems(parameters: Any, strict: bool, where: Where) -> list[str]:
    """Every problem of one function's ``parameters`` (``{}`` and absent: a function without arguments)."""
    if not isinstance(parameters, dict) or not parameters:
        return []
    problems = meta_problems(parameters, where)
    if problems:
        return problems  # the rules below assume a well-formed schema
    problems = function_problems(parameters, where)
    if strict and not problems:
        problems = strict_problems(parameters, where)
    return problems


def meta_problems(schema: dict[str, Any], where: Where) -> list[str]:
    from jsonschema import Draft202012Validator

    from asstctl.spec.schema import validator_for

    found: dict[tuple, str] = {}
    for error in validator_for(Draft202012Validator.META_SCHEMA).iter_errors(schema):
        path = tuple(error.absolute_path)
        found.setdefault(path, _meta_message(error, path))
    return [f"{where(path)}: {message}" for path, message in sorted(found.items(), key=lambda item: where(item[0]))]


def _meta_message(error, path: tuple) -> str:
    from asstctl.spec.schema import show

    name = _name(path)
    keyword = path[-1] if path else None
    value = error.instance
    if keyword == "type":
        words = [value] if not isinstance(value, list) else [v for v in value if v not in SIMPLE_TYPES]
        bad = next((word for word in words if word not in SIMPLE_TYPES), value)
        close = difflib.get_close_matches(str(bad), SIMPLE_TYPES, n=1, cutoff=0.6)
        hint = f"; did you mean `{close[0]}`?" if close else ""
        return f"{name} must be one of {', '.join(SIMPLE_TYPES)} (or a list of them), not {show(bad)}{hint}"
    if keyword == "required":
        example = value if isinstance(value, str) else "name"
        return f"{name} must be a list of property names, e.g. `required: [{example}]` (got {show(value)})"
    if keyword in ("properties", "$defs", "definitions") and error.validator == "type":
        return f"{name} must be a mapping of names to schemas (got {show(value)})"
    return f"{name} is not valid JSON Schema: {error.message}"


def function_problems(schema: dict[str, Any], where: Where) -> list[str]:
    """What OpenAI's function calling needs of any ``parameters``: an object schema at the top."""
    if schema.get("type") != "object":
        at = ("type",) if "type" in schema else ()
        got = f"`type: {schema['type']}`" if "type" in schema else "no `type`"
        return [f"{where(at)}: function parameters must be an object schema (`type: object` with `properties`), "
                f"got {got}; put other values inside a property, e.g. "
                "`{type: object, properties: {items: {type: array, items: {...}}}}`"]
    return [problem for path, node in _subschemas(schema) for problem in _required_problems(node, path, where)]


def _required_problems(node: dict[str, Any], path: tuple, where: Where) -> list[str]:
    properties = node.get("properties")
    if not isinstance(properties, dict) or "patternProperties" in node or isinstance(node.get("additionalProperties"), dict):
        return []
    problems = []
    for index, name in enumerate(node.get("required") or []):
        if name not in properties:
            close = difflib.get_close_matches(str(name), list(properties), n=1, cutoff=0.6)
            hint = f"did you mean `{close[0]}`?" if close else "add it to `properties` or remove it from `required`"
            problems.append(f"{where(path + ('required', index))}: `required` names `{name}`, which is not one of "
                            f"{_name(path + ('properties',))} ({hint})")
    return problems


def strict_problems(schema: dict[str, Any], where: Where) -> list[str]:
    """The Structured Outputs rules that ``strict: true`` adds."""
    problems = []
    if "anyOf" in schema:
        problems.append(f"{where(('anyOf',))}: with `strict: true` the top of `parameters` must be one object, "
                        f"not `anyOf`; move the alternatives into a property, {NON_STRICT}")
    properties = enums = 0
    for path, node in _subschemas(schema):
        depth = sum(1 for step in path if step in ("properties", "items"))
        if depth > MAX_DEPTH:
            problems.append(f"{where(path)}: nested {depth} levels deep; `strict: true` allows at most {MAX_DEPTH}")
        properties += len(node.get("properties") or {})
        enums += len(node.get("enum") or []) if isinstance(node.get("enum"), list) else 0
        problems += _strict_node(node, path, where)
    if properties > MAX_PROPERTIES:
        problems.append(f"{where(())}: {properties:,} properties; `strict: true` allows at most {MAX_PROPERTIES:,}")
    if enums > MAX_ENUM_VALUES:
        problems.append(f"{where(())}: {enums:,} enum values; `strict: true` allows at most {MAX_ENUM_VALUES:,}")
    return problems


def _strict_node(node: dict[str, Any], path: tuple, where: Where) -> list[str]:
    problems = [f"{where(path + (key,))}: `{key}` is not supported with `strict: true`; remove it, {NON_STRICT} "
                f"(supported: {', '.join(sorted(STRICT_KEYWORDS - {'$schema', '$id', '$comment'}))})"
                for key in node if key not in STRICT_KEYWORDS]
    if "format" in node and node["format"] not in STRICT_FORMATS:
        problems.append(f"{where(path + ('format',))}: format `{node['format']}` is not supported with `strict: true` "
                        f"(supported: {', '.join(STRICT_FORMATS)}); use `pattern` instead, {NON_STRICT}")
    if not _is_object(node):
        return problems
    if node.get("additionalProperties") is not False:
        at = path + ("additionalProperties",) if "additionalProperties" in node else path
        problems.append(f"{where(at)}: with `strict: true` every object needs `additionalProperties: false` "
                        f"({_name(path)}); add it, {NON_STRICT}")
    required = node.get("required") or []
    missing = [name for name in node.get("properties") or {} if name not in required]
    if missing:
        at = path + ("required",) if "required" in node else path
        problems.append(f"{where(at)}: with `strict: true` `required` must list every property of {_name(path)}; "
                        f"missing: {', '.join(map(str, missing))} (make an optional one nullable: "
                        f"`type: [string, \"null\"]`), {NON_STRICT}")
    return problems


def _is_object(node: dict[str, Any]) -> bool:
    kind = node.get("type")
    return kind == "object" or (isinstance(kind, list) and "object" in kind) or "properties" in node


def _subschemas(schema: dict[str, Any], path: tuple = ()) -> Iterator[tuple[tuple, dict[str, Any]]]:
    """Every schema inside ``schema`` (itself first) with its JSON path: properties, items, anyOf, $defs."""
    yield path, schema
    for keyword in ("properties", "$defs", "definitions"):
        for name, sub in (schema.get(keyword) or {}).items():
            if isinstance(sub, dict):
                yield from _subschemas(sub, path + (keyword, name))
    for keyword in ("anyOf", "oneOf", "allOf", "prefixItems"):
        for index, sub in enumerate(schema.get(keyword) or []):
            if isinstance(sub, dict):
                yield from _subschemas(sub, path + (keyword, index))
    for keyword in ("items", "additionalProperties", "not"):
        if isinstance(schema.get(keyword), dict):
            yield from _subschemas(schema[keyword], path + (keyword,))


def _name(path: tuple) -> str:
    text = "parameters"
    for step in path:
        text += f"[{step}]" if isinstance(step, int) else f".{step}"
    return f"`{text}`"
