"""Built-in tools that the server itself runs inside a run: ``file_search`` and ``code_interpreter``.

Owns: the :class:`BuiltinTool` contract (``base.py``) and one module per tool. The run executor
offers each tool the run has attached to the engine, runs the calls the engine makes, records them
as ``tool_calls`` steps in the API's shape and feeds their output back to the engine.

May import: ``asstctl.server.store``, ``asstctl.server.http``, ``asstctl.server.errors`` and its own
helpers (``asstctl.server.retrieval``, ``asstctl.server.sandbox``). Never the executor, the routes
or the engines (they import us).
"""

from __future__ import annotations

import importlib
from typing import Any

# type -> "module:Class"; each class is built once per server as ``Class(state)`` and kept in
# ``state.extra["tools"]``.
BUILTIN = {
    "file_search": "asstctl.server.tools.file_search:FileSearchTool",
    "code_interpreter": "asstctl.server.tools.code_interpreter:CodeInterpreterTool",
}


def builtin_tool(state: Any, type: str) -> Any:
    """The server's instance of the built-in tool ``type`` (a ``base.BuiltinTool``)."""
    tools = state.extra.setdefault("tools", {})
    if type not in tools:
        module, _, name = BUILTIN[type].partition(":")
        tools[type] = getattr(importlib.import_module(module), name)(state)
    return tools[type]
