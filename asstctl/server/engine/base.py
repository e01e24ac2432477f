"""The engine interface: what produces an assistant's next turn for a run.

The run executor (``asstctl.server.runs``) builds an :class:`EngineRequest` from the run, its
assistant and its thread, and consumes ``engine.stream(request)`` on the server's event loop:
each :class:`TextDelta` / :class:`ToolCallDelta` becomes a stream event at once, and the turn
ends with one :class:`TurnEnd`. An engine only answers one turn: text, or tool calls (the
executor then runs built-in tools itself, or waits in ``requires_action`` for function outputs,
and calls the engine again with the results in ``chat`` / ``tool_results``).

An engine with only the older ``respond(request) -> EngineReply`` still works: the executor
calls it on a worker thread and replays the reply with :func:`reply_events`.

Engines raise :class:`EngineError` for a failed turn; the run becomes ``failed``
with ``last_error = {code, message}``.
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Protocol, Union


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
    # -- added for streaming engines (issue 11) ------------------------------------------
    # The turn as Chat Completions messages, built by the executor after truncation: system
    # (or developer) message with the instructions, the thread's messages, and for each earlier
    # tool round of this run the assistant message with its ``tool_calls`` plus one ``tool``
    # message per output. Engines that talk to an upstream send exactly this.
    chat: list[dict[str, Any]] = field(default_factory=list)
    # Chat Completions tool definitions offered to the model: the run's function tools as they
    # are, plus one function per attached built-in tool (``tools.base.BuiltinTool.definition``).
    offered_tools: list[dict[str, Any]] = field(default_factory=list)
    tool_choice: Any = None  # the run's tool_choice, already mapped to Chat Completions form
    parallel_tool_calls: bool = True
    max_completion_tokens: int | None = None  # what is left of the run's budget for this call
    reasoning_effort: str | None = None


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


# -- streaming (issue 11) -------------------------------------------------------------------
# A streaming engine yields events as its upstream sends them; the executor turns each
# TextDelta into a ``thread.message.delta`` and each ToolCallDelta into a
# ``thread.run.step.delta`` at once, and the turn ends with exactly one TurnEnd.


@dataclass
class TextDelta:
    text: str


@dataclass
class ToolCallDelta:
    index: int  # position of the call in this turn (Chat Completions ``tool_calls[].index``)
    id: str | None = None  # the upstream's call id, on the first fragment of a call
    name: str | None = None  # the function name, on the first fragment of a call
    arguments: str = ""  # the next fragment of the JSON arguments


@dataclass
class TurnEnd:
    finish_reason: str = "stop"  # "stop" | "tool_calls" | "length" | "content_filter"
    usage: Usage = field(default_factory=Usage)
    model: str | None = None  # the model the upstream was sent (after --model-map): whose tokenizer counts a call it reported no usage for


EngineEvent = Union[TextDelta, ToolCallDelta, TurnEnd]


class StreamingEngine(Protocol):
    name: str

    def stream(self, request: EngineRequest) -> AsyncIterator[EngineEvent]:
        """Events of one turn. Cancelling the consuming task must close the upstream request."""
        ...


DELTA_CHARS = 24  # size of the text pieces a finished reply is replayed in


async def reply_events(reply: EngineReply, request: EngineRequest) -> AsyncIterator[EngineEvent]:
    """A finished reply as a turn's events: its latency as a cancellable sleep first, then the
    text in ``DELTA_CHARS`` pieces (or its tool calls), cut to ``request.max_completion_tokens``
    (about four characters a token) with ``finish_reason: length`` when it is longer."""
    if reply.latency_ms > 0:
        await asyncio.sleep(reply.latency_ms / 1000)
    usage, finish = Usage(reply.usage.prompt_tokens, reply.usage.completion_tokens), "stop"
    if reply.tool_calls:
        for index, call in enumerate(reply.tool_calls):
            yield ToolCallDelta(index, None, call.name, "")
            yield ToolCallDelta(index, arguments=call.arguments)
        yield TurnEnd("tool_calls", usage)
        return
    text, limit = reply.text or "", request.max_completion_tokens
    if limit is not None and usage.completion_tokens > limit:
        text, usage.completion_tokens, finish = text[: limit * 4], limit, "length"
    for start in range(0, len(text), DELTA_CHARS):
        yield TextDelta(text[start:start + DELTA_CHARS])
    yield TurnEnd(finish, usage)


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
