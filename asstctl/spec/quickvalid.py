"""Whether a document plainly fits one of asstctl's own JSON Schemas (specs, asstctl.yaml, conversation files),
answered without importing jsonschema (a third of a `validate`'s start-up): most documents are valid, and only an
invalid one needs jsonschema's errors.

``fits(instance, schema)`` is True (valid), False (invalid) or None (cannot tell: a keyword it does not know, an
``enum`` of mappings...); the caller asks jsonschema unless it is True. It knows the keywords those schemas use,
with draft 2020-12's meaning: each applies only to values of its own kind, ``integer`` includes ``2.0`` and
excludes ``true``, ``pattern`` searches (not matches) the text.
"""

from __future__ import annotations

import re
from typing import Any, Optional

ANNOTATIONS = frozenset({"description", "title", "$schema", "$comment", "default", "examples", "deprecated"})
_PATTERNS: dict[str, re.Pattern] = {}
_KINDS = {"string": str, "object": dict, "array": list, "boolean": bool, "null": type(None)}


def fits(instance: Any, schema: Any) -> Optional[bool]:
    if schema is True:
        return True
    if schema is False:
        return False
    if not isinstance(schema, dict):
        return None
    answer: Optional[bool] = True
    for key, value in schema.items():
        check = _KEYWORDS.get(key)
        if check is None:
            if key in ANNOTATIONS or key.startswith("x-") or key in ("then", "else"):
                continue  # then/else: with their `if`
            return None
        result = check(instance, value, schema)
        if result is False:
            return False
        if result is None:
            answer = None
    return answer


def _is(instance: Any, kind: str) -> bool:
    if kind == "integer":
        return (type(instance) is int) or (type(instance) is float and instance.is_integer())
    if kind == "number":
        return type(instance) in (int, float)
    expected = _KINDS.get(kind)
    return expected is not None and type(instance) is expected


def _type(instance: Any, kinds: Any, _schema: dict) -> Optional[bool]:
    kinds = kinds if isinstance(kinds, list) else [kinds]
    if not all(kind in _KINDS or kind in ("integer", "number") for kind in kinds):
        return None
    return any(_is(instance, kind) for kind in kinds)


def _all(results: list[Optional[bool]]) -> Optional[bool]:
    return False if False in results else None if None in results else True


def _properties(instance: Any, properties: Any, _schema: dict) -> Optional[bool]:
    if not isinstance(instance, dict):
        return True
    return _all([fits(instance[name], sub) for name, sub in properties.items() if name in instance])


def _additional(instance: Any, extra: Any, schema: dict) -> Optional[bool]:
    if not isinstance(instance, dict) or extra is True:
        return True
    if "patternProperties" in schema:
        return None
    known = schema.get("properties") or {}
    return _all([fits(value, extra) for name, value in instance.items() if name not in known])


def _required(instance: Any, names: Any, _schema: dict) -> Optional[bool]:
    return not isinstance(instance, dict) or all(name in instance for name in names)


def _enum(instance: Any, values: Any, _schema: dict) -> Optional[bool]:
    if isinstance(instance, (dict, list)) or any(isinstance(value, (dict, list)) for value in values):
        return None  # jsonschema's equality of containers: not ours to redo
    return any(type(value) is type(instance) and value == instance for value in values) or (
        None if type(instance) in (int, float) else False)  # 1 and 1.0: ask


def _const(instance: Any, value: Any, schema: dict) -> Optional[bool]:
    return _enum(instance, [value], schema)


def _any_of(instance: Any, branches: Any, _schema: dict) -> Optional[bool]:
    results = [fits(instance, branch) for branch in branches]
    return True if True in results else None if None in results else False


def _all_of(instance: Any, branches: Any, _schema: dict) -> Optional[bool]:
    return _all([fits(instance, branch) for branch in branches])


def _not(instance: Any, sub: Any, _schema: dict) -> Optional[bool]:
    result = fits(instance, sub)
    return None if result is None else not result


def _if(instance: Any, condition: Any, schema: dict) -> Optional[bool]:
    result = fits(instance, condition)
    if result is None:
        return None
    return fits(instance, schema.get("then", True) if result else schema.get("else", True))


def _items(instance: Any, sub: Any, _schema: dict) -> Optional[bool]:
    if not isinstance(instance, list):
        return True
    return _all([fits(item, sub) for item in instance])


def _property_names(instance: Any, sub: Any, _schema: dict) -> Optional[bool]:
    return True if not isinstance(instance, dict) else _all([fits(name, sub) for name in instance])


def _pattern(instance: Any, pattern: Any, _schema: dict) -> Optional[bool]:
    if not isinstance(instance, str):
        return True
    compiled = _PATTERNS.get(pattern)
    if compiled is None:
        try:
            compiled = _PATTERNS[pattern] = re.compile(pattern)
        except re.error:
            return None
    return compiled.search(instance) is not None


def _bound(kind: str, compare):
    """A keyword comparing a size (or a number) of values of ``kind`` with the keyword's value."""
    def check(instance: Any, limit: Any, _schema: dict) -> Optional[bool]:
        if kind == "number":
            return True if not _is(instance, "number") else compare(instance, limit)
        if not _is(instance, kind):
            return True
        return compare(len(instance), limit)
    return check


_KEYWORDS = {
    "type": _type, "properties": _properties, "additionalProperties": _additional, "required": _required,
    "enum": _enum, "const": _const, "anyOf": _any_of, "allOf": _all_of, "not": _not, "if": _if, "items": _items,
    "propertyNames": _property_names, "pattern": _pattern,
    "minLength": _bound("string", lambda size, limit: size >= limit),
    "maxLength": _bound("string", lambda size, limit: size <= limit),
    "minItems": _bound("array", lambda size, limit: size >= limit),
    "maxItems": _bound("array", lambda size, limit: size <= limit),
    "minProperties": _bound("object", lambda size, limit: size >= limit),
    "maxProperties": _bound("object", lambda size, limit: size <= limit),
    "minimum": _bound("number", lambda number, limit: number >= limit),
    "maximum": _bound("number", lambda number, limit: number <= limit),
    "exclusiveMinimum": _bound("number", lambda number, limit: number > limit),
    "exclusiveMaximum": _bound("number", lambda number, limit: number < limit),
}
