"""Scripted replicas of how real OpenAI-compatible servers refuse requests: the status codes and error
bodies they send (quoted from their own code or from their users' bug reports), for ``ScriptedUpstream(refuse=...)``.

Each replica is a function of the request body: the ``Failure`` that server answers, or None when it
accepts the request (then the scripted upstream answers as usual).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from tests.upstream import Failure


def tool_call_messages(body: dict[str, Any]) -> list[tuple[int, dict[str, Any]]]:
    return [(i, m) for i, m in enumerate(body.get("messages") or [])
            if m.get("role") == "assistant" and m.get("tool_calls")]


def pydantic_lines(errors: list[dict[str, Any]]) -> str:
    """FastAPI's ``RequestValidationError`` as ``str()`` (what llama-cpp-python puts in ``message``)."""
    return f"{len(errors)} validation error{'s' if len(errors) > 1 else ''}:\n" + "\n".join(f"  {e!r}" for e in errors)


LLAMA_ROLES = {"system": "System", "user": "User", "assistant": "Assistant", "tool": "Tool", "function": "Function"}


def llama_union(i: int, message: dict[str, Any], bad: str) -> list[dict[str, Any]]:
    """What pydantic reports for a message that fits no member of llama-cpp-python's message union
    (as its server sends it: one error per member, the member's own complaint for ``bad``)."""
    errors = []
    for role, member in LLAMA_ROLES.items():
        loc = ("body", "messages", i, f"ChatCompletionRequest{member}Message")
        if role == message.get("role"):
            errors.append({"type": "string_type", "loc": (*loc, bad), "msg": "Input should be a valid string",
                           "input": message.get(bad)})
            continue
        errors.append({"type": "literal_error", "loc": (*loc, "role"), "msg": f"Input should be '{role}'",
                       "input": message.get("role"), "ctx": {"expected": f"'{role}'"}})
        if role in ("tool", "function"):
            errors.append({"type": "missing", "loc": (*loc, "tool_call_id" if role == "tool" else "name"),
                           "msg": "Field required", "input": message})
    return errors


def llama_cpp(body: dict[str, Any]) -> Failure | None:
    """llama-cpp-python's server (0.3.x): validation errors become 500 ``internal_server_error`` with the
    pydantic errors as the message (llama_cpp/server/errors.py), as its server sends them. Assistant
    content must be a string, no ``developer`` role, ``response_format.type`` only ``text`` / ``json_object``."""
    errors = []
    for i, message in tool_call_messages(body):
        if message.get("content") is None:
            errors += llama_union(i, message, "content")
    for i, message in enumerate(body["messages"]):
        if message.get("role") == "developer":
            errors += llama_union(i, message, "role")
    fmt = body.get("response_format") or {}
    if fmt.get("type") not in (None, "text", "json_object"):
        errors.append({"type": "literal_error", "loc": ("body", "response_format", "type"),
                       "msg": "Input should be 'text' or 'json_object'", "input": fmt.get("type")})
    if not errors:
        return None
    trace = '\n\n  File "llama_cpp/server/app.py", line 376, in create_chat_completion\n    POST /v1/chat/completions'
    return Failure(500, raw={"error": {"message": pydantic_lines(errors) + trace, "type": "internal_server_error",
                                       "param": None, "code": None}})


def vllm_05(body: dict[str, Any]) -> Failure | None:
    """vLLM 0.5.x: ``extra="forbid"`` on the request (400, "Extra inputs are not permitted", as reported
    against vLLM and its users), ``tool_choice: required`` refused ("Currently only named tools are supported.")."""
    extra = [{"type": "extra_forbidden", "loc": ("body", key), "msg": "Extra inputs are not permitted", "input": body[key]}
             for key in ("max_completion_tokens", "parallel_tool_calls") if key in body]
    if not extra and body.get("tool_choice") == "required":
        extra = [{"type": "value_error", "loc": ("body",), "msg": "Value error, Currently only named tools are supported.",
                  "input": {"model": body["model"]}}]
    if not extra:
        return None
    return Failure(400, raw={"object": "error", "message": repr(extra), "type": "BadRequestError", "param": None,
                             "code": 400})


def mistral(body: dict[str, Any]) -> Failure | None:
    """Mistral's API: 422 with pydantic's ``detail`` inside ``message`` for ``stream_options``, and (its
    OpenAI-compatible layer, mistral-common) ``content: null`` on a tool-call message."""
    detail = []
    if "stream_options" in body:
        detail.append({"type": "extra_forbidden", "loc": ["body", "stream_options", "include_usage"],
                       "msg": "Extra inputs are not permitted", "input": True})
    for i, message in tool_call_messages(body):
        if message.get("content") is None:
            detail.append({"type": "string_type", "loc": ["body", "messages", i, "content"],
                           "msg": "Input should be a valid string", "input": None})
    if not detail:
        return None
    return Failure(422, raw={"object": "error", "message": {"detail": detail}, "type": "invalid_request_error",
                             "param": None, "code": None})


def strict_gateway(body: dict[str, Any]) -> Failure | None:
    """A self-hosted gateway validating roles strictly: 400 naming the role (as reported by its users)."""
    for i, message in enumerate(body["messages"]):
        if message.get("role") == "developer":
            return Failure(400, raw={"message": f"developer is not one of ['system', 'assistant', 'user', 'tool', "
                                                f"'function'] - 'messages.[{i}].role'",
                                     "type": "invalid_request_error", "param": "", "code": None})
    return None


def bedrock(body: dict[str, Any]) -> Failure | None:
    """Bedrock's OpenAI-compatible endpoint: a tool-call message must have ``content: null``, never ``""``."""
    for i, message in tool_call_messages(body):
        if message.get("content") == "":
            return Failure(400, f"messages.{i}.content: a message with tool_calls must not have empty text content",
                           "ValidationException", None)
    return None


@dataclass
class Replica:
    name: str
    refuse: Callable[[dict[str, Any]], Failure | None]
    profile: str  # the named dialect that matches it (--upstream-dialect)


REPLICAS = [Replica("llama.cpp", llama_cpp, "llama.cpp"), Replica("vllm-0.5", vllm_05, "vllm"),
            Replica("mistral", mistral, "mistral"), Replica("strict-gateway", strict_gateway, "ollama"),
            Replica("bedrock", bedrock, "bedrock")]
