"""One model call's streamed reply written into the run: message, steps and delta events.

The first :class:`TextDelta` creates the ``message_creation`` step and its in-progress message;
each delta is emitted as a ``thread.message.delta`` as it arrives, and the message text in the
store follows at most every ``WRITE_SECONDS`` (and always at the end), so polling clients see it
grow (with many runs streaming at once the interval grows, ``WRITE_SECONDS_PER_RUN`` per
streaming run, and with the message's length, ``WRITE_CHARS_PER_SECOND``, so store writes stay
bounded). The first :class:`ToolCallDelta` of a call creates the ``tool_calls`` step (closing the
message, if the model wrote text first) and every fragment becomes a ``thread.run.step.delta``;
the first fragment of a call carries its id (the engine's, else a new ``call_...``), type and
name. With ``parallel_tool_calls: false`` only the model's first call is kept. A call of a function the
run does not declare (nor an enabled built-in tool) never reaches the client: it is answered to the
model as a tool error naming the tools there are, and the turn goes on (another model call, counted). The code of a
``code_interpreter`` call streams as it is generated: the ``code`` string of its arguments is decoded
fragment by fragment and each new piece becomes a ``code_interpreter.input`` step delta.

The reply is never above the call's completion budget (the run's ``max_completion_tokens`` less what
its earlier calls used): an upstream that ignores ``max_tokens`` is counted here (``tokens.counter``,
checked as the text grows), and once the text passes the budget it is cut there and the call ends with
``finish_reason: length`` (the run ends ``incomplete``, ``max_completion_tokens``); the executor then
stops reading the upstream.
"""

from __future__ import annotations

import time
from typing import Any

from asstctl.server.engine.base import TextDelta, ToolCallDelta, TurnEnd, Usage
from asstctl.server.http import new_id, now
from asstctl.server.runs import book as books
from asstctl.server.runs import tokens
from asstctl.server.runs.events import public
from asstctl.server.runs.partial_json import string_value

WRITE_SECONDS = 0.05
WRITE_SECONDS_PER_RUN = 0.002  # 500 runs streaming at once: each message written about once a second
WRITE_CHARS_PER_SECOND = 1_000_000  # a long message is rewritten less often: at most ~this many characters a second


def text_content(text: str, annotations: list | None = None) -> list[dict[str, Any]]:
    return [{"type": "text", "text": {"value": text, "annotations": annotations or []}}]


