"""Engines for executor tests, written against the public engine interface (``StreamingEngine``):
each model call plays a script of TextDelta / ToolCallDelta / TurnEnd events. ``"wait"`` in a
script parks the call until the test opens the gate (an asyncio sleep loop: no thread held)."""

from __future__ import annotations

import asyncio
from typing import Any, Callable

from asstctl.server.engine.base import TextDelta, ToolCallDelta, TurnEnd, Usage

__all__ = ["ScriptedEngine", "TextDelta", "ToolCallDelta", "TurnEnd", "Usage"]


class ScriptedEngine:
    name = "scripted"

    def __init__(self, *scripts: list[Any] | Callable[[Any, int], list[Any]]):
        self.scripts = list(scripts)
        self.requests: list[Any] = []
        self.open = False  # the gate for "wait"
        self.waiting = 0  # calls parked at the gate right now
        self.closed = 0  # calls whose stream was closed before their end (cancelled)

    async def stream(self, request):
        self.requests.append(request)
        number = len(self.requests) - 1
        script = self.scripts[min(number, len(self.scripts) - 1)]
        if callable(script):
            script = script(request, number)
        finished = False
        try:
            for item in script:
                if item == "wait":
                    await self._wait()
                else:
                    finished = finished or isinstance(item, TurnEnd)
                    yield item
            finished = True
        finally:
            if not finished:
                self.closed += 1

    async def _wait(self) -> None:
        self.waiting += 1
        try:
            while not self.open:
                await asyncio.sleep(0.01)
        finally:
            self.waiting -= 1
