"""Small asyncio helpers shared by the server's parts."""

from __future__ import annotations

import asyncio
from typing import Awaitable, TypeVar

T = TypeVar("T")


def on_loop(loop: asyncio.AbstractEventLoop | None) -> bool:
    """The caller runs on ``loop`` (its own thread, inside it): a callback may go with ``call_soon``
    or be called at once, without ``call_soon_threadsafe``'s write to the loop's self-pipe."""
    return loop is not None and asyncio._get_running_loop() is loop


class Timeout(asyncio.TimeoutError):
    """The time given to :func:`within` ran out (not a timeout raised by the awaitable itself)."""


async def within(awaitable: Awaitable[T], seconds: float | None) -> T:
    """``awaitable`` within ``seconds`` (None: no limit), else :class:`Timeout` (an ``asyncio.TimeoutError``).

    Not ``asyncio.wait_for``: on Python 3.10/3.11 it can swallow a cancel that arrives together with
    the result (the caller goes on as if not cancelled); ``asyncio.wait`` never does, so a cancelled
    run stops at once on every supported Python."""
    task = asyncio.ensure_future(awaitable)
    try:
        done, _ = await asyncio.wait((task,), timeout=seconds)
    except BaseException:
        await _stopped(task)
        raise
    if not done:
        await _stopped(task)
        raise Timeout
    return task.result()


async def _stopped(task: asyncio.Future) -> None:
    """Cancel ``task`` and wait until it has finished (as wait_for does: a Condition.wait, for one,
    holds its lock again only once it has), its outcome dropped."""
    task.cancel()
    await asyncio.wait((task,))
    if not task.cancelled():
        task.exception()  # retrieved: an outcome that came with the cancel is not logged as lost