class TurnWriter:
    def __init__(self, executor, run: dict[str, Any], book: dict[str, Any], offered, parallel: bool):
        self.ex, self.run, self.book, self.call_no = executor, run, book, book["calls"]
        self.offered, self.parallel = offered, parallel
        self.declared = [t["function"]["name"] for t in run.get("tools") or [] if t.get("type") == "function"]
        self.declared += [name for name in offered.by_name if name not in self.declared]  # enabled built-ins
        self.message: dict[str, Any] | None = None
        self.message_step: dict[str, Any] | None = None
        self._parts: list[str] = []  # the text so far, joined when read (appending to one long str copies it)
        self._length = 0
        self.deltas = 0
        self._written_at = 0.0
        self.tool_step: dict[str, Any] | None = None
        self.calls: list[dict[str, Any]] = []  # {index, id, name, arguments, type}
        self._by_index: dict[int, dict[str, Any]] = {}
        self.end: TurnEnd | None = None
        self.budget = _budget(run, book)  # completion tokens this call may use (None: no cap)
        self._count = tokens.counter(run.get("model") or "")
        self._check_at = 0  # the text length at which it is counted next
        self.cut = False  # the text reached the budget: the rest of the upstream's reply is not read

    @property
    def text(self) -> str:
        if len(self._parts) > 1:
            self._parts = ["".join(self._parts)]
        return self._parts[0] if self._parts else ""

    # -- events ---------------------------------------------------------------------------
    def feed(self, event: Any) -> None:
        if self.end is not None:
            return  # nothing counts after the turn's end
        if isinstance(event, TextDelta):
            self._text(event.text)
        elif isinstance(event, ToolCallDelta):
            self._call(event)
        elif isinstance(event, TurnEnd):
            self.end = event

    def feed_all(self, events: list[Any]) -> None:
        for event in events:
            self.feed(event)

    def _text(self, text: str) -> None:
        if self.message is None:
            if self.tool_step is not None and not text:
                return
            self._open_message()
        elif not text:
            return
        if self.budget is not None and self._length + len(text) >= self._check_at:
            text = self._within_budget(text)
        self._parts.append(text)
        self._length += len(text)
        block: dict[str, Any] = {"index": 0, "type": "text", "text": {"value": text}}
        if self.deltas == 0:
            block["text"]["annotations"] = []
        self.deltas += 1
        self.ex.emit(self.run, "thread.message.delta",
                     {"id": self.message["id"], "object": "thread.message.delta", "delta": {"content": [block]}})
        interval = max(WRITE_SECONDS, WRITE_SECONDS_PER_RUN * self.ex.streaming_runs(),
                       self._length / WRITE_CHARS_PER_SECOND)
        if time.monotonic() - self._written_at >= interval:
            self.flush()

    def _within_budget(self, text: str) -> str:
        """``text`` (the next delta), cut where the whole text reaches the budget (then the turn ends)."""
        whole = self.text + text
        used = self._count(whole)
        if used <= self.budget:
            self._check_at = len(whole) + max(1, self.budget - used)  # (a token is at least one character)
            return text
        kept = tokens.first_tokens(whole, self.budget, self.run.get("model") or "")
        self.end = TurnEnd("length", Usage(), None)  # usage: estimated_usage, the budget at most
        self.cut = True
        return kept[self._length:]

    def _call(self, delta: ToolCallDelta) -> None:
        entry = self._by_index.get(delta.index)
        if entry is None:
            if self.calls and not self.parallel:
                return  # parallel_tool_calls: false -> the first call only
            entry = self._open_call(delta)
        else:
            entry["arguments"] += delta.arguments
            if entry["type"] == "function" and delta.arguments:
                self._step_delta({"index": entry["index"], "type": "function", "function": {"arguments": delta.arguments}})
        if entry["type"] == "code_interpreter" and delta.arguments:
            self._code_input(entry)

    def _code_input(self, entry: dict[str, Any]) -> None:
        """The new part of the code the model is writing, as a ``code_interpreter.input`` delta."""
        code = string_value(entry["arguments"], "code")
        streamed = entry.setdefault("streamed_input", "")
        if code and len(code) > len(streamed) and code.startswith(streamed):
            entry["streamed_input"] = code
            self._step_delta({"index": entry["index"], "type": "code_interpreter",
                              "code_interpreter": {"input": code[len(streamed):]}})

    def _open_call(self, delta: ToolCallDelta) -> dict[str, Any]:
        if self.message is not None:
            self.close_message("completed")
        if self.tool_step is None:
            self.tool_step = self.ex.new_step(self.run, "tool_calls", {"type": "tool_calls", "tool_calls": []})
            self._note(self.tool_step)
        name = delta.name or ""
        builtin = self.offered.by_name.get(name)
        entry = {"index": len(self.calls), "id": delta.id or new_id("call"), "name": name,
                 "arguments": delta.arguments, "type": builtin[0] if builtin else "function"}
        if not builtin and name not in self.declared:  # answered to the model, never asked of the client
            entry["error"] = (f"Error: there is no tool named {name!r}; the tools are: "
                              f"{', '.join(self.declared) or 'none'}.")
        self.calls.append(entry)
        self._by_index[delta.index] = entry
        if builtin:
            fragment = {"index": entry["index"], "id": entry["id"], "type": entry["type"], entry["type"]: {}}
        else:
            fragment = {"index": entry["index"], "id": entry["id"], "type": "function",
                        "function": {"name": name, "arguments": delta.arguments, "output": None}}
        self._step_delta(fragment)
        return entry

    def _step_delta(self, fragment: dict[str, Any]) -> None:
        delta = {"step_details": {"type": "tool_calls", "tool_calls": [fragment]}}
        self.ex.emit(self.run, "thread.run.step.delta",
                     {"id": self.tool_step["id"], "object": "thread.run.step.delta", "delta": delta})

    # -- the message ----------------------------------------------------------------------
    def _open_message(self) -> None:
        created = now()
        self.message = {
            "id": new_id("message"), "object": "thread.message", "created_at": created,
            "thread_id": self.run["thread_id"], "status": "in_progress", "incomplete_details": None,
            "completed_at": None, "incomplete_at": None, "role": "assistant", "content": [],
            "assistant_id": self.run["assistant_id"], "run_id": self.run["id"], "attachments": [], "metadata": {},
        }
        details = {"type": "message_creation", "message_creation": {"message_id": self.message["id"]}}
        with self.ex.owned(self.run["id"]):  # nothing of a turn whose run went to another replica
            self.ex.store.insert("message", self.message, self.run["thread_id"])
            self.message_step = self.ex.new_step(self.run, "message_creation", details)
            self._note(self.message_step)
            self.ex.emit(self.run, "thread.message.created", self.message)  # written with the commit
            self.ex.emit(self.run, "thread.message.in_progress", self.message)

    def _note(self, step: dict[str, Any]) -> None:
        """The book learns at once which call made the step (a restart discards an interrupted call's steps)."""
        self.book["steps"][step["id"]] = self.call_no
        with self.ex.owned(self.run["id"]):
            books.save(self.ex.store, self.book)

    def flush(self) -> None:
        """The text so far into the store (polling clients see the message grow)."""
        if self.message is not None and self.message["status"] == "in_progress":
            self.message["content"] = text_content(self.text)
            self.ex.store.put("message", self.message, self.run["thread_id"])
            self._written_at = time.monotonic()

    def ensure_message(self) -> None:
        """A turn that said nothing still gets its (empty) message, with one delta."""
        if self.message is None:
            self._open_message()
        if self.deltas == 0:
            self._text("")

    def close_message(self, status: str, content: list | None = None, attachments: list | None = None,
                      usage: dict | None = None) -> None:
        """Finish the message (``completed`` or ``incomplete`` at max_tokens) and its step."""
        message, step, at = self.message, self.message_step, now()
        message["content"] = content if content is not None else text_content(self.text)
        if attachments:
            message["attachments"] = attachments
        if status == "incomplete":
            message.update(status="incomplete", incomplete_at=at, incomplete_details={"reason": "max_tokens"})
        else:
            message.update(status="completed", completed_at=at)
        self.ex.store.put("message", message, self.run["thread_id"])
        self.ex.emit(self.run, f"thread.message.{status}", message)
        step.update(status="completed", completed_at=at, usage=usage)
        self.ex.store.put("step", step, self.run["id"])
        self.ex.emit(self.run, "thread.run.step.completed", public(step))

    def fail_message(self, error: str) -> None:
        """This call's answer is not part of the turn (``rounds._choice_ignored``): its message ends
        ``incomplete`` and its step ``failed`` with ``error``."""
        self.ensure_message()
        message, step, at = self.message, self.message_step, now()
        message.update(content=text_content(self.text), status="incomplete", incomplete_at=at,
                       incomplete_details={"reason": "run_failed"})
        self.ex.store.put("message", message, self.run["thread_id"])
        self.ex.emit(self.run, "thread.message.incomplete", message)
        step.update(status="failed", failed_at=at, last_error={"code": "server_error", "message": error})
        self.ex.store.put("step", step, self.run["id"])
        self.ex.emit(self.run, "thread.run.step.failed", public(step))

    # -- the tool calls -------------------------------------------------------------------
    def function_calls(self) -> list[dict[str, Any]]:
        """The calls the client answers (a call of a function the run does not declare is answered here)."""
        return [c for c in self.calls if c["type"] == "function" and "error" not in c]

    def builtin_calls(self) -> list[dict[str, Any]]:
        return [c for c in self.calls if c["type"] != "function"]

    def store_tool_step(self, details: list[dict[str, Any]], usage: dict | None) -> dict[str, Any]:
        step = self.tool_step
        step["step_details"]["tool_calls"] = details
        step["_usage"] = usage
        self.ex.store.put("step", step, self.run["id"])
        return step


