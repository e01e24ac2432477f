"""The spec field reference (docs/spec-reference.md), generated from the JSON Schema itself.

    python -m asstctl.spec.reference > docs/spec-reference.md

tests/test_spec_reference.py fails when the committed file differs from what the schema says.
"""

from __future__ import annotations

import json
from typing import Any, Iterator

HEADER = """# Spec field reference

Generated from the JSON Schema that `asstctl validate` uses (`asstctl schema` prints it):
`python -m asstctl.spec.reference > docs/spec-reference.md`. The narrative guide with examples is
[spec-format.md](spec-format.md).

| field | type | rules | description |
|---|---|---|---|
"""


def render_reference(schema: dict[str, Any]) -> str:
    seen: dict[str, str] = {}
    for path, node in walk(schema, ""):
        seen.setdefault(path, _row(path, node))
    return HEADER + "\n".join(seen.values()) + "\n"


def walk(node: dict[str, Any], path: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every documented field as (dotted path, schema node), depth first, in schema order."""
    for name, child in node.get("properties", {}).items():
        if name == "$schema":
            continue
        child_path = f"{path}.{name}" if path else name
        yield child_path, child
        yield from walk_children(child, child_path)


def walk_children(node: dict[str, Any], path: str) -> Iterator[tuple[str, dict[str, Any]]]:
    yield from walk(node, path)
    if isinstance(node.get("items"), dict):
        yield from walk_children(node["items"], f"{path}[]")
    for branch in node.get("anyOf", []) + node.get("oneOf", []):
        yield from walk(branch, path)
    extra = node.get("additionalProperties")
    if isinstance(extra, dict) and extra.get("properties"):
        yield from walk(extra, f"{path}.<name>")


def _row(path: str, node: dict[str, Any]) -> str:
    cells = [f"`{path}`", _type(node), _rules(node), _cell(node.get("description", ""))]
    return "| " + " | ".join(cells) + " |"


def _type(node: dict[str, Any]) -> str:
    kind = node.get("type")
    if isinstance(kind, list):
        return " or ".join(k for k in kind if k != "null") + (" (null ok)" if "null" in kind else "")
    if kind:
        return kind
    if "enum" in node:
        return "string"
    branches = node.get("anyOf") or node.get("oneOf") or []
    kinds = sorted({_type(b) for b in branches if _type(b)})
    return " or ".join(kinds)


def _rules(node: dict[str, Any]) -> str:
    rules = []
    for key, label in (("minimum", "≥"), ("maximum", "≤"), ("minLength", "min length"), ("maxLength", "max length"),
                       ("minItems", "min items"), ("maxItems", "max items"), ("maxProperties", "max entries")):
        if key in node:
            rules.append(f"{label} {node[key]:,}" if isinstance(node[key], int) else f"{label} {node[key]}")
    if "enum" in node:
        rules.append("one of " + ", ".join(f"`{v}`" for v in node["enum"] if v is not None))
    if "pattern" in node:
        rules.append(f"pattern `{node['pattern']}`")
    if "required" in node:
        rules.append("requires " + ", ".join(f"`{r}`" for r in node["required"]))
    return _cell("; ".join(rules))


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def main() -> None:
    from asstctl.spec.schema import spec_schema

    print(render_reference(json.loads(json.dumps(spec_schema()))), end="")


if __name__ == "__main__":
    main()
