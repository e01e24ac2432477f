"""Request/response helpers shared by the route modules."""

from __future__ import annotations

import json
import secrets
import time
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse

from asstctl.server.errors import APIError, invalid, not_found

ID_PREFIX = {
    "assistant": "asst_",
    "thread": "thread_",
    "message": "msg_",
    "run": "run_",
    "step": "step_",
    "call": "call_",
    "vector_store": "vs_",
    "file_batch": "vsfb_",
    "file": "file-",
}


def new_id(kind: str) -> str:
    return ID_PREFIX[kind] + secrets.token_hex(12)


def now() -> int:
    return int(time.time())


def require(state, kind: str, id: str, parent: str | None = "") -> dict[str, Any]:
    """The stored object, or the API's 404 for it (``parent=None``: under any parent)."""
    obj = state.store.get(kind, id, parent)
    if obj is None:
        raise not_found(kind, id)
    return obj


def ok(obj: Any, status: int = 200, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(obj, status_code=status, headers=headers)


async def json_body(request: Request) -> dict[str, Any]:
    """The JSON object body; an empty body is ``{}`` (the SDK sends none on cancel/delete)."""
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise APIError(
            400,
            "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your "
            "HTTP library correctly. The OpenAI API expects a JSON payload, but what was sent was not valid JSON.)",
        )
    if not isinstance(body, dict):
        raise invalid(None, "Invalid body: expected an object.", code="invalid_type")
    return body


def list_params(request: Request, *, max_limit: int = 100, default_limit: int = 20) -> dict[str, Any]:
    """``limit``, ``order``, ``after``, ``before`` from the query string, validated like the API."""
    q = request.query_params
    raw_limit = q.get("limit")
    limit = default_limit
    if raw_limit is not None:
        try:
            limit = int(raw_limit)
        except ValueError:
            raise invalid("limit", f"Invalid 'limit': expected an integer, but got '{raw_limit}' instead.", "invalid_type")
        if not 1 <= limit <= max_limit:
            raise invalid(
                "limit",
                f"Invalid 'limit': integer {'below minimum' if limit < 1 else 'above maximum'} value. "
                f"Expected a value {'>= 1' if limit < 1 else f'<= {max_limit}'}, but got {limit} instead.",
                "integer_below_min_value" if limit < 1 else "integer_above_max_value",
            )
    order = q.get("order", "desc")
    if order not in ("asc", "desc"):
        raise invalid(
            "order",
            f"Invalid value: '{order}'. Supported values are: 'asc' and 'desc'.",
        )
    return {"limit": limit, "order": order, "after": q.get("after"), "before": q.get("before")}


def list_envelope(items: list[dict[str, Any]], has_more: bool) -> dict[str, Any]:
    return {
        "object": "list",
        "data": items,
        "first_id": items[0]["id"] if items else None,
        "last_id": items[-1]["id"] if items else None,
        "has_more": has_more,
    }


def deleted(id: str, object_name: str) -> JSONResponse:
    return ok({"id": id, "object": object_name, "deleted": True})
