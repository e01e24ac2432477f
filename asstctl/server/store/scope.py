"""Which project the current request or run works in: every stored object carries its project,
and the store's reads and writes are scoped by this context variable.

The server's auth step sets it for a request (``asstctl.server.projects``); the run executor sets it
from the run it claims. ``None`` (the default: start-up, the claimer, the admin API, tests reading the
store directly) means unscoped: reads see every project, inserts go to ``DEFAULT_PROJECT``.
asyncio tasks, ``asyncio.to_thread`` and starlette's ``run_in_threadpool`` carry it over (they copy the
context); ``loop.run_in_executor`` and plain threads do NOT: a store call moved off the loop that way runs
unscoped (it would see every project). Use ``asyncio.to_thread``, or ``contextvars.copy_context().run``.
Background work that inserts objects outside a request must run ``within`` the project of what it works on.
"""

from __future__ import annotations

from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, Awaitable, Iterator

DEFAULT_PROJECT = "proj_default"  # the single key of `--api-key` and every object stored before projects

PROJECT: ContextVar[str | None] = ContextVar("asstctl_project", default=None)
# the request's project key, checked with its first statement where the store can (``store.pg_guard``)
KEY_CHECK: ContextVar[Any] = ContextVar("asstctl_key_check", default=None)


def current() -> str | None:
    return PROJECT.get()


@contextmanager
def scoped(project: str | None) -> Iterator[None]:
    token = PROJECT.set(project)
    try:
        yield
    finally:
        PROJECT.reset(token)


async def within(project: str | None, work: Awaitable[Any]) -> Any:
    """Await ``work`` in ``project`` (for a task: the variable is set in the task's own context)."""
    PROJECT.set(project)
    return await work


def clause() -> tuple[str, tuple]:
    """SQL to append to a WHERE on ``objects``, and its arguments: nothing when unscoped."""
    project = PROJECT.get()
    return ("", ()) if project is None else (" AND project = ?", (project,))
