"""What both conversation runners share (Assistants runs: asstctl.testing.runner; Agents API sessions:
asstctl.testing.agents): a turn's errors, its clock, and the outputs mocks give for tool calls.

Imports the offline engine's templates (asstctl.server.engine.offline) lazily; nothing else of asstctl.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any


class TurnError(Exception):
    """A turn could not be carried out (run failed, timed out, a call without a mock)."""


class Clock:
    """Times one turn: total latency and the target's own thinking time (from ``thinking``, one of the
    stream's event names, to the next of ``outputs``)."""

    def __init__(self, deadline: float, thinking: str = "thread.run.in_progress", outputs: tuple[str, ...] = ()):
        self.thinking, self.outputs = thinking, outputs
        self.start = time.monotonic()
        self.deadline = deadline
        self.end = self.start
        self.engine_ms = 0.0
        self._thinking_since: float | None = None

    def see(self, event: str) -> None:
        now = time.monotonic()
        self.end = now
        if event == self.thinking:  # the first since the last pause: generation counts as the target's time
            self._thinking_since = now if self._thinking_since is None else self._thinking_since
        elif self._thinking_since is not None and event in self.outputs:
            self.engine_ms += (now - self._thinking_since) * 1000
            self._thinking_since = None

    def remaining(self) -> float:
        return max(0.001, self.deadline - time.monotonic())

    def expired(self) -> bool:
        return time.monotonic() >= self.deadline

    def latency_ms(self) -> float:
        return (self.end - self.start) * 1000


def parse_arguments(raw: str) -> Any:
    try:
        return json.loads(raw or "{}")
    except ValueError:
        return raw


def api_problem(error: Exception) -> str:
    message = getattr(error, "message", None) or str(error)
    return f"{type(error).__name__}: {message}"


def mock_output(name: str, mock: dict[str, Any], arguments: Any, root: Path | None) -> str:
    """The tool output a mock gives for a call (non-strings as JSON)."""
    from asstctl.server.engine.offline import render_value

    if "result" in mock:
        value = mock["result"]
    elif "template" in mock:
        value = render_value(mock["template"], arguments if isinstance(arguments, dict) else {})
    else:
        value = call_python(name, mock["python"], arguments, root)
    return value if isinstance(value, str) else json.dumps(value)


def call_python(name: str, dotted: str, arguments: Any, root: Path | None) -> Any:
    import importlib

    module_name, function_name = dotted.split(":")
    if root is not None and str(root) not in sys.path:
        sys.path.insert(0, str(root))
    try:
        function = getattr(importlib.import_module(module_name), function_name)
        return function(**arguments) if isinstance(arguments, dict) else function(arguments)
    except Exception as error:
        raise TurnError(f"mock for tool `{name}` (python: {dotted}) raised {type(error).__name__}: {error}") from None
