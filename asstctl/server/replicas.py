"""Which replica works on which run: claims from the store's run queue, and their leases.

A :class:`Claimer` per server claims queued runs (``store.claim_runs``) while it has room,
hands each to the executor (``start_turn``), renews the leases of the runs it holds every
``lease / 3`` seconds, and releases a run when the executor is done with it. A replica killed
mid-run stops renewing; once its lease expires another replica claims the run and does the turn
again. The executor commits a turn's results only inside a transaction in which
``holds(run_id)`` is true, so the turn of a replica that lost its lease changes nothing.

Wake-ups: ``work`` signals (a run was queued, on any replica) start a claim at once; ``cancel``
signals wake the turn of a run held here. Without signals the claimer still looks every
``lease / 3`` seconds, which is how expired leases are found.

On SQLite there is one process: the same code, with in-process signals.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import os
import secrets
import socket
import threading
import time
from contextlib import contextmanager
from typing import Any, Callable, Iterator

from asstctl.server.aio import on_loop

log = logging.getLogger("asstctl.server.runs")

LEASE_ENV = "ASSTCTL_RUN_LEASE_SECONDS"
CAPACITY_ENV = "ASSTCTL_RUN_CAPACITY"
DEFAULT_LEASE = 15.0
DEFAULT_CAPACITY = 256
CLAIM_BATCH = 64  # queued runs claimed in one transaction at most
EVENT_TTL = 3600.0  # run events older than this are pruned
RESCAN_SECONDS = 60.0  # every replica re-reads active runs: expiry of runs a dead replica watched
PRUNE_EVERY = 60.0


def lease_seconds() -> float:
    """How long a claimed run stays with a replica that stops renewing (the takeover delay)."""
    return _number(LEASE_ENV, DEFAULT_LEASE, float, 1.0)


def run_capacity() -> int:
    """Runs this replica works on at once; 0 makes an API-only replica that never claims runs."""
    return _number(CAPACITY_ENV, DEFAULT_CAPACITY, int, 0)


def _number(name: str, default, kind, least):
    raw = os.environ.get(name, "").strip()
    try:
        return max(least, kind(raw)) if raw else default
    except ValueError:
        log.warning("%s=%r is not a number; using %s", name, raw, default)
        return default


class Claimer:
    def __init__(self, store, start_turn: Callable[[str], None], wake: Callable[[str], None],
                 capacity: int = 8, lease: float | None = None):
        self.store, self.start_turn, self.wake = store, start_turn, wake
        self.capacity, self.lease = capacity, lease or lease_seconds()
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        self.held: set[str] = set()
        self._dropped: set[str] = set()  # runs whose queue entry went with their last transaction (``over``)
        self._full = False  # a claim was put off for want of room (``finished`` wakes the claimer)
        self._guard = threading.Lock()
        self._poke = threading.Event()
        self._stopping = threading.Event()
        store.on_signal(self._on_signal)
        self._thread = threading.Thread(target=self._loop, name="asstctl-run-claims", daemon=True)

    def start(self) -> None:
        self._thread.start()
        self._poke.set()

    def holds(self, run_id: str) -> bool:
        """Inside a write transaction: may this replica commit the run's turn?"""
        return self.store.holds_lease(run_id, self.owner)

    @contextmanager
    def holding(self, run_id: str) -> Iterator[bool]:
        """A write transaction and whether this replica holds the run's lease in it (one round trip
        with the transaction's start on PostgreSQL; checked once per transaction)."""
        with self.store.transaction_holding(run_id, self.owner) as held:
            yield held

    def take(self, run_id: str) -> bool:
        """Claim a run this replica creates, in the caller's transaction (``store.queue_claimed``: no
        claim round trip, no wake-up of this claimer or the others); its turn starts once that commits.
        False when this replica has no room for it: queue it for any replica instead."""
        with self._guard:
            if self._stopping.is_set() or not self._thread.is_alive() or len(self.held) >= self.capacity:
                return False
        self.store.queue_claimed(run_id, self.owner, self.lease)
        self.store.after_commit(lambda: self._took(run_id))
        return True

    def _took(self, run_id: str) -> None:
        with self._guard:
            stopping = self._stopping.is_set()
            if not stopping:
                self.held.add(run_id)
        if stopping:  # stopped meanwhile: to the other replicas at once, as ``stop`` does
            self.store.unclaim_run(run_id, self.owner)
        else:  # in a context of its own, as from the claimer's thread: not the creating request's (its span)
            contextvars.Context().run(self.start_turn, run_id)

    def over(self, run_id: str) -> None:
        """The run ended in the caller's transaction: its queue entry goes with it (``finished`` then
        has nothing to send)."""
        self.store.drop_run(run_id, self.owner)
        self.store.after_commit(lambda: self._dropped.add(run_id))

    def dropped(self, run_id: str) -> bool:
        return run_id in self._dropped

    def finished(self, run_id: str) -> None:
        """The executor is done with the run for now (it waits for the client, or is over)."""
        with self._guard:
            self.held.discard(run_id)
            full, self._full = self._full, False
        if run_id in self._dropped:
            self._dropped.discard(run_id)
        else:
            self.store.release_run(run_id, self.owner)
        if full:  # a claim was put off for want of room: there is some now
            self._poke.set()

    def stop(self) -> None:
        """Claim nothing more; hand the runs still held to the other replicas at once."""
        self._stopping.set()
        self._poke.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        with self._guard:
            held, self.held = list(self.held), set()
        for run_id in held:
            try:
                self.store.unclaim_run(run_id, self.owner)
            except Exception:  # noqa: BLE001 - the database may be gone already
                log.warning("could not release run %s at shutdown", run_id)

    def _on_signal(self, kind: str, run_id: str) -> None:
        if kind == "work":
            self._poke.set()
        elif kind == "cancel":
            with self._guard:
                mine = run_id in self.held
            if mine:
                self.wake(run_id)

    def _loop(self) -> None:
        renewed = pruned = time.monotonic()
        while not self._stopping.is_set():
            self._poke.wait(self.lease / 3)
            self._poke.clear()
            if self._stopping.is_set():
                return
            try:
                if time.monotonic() - renewed >= self.lease / 3:
                    renewed = time.monotonic()
                    self._renew()
                self._claim()
                if time.monotonic() - pruned >= PRUNE_EVERY:
                    pruned = time.monotonic()
                    self.store.prune_events(EVENT_TTL)
            except Exception:  # noqa: BLE001 - a lost database connection must not end claiming
                if self._stopping.is_set():
                    return
                log.exception("run claim loop failed; retrying")

    def _renew(self) -> None:
        with self._guard:
            held = list(self.held)
        for run_id in held:
            if not self.store.renew_lease(run_id, self.owner, self.lease):
                log.warning("run %s: lost its lease to another replica; stopping its turn here", run_id)
                with self._guard:
                    self.held.discard(run_id)
                self.wake(run_id)

    def _claim(self) -> None:
        while not self._stopping.is_set():
            with self._guard:
                room = self.capacity - len(self.held)
                if room <= 0:
                    self._full = True
                    return
            # all the room in one transaction: claimed one by one, a thread that gets the GIL every few ms
            # from a busy loop took seconds to refill hundreds of slots
            run_ids = self.store.claim_runs(self.owner, self.lease, min(room, CLAIM_BATCH))
            if not run_ids:
                return
            with self._guard:
                self.held.update(run_ids)
            for run_id in run_ids:
                self.start_turn(run_id)


