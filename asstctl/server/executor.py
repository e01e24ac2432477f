"""The run executor: the run state machine, shared by polling and streaming clients.

Every state change of a run happens here, inside a store transaction, and is announced as an
Assistants stream event (``thread.run.in_progress``, ``thread.message.delta``, ...) published
through the store (``store.publish_event``: delivered once the transaction commits, to streams
on any replica). Streaming responses subscribe to a run (``store.subscribe``) before its work
starts; polling clients just read the store. Engine turns run on a worker thread pool, so a
slow engine never blocks the event loop or other runs.

Work is queued in the store: a run that needs a turn is enqueued, and whichever replica's
:class:`~asstctl.server.replicas.Claimer` claims it does the turn, committing its results only
while it still holds the run's lease.

    queued ─► in_progress ─┬─► completed | incomplete | failed
                           └─► requires_action ─(submit_tool_outputs)─► queued ...
    cancel: queued | in_progress | requires_action ─► cancelling ─► cancelled
    expires_at reached while active ─► expired       (a sweeper thread checks once a second)

On start, runs left active by a previous process are queued again unless a live replica holds
them (queued / in_progress / cancelling), or expire on schedule (requires_action).
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from asstctl.server.engine.base import EngineError, EngineReply, EngineRequest, Usage
from asstctl.server.http import new_id, now
from asstctl.server.replicas import Claimer, run_workers
from asstctl.server.store import DONE

log = logging.getLogger("asstctl.server.runs")

TERMINAL = ("completed", "failed", "cancelled", "expired", "incomplete")
ACTIVE = ("queued", "in_progress", "requires_action", "cancelling")
EXPIRY_SECONDS = 600
SWEEP_SECONDS = 1.0
DELTA_CHARS = 24  # size of the text pieces of thread.message.delta events


class RunExecutor:
    def __init__(self, state, workers: int | None = None):
        workers = run_workers() if workers is None else workers
        self.state = state
        self.store = state.store
        self.engine = state.engine
        self._pool = ThreadPoolExecutor(max(1, workers), thread_name_prefix="asstctl-run")
        self.claims = Claimer(self.store, self._submit_turn, self._wake, capacity=workers)
        self._wakeups: dict[str, threading.Event] = {}
        self._active: set[str] = set()
        self._guard = threading.Lock()
        self._stopping = threading.Event()
        self._sweeper = threading.Thread(target=self._sweep_loop, name="asstctl-run-expiry", daemon=True)
        self._sweeper.start()

    # -- public API (called by the routes) ------------------------------------------------
    def start(self, run: dict[str, Any]) -> None:
        """A freshly stored ``queued`` run: announce it and queue its first turn."""
        self._watch(run["id"])
        with self.store.transaction():
            self.emit(run, "thread.run.created", run)
            self.emit(run, "thread.run.queued", run)
            self._schedule(run["id"])

    def submit_outputs(self, run_id: str, outputs: dict[str, str]) -> dict:
        """Answer the pending tool calls (the route checked them) and put the run back in the queue."""
        self._watch(run_id)
        with self.store.transaction():
            run = self._run(run_id)
            step = self._pending_tool_step(run)
            if step is not None:
                self._complete_tool_step(run, step, outputs)
            run = self._set(run, status="queued", required_action=None)
            self.emit(run, "thread.run.queued", run)
            self._schedule(run_id)
        return run

    def cancel(self, run_id: str) -> dict:
        """``cancelling`` now; ``cancelled`` as soon as no engine turn is in flight."""
        with self.store.transaction():
            run = self._run(run_id)
            waiting = run["status"] == "requires_action"
            run = self._set(run, status="cancelling")
            self.emit(run, "thread.run.cancelling", run)
            if waiting:
                self._schedule(run_id)
            self.store.request_cancel(run_id)  # wakes the turn, on whichever replica holds the run
        return run

    def recover(self) -> int:
        """Queue or watch runs left active (by a previous process); start claiming. Returns how many."""
        count = 0
        for run in self.store.all("run"):
            if run["status"] in ACTIVE:
                count += 1
                self._watch(run["id"])
                if run["status"] != "requires_action":
                    self.store.ensure_queued(run["id"])
        self.claims.start()
        return count

    def stop(self) -> None:
        self._stopping.set()
        with self._guard:
            events = list(self._wakeups.values())
        for event in events:
            event.set()
        self._pool.shutdown(wait=True, cancel_futures=True)
        self.claims.stop()
        self._sweeper.join(timeout=5)

    # -- events ---------------------------------------------------------------------------
    def emit(self, run: dict[str, Any], name: str, data: Any) -> None:
        self.store.publish_event(run["id"], name, data)

    def _pause(self, run: dict[str, Any]) -> None:
        """The run waits for the client or is over: streams end with ``done``."""
        if run["status"] in TERMINAL:
            with self._guard:
                self._active.discard(run["id"])
        self.emit(run, DONE, None)

    def _watch(self, run_id: str) -> None:
        with self._guard:
            self._active.add(run_id)

    # -- worker ---------------------------------------------------------------------------
    def _schedule(self, run_id: str) -> None:
        """Queue a turn of the run (in the caller's transaction); a replica's claimer picks it up."""
        self.store.enqueue_run(run_id)

    def _submit_turn(self, run_id: str) -> None:
        """The claimer got the run: do its turn here."""
        if not self._stopping.is_set():
            self._pool.submit(self._turn, run_id)

    def _turn(self, run_id: str) -> None:
        """One engine turn of a run this replica claimed (worker thread)."""
        try:
            run = self._begin(run_id)
            if run is None:
                return
            reply = self.engine.respond(self._request(run))
            if self._wait(run_id, reply.latency_ms):
                self._finish(run_id, reply)
        except EngineError as exc:
            self._fail(run_id, exc.code, exc.message)
        except Exception as exc:  # an engine bug must not leave the run stuck
            log.exception("engine %s failed on run %s", getattr(self.engine, "name", "?"), run_id)
            self._fail(run_id, "server_error", f"The engine failed: {type(exc).__name__}: {exc}")
        finally:
            with self._guard:
                self._wakeups.pop(run_id, None)
            self.claims.finished(run_id)

    def _begin(self, run_id: str) -> dict[str, Any] | None:
        with self._guard:
            self._wakeups[run_id] = threading.Event()
        with self.store.transaction():
            if not self.claims.holds(run_id):
                return None
            run = self._run(run_id)
            if run["status"] == "cancelling":
                self._cancelled(run)
                return None
            if run["status"] == "in_progress":  # taken over from a replica that stopped mid-turn
                return run
            if run["status"] != "queued":
                return None
            run = self._set(run, status="in_progress", started_at=run["started_at"] or now())
            self.emit(run, "thread.run.in_progress", run)
            return run

    def _wait(self, run_id: str, latency_ms: float) -> bool:
        """Spend the engine's simulated latency; False when the server stops meanwhile."""
        if latency_ms > 0:
            with self._guard:
                wakeup = self._wakeups.get(run_id)
            if wakeup is not None:
                wakeup.wait(latency_ms / 1000)
        return not self._stopping.is_set()

    def _wake(self, run_id: str) -> None:
        with self._guard:
            wakeup = self._wakeups.get(run_id)
        if wakeup is not None:
            wakeup.set()

    def _finish(self, run_id: str, reply: EngineReply) -> None:
        with self.store.transaction():
            if not self.claims.holds(run_id):  # another replica took the run over: its turn counts
                log.warning("run %s: dropped this turn's result, the run's lease went to another replica", run_id)
                return None
            run = self._run(run_id)
            if run["status"] == "cancelling":
                return self._cancelled(run)
            if run["status"] != "in_progress":
                return None  # expired meanwhile
            if reply.tool_calls:
                return self._require_action(run, reply)
            return self._complete(run, reply)

    # -- engine request -------------------------------------------------------------------
    def _request(self, run: dict[str, Any]) -> EngineRequest:
        assistant = self.store.get("assistant", run["assistant_id"]) or {"id": run["assistant_id"], "name": None}
        return EngineRequest(
            assistant=assistant,
            model=run["model"],
            instructions=run["instructions"],
            tools=run["tools"],
            messages=self._visible_messages(run),
            tool_results=self._tool_results(run),
            temperature=run.get("temperature"),
            top_p=run.get("top_p"),
            response_format=run.get("response_format") or "auto",
            run=run,
        )

    def _visible_messages(self, run: dict[str, Any]) -> list[dict[str, Any]]:
        messages = self.store.all("message", run["thread_id"])
        strategy = run.get("truncation_strategy") or {}
        last = strategy.get("last_messages") if strategy.get("type") == "last_messages" else None
        return messages[-last:] if last else messages

    def _tool_results(self, run: dict[str, Any]) -> list[dict[str, Any]]:
        steps = self.store.all("step", run["id"])
        if not steps or steps[-1]["type"] != "tool_calls":
            return []
        calls = steps[-1]["step_details"]["tool_calls"]
        return [
            {"call_id": c["id"], "name": c["function"]["name"], "arguments": c["function"]["arguments"],
             "output": c["function"]["output"]}
            for c in calls
            if c["type"] == "function"
        ]

    # -- outcomes -------------------------------------------------------------------------
    def _require_action(self, run: dict[str, Any], reply: EngineReply) -> None:
        step = self._new_step(run, "tool_calls", {"type": "tool_calls", "tool_calls": []})
        calls = [
            {"id": new_id("call"), "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
            for c in reply.tool_calls
        ]
        for index, call in enumerate(calls):
            self._emit_call_deltas(run, step, index, call)
        step["step_details"]["tool_calls"] = [
            {**c, "function": {**c["function"], "output": None}} for c in calls
        ]
        step["_usage"] = reply.usage.as_dict()  # private until the step completes
        self.store.put("step", step, run["id"])
        required = {"type": "submit_tool_outputs", "submit_tool_outputs": {"tool_calls": calls}}
        run = self._set(run, status="requires_action", required_action=required)
        self.emit(run, "thread.run.requires_action", run)
        self._pause(run)

    def _emit_call_deltas(self, run: dict, step: dict, index: int, call: dict) -> None:
        first = {"index": index, "id": call["id"], "type": "function",
                 "function": {"name": call["function"]["name"], "arguments": "", "output": None}}
        rest = {"index": index, "type": "function", "function": {"arguments": call["function"]["arguments"]}}
        for fragment in (first, rest):
            delta = {"step_details": {"type": "tool_calls", "tool_calls": [fragment]}}
            self.emit(run, "thread.run.step.delta", {"id": step["id"], "object": "thread.run.step.delta", "delta": delta})

    def _complete(self, run: dict[str, Any], reply: EngineReply) -> None:
        text, cut = _within_limit(run, reply)
        message = self._new_message(run)
        step = self._new_step(run, "message_creation", {"type": "message_creation",
                                                        "message_creation": {"message_id": message["id"]}})
        self._stream_text(run, message, text)
        at = now()
        content = [{"type": "text", "text": {"value": text, "annotations": []}}]
        if cut:  # max_completion_tokens reached: the reply is cut off, the run incomplete
            message.update(status="incomplete", incomplete_at=at, incomplete_details={"reason": "max_tokens"})
        else:
            message.update(status="completed", completed_at=at)
        message["content"] = content
        self.store.put("message", message, run["thread_id"])
        self.emit(run, f"thread.message.{message['status']}", message)
        step.update(status="completed", completed_at=at, usage=reply.usage.as_dict())
        self.store.put("step", step, run["id"])
        self.emit(run, "thread.run.step.completed", step)
        if cut:
            run = self._set(run, status="incomplete", expires_at=None, usage=self._usage(run),
                            incomplete_details={"reason": "max_completion_tokens"})
        else:
            run = self._set(run, status="completed", completed_at=at, expires_at=None, usage=self._usage(run))
        self.emit(run, f"thread.run.{run['status']}", run)
        self._pause(run)

    def _stream_text(self, run: dict, message: dict, text: str) -> None:
        self.emit(run, "thread.message.created", message)
        self.emit(run, "thread.message.in_progress", message)
        for index, piece in enumerate(_pieces(text)):
            block = {"index": 0, "type": "text", "text": {"value": piece}}
            if index == 0:
                block["text"]["annotations"] = []
            self.emit(run, "thread.message.delta",
                      {"id": message["id"], "object": "thread.message.delta", "delta": {"content": [block]}})

    def _fail(self, run_id: str, code: str, message: str) -> None:
        with self.store.transaction():
            if not self.claims.holds(run_id):
                return
            run = self.store.get("run", run_id)
            if run is None or run["status"] in TERMINAL:  # gone with its thread, or already over
                return
            if run["status"] == "cancelling":
                return self._cancelled(run)
            self._close_steps(run, "failed", "failed_at", "thread.run.step.failed")
            run = self._set(run, status="failed", failed_at=now(), expires_at=None, usage=self._usage(run),
                            required_action=None, last_error={"code": code, "message": message})
            self.emit(run, "thread.run.failed", run)
            self._pause(run)

    def _cancelled(self, run: dict[str, Any]) -> None:
        self._close_steps(run, "cancelled", "cancelled_at", "thread.run.step.cancelled")
        run = self._set(run, status="cancelled", cancelled_at=now(), expires_at=None, required_action=None,
                        usage=self._usage(run))
        self.emit(run, "thread.run.cancelled", run)
        self._pause(run)

    def expire(self, run_id: str) -> None:
        with self.store.transaction():
            run = self._run(run_id)
            if run["status"] not in ACTIVE:
                return
            self._close_steps(run, "expired", "expired_at", "thread.run.step.expired")
            run = self._set(run, status="expired", expires_at=None, required_action=None, usage=self._usage(run))
            self.emit(run, "thread.run.expired", run)
            self._pause(run)

    # -- expiry ---------------------------------------------------------------------------
    def _sweep_loop(self) -> None:
        while not self._stopping.wait(SWEEP_SECONDS):
            try:
                self.sweep()
            except Exception:  # never let the sweeper die (e.g. store closed during stop)
                if self._stopping.is_set():
                    return
                log.exception("run expiry sweep failed")

    def sweep(self) -> None:
        """Expire active runs whose ``expires_at`` has passed."""
        with self._guard:
            run_ids = list(self._active)
        for run_id in run_ids:
            run = self.store.get("run", run_id)
            if run is None or run["status"] in TERMINAL:
                with self._guard:
                    self._active.discard(run_id)
            elif run["expires_at"] is not None and run["expires_at"] <= now():
                self.expire(run_id)

    # -- store helpers --------------------------------------------------------------------
    def _run(self, run_id: str) -> dict[str, Any]:
        run = self.store.get("run", run_id)
        if run is None:
            raise EngineError(f"run {run_id} disappeared")
        return run

    def _set(self, run: dict[str, Any], **changes: Any) -> dict[str, Any]:
        run = {**run, **changes}
        return self.store.put("run", run, run["thread_id"])

    def _new_step(self, run: dict[str, Any], kind: str, details: dict[str, Any]) -> dict[str, Any]:
        step = {
            "id": new_id("step"), "object": "thread.run.step", "created_at": now(),
            "assistant_id": run["assistant_id"], "thread_id": run["thread_id"], "run_id": run["id"],
            "type": kind, "status": "in_progress", "step_details": details, "last_error": None,
            "expired_at": None, "cancelled_at": None, "failed_at": None, "completed_at": None,
            "metadata": {}, "usage": None,
        }
        self.store.insert("step", step, run["id"])
        self.emit(run, "thread.run.step.created", step)
        self.emit(run, "thread.run.step.in_progress", step)
        return step

    def _new_message(self, run: dict[str, Any]) -> dict[str, Any]:
        from asstctl.server.routes.messages import create_message

        return create_message(self.state, run["thread_id"], {"content": []}, run_id=run["id"],
                              assistant_id=run["assistant_id"], role="assistant", status="in_progress")

    def _pending_tool_step(self, run: dict[str, Any]) -> dict[str, Any] | None:
        steps = self.store.all("step", run["id"])
        if steps and steps[-1]["type"] == "tool_calls" and steps[-1]["status"] == "in_progress":
            return steps[-1]
        return None

    def _complete_tool_step(self, run: dict, step: dict, outputs: dict[str, str]) -> None:
        for call in step["step_details"]["tool_calls"]:
            if call["type"] == "function":
                call["function"]["output"] = outputs.get(call["id"])
        step.update(status="completed", completed_at=now(), usage=step.pop("_usage", None))
        self.store.put("step", step, run["id"])
        self.emit(run, "thread.run.step.completed", public(step))

    def _close_steps(self, run: dict, status: str, stamp: str, event: str) -> None:
        """Steps still in progress end with the run (their messages become incomplete)."""
        for step in self.store.all("step", run["id"]):
            if step["status"] != "in_progress":
                continue
            step.update(status=status, usage=step.pop("_usage", None), **{stamp: now()})
            self.store.put("step", step, run["id"])
            self.emit(run, event, step)

    def _usage(self, run: dict[str, Any]) -> dict[str, int]:
        total = Usage()
        for step in self.store.all("step", run["id"]):
            usage = step.get("usage") or {}
            total.prompt_tokens += usage.get("prompt_tokens", 0)
            total.completion_tokens += usage.get("completion_tokens", 0)
        return total.as_dict()


def public(obj: dict[str, Any]) -> dict[str, Any]:
    """An object without the executor's private bookkeeping keys (``_usage``)."""
    return {k: v for k, v in obj.items() if not k.startswith("_")}


def _within_limit(run: dict[str, Any], reply: EngineReply) -> tuple[str, bool]:
    """The reply text, cut to ``max_completion_tokens`` (≈4 characters a token) when it is longer."""
    text, limit = reply.text or "", run.get("max_completion_tokens")
    if limit is None or reply.usage.completion_tokens <= limit:
        return text, False
    reply.usage.completion_tokens = limit
    return text[: limit * 4], True


def _pieces(text: str) -> list[str]:
    """The text in delta-sized pieces (at least one, so every message gets a delta)."""
    return [text[i:i + DELTA_CHARS] for i in range(0, len(text), DELTA_CHARS)] or [""]
