"""The run state machine, shared by polling and streaming clients.

Every state change of a run happens here, inside a store transaction, and is announced as an
Assistants stream event (``thread.run.in_progress``, ``thread.message.delta``, ...) published
through the store (delivered once its transaction commits, to streams on any replica). Streaming
responses subscribe to the run (``store.subscribe``) before the work starts; polling clients
read the store. A run that needs work is queued in the store; the replica whose claimer claims
it runs the task, and writes its turn only while it holds the run's lease (``owned``; see
:mod:`asstctl.server.replicas`). Each active run is one asyncio task on the server's event loop,
so waiting on an engine never holds a thread; the store (SQLite or PostgreSQL) is synchronous and
a turn calls it through ``store.call``, on its worker threads (a tool round: ``rounds.py``).

    queued ─► in_progress ─┬─► completed | incomplete | failed
                           └─► requires_action ─(submit_tool_outputs)─► queued ...
    cancel: queued | in_progress | requires_action ─► cancelling ─► cancelled
    expires_at reached while active ─► expired       (an expiry task checks once a second)

A turn is a loop of model calls: built-in tool calls are run by the server and the loop goes on;
function calls pause the run in ``requires_action``; text ends it. The run's bookkeeping
(``book.py``) is stored beside it, so after a restart an interrupted model call is discarded and
retried from its start (queued / in_progress / cancelling runs are resumed, requires_action runs
expire on schedule).
"""

from __future__ import annotations

import asyncio
import logging
import time
from contextlib import aclosing
from typing import Any, AsyncIterator

from asstctl.server.engine.base import EngineError, TurnEnd, reply_events
from asstctl.server.http import new_id, now
from asstctl.server.runs import book as books
from asstctl.server.runs.batches import batches
from asstctl.server.runs.builtin import extra_deltas, final_content
from asstctl.server.runs.chat import PromptTooLong, build_turn, turn_reads
from asstctl.server.replicas import RESCAN_SECONDS, LeaseLost, ReplicaHooks
from asstctl.server.runs.events import ACTIVE, DONE, TERMINAL, public
from asstctl.server.runs.rounds import ToolRounds
from asstctl.server.runs.writer import TurnWriter, estimated_usage
from asstctl.server.store.scope import DEFAULT_PROJECT, current, within

log = logging.getLogger("asstctl.server.runs")

SWEEP_SECONDS = 1.0
DEFAULT_MAX_MODEL_CALLS = 25
END_REASONS = {"cancelled": "run_cancelled", "expired": "run_expired", "failed": "run_failed"}


