"""A model call's tool calls: the ``tool_calls`` step, the built-in calls the server runs and what
follows them (the run goes on, pauses in ``requires_action`` for function calls, or stops).

Mixed into the run executor (:class:`ToolRounds`). Every store call of a round runs through
``store.call`` (a round of function calls only: one; with built-in calls: one to open the step and
read the assistant and thread, one per call to record its result with the run's book, one to close
the step), and the calls' progress deltas are published the same way, in order
(:class:`ProgressDeltas`), so the event loop never waits for the database while tools run.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from asstctl.server.http import now
from asstctl.server.runs import book as books
from asstctl.server.runs.builtin import run_builtin
from asstctl.server.runs.events import public
from asstctl.server.runs.writer import TurnWriter, call_details

log = logging.getLogger("asstctl.server.runs")


class ProgressDeltas:
    """A built-in call's ``thread.run.step.delta`` events, published off the loop (``store.call``) in the
    order the tool reported them: each waits for the one before it."""

    def __init__(self, executor, run: dict[str, Any]):
        self.ex, self.run = executor, run
        self.tasks: list[asyncio.Task] = []

    def send(self, data: dict[str, Any]) -> None:
        """On the loop: ``data`` is published after the deltas sent before it."""
        before = self.tasks[-1] if self.tasks else None
        self.tasks.append(asyncio.get_running_loop().create_task(self._publish(before, data)))

    async def _publish(self, before: asyncio.Task | None, data: dict[str, Any]) -> None:
        if before is not None:
            await asyncio.wait([before])
        await self.ex.store.call(self.ex.emit, self.run, "thread.run.step.delta", data)

    async def sent(self) -> None:
        """Every delta sent so far is published (the first failure raised)."""
        tasks, self.tasks = self.tasks, []
        for task in tasks:
            await task

    def stop(self) -> None:
        """The round ended early (cancel, failure): deltas not yet published are dropped."""
        for task in self.tasks:
            if not task.done():
                task.cancel()
            elif not task.cancelled():
                task.exception()  # retrieved: a failed publish of an abandoned round is not logged as lost
        self.tasks = []


class ToolRounds:
    """The executor's tool-call rounds (``self`` is the :class:`RunExecutor`)."""

    async def _tool_calls(self, run, book, writer: TurnWriter, offered, usage, end) -> dict[str, Any] | None:
        """The round after a model call that made tool calls: the run to call the model again for, or None."""
        if not writer.calls:  # a call that ignored tool_choice (``_choice_ignored``): asked again
            return run
        opened, result = await self.store.call(self._round_opened, run, writer, usage, end)
        if opened is None:
            return result
        step, details, assistant, thread = opened
        deltas = ProgressDeltas(self, run)
        try:
            for call in writer.builtin_calls():
                details[call["index"]] = await run_builtin(self, run, step, call, offered, book, assistant, thread,
                                                           deltas.send)
                await deltas.sent()
                await self.store.call(self._round_recorded, run, writer, details, usage, book)
        finally:
            deltas.stop()
        return await self.store.call(self._round_closed, run, writer)

    def _choice_ignored(self, run, book, writer: TurnWriter, turn) -> dict[str, Any] | None:
        """A call asked to call a tool (``tool_choice`` required or named) that answered text instead (llama.cpp
        ignores ``required``): its message and step fail and the model is asked again, once; the second time the
        run fails. The run (in the caller's transaction), or None: the call answered as it was asked."""
        choice = turn.request.tool_choice
        if not (choice == "required" or isinstance(choice, dict)) or writer.end.finish_reason == "length":
            return None
        wanted = "required" if choice == "required" else f"the function {choice['function']['name']}"
        error = (f"The upstream ignored tool_choice ({wanted}): the model {writer.end.model or run['model']} "
                 "answered with text, not a tool call")
        if book.get("choice_ignored"):
            log.warning("run %s failed: %s, asked twice", run["id"], error)
            self._end(run, "failed", failed_at=now(), last_error={
                "code": "server_error", "message": f"{error}, asked twice. Use a model or server that enforces "
                "tool_choice (llama.cpp enforces a named function), or tool_choice auto."})
            return self._run(run["id"])
        book["choice_ignored"] = 1
        books.save(self.store, book)
        writer.fail_message(error + "; asked once more")
        return run

    def _round_opened(self, run, writer: TurnWriter, usage, end) -> tuple[tuple | None, dict[str, Any] | None]:
        """The step with every call as it waits, in one transaction: ((step, details, assistant, thread) when
        built-in calls are to run, None) or (None, what the round ended with: ``_round_closed``'s result)."""
        with self.owned(run["id"]):
            if writer.message is not None and writer.message["status"] == "in_progress":
                writer.close_message("completed", usage=usage)  # text before the calls: kept, in this round
            details = [call_details(c) for c in writer.calls]
            step = writer.store_tool_step(details, usage)
            if end.finish_reason == "length":  # the calls' arguments are cut off: nothing to run
                return None, self._incomplete(run, "max_completion_tokens")
            if not writer.builtin_calls():
                return None, self._round_closed(run, writer)
            assistant = self.store.get("assistant", run["assistant_id"]) or {}
            thread = self.store.get("thread", run["thread_id"]) or {}
        return (step, details, assistant, thread), None

    def _round_recorded(self, run, writer: TurnWriter, details, usage, book) -> None:
        """A built-in call's result on the step and in the book, in one transaction."""
        with self.owned(run["id"]):
            writer.store_tool_step(details, usage)
            books.save(self.store, book)

    def _round_closed(self, run, writer: TurnWriter) -> dict[str, Any] | None:
        """Function calls pause the run; otherwise the step completes and the run goes on (None: it stopped)."""
        step, functions = writer.tool_step, writer.function_calls()
        with self.owned(run["id"]):
            run = self._run(run["id"])
            if run["status"] != "in_progress":
                return self._stopped(run)
            if functions:
                return self._require_action(run, functions)
            step.update(status="completed", completed_at=now(), usage=step.pop("_usage", None))
            self.store.put("step", step, run["id"])
            self.emit(run, "thread.run.step.completed", public(step))
        return run

    def _require_action(self, run: dict[str, Any], functions: list[dict[str, Any]]) -> None:
        calls = [{"id": c["id"], "type": "function", "function": {"name": c["name"], "arguments": c["arguments"]}}
                 for c in functions]
        required = {"type": "submit_tool_outputs", "submit_tool_outputs": {"tool_calls": calls}}
        run = self._set(run, status="requires_action", required_action=required)
        self.emit(run, "thread.run.requires_action", run)
        self._pause(run)

    def _pending_tool_step(self, run: dict[str, Any]) -> dict[str, Any] | None:
        steps = self.store.all("step", run["id"])
        if steps and steps[-1]["type"] == "tool_calls" and steps[-1]["status"] == "in_progress":
            return steps[-1]
        return None

    def _complete_tool_step(self, run: dict, step: dict, outputs: dict[str, str]) -> None:
        for call in step["step_details"]["tool_calls"]:
            if call["type"] == "function":
                call["function"]["output"] = outputs.get(call["id"], call["function"].get("output"))  # (undeclared: its error)
        step.update(status="completed", completed_at=now(), usage=step.pop("_usage", None))
        self.store.put("step", step, run["id"])
        self.emit(run, "thread.run.step.completed", public(step))
