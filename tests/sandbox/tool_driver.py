"""The code_interpreter tool of a real asstctl server, called the way the run executor calls it."""

from __future__ import annotations

import asyncio
import secrets
from typing import Any

from asstctl.server.tools import builtin_tool
from asstctl.server.tools.base import ToolContext, ToolOutcome


class ToolDriver:
    def __init__(self, server):
        self.server = server
        self.tool = builtin_tool(server.state, "code_interpreter")
        self.loop = asyncio.new_event_loop()
        self.progress: list[dict[str, Any]] = []

    def call(self, code: str, thread_id: str, assistant_id: str | None = None, run_id: str = "run_test") -> ToolOutcome:
        store = self.server.state.store
        thread = store.get("thread", thread_id) or {"id": thread_id}
        assistant = store.get("assistant", assistant_id) if assistant_id else {}
        ctx = ToolContext(state=self.server.state, run={"id": run_id, "thread_id": thread_id},
                          assistant=assistant or {}, thread=thread, call_id="call_" + secrets.token_hex(8),
                          tool={"type": "code_interpreter"}, progress=self.progress.append)
        return self.loop.run_until_complete(self.tool.run(ctx, {"code": code}))

    def idle(self, seconds: float) -> None:
        """The server's loop runs (its sandbox watchdog too) for ``seconds`` without a call."""
        self.loop.run_until_complete(asyncio.sleep(seconds))

    def end_sessions(self) -> None:
        """End every session of the tool's pool (the pool and its watchdog go on)."""
        pool = self.tool.pool
        for key in list(pool.sessions):
            self.loop.run_until_complete(pool.end(key))

    def close(self) -> None:
        self.loop.run_until_complete(self.tool.pool.aclose())
        self.loop.close()
