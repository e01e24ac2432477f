"""Contract checks: every JSON response the SDK receives in the tests is validated
against the matching response schema of the official OpenAPI document
(../shared/reference/openapi/openai-openapi.json), errors against ErrorResponse.
"""

from __future__ import annotations

import functools
import json
import os
import re
from pathlib import Path

from jsonschema import Draft202012Validator

SPEC_CANDIDATES = [
    Path(os.environ.get("ASSTCTL_OPENAPI", "")),
    Path(__file__).resolve().parents[1] / "tests" / "data" / "openai-openapi.json",
    Path(__file__).resolve().parents[2] / "shared" / "reference" / "openapi" / "openai-openapi.json",
]


@functools.lru_cache(maxsize=1)
def spec() -> dict:
    for path in SPEC_CANDIDATES:
        if path.is_file():
            return _nullable(json.loads(path.read_text()))
    raise FileNotFoundError("the official OpenAPI document was not found; set ASSTCTL_OPENAPI")


def _nullable(node):
    """The document mixes in OpenAPI 3.0 ``nullable: true``, which JSON Schema ignores: make it allow null."""
    if isinstance(node, list):
        return [_nullable(item) for item in node]
    if not isinstance(node, dict):
        return node
    node = {key: _nullable(value) for key, value in node.items()}
    if node.pop("nullable", False) is not True or not node:
        return node
    if isinstance(node.get("type"), str):
        node["type"] = [node["type"], "null"]
        if "enum" in node:
            node["enum"] = [*node["enum"], None]
        return node
    return {"anyOf": [node, {"type": "null"}]}


@functools.lru_cache(maxsize=1)
def _routes() -> list[tuple[re.Pattern, str]]:
    routes = []
    for template in spec()["paths"]:
        pattern = "^/v1" + re.sub(r"\{[^}]+\}", "[^/]+", template) + "$"
        routes.append((re.compile(pattern), template))
    # literal segments win over parameters (/threads/runs vs /threads/{thread_id})
    routes.sort(key=lambda r: r[1].count("{"))
    return routes


def operation(method: str, path: str) -> dict | None:
    for pattern, template in _routes():
        if pattern.match(path):
            return spec()["paths"][template].get(method.lower())
    return None


@functools.lru_cache(maxsize=None)
def validator_for(ref: str) -> Draft202012Validator:
    """A validator for ``#/components/schemas/Name`` (or any pointer into the document)."""
    root = {"$ref": ref, "components": spec()["components"]}
    return Draft202012Validator(root)


def response_schema_ref(method: str, path: str, status: int) -> str | None:
    if status >= 400:
        return "#/components/schemas/ErrorResponse"
    op = operation(method, path)
    if op is None:
        return None
    response = op["responses"].get(str(status)) or op["responses"].get("200")
    if response is None or "$ref" in response:
        return None
    content = response.get("content", {}).get("application/json")
    if not content:
        return None
    schema = content["schema"]
    if "$ref" in schema:
        return schema["$ref"]
    template = next(t for p, t in _routes() if p.match(path))
    return f"#/paths/{_escape(template)}/{method.lower()}/responses/{status}/content/application~1json/schema"


def _escape(template: str) -> str:
    return template.replace("~", "~0").replace("/", "~1")


def check(method: str, path: str, status: int, body) -> list[str]:
    """Problems of one response against the contract (empty list when it conforms)."""
    ref = response_schema_ref(method, path, status)
    if ref is None:
        return []
    if ref.startswith("#/paths/"):
        root = {"$ref": ref, "paths": spec()["paths"], "components": spec()["components"]}
        validator = Draft202012Validator(root)
    else:
        validator = validator_for(ref)
    return [
        f"{method} {path} -> {status}: {'/'.join(map(str, e.absolute_path))}: {e.message[:300]}"
        for e in validator.iter_errors(body)
        if not _empty_list_cursor(body, e)
    ]


def _empty_list_cursor(body, error) -> bool:
    """The real API answers an empty list with ``first_id``/``last_id`` null; the document types them
    as strings. That one known deviation is accepted, nothing else."""
    path = list(error.absolute_path)
    return (
        isinstance(body, dict)
        and body.get("object") == "list"
        and body.get("data") == []
        and path in (["first_id"], ["last_id"])
        and body.get(path[0]) is None
    )


class ContractRecorder:
    """An httpx response hook that validates JSON responses and remembers violations."""

    def __init__(self) -> None:
        self.problems: list[str] = []
        self.checked = 0

    def __call__(self, response) -> None:
        content_type = response.headers.get("content-type", "")
        if not content_type.startswith("application/json"):
            return
        response.read()
        request = response.request
        self.checked += 1
        self.problems += check(request.method, request.url.path, response.status_code, response.json())
