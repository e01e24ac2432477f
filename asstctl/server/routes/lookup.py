"""Thread lookups shared by the thread, message and run routes (no routes here).

``require_thread(state, thread_id)`` (404 when missing) and ``active_run(state, thread_id)``. Imports only
asstctl.server.http, so threads.py and messages.py can both use it without importing each other.
"""

from __future__ import annotations

from typing import Any

from asstctl.server.http import require

ACTIVE_RUN_STATUSES = ("queued", "in_progress", "requires_action", "cancelling")


def require_thread(state, thread_id: str) -> dict[str, Any]:
    return require(state, "thread", thread_id)


def active_run(state, thread_id: str) -> dict[str, Any] | None:
    """The thread's non-terminal run (queued, in_progress, requires_action, cancelling), if any."""
    for run in state.store.all("run", thread_id):
        if run.get("status") in ACTIVE_RUN_STATUSES:
            return run
    return None
