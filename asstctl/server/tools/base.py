"""The contract between the run executor and a built-in tool.

A run whose ``tools`` include ``{"type": "file_search"}`` or ``{"type": "code_interpreter"}``
offers that tool to the engine as a function (``definition``). When the engine calls it, the
executor builds a :class:`ToolContext` and awaits ``tool.run(ctx, arguments)``:

- while it runs, the tool may call ``ctx.progress(fragment)`` with a partial tool call in the
  shape of ``step_details.tool_calls[i]`` of a ``thread.run.step.delta`` (without ``index``,
  which the executor adds), e.g. ``{"code_interpreter": {"outputs": [...]}}``;
- it returns a :class:`ToolOutcome`: the finished tool call as the step shows it, the text the
  model reads as the ``tool`` message, and what the final assistant message gains from it
  (citation sources, image files, written files).

A tool never raises for a problem of the call itself (bad code, no results): that is an outcome
the model reads. It raises :class:`ToolError` only when the run cannot go on (e.g. no sandbox
available); the run then fails with ``last_error = {code, message}``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Protocol


class ToolError(Exception):
    """The run cannot go on: it fails with ``last_error = {code, message}``."""

    def __init__(self, message: str, code: str = "server_error"):
        super().__init__(message)
        self.message = message
        self.code = code


@dataclass
class Source:
    """One result the model may cite: ``marker`` is the text it writes, e.g. ``【4:0†guide.md】``."""

    marker: str
    file_id: str
    filename: str
    quote: str = ""


@dataclass
class ToolContext:
    state: Any  # asstctl.server.app.ServerState: .store, .config
    run: dict[str, Any]  # the run as the API shows it
    assistant: dict[str, Any]
    thread: dict[str, Any]
    call_id: str  # the tool call's id ("call_...")
    tool: dict[str, Any]  # the run's tool entry, e.g. {"type": "file_search", "file_search": {...}}
    include: tuple[str, ...] = ()  # the run request's include[] values
    progress: Callable[[dict[str, Any]], None] = lambda fragment: None
    code_from_rules: bool = False  # the code is the project's own offline `code:` rule, not a model's


@dataclass
class ToolOutcome:
    call: dict[str, Any]  # step_details.tool_calls[i]: {"id", "type", "<type>": {...}}
    output: str  # the content of the `tool` message the model reads next
    sources: list[Source] = field(default_factory=list)  # file_search: what the reply may cite
    image_file_ids: list[str] = field(default_factory=list)  # code_interpreter: assistants_output images
    written_files: list[tuple[str, str]] = field(default_factory=list)  # (sandbox path, file_id)


class BuiltinTool(Protocol):
    type: str  # "file_search" | "code_interpreter"

    def definition(self, tool: dict[str, Any]) -> dict[str, Any]:
        """The Chat Completions tool offered to the model: ``{"type": "function", "function": {...}}``."""
        ...

    async def run(self, ctx: ToolContext, arguments: dict[str, Any]) -> ToolOutcome: ...
