"""Reading one streamed Chat Completions answer (server-sent events) into engine events.

``TurnParser.feed(line)`` takes the body line by line and returns the events each ``data:``
chunk carries: a ``TextDelta`` per content (or refusal) delta, a ``ToolCallDelta`` per tool-call
fragment (the upstream's ids kept). ``end()`` gives the ``TurnEnd``: the finish reason
(``tool_calls`` whenever calls were made, as some local servers say ``stop``), and the usage of
the final ``include_usage`` chunk (zero when the upstream sent none: the run executor then counts
the call with its token module).
An error the upstream sends inside the stream is scrubbed of the key before it is cut to
``ERROR_CHARS`` (``limits.scrub_cut``). Imports only ``base`` and ``limits`` of this package.
"""

from __future__ import annotations

import json
from typing import Any

from asstctl.server.engine.base import EngineEvent, TextDelta, ToolCallDelta, TurnEnd, Usage
from asstctl.server.engine.limits import scrub_cut


ERROR_CHARS = 8192  # of an error sent inside the stream (scrubbed first, cut here, cut shorter by the engine)


class TurnParser:
    def __init__(self, key: str | None = None) -> None:
        self.key = key  # scrubbed from an error before it is cut (limits.scrub_cut)
        self.done = False  # ``data: [DONE]`` seen
        self.error: str | None = None  # an error the upstream sent inside the stream
        self.finish_reason: str | None = None
        self.usage: Usage | None = None
        self.tool_calls = 0
        self._completion_chars: list[str] = []

    def feed(self, line: str) -> list[EngineEvent]:
        if self.done or not line.startswith("data:"):
            return []  # blank separators, ``event:``/``id:`` fields and ``:`` comments
        data = line[5:].strip()
        if data == "[DONE]":
            self.done = True
            return []
        try:
            chunk = json.loads(data)
        except ValueError:
            self.error = f"a chunk that is not JSON: {scrub_cut(data, self.key, 200)!r}"
            self.done = True
            return []
        if not isinstance(chunk, dict):
            return []
        if chunk.get("error"):
            error = chunk["error"]
            self.error = scrub_cut(str(error.get("message") if isinstance(error, dict) else error), self.key,
                                   ERROR_CHARS)
            self.done = True
            return []
        if isinstance(chunk.get("usage"), dict):
            self.usage = _usage(chunk["usage"])
        events: list[EngineEvent] = []
        for choice in chunk.get("choices") or []:
            if isinstance(choice, dict) and choice.get("index", 0) == 0:
                events += self._choice(choice)
        return events

    def _choice(self, choice: dict[str, Any]) -> list[EngineEvent]:
        delta = choice.get("delta") or {}
        events: list[EngineEvent] = []
        for key in ("content", "refusal"):
            text = delta.get(key)
            if isinstance(text, str) and text:
                self._completion_chars.append(text)
                events.append(TextDelta(text))
        for position, call in enumerate(delta.get("tool_calls") or []):
            function = call.get("function") or {}
            arguments = function.get("arguments") or ""
            if not isinstance(arguments, str):  # a few servers send the arguments as an object
                arguments = json.dumps(arguments)
            self.tool_calls += 1
            self._completion_chars.append((function.get("name") or "") + arguments)
            events.append(ToolCallDelta(index=int(call.get("index", position)), id=call.get("id") or None,
                                        name=function.get("name") or None, arguments=arguments))
        if choice.get("finish_reason"):
            self.finish_reason = choice["finish_reason"]
        return events

    def end(self) -> TurnEnd:
        reason = self.finish_reason or "stop"
        if reason == "function_call" or self.tool_calls:
            reason = "tool_calls" if reason != "length" else reason
        return TurnEnd(finish_reason=reason, usage=self.usage or Usage())

    @property
    def started(self) -> bool:
        """Whether any text or tool call came yet."""
        return bool(self._completion_chars)

    @property
    def complete(self) -> bool:
        return self.done or self.finish_reason is not None


def _usage(data: dict[str, Any]) -> Usage:
    def count(name: str) -> int:
        value = data.get(name)
        return value if isinstance(value, int) and value >= 0 else 0

    return Usage(prompt_tokens=count("prompt_tokens"), completion_tokens=count("completion_tokens"))
