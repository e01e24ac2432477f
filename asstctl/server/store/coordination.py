"""What run executors on one or many replicas share through the store: the run queue with
leases, run events, and wake-up signals.

    enqueue_run(run_id)                 a run wants an engine turn (in the caller's transaction)
    queue_claimed(run_id, owner, lease) a new run queued already claimed by ``owner`` (the replica creating
                                        it, with room for it: no claim, no wake-up of the others)
    claim_runs(owner, lease, limit) -> ids  take up to ``limit`` queued runs whose lease is free or expired,
                                        oldest first, in one transaction (``claim_next_run``: one)
    renew_lease(run_id, owner, lease)   still mine? (False: taken over, stop working on it)
    holds_lease(run_id, owner)          inside a write transaction: commit this turn only if True
    transaction_holding(run_id, owner)  a write transaction and that check (PostgreSQL: at its start)
    release_run(run_id, owner)          the run waits for the client or is over
    request_cancel(run_id)              wake whichever replica holds the run
    publish_event(run_id, name, data)   an Assistants stream event, delivered once the transaction commits
    subscribe(run_id) -> Subscription   the run's events from now on, on any replica (events committed by
                                        this process are handed to its subscribers in memory; PostgreSQL
                                        reads the database for the others: ``pull_events``)
    on_signal(callback)                 callback(kind, run_id) for "work" and "cancel" wake-ups

Write transactions are serialized (see ``base``), so a lease checked inside one holds until it
commits, and events reach subscribers in commit order.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections import deque
from contextlib import aclosing, contextmanager
from typing import Any, AsyncIterator, Callable, Iterator

from asstctl.server.aio import on_loop

DONE = "done"
POLL_SECONDS = 1.0  # a subscriber re-reads even without a wake-up (a lost notification costs this much)


class Subscription:
    """One stream's view of a run's events; iterate with ``async for name, payload in sub``."""

    def __init__(self, store: "Coordination", run_id: str, after: int = 0, stale: bool = False):
        self.store, self.run_id, self.after = store, run_id, after
        self.items: deque[tuple[str, str]] = deque()
        self.stale = stale  # the database may hold events that ``items`` lacks: read it (``pull_events``) first
        self._loop = asyncio.get_running_loop()
        self._ready = asyncio.Event()
        self._polled = False  # the wait ended for want of a wake-up (``POLL_SECONDS``)
        self.closed = False
        self.ending = False  # the server stops: end the stream after what is there

    def wake(self) -> None:
        """Called from any thread when new events may be there."""
        if on_loop(self._loop):  # a commit on the loop (``store.call`` inline): no self-pipe
            self._ready.set()
            return
        try:
            self._loop.call_soon_threadsafe(self._ready.set)
        except RuntimeError:  # the loop is gone (server stopping)
            pass

    async def __aiter__(self) -> AsyncIterator[tuple[str, str]]:
        async with aclosing(self.batches()) as batches:
            async for batch in batches:
                for item in batch:
                    yield item

    async def batches(self) -> AsyncIterator[list[tuple[str, str]]]:
        """The events in lists: all that arrived by the time the consumer came back for more."""
        try:
            while True:
                if self.stale:
                    await self.store.call(self.store.pull_events, self)
                while self.items:
                    batch = []
                    while self.items:
                        batch.append(self.items.popleft())
                        if batch[-1][0] == DONE:
                            yield batch
                            return
                    yield batch
                if self.ending:
                    yield [(DONE, "[DONE]")]
                    return
                await self._wait()
                if self._polled:
                    self._polled = False
                    self.stale = self.store.READS_EVENTS  # a lost notification costs this much
                self._ready.clear()
        finally:
            self.close()

    async def _wait(self) -> None:
        """A wake-up, or ``POLL_SECONDS`` (a timer handle: cheaper than ``wait_for``'s task per wait)."""
        if self._ready.is_set():
            return
        timer = self._loop.call_later(POLL_SECONDS, self._poll)
        try:
            await self._ready.wait()
        finally:
            timer.cancel()

    def _poll(self) -> None:
        self._polled = True
        self._ready.set()

    async def sse(self, first: list[tuple[str, Any]] = ()) -> AsyncIterator[bytes]:
        """``event:``/``data:`` frames until ``event: done`` (``first``: frames sent before the run's), the
        frames of the events at hand in one chunk (one write through the ASGI stack, not one per event)."""
        head = b"".join(_frame(name, json.dumps(data)) for name, data in first)
        if head and not self.items:
            yield head
            head = b""
        async with aclosing(self.batches()) as batches:
            async for batch in batches:
                yield head + b"".join(_frame(name, payload) for name, payload in batch)
                head = b""

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.store.unsubscribe(self)


def _frame(name: str, payload: str) -> bytes:
    return f"event: {name}\ndata: {payload}\n\n".encode()


def payload_of(name: str, data: Any) -> str:
    return "[DONE]" if name == DONE else json.dumps(data)


class Coordination:
    """Shared parts of the coordination primitives; backends add the time-dependent SQL."""

    READS_EVENTS = False  # whether other processes write events that subscribers must read from the database

    def _init_coordination(self) -> None:
        self._subscribers: dict[str, list[Subscription]] = {}
        self._callbacks: list[Callable[[str, str], None]] = []
        self._sub_lock = threading.Lock()

    # -- signals ----------------------------------------------------------------------------
    def on_signal(self, callback: Callable[[str, str], None]) -> None:
        self._callbacks.append(callback)

    def _dispatch(self, kind: str, run_id: str) -> None:
        """A signal arrived (in-process after commit, or from another replica)."""
        if kind == "event":
            with self._sub_lock:
                subscribers = list(self._subscribers.get(run_id, ()))
            for sub in subscribers:
                sub.wake()
            return
        for callback in list(self._callbacks):
            callback(kind, run_id)

    def _signal(self, kind: str, run_id: str) -> None:
        """Announce to every replica once the current transaction commits."""
        raise NotImplementedError

    # -- queue ------------------------------------------------------------------------------
    def enqueue_run(self, run_id: str) -> None:
        """Queue a turn. A run held by a replica stays with it, marked to be queued again when released."""
        with self.transaction():
            if not self._exec("UPDATE run_queue SET again = 1 WHERE run_id = ? AND owner IS NOT NULL", (run_id,)):
                self._write("DELETE FROM run_queue WHERE run_id = ?", (run_id,))
                self._write("INSERT INTO run_queue (run_id) VALUES (?)", (run_id,))
            self._signal("work", run_id)

    def ensure_queued(self, run_id: str) -> None:
        """Queue the run unless it is queued already (held by a live replica, or waiting)."""
        if self._fetch("SELECT 1 FROM run_queue WHERE run_id = ?", (run_id,)):
            return
        with self.transaction():
            if not self._fetch("SELECT 1 FROM run_queue WHERE run_id = ?", (run_id,)):
                self._write("INSERT INTO run_queue (run_id) VALUES (?)", (run_id,))
                self._signal("work", run_id)

    def queue_claimed(self, run_id: str, owner: str, lease: float) -> None:
        """A run created in the caller's transaction, queued with ``owner`` holding its lease."""
        raise NotImplementedError

    def claim_runs(self, owner: str, lease: float, limit: int) -> list[str]:
        raise NotImplementedError

    def claim_next_run(self, owner: str, lease: float) -> str | None:
        return next(iter(self.claim_runs(owner, lease, 1)), None)

    def renew_lease(self, run_id: str, owner: str, lease: float) -> bool:
        raise NotImplementedError

    def holds_lease(self, run_id: str, owner: str) -> bool:
        raise NotImplementedError

    @contextmanager
    def transaction_holding(self, run_id: str, owner: str) -> Iterator[bool]:
        """A write transaction, and whether ``owner`` holds the run's lease in it."""
        with self.transaction():
            yield self.holds_lease(run_id, owner)

    def release_run(self, run_id: str, owner: str) -> None:
        """Done with the run for now; queued again (for any replica) if that was asked meanwhile."""
        with self.transaction():
            self._write("DELETE FROM run_queue WHERE run_id = ? AND owner = ? AND again = 0", (run_id, owner))
            if self._exec("UPDATE run_queue SET owner = NULL, lease_until = NULL, again = 0 "
                          "WHERE run_id = ? AND owner = ?", (run_id, owner)):
                self._signal("work", run_id)

    def drop_run(self, run_id: str, owner: str) -> None:
        """The run is over: its queue entry goes, with the caller's transaction (no answer awaited)."""
        self._write("DELETE FROM run_queue WHERE run_id = ? AND owner = ?", (run_id, owner))

    def unclaim_run(self, run_id: str, owner: str) -> None:
        """Give a held run back to the queue at once (a replica stopping cleanly)."""
        with self.transaction():
            if self._exec("UPDATE run_queue SET owner = NULL, lease_until = NULL WHERE run_id = ? AND owner = ?",
                          (run_id, owner)):
                self._signal("work", run_id)

    def request_cancel(self, run_id: str) -> None:
        with self.transaction():
            self._signal("cancel", run_id)

    def cancel_requested(self, run_id: str) -> bool:
        run = self.get("run", run_id)
        return run is not None and run["status"] == "cancelling"

    # -- events -----------------------------------------------------------------------------
    def publish_event(self, run_id: str, name: str, data: Any) -> None:
        raise NotImplementedError

    def subscribe(self, run_id: str, after: int | None = None) -> Subscription:
        """Must be called on the event loop that will read it, before the action it watches
        (``after``: the run's last event, when the caller read it already)."""
        start = self._last_event(run_id) if after is None else after
        # after a read (``after`` not 0), events may have come between it and now: read again first
        sub = Subscription(self, run_id, start, stale=self.READS_EVENTS and start != 0)
        with self._sub_lock:
            self._subscribers.setdefault(run_id, []).append(sub)
        return sub

    async def subscribe_off_loop(self, run_id: str) -> Subscription:
        """``subscribe`` from the event loop, its one read (the last event) on a worker thread."""
        return self.subscribe(run_id, await self.call(self._last_event, run_id))

    def unsubscribe(self, sub: Subscription) -> None:
        with self._sub_lock:
            subs = self._subscribers.get(sub.run_id, [])
            if sub in subs:
                subs.remove(sub)
            if not subs:
                self._subscribers.pop(sub.run_id, None)

    def close_streams(self) -> None:
        """The server stops: every stream of this process ends (``done``) after what it has."""
        with self._sub_lock:
            subscribers = [sub for subs in self._subscribers.values() for sub in subs]
        for sub in subscribers:
            sub.ending = True
            sub.wake()

    def _last_event(self, run_id: str) -> int:
        return 0

    def pull_events(self, sub: Subscription) -> None:
        """Read the run's events after ``sub.after`` from the database into ``sub.items`` (one process
        alone hands them all over in memory: nothing to read)."""

    def prune_events(self, older_than: float) -> int:
        """Forget events older than ``older_than`` seconds (streams read them within moments)."""
        return 0
