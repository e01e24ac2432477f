"""A turn's engine events in batches: each batch is every event that arrived while the executor was
busy with the previous one, so a batch costs one store call (one hop to a store worker thread)
however many events it holds, and no event waits for a later one.

The engine is read to its own end by a task of its own (an upstream connection stays reusable);
closing the batches (or cancelling their reader) cancels that task and closes the engine's stream.
An error of the engine comes after the events that preceded it.
"""

from __future__ import annotations

import asyncio
from contextlib import aclosing
from typing import Any, AsyncIterator

_END = object()


async def batches(source: AsyncIterator[Any]) -> AsyncIterator[tuple[list[Any], bool]]:
    """``(events, last)`` pairs: ``last`` is true on the batch that ends with the engine's end."""
    queue: asyncio.Queue = asyncio.Queue()

    async def pump() -> None:
        try:
            async with aclosing(source) as events:
                async for event in events:
                    queue.put_nowait(event)
        except Exception as exc:  # noqa: BLE001 - handed to the reader, after the events before it
            queue.put_nowait((_END, exc))
        else:
            queue.put_nowait((_END, None))

    task = asyncio.get_running_loop().create_task(pump())
    try:
        while True:
            batch = [await queue.get()]
            while not queue.empty():
                batch.append(queue.get_nowait())
            end = batch[-1]
            if isinstance(end, tuple) and len(end) == 2 and end[0] is _END:
                if batch[:-1] or end[1] is None:
                    yield batch[:-1], end[1] is None
                if end[1] is not None:
                    raise end[1]
                return
            yield batch, False
    finally:
        if not task.done():
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
