"""A function tool's ``parameters``, checked offline: what a model would otherwise reject at run time.

Three layers, each reported as ``path:line:col: message`` with what to do:

1. the JSON Schema meta-schema (draft 2020-12): ``type: strng``, ``required: order_id``...;
2. OpenAI's function-calling rules: the top is an object schema (``type: object``), ``required``
   names properties that exist, a local ``$ref`` points at something, an ``enum`` has a value, a ``pattern``
   compiles;
3. with ``strict: true``, the Structured Outputs rules: every object has ``additionalProperties: false``
   and lists every property in ``required``, only the supported keywords and formats, the root is not
   ``anyOf``, a ``$ref`` stands alone (no ``description`` beside it), empty ``parameters`` are refused, at most
   10 levels of nesting, 5,000 properties, 1,000 enum values, 120,000 characters of
   names and enum/const values, 15,000 characters in an enum of more than 250 strings.

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
    if strict and parameters == {}:
        return [f"{where(())}: with `strict: true` empty `parameters` are refused by OpenAI (\"'additionalProperties' "
                f"is required to be supplied and to be false\"); for a function without arguments write "
                f"`{{type: object, properties: {{}}, required: [], additionalProperties: false}}`, {NON_STRICT}"]
    if not isinstance(parameters, dict) or not parameters:
        return []
    problems = meta_problems(parameters, where)
    if problems:
        return problems  # the rules below assume a well-formed schema
    if strict and "anyOf" in parameters and parameters.get("type") != "object":
        return [_root_any_of(where)]  # said here, or the "no `type`" message below would hide it
    problems = function_problems(parameters, where)
    if strict and not problems:
        problems = strict_problems(parameters, where)
    return problems


def meta_problems(schema: dict[str, Any], where: Where) -> list[str]:
    """``schema`` against the draft 2020-12 meta-schema: the quick check first (``plainly_valid``), the
    compiled meta-schema when it cannot tell, and the errors listed only for an invalid schema."""
    from asstctl.spec.metaschema import meta_validator, plainly_valid

    if plainly_valid(schema) or meta_validator().is_valid(schema):  # listing errors costs more
        return []
    found: dict[tuple, str] = {}
    for error in meta_validator().iter_errors(schema):
        path = tuple(error.absolute_path)
        found.setdefault(path, _meta_message(error, path))
    return [f"{where(path)}: {message}" for path, message in sorted(found.items(), key=lambda item: where(item[0]))]


SCHEMA_MAPS = ("properties", "$defs", "definitions", "patternProperties", "dependentSchemas")
SCHEMA_LISTS = ("anyOf", "oneOf", "allOf", "prefixItems")
SCHEMA_KEYWORDS = ("items", "additionalProperties", "not", "contains", "propertyNames", "if", "then", "else",
                   "unevaluatedItems", "unevaluatedProperties")
NUMBER_KEYWORDS = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf", "minLength",
                   "maxLength", "minItems", "maxItems", "minProperties", "maxProperties", "minContains", "maxContains")


def _meta_message(error, path: tuple) -> str:
    """What is wrong at ``path`` and how to write it instead; values as they would be written (YAML flow)."""
    name, value = _name(path), error.instance
    parent = path[-2] if len(path) > 1 else None
    if path and (parent in SCHEMA_MAPS or path[-1] in SCHEMA_KEYWORDS or parent in SCHEMA_LISTS):
        if error.validator == "type":
            return _not_a_schema(path, name, value)
    elif path and path[-1] == "type":
        return _type_message(name, value)
    elif path and path[-1] == "required" and error.validator == "uniqueItems":
        twice = next(item for index, item in enumerate(value) if item in value[:index])
        return f"{name} lists `{twice}` twice; list each property once: write `required: {_flow(_once(value))}`"
    elif path and path[-1] == "required":
        example = value if isinstance(value, str) else "name"
        return f"{name} must be a list of property names, e.g. `required: [{example}]` (got {_got(value)})"
    elif path and path[-1] in ("properties", "$defs", "definitions") and error.validator == "type":
        return f"{name} must be a mapping of names to schemas (got {_got(value)}), e.g. `{path[-1]}: " \
               "{name: {type: string}}`"
    elif path and path[-1] == "enum" and error.validator == "type":
        values = [part.strip() for part in value.split(",")] if isinstance(value, str) else [value]
        return f"{name} must be a list of the allowed values: write `enum: {_flow(values)}`"
    elif path and path[-1] in NUMBER_KEYWORDS and error.validator == "type" and _number(value) is not None:
        return f"{name} must be a number, not a string: write `{path[-1]}: {_number(value)}` (without quotes)"
    elif error.validator == "type" and error.validator_value == "string":
        written = "- " if isinstance(path[-1], int) else f"{path[-1]}: "  # a list item, or a key's value
        return f"{name} must be a string (got {_got(value)}): quote it, `{written}{_flow(_as_written(value), True)}`"
    written = "- " if path and isinstance(path[-1], int) else f"{path[-1]}: " if path else ""
    if error.validator in ("minimum", "maximum"):
        word = "at least" if error.validator == "minimum" else "at most"
        return f"{name} must be {word} {error.validator_value} (got {_got(value)}): write " \
               f"`{written}{error.validator_value}`"
    if error.validator == "type":
        wanted = error.validator_value if isinstance(error.validator_value, list) else [error.validator_value]
        kinds = " or ".join(TYPE_WORDS.get(kind, kind) for kind in wanted)
        return f"{name} must be {kinds} (got {_got(value)}): write `{written}{_flow(_as_kind(wanted[0], value))}`"
    if error.validator == "minItems":
        return f"{name} must list at least one schema: write `{written}[{{type: string}}, {{type: \"null\"}}]` " \
               "(the alternatives), or remove it"
    if error.validator == "exclusiveMinimum":
        return f"{name} must be more than {error.validator_value} (got {_got(value)}): write `{written}1` " \
               f"(`{written}0.01` for cents), or remove it"
    if path and path[-1] == "$id":
        return f"{name} may have `#` only at its end (got {_got(value)}): write `$id: {_flow(value.split('#')[0])}` " \
               "(name a subschema with `$anchor`), or remove it"
    if path and len(path) > 1 and path[-2] == "dependencies":
        return f"{name} must be a list of property names or a schema (got {_got(value)}): write " \
               f"`dependentRequired: {{{path[-1]}: [other]}}` (the properties it needs), or " \
               f"`dependentSchemas: {{{path[-1]}: {{...}}}}`"
    return f"{name} is not valid JSON Schema ({error.message.replace(repr(value), _got(value))}): correct it as " \
           "the JSON Schema reference (draft 2020-12) has it, or remove it"


def _type_message(name: str, value: Any) -> str:
    """A ``type`` that is not one of the seven names, or a list of them each once, with what to write."""
    if isinstance(value, list) and value and all(word in SIMPLE_TYPES for word in value):
        twice = next((word for index, word in enumerate(value) if word in value[:index]), value[0])
        once = _once(value)
        return (f"{name} lists `{twice}` twice; list each type once: write "
                f"`type: {_flow(once[0] if len(once) == 1 else once)}`")
    words = [value] if not isinstance(value, list) else [v for v in value if v not in SIMPLE_TYPES]
    bad = next((word for word in words if word not in SIMPLE_TYPES), value)
    close = difflib.get_close_matches(str(bad), SIMPLE_TYPES, n=1, cutoff=0.6)
    hint = f"; did you mean `{close[0]}`?" if close else "; write e.g. `type: string` or `type: [string, \"null\"]`"
    return f"{name} must be one of {', '.join(SIMPLE_TYPES)} (or a list of them), not {_got(bad)}{hint}"


def _once(values: list) -> list:
    return [value for index, value in enumerate(values) if value not in values[:index]]


def _as_kind(kind: str, value: Any) -> Any:
    """``value`` made into a value of JSON type ``kind``, for a fix to write."""
    number = _number(value) if isinstance(value, str) else value if type(value) in (int, float) else None
    if kind == "integer":
        return max(int(number), 0) if number is not None else 1
    if kind == "number":
        return number if number is not None else 1
    if kind == "boolean":
        return str(value).lower() in ("yes", "true", "on", "y", "1")
    if kind == "array":
        return value if isinstance(value, list) else [_as_written(value)]
    if kind == "object":
        return {}
    return _as_written(value)


TYPE_WORDS = {"string": "a string", "number": "a number", "integer": "a whole number", "boolean": "true or false",
              "object": "a mapping", "array": "a list", "null": "null"}


def _not_a_schema(path: tuple, name: str, value: Any) -> str:
    """A value where a schema belongs: ``a: string`` for ``a: {type: string}``, ``items: [...]``, ..."""
    key = path[-1]
    if key == "additionalProperties":
        return f"{name} must be false, true or a schema (got {_got(value)}): write `additionalProperties: false`"
    written = f"{key}: " if not isinstance(key, int) else "- "
    if isinstance(value, str) and value in SIMPLE_TYPES:
        fix = {"type": value}
    elif isinstance(value, list) and value and all(item in SIMPLE_TYPES for item in value):
        fix = {"type": value}
    elif key == "items" and isinstance(value, list) and value and isinstance(value[0], dict):
        return (f"{name} must be one schema, not a list: write `items: {_flow(value[0])}` for a list of such "
                f"items (`prefixItems: [...]` for a fixed sequence)")
    elif isinstance(value, str):
        fix = {"type": "string", "description": value}
    else:
        return f"{name} must be a schema, e.g. `{written}{{type: string}}` (got {_got(value)})"
    return f"{name} must be a schema, not {_got(value)}: write `{written}{_flow(fix)}`"


def _as_written(value: Any) -> str:
    """A scalar's text as YAML has it: `true`, `null`, `5` (not Python's `True`, `None`)."""
    import json

    return json.dumps(value) if isinstance(value, bool) or value is None else str(value)


def _number(value: Any) -> int | float | None:
    try:
        number = float(value) if isinstance(value, str) else None
    except ValueError:
        return None
    if number is None or number != number or number in (float("inf"), float("-inf")):
        return None
    return int(number) if number.is_integer() else number


def _got(value: Any) -> str:
    """A value in a sentence: a string in quotes, anything else as YAML flow."""
    return _flow(value, quoted=True) if isinstance(value, str) else _flow(value)


def _flow(value: Any, quoted: bool = False) -> str:
    """``value`` as YAML flow style (``{type: string}``, ``[a, b]``, ``"5"``), at most about 80 characters."""
    import json
    import re

    if isinstance(value, dict):
        text = "{" + ", ".join(f"{_flow(key)}: {_flow(item)}" for key, item in value.items()) + "}"
    elif isinstance(value, list):
        text = "[" + ", ".join(_flow(item) for item in value) + "]"
    elif isinstance(value, str) and not quoted and re.fullmatch(r"[A-Za-z_$][\w$.-]*( [\w$.-]+)*", value) \
            and value.lower() not in ("null", "true", "false", "yes", "no", "on", "off", "y", "n", "~"):
        text = value
    else:
        try:
            text = json.dumps(value, ensure_ascii=False)
        except (TypeError, ValueError):
            text = str(value)
    return text if len(text) <= 80 else text[:77] + "..."


def function_problems(schema: dict[str, Any], where: Where) -> list[str]:
    """What OpenAI's function calling needs of any ``parameters``: an object schema at the top."""
    if schema.get("type") != "object":
        at = ("type",) if "type" in schema else ()
        got = f"`type: {_flow(schema['type'])}`" if "type" in schema else "no `type`"
        return [f"{where(at)}: function parameters must be an object schema (`type: object` with `properties`), "
                f"got {got}; put other values inside a property, e.g. "
                "`{type: object, properties: {items: {type: array, items: {...}}}}`"]
    problems = [] if "properties" in schema else [
        f"{where(('type',))}: function parameters of `type: object` need `properties`, which OpenAI refuses "
        "without (\"object schema missing properties\"); add `properties: {}` for a function without arguments"]
    return problems + [problem for path, node in _subschemas(schema)
                       for problem in _array_problems(node, path, where) + _required_problems(node, path, where)
                       + _ref_problems(schema, node, path, where) + _value_problems(node, path, where)]


