"""The engine interface: what produces an assistant's next turn for a run.

The run executor (``asstctl.server.executor``) builds an :class:`EngineRequest`
from the run, its assistant and its thread, calls ``engine.respond(request)`` on a
worker thread and turns the :class:`EngineReply` into run steps, messages and
stream events. An engine only answers one turn: either text, or function tool
calls (the executor then waits in ``requires_action`` and calls the engine again
with ``tool_results`` once the client submitted the outputs).

Engines raise :class:`EngineError` for a failed turn; the run becomes ``failed``
with ``last_error = {code, message}``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass
class ToolCall:
    name: str
    arguments: str  # a JSON document, as the API sends it


@dataclass
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def as_dict(self) -> dict[str, int]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total_tokens,
        }


@dataclass
class EngineRequest:
    assistant: dict[str, Any]
    model: str
    instructions: str  # resolved: run instructions, or assistant's + additional_instructions
    tools: list[dict[str, Any]]  # resolved tool list of the run
    messages: list[dict[str, Any]]  # thread messages (API dicts), oldest first, after truncation
    tool_results: list[dict[str, Any]] = field(default_factory=list)  # {call_id, name, arguments, output}
    temperature: float | None = None
    top_p: float | None = None
    response_format: Any = "auto"
    run: dict[str, Any] = field(default_factory=dict)


@dataclass
class EngineReply:
    text: str | None = None
    tool_calls: list[ToolCall] = field(default_factory=list)
    usage: Usage = field(default_factory=Usage)
    latency_ms: float = 0.0  # simulated thinking time, spent by the executor (cancellable)


class EngineError(Exception):
    """A failed turn. ``code`` is one of the API's run error codes."""

    def __init__(self, message: str, code: str = "server_error"):
        super().__init__(message)
        self.message = message
        self.code = code


class Engine(Protocol):
    name: str

    def respond(self, request: EngineRequest) -> EngineReply: ...


def estimate_tokens(text: str) -> int:
    """The offline token estimate: about four characters per token."""
    return math.ceil(len(text) / 4) if text else 0


def message_text(message: dict[str, Any]) -> str:
    """The text of an API message dict (text blocks joined by newlines; other blocks skipped)."""
    parts = []
    for block in message.get("content") or []:
        if block.get("type") == "text":
            parts.append(block["text"]["value"])
    return "\n".join(parts)


def latest_user_text(messages: list[dict[str, Any]]) -> str | None:
    for message in reversed(messages):
        if message.get("role") == "user":
            return message_text(message)
    return None


def function_names(tools: list[dict[str, Any]]) -> list[str]:
    return [t["function"]["name"] for t in tools if t.get("type") == "function" and t.get("function")]
