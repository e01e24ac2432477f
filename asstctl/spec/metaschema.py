"""The JSON Schema (draft 2020-12) meta-schema, made cheap to check against: a schema is checked for every
function of every spec on every `validate`, `plan` and `apply`.

``plainly_valid(schema)`` answers in microseconds for the schemas people write (the usual keywords with values of
the right kind) and says only "valid" or "ask the meta-schema"; ``meta_validator()`` is the meta-schema itself,
compiled once per process into one cyclic document without references, for the rest and for the errors.
"""

from __future__ import annotations

from typing import Any

_COMPILED: list = []
ANNOTATIONS = frozenset({"$comment", "default", "deprecated", "title"})  # no part in whether a schema is valid


def meta_validator():
    """The draft 2020-12 meta-schema as one document: its vocabularies merged, ``$dynamicRef: "#meta"`` read as the
    root (what it resolves to for a plain schema) and every reference replaced by what it points at (so the
    document is cyclic): the same errors, without resolving a reference at every subschema, which made a check
    cost milliseconds per schema. Compiled once per process."""
    if not _COMPILED:
        from jsonschema import Draft202012Validator
        from jsonschema_specifications import REGISTRY

        meta = Draft202012Validator.META_SCHEMA
        root: dict[str, Any] = {"type": ["object", "boolean"], "properties": {}}
        defs: dict[str, Any] = {}
        for part in [REGISTRY.contents(f"https://json-schema.org/draft/2020-12/{ref['$ref']}") for ref in meta["allOf"]]:
            root["properties"].update(part.get("properties", {}))
            defs.update(part.get("$defs", {}))
        root["properties"].update(meta["properties"])
        root["properties"] = {name: _inline(sub, root, defs) for name, sub in root["properties"].items()}
        _COMPILED.append(Draft202012Validator(root))
    return _COMPILED[0]


def _inline(node: Any, root: dict[str, Any], defs: dict[str, Any]) -> Any:
    """A meta-schema subschema with its references replaced by their targets (``properties``: names to subschemas)."""
    if isinstance(node, list):
        return [_inline(item, root, defs) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: ({name: _inline(sub, root, defs) for name, sub in value.items()} if key == "properties" else
                 _inline(value, root, defs)) for key, value in node.items() if key not in ANNOTATIONS}
    ref = out.pop("$ref", None) or ("#" if out.pop("$dynamicRef", None) == "#meta" else None)
    if ref is None:
        return out
    target = root if ref == "#" else _inline(defs[ref.split("#/$defs/", 1)[1]], root, defs)  # meta/core#/$defs/x
    return target if not out else {**out, "allOf": [target]}


SCHEMA = "schema"
SCHEMA_MAP = "schema map"
SCHEMA_LIST = "schema list"
NUMBER = "number"
COUNT = "count"
STRING = "string"
BOOLEAN = "boolean"
ANY = "any"
KINDS = {  # keyword: what its value must be for the meta-schema to accept it without a doubt
    **dict.fromkeys(("items", "additionalProperties", "not", "contains", "propertyNames", "if", "then", "else",
                     "unevaluatedItems", "unevaluatedProperties", "contentSchema"), SCHEMA),
    **dict.fromkeys(("properties", "$defs", "definitions", "dependentSchemas"), SCHEMA_MAP),
    **dict.fromkeys(("anyOf", "oneOf", "allOf", "prefixItems"), SCHEMA_LIST),
    **dict.fromkeys(("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"), NUMBER),
    **dict.fromkeys(("minItems", "maxItems", "minLength", "maxLength", "minProperties", "maxProperties",
                     "minContains", "maxContains"), COUNT),
    **dict.fromkeys(("description", "title", "$comment", "pattern", "format", "contentEncoding", "$ref", "$schema",
                     "contentMediaType"), STRING),
    **dict.fromkeys(("uniqueItems", "deprecated", "readOnly", "writeOnly"), BOOLEAN),
    **dict.fromkeys(("const", "default"), ANY),
}
CONSTRAINED = frozenset({  # every keyword the draft 2020-12 meta-schema says something about (a test compares)
    "$id", "$schema", "$ref", "$anchor", "$dynamicRef", "$dynamicAnchor", "$vocabulary", "$comment", "$defs",
    "prefixItems", "items", "contains", "additionalProperties", "properties", "patternProperties", "dependentSchemas",
    "propertyNames", "if", "then", "else", "allOf", "anyOf", "oneOf", "not", "unevaluatedItems",
    "unevaluatedProperties", "type", "const", "enum", "multipleOf", "maximum", "exclusiveMaximum", "minimum",
    "exclusiveMinimum", "maxLength", "minLength", "pattern", "maxItems", "minItems", "uniqueItems", "maxContains",
    "minContains", "maxProperties", "minProperties", "required", "dependentRequired", "title", "description",
    "default", "deprecated", "readOnly", "writeOnly", "examples", "format", "contentEncoding", "contentMediaType",
    "contentSchema", "definitions", "dependencies", "$recursiveAnchor", "$recursiveRef"})
TYPES = frozenset({"string", "number", "integer", "boolean", "object", "array", "null"})


def plainly_valid(schema: Any) -> bool:
    """True: the meta-schema accepts ``schema``. False: it may not; ask ``meta_validator()``. Any keyword the
    meta-schema constrains that is not in :data:`KINDS` (``$ref``, ``$id``, ``patternProperties``, ...), or a value
    of an unusual kind, answers False; keywords it does not know are allowed, as the meta-schema allows them."""
    if isinstance(schema, bool):
        return True
    if not isinstance(schema, dict):
        return False
    for key, value in schema.items():
        kind = KINDS.get(key)
        if kind is None:
            if key in CONSTRAINED and not _special(key, value):
                return False
        elif not _fits(kind, value):
            return False
    return True


def _fits(kind: str, value: Any) -> bool:
    if kind == SCHEMA:
        return plainly_valid(value)
    if kind == SCHEMA_MAP:
        return isinstance(value, dict) and all(plainly_valid(sub) for sub in value.values())
    if kind == SCHEMA_LIST:
        return isinstance(value, list) and bool(value) and all(plainly_valid(sub) for sub in value)
    if kind == NUMBER:
        return type(value) in (int, float)
    if kind == COUNT:
        return type(value) is int and value >= 0
    if kind == STRING:
        return isinstance(value, str)
    if kind == BOOLEAN:
        return isinstance(value, bool)
    return True


def _special(key: str, value: Any) -> bool:
    """``type``, ``required``, ``enum`` and ``multipleOf``, in their usual forms."""
    if key == "type":
        return value in TYPES if isinstance(value, str) else (
            isinstance(value, list) and bool(value) and all(isinstance(v, str) and v in TYPES for v in value)
            and len(set(value)) == len(value))
    if key == "required":
        return isinstance(value, list) and all(isinstance(v, str) for v in value) and len(set(value)) == len(value)
    if key == "enum":
        return isinstance(value, list)
    if key == "multipleOf":
        return type(value) in (int, float) and value > 0
    return False