def _value_problems(node: dict[str, Any], path: tuple, where: Where) -> list[str]:
    """An ``enum`` of no values and a ``pattern`` that is no regular expression: the meta-schema takes both (it
    asks no ``minItems`` of ``enum``, and ``format: regex`` only annotates), OpenAI refuses both."""
    problems = []
    if node.get("enum") == []:
        problems.append(f"{where(path + ('enum',))}: {_name(path + ('enum',))} lists no values, so nothing could "
                        "match it, which OpenAI refuses; list the allowed values, e.g. `enum: [a, b]`, or remove it")
    pattern = node.get("pattern")
    error = _regex_error(pattern) if isinstance(pattern, str) else None
    if error:
        problems.append(f"{where(path + ('pattern',))}: {_name(path + ('pattern',))} is not a regular expression "
                        f"({error}), which OpenAI refuses; correct it (e.g. close each `(` and `[`, escape a literal "
                        "one as `\\(`), or remove it")
    return problems


def _regex_error(pattern: str) -> str | None:
    """Why ``pattern`` does not compile, or None. Python's ``re`` first (fast); what it refuses is asked of
    ``regex`` (tiktoken's), which also takes ECMA-262's ``\\p{L}`` and ``(?<name>...)`` that JSON Schema allows."""
    import re

    try:
        re.compile(pattern)
        return None
    except re.error as error:
        first = str(error)
    try:
        import regex
    except ImportError:  # (tiktoken's dependency: always there)
        return first
    try:
        regex.compile(pattern)
        return None
    except regex.error as error:
        return str(error)