class RunExecutor(ReplicaHooks, ToolRounds):
    def __init__(self, state):
        self.state = state
        self.store = state.store
        self.engine = state.engine
        self._active: set[str] = set()
        self._tasks: dict[str, asyncio.Task] = {}
        self._releases: set[asyncio.Task] = set()  # claims.finished on the store's threads
        self._writers: dict[str, TurnWriter] = {}
        self._begun: dict[str, tuple[dict[str, Any], str]] = {}  # run id -> (the run, begun as it was created
        # (``start``), its project)
        self._sweeper: asyncio.Task | None = None
        self._started = False
        self._stopping = False
        self._init_replica()

    # -- lifecycle (on the event loop) ----------------------------------------------------
    async def startup(self) -> None:
        self.ensure_started()

    def ensure_started(self) -> None:
        """Start the expiry task and resume runs left active (once, on the running loop)."""
        if self._started or self._stopping:
            return
        self._started = True
        self._sweeper = asyncio.get_running_loop().create_task(self._sweep_loop())
        self.recover()
        self._start_claiming()

    async def shutdown(self) -> None:
        """Stop every run task (their runs stay active in the store, resumed on the next start)."""
        self._stopping = True
        tasks = [t for t in [*self._tasks.values(), self._sweeper] if t is not None and not t.done()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self.store.close_streams()
        self.claims.stop()  # the runs held here go to the other replicas at once

    def stop(self) -> None:
        """After the loop is gone: nothing may be scheduled any more."""
        self._stopping = True
        self.claims.stop()

    def recover(self) -> int:
        """Queue (unless a live replica holds them) or watch runs left active; returns how many."""
        count = 0
        for run in self.store.all("run"):
            if run["status"] in ACTIVE:
                count += 1
                self._watch(run["id"])
                if run["status"] != "requires_action":
                    self.store.ensure_queued(run["id"])
        return count

    # -- public API (called by the routes, off the loop: store.call) -------------------
    def start(self, run: dict[str, Any], include: tuple[str, ...] = ()) -> None:
        """A freshly stored ``queued`` run: announce it and schedule its first turn; claimed here when this
        replica has room, begun in the same transaction (``in_progress``, first call counted: ``_opened``)."""
        self.ensure_started()
        self._watch(run["id"])
        book, begun = books.fresh(run["id"]), {}
        book["include"] = list(include)
        project = current() or DEFAULT_PROJECT  # the run's, as ``insert`` stored it (in this call)
        with self.store.transaction():
            # (registered before the claim's own: the task it starts finds the run begun)
            self.store.after_commit(lambda: begun and self._begun.__setitem__(run["id"], (begun["run"], project)))
            self.emit(run, "thread.run.created", run)
            self.emit(run, "thread.run.queued", run)
            if self.claims.take(run["id"]):
                if self._may_call(run, book):
                    book["calls"] = 1
                    begun["run"] = self._set(run, status="in_progress", started_at=now())
                    self.emit(begun["run"], "thread.run.in_progress", begun["run"])
            else:
                self._schedule(run["id"])
            if not books.traced(self.store, self.state.extra.get("trace_book"), run["id"], book) and (
                    include or book["calls"]):
                books.save(self.store, book)

    def submit_outputs(self, run_id: str, outputs: dict[str, str]) -> dict:
        """Answer the pending tool calls (the route checked them) and put the run back in the queue."""
        self.ensure_started()
        self._watch(run_id)
        trace = self.state.extra.get("trace_book")
        with self.store.transaction():
            run = self._run(run_id)
            if trace is not None:  # tracing: the request's span context goes in the book (read with the steps)
                self.store.read_ahead([books.reading(run_id), ("all", "step", run_id)])
                books.traced(self.store, trace, run_id)
            step = self._pending_tool_step(run)
            if step is not None:
                self._complete_tool_step(run, step, outputs)
            run = self._set(run, status="queued", required_action=None)
            self.emit(run, "thread.run.queued", run)
            self._schedule(run_id)
        return run

    def cancel(self, run_id: str) -> dict:
        """``cancelling`` now; ``cancelled`` once the run's task has stopped (its engine call closed)."""
        self.ensure_started()
        with self.store.transaction():
            run = self._set(self._run(run_id), status="cancelling")
            self.emit(run, "thread.run.cancelling", run)
            task = self._tasks.get(run_id)
            if task is not None and not task.done():  # the route calls this off the loop (store.call)
                loop = task.get_loop()  # once `cancelling` is committed: the task reads it to know why it stops
                self.store.after_commit(lambda: loop.call_soon_threadsafe(task.cancel))
            else:  # waiting, queued, or running on another replica (which the signal reaches)
                self._schedule(run_id)
                self.store.request_cancel(run_id)
        return run

    def expire(self, run_id: str) -> bool:
        """The run ``expired`` (True), unless it is over already. Its task is the caller's to stop."""
        with self.store.transaction():
            run = self._run(run_id)
            if run["status"] not in ACTIVE:
                return False
            self._end(run, "expired", expires_at=None)
        # last_error stays null, as on OpenAI; a turn still streaming is ended before this (engine EXPIRY_MARGIN)
        log.warning("run %s expired: its expires_at passed while it was %s%s", run_id, run["status"],
                    " with a model call in flight" if run_id in self._writers else "")
        return True

    def streaming_runs(self) -> int:
        """How many runs are in a model call right now."""
        return len(self._writers)

    # -- events ---------------------------------------------------------------------------
    def emit(self, run: dict[str, Any], name: str, data: Any) -> None:
        self.store.publish_event(run["id"], name, data)
        observe = self.state.extra.get("observe_event")  # metrics, logs, traces (asstctl.server.observability)
        if observe is not None:
            observe(run, name, data)

    def _pause(self, run: dict[str, Any]) -> None:
        """The run waits for the client or is over: streams end with ``done``."""
        if run["status"] in TERMINAL:
            self._active.discard(run["id"])
        self.emit(run, DONE, None)

    def _watch(self, run_id: str) -> None:
        self._active.add(run_id)

    # -- tasks ----------------------------------------------------------------------------
    def _schedule(self, run_id: str) -> None:
        """Queue the run for a turn (in the caller's transaction); a replica's claimer starts it."""
        self.store.enqueue_run(run_id)

    def _start_task(self, run_id: str) -> None:
        """This replica claimed the run: its task, on the loop."""
        if self._stopping:
            return
        work, observe = self._turn(run_id), self.state.extra.get("observe_run")
        if observe is not None:
            work = observe(run_id, work, books.reading(run_id))
        # The turn works in the run's project, whoever claimed it (asstctl.server.store.scope); a run begun
        # as it was created brings it along (no read), another's is read off the loop.
        begun = self._begun.get(run_id)
        work = within(begun[1], work) if begun is not None else self._in_project(run_id, work)
        task = asyncio.get_running_loop().create_task(work, name=f"asstctl-run-{run_id}")
        self._tasks[run_id] = task
        task.add_done_callback(lambda done: self._task_done(run_id, done))

    async def _in_project(self, run_id: str, work) -> None:
        try:
            project = await self.store.call(self.store.project_of, "run", run_id)
        except BaseException:
            work.close()  # never started
            raise
        await within(project, work)

    def _task_done(self, run_id: str, task: asyncio.Task) -> None:
        if self._tasks.get(run_id) is task:
            del self._tasks[run_id]
            self._writers.pop(run_id, None)
            self._begun.pop(run_id, None)
        if self._stopping:
            return
        cancelled = task.cancelled()  # before it even started
        if self.claims.dropped(run_id) and not cancelled:  # its queue entry went with the run's last transaction
            self.claims.finished(run_id)
        else:  # the cancel's ending and the run's queue entry, in that order, off the loop
            release = asyncio.get_running_loop().create_task(self.store.call(self._after_task, run_id, cancelled))
            self._releases.add(release)
            release.add_done_callback(self._released)

    def _after_task(self, run_id: str, cancelled: bool) -> None:
        if cancelled:
            self._interrupted(run_id)
        self.claims.finished(run_id)

    def _released(self, release: asyncio.Task) -> None:
        self._releases.discard(release)
        if not release.cancelled() and release.exception() is not None:
            log.error("releasing a run's queue entry failed: %r", release.exception())

    async def _turn(self, run_id: str) -> None:
        """The run's model calls until it pauses or ends."""
        try:
            begun = self._begun.pop(run_id, None)
            opening = (self._opening, run_id) if begun is None else (self._opened, begun[0])
            run, prepared = await self.store.call(*opening)
            while run is not None:
                run, prepared = await self._call(run, prepared), None
        except asyncio.CancelledError:
            if self._stopping:
                raise
            await self.store.call(self._interrupted, run_id)
        except LeaseLost:
            log.warning("run %s: dropped this turn's result, the run's lease went to another replica", run_id)
        except EngineError as exc:
            await self.store.call(self._fail, run_id, exc.code, exc.message)
        except Exception as exc:  # an engine bug must not leave the run stuck
            log.exception("engine %s failed on run %s", getattr(self.engine, "name", "?"), run_id)
            await self.store.call(self._fail, run_id, "server_error", f"The engine failed: {type(exc).__name__}: {exc}")

    def _opening(self, run_id: str) -> tuple[dict[str, Any] | None, tuple | None]:
        """The run begun and its first model call counted in one transaction, then the turn built
        (``_prepare``), in one store call: the run, or None, and what ``_prepare`` returned. The turn's
        reads go with the commit (two round trips on PostgreSQL)."""
        with self.store.reads_kept():
            with self.owned(run_id):
                run = self._begin(run_id)
                if run is None:
                    return None, None
                book = books.load(self.store, run_id)
                counted = self._may_call(run, book)
                if counted:  # durable before the call, as in ``_prepare``
                    book["calls"] += 1
                    books.save(self.store, book)
                self.store.read_at_commit(turn_reads(run))
            prepared = self._prepare(run, book, counted)
        return (run, prepared) if prepared is not None else (None, None)  # None: the run ended

    def _opened(self, begun: dict[str, Any]) -> tuple[dict[str, Any] | None, tuple | None]:
        """``_opening`` of a run begun as it was created (``start``): the run, its book and the turn's reads in
        one round trip, the turn built from them (``_opening`` if the run changed meanwhile: a cancel)."""
        run_id = begun["id"]
        with self.store.reads_kept():
            self.store.read_ahead([("get", "run", run_id, None), books.reading(run_id), *turn_reads(begun)])
            run = self._run(run_id)
            if run["status"] != "in_progress":
                return self._opening(run_id)
            prepared = self._prepare(run, None, counted=True)
        return (run, prepared) if prepared is not None else (None, None)

    def _begin(self, run_id: str) -> dict[str, Any] | None:
        with self.owned(run_id):
            run = self._run(run_id)
            if run["status"] == "cancelling":
                self._end(run, "cancelled", cancelled_at=now())
                return None
            if run["status"] not in ("queued", "in_progress"):
                return None
            resumed = run["status"] == "in_progress"  # after a restart, or taken over from another replica
            if resumed:  # a queued run's calls all ended (a run is in_progress during a call)
                books.discard_interrupted(self.store, run)
            run = self._set(run, status="in_progress", started_at=run["started_at"] or now())
            if not resumed:
                self.emit(run, "thread.run.in_progress", run)
            return run

    def _interrupted(self, run_id: str) -> None:
        """The task was cancelled: by a cancel (-> cancelled) or by expiry (already expired)."""
        run = self.store.get("run", run_id)
        if run is not None and run["status"] == "cancelling":
            try:
                with self.owned(run_id):
                    self._end(run, "cancelled", cancelled_at=now())
            except LeaseLost:  # the replica holding the run now ends it
                pass

    # -- one model call -------------------------------------------------------------------
    async def _call(self, run: dict[str, Any], prepared: tuple | None = None) -> dict[str, Any] | None:
        """One model call (``prepared``: its ``_prepare`` done already); the run to call again for
        (built-in tools ran), or None. Store work runs through ``store.call``, so the loop never waits
        for the database; the engine's events go in batches (``batches.py``): one store call for all
        that arrived meanwhile, the last batch with the call's accounting (``_finish``)."""
        if prepared is None:
            prepared = await self.store.call(self._prepare_ahead, run)
        if prepared is None:
            return None
        book, turn = prepared
        writer = TurnWriter(self, run, book, turn.offered, turn.request.parallel_tool_calls)
        self._writers[run["id"]] = writer
        rest: list[Any] = []
        async with aclosing(batches(self._events(turn.request))) as events:
            async for batch, last in events:  # to the engine's own end (an upstream connection stays reusable)
                if last:
                    rest = batch
                elif any(not isinstance(event, TurnEnd) for event in batch):
                    await self.store.call(writer.feed_all, batch)
                else:  # nothing to store
                    writer.feed_all(batch)
                if writer.cut:  # over the call's completion budget (writer.py): the rest is not read
                    break
        run, usage = await self.store.call(self._finish, run, book, writer, turn, rest)
        if run is None:  # answered
            return None
        if run["status"] != "in_progress":
            return await self.store.call(self._stopped, run)
        return await self._tool_calls(run, book, writer, turn.offered, usage, writer.end)

    def _finish(self, run, book, writer: TurnWriter, turn, rest: list[Any]) -> tuple[dict[str, Any] | None, dict]:
        """The call's last events and its accounting (``_account``) in one transaction: (None once
        answered, else the run as it is now; the call's usage)."""
        run_id = run["id"]
        with self.owned(run_id):
            now_run = self._run(run_id)  # read with the transaction's start (the events do not change it)
            writer.feed_all(rest)
            if writer.end is not None:
                run, usage = self._account(now_run, book, writer, turn), writer.end.usage.as_dict()
                if run is None:  # answered: the run's queue entry goes with this commit
                    self.claims.over(run_id)
        if writer.end is None:  # (what the events wrote is committed: an ending closes it)
            raise EngineError(f"The reply of the engine {getattr(self.engine, 'name', '?')!s} ended without a "
                              "finish (the connection to the model was lost?); the run may be retried.")
        return run, usage

    def _limit(self) -> int:
        return getattr(self.state.config, "max_model_calls", None) or DEFAULT_MAX_MODEL_CALLS

    @staticmethod
    def _completion_left(run: dict[str, Any], book: dict[str, Any]) -> int | None:
        if not run.get("max_completion_tokens"):
            return None
        return run["max_completion_tokens"] - book["usage"]["completion_tokens"]

    def _may_call(self, run: dict[str, Any], book: dict[str, Any]) -> bool:
        """Below the model call limit and with completion tokens left."""
        left = self._completion_left(run, book)
        return book["calls"] < self._limit() and (left is None or left > 0)

    def _prepare_ahead(self, run: dict[str, Any]) -> tuple[dict[str, Any], Any] | None:
        """``_prepare`` with its reads (the book's and the turn's) asked for in one round trip."""
        with self.store.reads_kept():
            self.store.read_ahead([books.reading(run["id"]), *turn_reads(run)])
            return self._prepare(run)

    def _prepare(self, run: dict[str, Any], book: dict[str, Any] | None = None,
                 counted: bool = False) -> tuple[dict[str, Any], Any] | None:
        """The run's book and the turn to ask the engine (the call counted, unless ``counted`` already),
        or None: the run ended."""
        book = book if book is not None else books.load(self.store, run["id"])
        completion_left = self._completion_left(run, book)
        if not counted and book["calls"] >= (limit := self._limit()):
            raise EngineError(
                f"The run reached the limit of {limit} model calls per run without a final answer "
                "(the model kept calling tools). Raise the server's max_model_calls or check the tool outputs.")
        if not counted and completion_left is not None and completion_left <= 0:
            return self._incomplete(run, "max_completion_tokens")
        try:
            turn = build_turn(self.state, run, book, completion_left)
        except PromptTooLong as exc:
            if exc.reason == "max_prompt_tokens":
                return self._incomplete(run, "max_prompt_tokens")
            raise EngineError(exc.message, "invalid_prompt") from exc
        if not counted:
            book["calls"] += 1
            with self.owned(run["id"]):
                books.save(self.store, book)
        return book, turn

    async def _events(self, request) -> AsyncIterator[Any]:
        stream = getattr(self.engine, "stream", None)
        if stream is None:  # an engine with only respond(): called on a worker thread
            reply = await asyncio.to_thread(self.engine.respond, request)
            source = reply_events(reply, request)
        else:
            source = stream(request)
        async with aclosing(source) as events:
            async for event in events:
                yield event

    def _account(self, run, book, writer: TurnWriter, turn) -> dict[str, Any] | None:
        """The turn's usage saved and, when it is the final answer, the answer, in the caller's
        transaction (``run``: as read in it): None once answered, else the run as it is now."""
        end = writer.end
        if not end.usage.total_tokens:
            end.usage = estimated_usage(turn, writer)
        usage = end.usage.as_dict()
        book["usage"]["prompt_tokens"] += end.usage.prompt_tokens
        book["usage"]["completion_tokens"] += end.usage.completion_tokens
        with self.owned(run["id"]):
            books.save(self.store, book)
            if run["status"] != "in_progress":
                return run
            self._usage_on_closed_message(writer, usage)
            if writer.calls:
                return run
            return self._choice_ignored(run, book, writer, turn) or self._answer(run, book, writer, usage, end)

    def _stopped(self, run: dict[str, Any]) -> None:
        if run["status"] == "cancelling":
            with self.owned(run["id"]):
                self._end(run, "cancelled", cancelled_at=now())
        return None

    def _usage_on_closed_message(self, writer: TurnWriter, usage: dict) -> None:
        step = writer.message_step
        if step is not None and step["status"] == "completed" and step.get("usage") is None:
            step["usage"] = usage
            self.store.put("step", step, writer.run["id"])

    def _answer(self, run, book, writer: TurnWriter, usage: dict, end: TurnEnd) -> None:
        writer.ensure_message()
        content, attachments = final_content(writer.text, book)
        for delta in extra_deltas(writer.message["id"], content):
            self.emit(run, "thread.message.delta", delta)
        cut = end.finish_reason == "length"
        with self.owned(run["id"]):
            writer.close_message("incomplete" if cut else "completed", content, attachments, usage)
            if cut:
                return self._incomplete(run, "max_completion_tokens")
            run = self._set(run, status="completed", completed_at=now(), expires_at=None, usage=books.usage(book))
            self.emit(run, "thread.run.completed", run)
            self._pause(run)
        return None

    # -- endings --------------------------------------------------------------------------
    def _incomplete(self, run: dict[str, Any], reason: str) -> None:
        with self.owned(run["id"]):
            book = books.load(self.store, run["id"])
            self._close_steps(run, "cancelled", "cancelled_at", "thread.run.step.cancelled")
            run = self._set(run, status="incomplete", expires_at=None, usage=books.usage(book),
                            incomplete_details={"reason": reason})
            self.emit(run, "thread.run.incomplete", run)
            self._pause(run)
        return None

    def _fail(self, run_id: str, code: str, message: str) -> None:
        try:
            with self.owned(run_id):
                run = self.store.get("run", run_id)
                if run is None or run["status"] in TERMINAL:  # gone with its thread, or already over
                    return
                if run["status"] == "cancelling":
                    return self._end(run, "cancelled", cancelled_at=now())
                self._end(run, "failed", failed_at=now(), last_error={"code": code, "message": message})
            log.warning("run %s failed (%s): %s", run_id, code, message)
        except LeaseLost:
            log.warning("run %s: not marked failed, the run's lease went to another replica", run_id)

    def _end(self, run: dict[str, Any], status: str, **changes: Any) -> None:
        """``cancelled`` / ``expired`` / ``failed``: open steps and messages end with the run."""
        stamp = {"cancelled": "cancelled_at", "expired": "expired_at", "failed": "failed_at"}[status]
        self._close_steps(run, status, stamp, f"thread.run.step.{status}")
        book = books.load(self.store, run["id"])
        changes.setdefault("expires_at", None)
        run = self._set(run, status=status, required_action=None, usage=books.usage(book), **changes)
        self.emit(run, f"thread.run.{status}", run)
        self._pause(run)

    def _close_steps(self, run: dict, status: str, stamp: str, event: str) -> None:
        """Steps still in progress end with the run; so do their messages (``incomplete``)."""
        writer = self._writers.get(run["id"])
        if writer is not None:
            writer.flush()
        for step in self.store.all("step", run["id"]):
            if step["status"] != "in_progress":
                continue
            step.update(status=status, usage=step.pop("_usage", None), **{stamp: now()})
            self.store.put("step", step, run["id"])
            self.emit(run, event, public(step))
            if step["type"] == "message_creation":
                self._message_incomplete(run, step, END_REASONS.get(status, "run_cancelled"))

    def _message_incomplete(self, run: dict, step: dict, reason: str) -> None:
        message = self.store.get("message", step["step_details"]["message_creation"]["message_id"], run["thread_id"])
        if message is None or message["status"] != "in_progress":
            return
        message.update(status="incomplete", incomplete_at=now(), incomplete_details={"reason": reason})
        self.store.put("message", message, run["thread_id"])
        self.emit(run, "thread.message.incomplete", message)

    # -- expiry ---------------------------------------------------------------------------
    async def _sweep_loop(self) -> None:
        rescanned = time.monotonic()
        while True:
            await asyncio.sleep(SWEEP_SECONDS)
            try:
                if time.monotonic() - rescanned >= RESCAN_SECONDS:  # runs another replica left behind
                    rescanned = time.monotonic()
                    await self.store.call(self.recover)
                for run_id in await self.store.call(self.sweep):
                    self._interrupt_task(run_id)
            except Exception:  # never let the sweeper die
                log.exception("run expiry sweep failed")

    def sweep(self) -> list[str]:
        """Expire active runs whose ``expires_at`` has passed (off the loop: ``store.call``); their ids."""
        expired = []
        for run_id in list(self._active):
            run = self.store.get("run", run_id)
            if run is None or run["status"] in TERMINAL:
                self._active.discard(run_id)
            elif run["expires_at"] is not None and run["expires_at"] <= now() and self.expire(run_id):
                expired.append(run_id)
        return expired

    # -- store helpers --------------------------------------------------------------------
    def _run(self, run_id: str) -> dict[str, Any]:
        run = self.store.get("run", run_id)
        if run is None:
            raise EngineError(f"run {run_id} disappeared")
        return run

    def _set(self, run: dict[str, Any], **changes: Any) -> dict[str, Any]:
        run = {**run, **changes}
        return self.store.put("run", run, run["thread_id"])

    def new_step(self, run: dict[str, Any], kind: str, details: dict[str, Any]) -> dict[str, Any]:
        step = {
            "id": new_id("step"), "object": "thread.run.step", "created_at": now(),
            "assistant_id": run["assistant_id"], "thread_id": run["thread_id"], "run_id": run["id"],
            "type": kind, "status": "in_progress", "step_details": details, "last_error": None,
            "expired_at": None, "cancelled_at": None, "failed_at": None, "completed_at": None,
            "metadata": {}, "usage": None,
        }
        with self.owned(run["id"]):
            self.store.insert("step", step, run["id"])
        self.emit(run, "thread.run.step.created", step)
        self.emit(run, "thread.run.step.in_progress", step)
        return step
