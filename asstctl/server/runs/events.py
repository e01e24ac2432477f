"""Run states and the stream events' delivery to streaming responses (:class:`Listener`)."""

from __future__ import annotations

import asyncio
import json
import threading
from typing import Any, AsyncIterator

TERMINAL = ("completed", "failed", "cancelled", "expired", "incomplete")
ACTIVE = ("queued", "in_progress", "requires_action", "cancelling")
EXPIRY_SECONDS = 600
DONE = "done"


class Listener:
    """One streaming response: events are queued as the executor emits them, read by ``sse()``.

    Created on the event loop (by a route); ``send`` may also be called from another thread
    (a built-in tool reporting progress from a worker thread)."""

    def __init__(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._thread = threading.get_ident()
        self._queue: asyncio.Queue = asyncio.Queue()

    def send(self, name: str, data: Any) -> None:
        item = (name, "[DONE]" if name == DONE else json.dumps(data))
        if threading.get_ident() == self._thread:
            self._queue.put_nowait(item)
            return
        try:
            self._loop.call_soon_threadsafe(self._queue.put_nowait, item)
        except RuntimeError:  # the loop is gone (server stopping)
            pass

    async def sse(self) -> AsyncIterator[bytes]:
        """``event:``/``data:`` frames until ``event: done``."""
        while True:
            name, payload = await self._queue.get()
            yield f"event: {name}\ndata: {payload}\n\n".encode()
            if name == DONE:
                return


def public(obj: dict[str, Any]) -> dict[str, Any]:
    """An object without the executor's private bookkeeping keys (``_usage``)."""
    return {k: v for k, v in obj.items() if not k.startswith("_")}