def _array_problems(node: dict[str, Any], path: tuple, where: Where) -> list[str]:
    """An array schema without ``items``: OpenAI refuses it, strict or not ("array schema missing items")."""
    kind = node.get("type")
    if "items" in node or not (kind == "array" or (isinstance(kind, list) and "array" in kind)):
        return []
    return [f"{where(path + ('type',))}: {_name(path)} is an array without `items`, which OpenAI refuses "
            "(\"array schema missing items\"); say what the list holds, e.g. `items: {type: string}`"]


def _ref_problems(schema: dict[str, Any], node: dict[str, Any], path: tuple, where: Where) -> list[str]:
    """A local ``$ref`` (``#/$defs/unit``, ``#/definitions/unit``, any ``#/...`` pointer) must point at something."""
    ref = node.get("$ref")
    if not isinstance(ref, str) or not ref.startswith("#/"):
        return []
    from urllib.parse import unquote

    steps = [unquote(step).replace("~1", "/").replace("~0", "~") for step in ref[2:].split("/")]
    target: Any = schema
    for index, step in enumerate(steps):
        if isinstance(target, dict) and step in target:
            target = target[step]
        elif isinstance(target, list) and step.isdigit() and int(step) < len(target):
            target = target[int(step)]
        else:
            return [f"{where(path + ('$ref',))}: `$ref: \"{ref}\"` points at nothing: "
                    f"{_missing(ref, steps, index, target)}"]
    return []


