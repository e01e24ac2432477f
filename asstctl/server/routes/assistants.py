"""Routes: assistants (create / retrieve / modify / delete / list).

Defaults as the real API returns them (reference §7): ``metadata {}``, ``tools []``,
``temperature 1.0``, ``top_p 1.0``, ``response_format "auto"``, ``tool_resources {}``;
sending ``null`` for one of these restores its default. ``reasoning_effort`` is stored and
returned as an extra field (``null`` when unset) so a reconciler can detect drift.
Referenced vector stores and files must exist (404 otherwise).
"""

from __future__ import annotations

from typing import Any

from starlette.routing import Route

from asstctl.server import validation as v
from asstctl.server.app import stored, stored_with_body
from asstctl.server.http import deleted, list_envelope, list_params, new_id, now, ok, require
from asstctl.server.routes import vector_stores

DEFAULTS = {"metadata": {}, "tools": [], "temperature": 1.0, "top_p": 1.0, "response_format": "auto"}
NULLABLE_TEXT = {"name": 256, "description": 512, "instructions": 256_000}


def _checks(create: bool) -> dict[str, Any]:
    checks: dict[str, Any] = {
        "model": lambda value, p: v.check_string(value, p),
        "reasoning_effort": v.check_reasoning_effort,
        "tools": v.check_tools,
        "tool_resources": lambda value, p: v.check_tool_resources(value, p, helper=create),
        "metadata": v.check_metadata,
        "temperature": v.check_temperature,
        "top_p": v.check_top_p,
        "response_format": v.check_response_format,
    }
    for name, max_len in NULLABLE_TEXT.items():
        checks[name] = lambda value, p, n=max_len: v.check_string(value, p, n, nullable=True)
    return checks


def check_assistant(body: dict[str, Any], create: bool) -> None:
    checks = _checks(create)
    v.check_fields(body, checks, ("model",) if create else ())
    v.check_optional(body, checks)


def _apply(state, assistant: dict[str, Any], body: dict[str, Any]) -> None:
    """Copy the sent fields onto the stored assistant (null → default; lists replace)."""
    for key, value in body.items():
        if key == "tools":
            assistant["tools"] = v.normalize_tools(value)
        elif key == "tool_resources":
            vector_stores.check_resources_exist(state, value)
            assistant["tool_resources"] = v.merge_tool_resources(assistant.get("tool_resources"), value)
        elif key in DEFAULTS and value is None:
            assistant[key] = DEFAULTS[key]
        else:
            assistant[key] = value


def create_assistant(state, body: dict[str, Any]) -> dict[str, Any]:
    check_assistant(body, create=True)
    assistant: dict[str, Any] = {
        "id": new_id("assistant"),
        "object": "assistant",
        "created_at": now(),
        **dict.fromkeys(NULLABLE_TEXT),
        "model": body["model"],
        "tool_resources": {},
        **DEFAULTS,
        "reasoning_effort": None,
    }
    with state.store.transaction():
        resources = vector_stores.resolve_helper(state, body.get("tool_resources"))
        _apply(state, assistant, {**body, "tool_resources": resources} if resources else body)
        return state.store.insert("assistant", assistant)


def require_assistant(state, assistant_id: str) -> dict[str, Any]:
    return require(state, "assistant", assistant_id)


def modify_assistant(state, assistant_id: str, body: dict[str, Any]) -> dict[str, Any]:
    check_assistant(body, create=False)
    with state.store.transaction():
        assistant = require_assistant(state, assistant_id)
        _apply(state, assistant, body)
        return state.store.put("assistant", assistant)


@stored_with_body
def create(state, request, body):
    return ok(create_assistant(state, body))


@stored
def list_assistants(state, request):
    items, has_more = state.store.page("assistant", "", **list_params(request))
    return ok(list_envelope(items, has_more))


@stored
def retrieve(state, request):
    return ok(require_assistant(state, request.path_params["assistant_id"]))


@stored_with_body
def modify(state, request, body):
    return ok(modify_assistant(state, request.path_params["assistant_id"], body))


@stored
def delete(state, request):
    assistant_id = request.path_params["assistant_id"]
    require_assistant(state, assistant_id)
    state.store.delete("assistant", assistant_id)
    return deleted(assistant_id, "assistant.deleted")


routes = [
    Route("/v1/assistants", create, methods=["POST"]),
    Route("/v1/assistants", list_assistants, methods=["GET"]),
    Route("/v1/assistants/{assistant_id}", retrieve, methods=["GET"]),
    Route("/v1/assistants/{assistant_id}", modify, methods=["POST"]),
    Route("/v1/assistants/{assistant_id}", delete, methods=["DELETE"]),
]
