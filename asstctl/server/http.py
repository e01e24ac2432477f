"""Request/response helpers shared by the route modules: ids, strict JSON bodies within
size and depth limits, responses that always render, list envelopes."""

from __future__ import annotations

import json
import logging
import math
import re
import secrets
import time
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse

from asstctl.server.errors import APIError, invalid, not_found

log = logging.getLogger("asstctl.server")

MAX_DEPTH = 64  # JSON nesting of a request body (the API's own schemas stay under ~20)
MAX_STORED_DEPTH = 200  # when rendering a stored object fails, deeper values are dropped
DRAIN_BYTES = 1 << 30  # past a size limit, read at most this much more before answering 413

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
    return SafeJSONResponse(obj, status_code=status, headers=headers)


async def json_body(request: Request) -> dict[str, Any]:
    """The JSON object body; an empty body is ``{}`` (the SDK sends none on cancel/delete).

    Checked before anything is stored: at most ``max_body_bytes`` (413), nested at most
    ``MAX_DEPTH`` deep, and no NaN/Infinity or lone surrogate anywhere (400 naming the param).
    """
    raw = await read_body(request, request.app.state.asst.config.max_body_bytes)
    if not raw.strip():
        return {}
    return parse_json(raw)


def parse_json(raw: bytes) -> dict[str, Any]:
    """``raw`` as a JSON object that can be stored and sent back: strict JSON, bounded depth."""
    try:
        body = json.loads(raw, parse_constant=_Poison, parse_float=_float)
    except RecursionError:  # thousands of levels: the parser gives up before building anything
        raise too_deep()
    except (ValueError, UnicodeDecodeError):
        raise APIError(
            400,
            "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your "
            "HTTP library correctly. The OpenAI API expects a JSON payload, but what was sent was not valid JSON.)",
        )
    if not isinstance(body, dict):
        raise invalid(None, "Invalid body: expected an object.", code="invalid_type")
    problem = poison(body)
    if problem is not None:
        raise problem
    return body


def too_deep() -> APIError:
    return invalid(
        None, f"Invalid body: JSON nested more than {MAX_DEPTH} levels deep. Flatten the request.", "nesting_too_deep"
    )


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 past ``limit`` bytes (Content-Length, then counted).

    An oversized body is still read (and dropped, up to ``DRAIN_BYTES``) so the client,
    still sending, gets the 413 rather than a reset connection.
    """
    declared = request.headers.get("content-length", "")
    over = declared.isdigit() and int(declared) > limit
    body, size = bytearray(), 0
    async for chunk in request.stream():
        size += len(chunk)
        if not over and size > limit:
            over = True
            body = bytearray()
        if over:
            if size > limit + DRAIN_BYTES:
                break
            continue
        body += chunk
    if over:
        raise too_large(limit, "request body", "request_too_large")
    return bytes(body)


def too_large(limit: int, what: str, code: str) -> APIError:
    return APIError(
        413,
        f"The {what} is too large: the limit of this server is {limit / (1 << 20):g} MB. "
        "Send less, or start `asstctl serve` with a higher limit.",
        code=code,
    )


_SURROGATE = re.compile("[\ud800-\udfff]")


class _Poison:
    """Stands in for NaN, Infinity, -Infinity or an overflowing number while parsing."""

    def __init__(self, text: str):
        self.text = text


def _float(text: str) -> Any:
    value = float(text)
    return value if math.isfinite(value) else _Poison(text)


def poison(body: dict[str, Any]) -> APIError | None:
    """The 400 for the first value JSON cannot carry back (a non-finite number, a string or
    key holding a lone UTF-16 surrogate) or for nesting past ``MAX_DEPTH``; None if all is well."""
    found = _find(body, 1)
    if found is None:
        return None
    where, what = found
    if what == "deep":
        return too_deep()
    param = ""
    for part in reversed(where):
        param = f"{param}[{part}]" if isinstance(part, int) else f"{param}.{_safe(part)}" if param else _safe(part)
    name = param or "body"
    if isinstance(what, _Poison):
        return invalid(param, f"Invalid '{name}': {what.text} is not a number JSON can carry. Send a finite number.")
    return invalid(
        param, f"Invalid '{name}': the {what} holds a lone UTF-16 surrogate, which is not valid Unicode. "
        "Send valid UTF-8 text."
    )


_SCALARS = (int, float, bool, type(None))


def _find(value: Any, depth: int) -> tuple[list[str | int], Any] | None:
    """(path to the bad value, innermost first; "deep" / "key" / "string" / the _Poison)."""
    kind = type(value)
    if kind is str:
        return None if value.isascii() or _encodable(value) else ([], "string")
    if kind is _Poison:
        return [], value
    if kind is dict:
        items: Any = value.items()
    elif kind is list:
        items = enumerate(value)
    else:
        return None
    if depth > MAX_DEPTH:
        return [], "deep"
    for key, item in items:
        if type(key) is str and not key.isascii() and not _encodable(key):
            return [key], "key"
        if type(item) in _SCALARS:
            continue
        found = _find(item, depth + 1)
        if found is not None:
            found[0].append(key)
            return found
    return None


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _safe(text: str) -> str:
    """A key as it can appear in an error message (lone surrogates written as \\udXXX)."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def sanitized(value: Any, depth: int = 0) -> Any:
    """A copy JSON can carry: non-finite numbers → null, lone surrogates → U+FFFD."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, str):
        return value if value.isascii() or _encodable(value) else _SURROGATE.sub("\ufffd", value)
    if depth > MAX_STORED_DEPTH:
        return None
    if isinstance(value, dict):
        return {sanitized(k): sanitized(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list):
        return [sanitized(v, depth + 1) for v in value]
    return value


class SafeJSONResponse(JSONResponse):
    """A JSON response that renders whatever is stored: an object an older asstctl stored
    with NaN or a lone surrogate is sent with those values replaced, never as a 500."""

    def render(self, content: Any) -> bytes:
        try:
            return super().render(content)
        except (ValueError, RecursionError):
            log.warning("a stored object holds values JSON cannot carry; sending them replaced")
            return super().render(sanitized(content))


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