def _missing(ref: str, steps: list[str], index: int, container: Any) -> str:
    """Why ``steps[index]`` is not in ``container``, and what to write."""
    step, at = steps[index], "#/" + "/".join(steps[:index])
    names = [str(name) for name in container] if isinstance(container, dict) else []
    close = difflib.get_close_matches(step, names, n=1, cutoff=0.6)
    if close:
        fixed = "/".join([*ref.split("/")[:index + 1], close[0], *ref.split("/")[index + 2:]])
        return f"`{at}` has no `{step}` (did you mean `{fixed}`?)"
    if index == 0:
        return (f"`parameters` has no `{step}`; define it at the top of `parameters`, e.g. "
                f"`{step}: {{{steps[1] if len(steps) > 1 else 'name'}: {{type: string}}}}`")
    defined = f" (defined: {', '.join(names[:10])})" if names else ""
    return f"`{at}` has no `{step}`{defined}; add it there or correct the name"


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
    """The Structured Outputs rules that ``strict: true`` adds, its size limits included."""
    problems = [_root_any_of(where)] if "anyOf" in schema else []
    size = _Size()
    for path, node in _subschemas(schema):
        depth = sum(1 for step in path if step in ("properties", "items"))
        if depth == MAX_DEPTH + 1:  # once per branch, where it crosses the limit
            problems.append(f"{where(path)}: {_name(path)} is nested {depth} levels deep; `strict: true` allows at "
                            f"most {MAX_DEPTH}: flatten it (move this object's fields into its parent), {NON_STRICT}")
        size.add(node)
        problems += _strict_node(node, path, where)
        problems += _large_enum(node, path, where)
    return problems + size.problems(where)


def _root_any_of(where: Where) -> str:
    return (f"{where(('anyOf',))}: with `strict: true` the top of `parameters` must be one object, not `anyOf`; "
            f"move the alternatives into a property (`{{type: object, properties: {{choice: {{anyOf: [...]}}}}, "
            f"required: [choice], additionalProperties: false}}`), {NON_STRICT}")


MAX_CHARACTERS, LARGE_ENUM, MAX_LARGE_ENUM_CHARACTERS = 120_000, 250, 15_000


class _Size:
    """What ``strict: true`` counts over the whole schema: properties, enum values, and the characters of property
    and definition names, enum and const values."""

    def __init__(self) -> None:
        self.properties = self.enums = self.characters = 0

    def add(self, node: dict[str, Any]) -> None:
        names = [*(node.get("properties") or {}), *(node.get("$defs") or {}), *(node.get("definitions") or {})]
        values = node["enum"] if isinstance(node.get("enum"), list) else []
        self.properties += len(node.get("properties") or {})
        self.enums += len(values)
        self.characters += sum(_length(value) for value in [*names, *values, *([node["const"]] if "const" in node
                                                                                else [])])

    def problems(self, where: Where) -> list[str]:
        limits = [(self.properties, MAX_PROPERTIES, "properties", "split the function into smaller ones"),
                  (self.enums, MAX_ENUM_VALUES, "enum values",
                   "for a long list of allowed values use `type: string` and name them in `description`"),
                  (self.characters, MAX_CHARACTERS, "characters in property and definition names, enum and const "
                   "values", "shorten them or split the function into smaller ones")]
        return [f"{where(())}: {count:,} {what}; `strict: true` allows at most {most:,} in one schema: {fix}, "
                f"{NON_STRICT}" for count, most, what, fix in limits if count > most]