class LeaseLost(Exception):
    """This replica no longer holds the run: another one took it over. Stop, change nothing."""


class ReplicaHooks:
    """What the run executor (``asstctl.server.runs``) needs to share runs with other replicas.

    The executor's asyncio tasks run on one loop; the claimer is a thread, so claims and wake-ups
    hop to the loop. ``owned(run_id)`` is the write transaction of a turn: it raises
    :class:`LeaseLost` (before writing anything) when the run's lease went to another replica.
    """

    store: Any
    _tasks: dict

    def _init_replica(self) -> None:
        self.claims = Claimer(self.store, self._claimed, self._signalled, capacity=run_capacity())
        self._loop: asyncio.AbstractEventLoop | None = None

    def _start_claiming(self) -> None:
        """On the loop, once the executor is ready for runs."""
        self._loop = asyncio.get_running_loop()
        self.claims.start()

    @contextmanager
    def owned(self, run_id: str) -> Iterator[None]:
        with self.claims.holding(run_id) as held:
            if not held:
                raise LeaseLost(run_id)
            yield

    def _claimed(self, run_id: str) -> None:
        self._on_loop(self._start_task, run_id)

    def _signalled(self, run_id: str) -> None:
        """A cancel from any replica, or a lost lease: stop the run's task here."""
        self._on_loop(self._interrupt_task, run_id)

    def _interrupt_task(self, run_id: str) -> None:
        task = self._tasks.get(run_id)
        if task is not None and not task.done():
            task.cancel()

    def _on_loop(self, function: Callable[[str], None], run_id: str) -> None:
        try:
            if on_loop(self._loop):  # a commit on the loop: no self-pipe write
                self._loop.call_soon(function, run_id)
                return
            self._loop.call_soon_threadsafe(function, run_id)
        except (AttributeError, RuntimeError):  # no loop yet, or it is gone (stopping)
            pass

    def _start_task(self, run_id: str) -> None:
        raise NotImplementedError