def _budget(run: dict[str, Any], book: dict[str, Any]) -> int | None:
    if not run.get("max_completion_tokens"):
        return None
    return max(0, run["max_completion_tokens"] - book["usage"]["completion_tokens"])


def estimated_usage(turn, writer: TurnWriter) -> Usage:
    """For an engine that reports no usage (some local servers ignore ``include_usage``): our count of
    the prompt and the reply (exact where a tokenizer is installed, with the tokenizer of the model the
    upstream was sent, after --model-map), the reply never above what the call was allowed."""
    request = turn.request
    sent = writer.end.model or request.model
    count = tokens.counter(sent)
    completion = count(writer.text) + sum(count(c["name"]) + count(c["arguments"]) for c in writer.calls)
    prompt = turn.prompt_tokens if sent == request.model else tokens.prompt_tokens(request.chat, request.offered_tools,
                                                                                      count)
    cap = request.max_completion_tokens
    return Usage(prompt, min(completion, cap) if cap is not None else completion)


def call_details(call: dict[str, Any]) -> dict[str, Any]:
    """A call of the model as a ``tool_calls`` step shows it while it waits (output None or empty; a call of a
    function the run does not declare: its error, as the model is told)."""
    if call["type"] == "function":
        return {"id": call["id"], "type": "function",
                "function": {"name": call["name"], "arguments": call["arguments"], "output": call.get("error")}}
    body = {"input": "", "outputs": []} if call["type"] == "code_interpreter" else {}
    return {"id": call["id"], "type": call["type"], call["type"]: body}