def _large_enum(node: dict[str, Any], path: tuple, where: Where) -> list[str]:
    values = node.get("enum")
    if not isinstance(values, list) or len(values) <= LARGE_ENUM or not all(isinstance(v, str) for v in values):
        return []
    characters = sum(map(len, values))
    if characters <= MAX_LARGE_ENUM_CHARACTERS:
        return []
    return [f"{where(path + ('enum',))}: {_name(path + ('enum',))} has {len(values):,} values of {characters:,} "
            f"characters in all; with `strict: true` an enum of more than {LARGE_ENUM} strings may have at most "
            f"{MAX_LARGE_ENUM_CHARACTERS:,}: shorten the values, or use `type: string` and name them in "
            f"`description`, {NON_STRICT}"]


def _length(value: Any) -> int:
    import json

    return len(value) if isinstance(value, str) else len(json.dumps(value, ensure_ascii=False, default=str))


def _strict_node(node: dict[str, Any], path: tuple, where: Where) -> list[str]:
    problems = [f"{where(path + (key,))}: `{key}` is not supported with `strict: true`; remove it, {NON_STRICT} "
                f"(supported: {', '.join(sorted(STRICT_KEYWORDS - {'$schema', '$id', '$comment'}))})"
                for key in node if key not in STRICT_KEYWORDS]
    beside = [key for key in node if key != "$ref"] if "$ref" in node else []
    if beside:
        keys = ", ".join(f"`{key}`" for key in beside)
        problems.append(f"{where(path + (beside[0],))}: with `strict: true` a `$ref` cannot have other keywords beside "
                        f"it ({keys}), which OpenAI refuses (\"$ref cannot have keywords\"); move {keys} into the "
                        f"definition `{node['$ref']}`, or inline it (write the definition here instead of the "
                        f"`$ref`), {NON_STRICT}")
    if "format" in node and node["format"] not in STRICT_FORMATS:
        problems.append(f"{where(path + ('format',))}: format `{node['format']}` is not supported with `strict: true` "
                        f"(supported: {', '.join(STRICT_FORMATS)}); use `pattern` instead, {NON_STRICT}")
    if path and path[0] != "anyOf" and not {"type", "anyOf", "$ref"} & set(node):  # the root's anyOf: said once
        problems.append(f"{where(path)}: with `strict: true` every schema needs a `type` ({_name(path)} has none); "
                        f"add one, e.g. `type: {_likely_type(node)}`, {NON_STRICT}")
    if not _is_object(node):
        return problems
    if path and "properties" not in node:
        problems.append(f"{where(path + ('type',) if 'type' in node else path)}: with `strict: true` every object "
                        f"needs `properties` ({_name(path)}); add `properties: {{}}` (with "
                        f"`additionalProperties: false`, an empty object), {NON_STRICT}")
    if node.get("additionalProperties") is not False:
        at = path + ("additionalProperties",) if "additionalProperties" in node else path
        problems.append(f"{where(at)}: with `strict: true` every object needs `additionalProperties: false` "
                        f"({_name(path)}); add it, {NON_STRICT}")
    required = set(node.get("required") or [])
    missing = [name for name in node.get("properties") or {} if name not in required]
    if missing:
        at = path + ("required",) if "required" in node else path
        problems.append(f"{where(at)}: with `strict: true` `required` must list every property of {_name(path)}: "
                        f"add {', '.join(f'`{name}`' for name in missing)} to it (make an optional one nullable: "
                        f"`type: [string, \"null\"]`), {NON_STRICT}")
    return problems


def _likely_type(node: dict[str, Any]) -> str:
    """The type a schema without one seems to mean: its enum's or const's values, an object, or a string."""
    values = node["enum"] if isinstance(node.get("enum"), list) else [node["const"]] if "const" in node else []
    if values:
        kinds = {("boolean" if isinstance(v, bool) else "integer" if isinstance(v, int) else "number"
                  if isinstance(v, float) else "string" if isinstance(v, str) else "null" if v is None else "object")
                 for v in values}
        return next(iter(kinds)) if len(kinds) == 1 else _flow(sorted(kinds))
    return "object" if "properties" in node else "array" if "items" in node else "string"


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
