"""A turn's Chat Completions request: messages, offered tools, tool_choice, truncation.

``build_turn`` turns the stored run, its thread and its earlier tool rounds into the
``EngineRequest`` of the next model call:

- the system message is the run's resolved instructions (``developer`` role for o-series models);
- the thread's messages from before the run follow in order, with their roles; ``image_url`` and
  ``image_file`` parts become image parts (an ``image_file`` as a ``data:`` URL of the file);
- then, per earlier model call of this run, the assistant message (its text and its ``tool_calls``
  with the call ids the engine gave) and one ``tool`` message per output. Tool outputs are never
  sent as user text.

Truncation drops the oldest thread messages (never the system message or this run's rounds):
``last_messages: N`` keeps the last N, and the whole prompt must fit ``max_prompt_tokens`` and the
model's context window (less the completion budget).
"""

from __future__ import annotations

import base64
import logging
import mimetypes
import re
from dataclasses import dataclass, field
from typing import Any

from asstctl.server.engine.base import EngineRequest, message_text
from asstctl.server.runs import tokens

log = logging.getLogger("asstctl.server.runs")

O_SERIES = re.compile(r"^o\d")  # o1, o1-mini, o3, o3-mini, o4-mini, ...
BUILTIN_TYPES = ("file_search", "code_interpreter")


class PromptTooLong(Exception):
    """Even the newest message does not fit: ``reason`` is ``max_prompt_tokens`` or ``context``."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass
class Offered:
    """The built-in tools offered this turn: function name -> (type, run tool entry, instance)."""

    by_name: dict[str, tuple[str, dict[str, Any], Any]] = field(default_factory=dict)

    def name_of(self, type: str) -> str | None:
        return next((name for name, (t, _, _) in self.by_name.items() if t == type), None)


def offer_builtins(state, run_tools: list[dict[str, Any]]) -> tuple[Offered, list[dict[str, Any]]]:
    """The attached built-in tools the server can run, and their Chat Completions definitions.

    A tool whose module is missing or fails to load is simply not offered (an attached but
    unavailable tool never fails a run); a function of the run with the same name wins.
    """
    from asstctl.server.tools import builtin_tool

    offered, definitions = Offered(), []
    functions = {t["function"]["name"] for t in run_tools if t.get("type") == "function"}
    for tool in run_tools:
        if tool.get("type") not in BUILTIN_TYPES or offered.name_of(tool["type"]):
            continue
        try:
            instance = builtin_tool(state, tool["type"])
            definition = instance.definition(tool)
        except Exception as exc:  # not installed on this server, or broken: not offered
            log.debug("built-in tool %s not offered: %s", tool["type"], exc)
            continue
        name = definition["function"]["name"]
        if name in functions:
            continue
        offered.by_name[name] = (tool["type"], tool, instance)
        definitions.append(definition)
    return offered, definitions


def function_definitions(run_tools: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The run's function tools in Chat Completions form."""
    result = []
    for tool in run_tools:
        if tool.get("type") == "function":
            function = {k: v for k, v in tool["function"].items() if v is not None}
            result.append({"type": "function", "function": function})
    return result


def map_tool_choice(choice: Any, offered: Offered, has_tools: bool, after_tools: bool = False) -> Any:
    """The run's ``tool_choice`` in Chat Completions form (None: not sent).

    ``required`` and a named tool force the run's first tool round only: once the model called
    tools, later calls get ``auto`` (else a forced tool would be called again and again)."""
    if not has_tools or choice is None:
        return None
    if after_tools and choice != "none":
        return "auto"
    if isinstance(choice, str):
        return choice
    if choice.get("type") == "function":
        return {"type": "function", "function": {"name": choice["function"]["name"]}}
    name = offered.name_of(choice.get("type", ""))
    return {"type": "function", "function": {"name": name}} if name else "auto"


def system_message(run: dict[str, Any]) -> list[dict[str, Any]]:
    instructions = run.get("instructions") or ""
    if not instructions:
        return []
    role = "developer" if O_SERIES.match(run.get("model") or "") else "system"
    return [{"role": role, "content": instructions}]


def chat_message(store, message: dict[str, Any]) -> dict[str, Any]:
    """A stored thread message as a Chat Completions message."""
    role = message.get("role", "user")
    parts: list[dict[str, Any]] = []
    for block in message.get("content") or []:
        kind = block.get("type")
        if kind == "text":
            parts.append({"type": "text", "text": block["text"]["value"]})
        elif kind in ("image_url", "image_file") and role == "user":
            parts.append(_image_part(store, block))
    if all(p["type"] == "text" for p in parts):
        return {"role": role, "content": "\n".join(p["text"] for p in parts)}
    return {"role": role, "content": parts}


def _image_part(store, block: dict[str, Any]) -> dict[str, Any]:
    if block["type"] == "image_url":
        image = {"url": block["image_url"]["url"]}
    else:
        file_id = block["image_file"]["file_id"]
        chunks, meta = store.read_blob(file_id), store.get("file", file_id, "")
        data = b"".join(chunks) if chunks is not None else None
        if data is None:
            return {"type": "text", "text": f"[image {file_id} is no longer available]"}
        mime = mimetypes.guess_type((meta or {}).get("filename") or "")[0] or "image/png"
        image = {"url": f"data:{mime};base64,{base64.b64encode(data).decode()}"}
    detail = block[block["type"]].get("detail")
    if detail:
        image["detail"] = detail
    return {"type": "image_url", "image_url": image}


# -- this run's earlier rounds -----------------------------------------------------------------
def run_rounds(store, run: dict[str, Any], book: dict[str, Any]) -> tuple[list[dict[str, Any]], list[dict]]:
    """Chat messages for this run's earlier model calls, and the last call's tool results."""
    groups: dict[int, list[dict[str, Any]]] = {}
    for step in store.all("step", run["id"]):
        if step["status"] == "failed":  # a call that ignored tool_choice (rounds.py): not part of the turn
            continue
        groups.setdefault(book["steps"].get(step["id"], 0), []).append(step)
    chat: list[dict[str, Any]] = []
    results: list[dict[str, Any]] = []
    for number in sorted(groups):
        message, results = _round(store, run, groups[number], book)
        chat.extend(message)
    return chat, results


def _round(store, run, steps, book) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    text, calls, results = None, [], []
    for step in steps:
        details = step["step_details"]
        if step["type"] == "message_creation":
            stored = store.get("message", details["message_creation"]["message_id"], run["thread_id"])
            text = message_text(stored) if stored else ""
            continue
        for call in details["tool_calls"]:
            name, arguments, output = _call_parts(call, book)
            calls.append({"id": call["id"], "type": "function", "function": {"name": name, "arguments": arguments}})
            results.append({"call_id": call["id"], "name": name, "arguments": arguments, "output": output or ""})
    assistant: dict[str, Any] = {"role": "assistant", "content": text}
    if calls:
        assistant["tool_calls"] = calls
    elif text is None:
        return [], []
    tool_messages = [{"role": "tool", "tool_call_id": r["call_id"], "content": r["output"]} for r in results]
    return [assistant, *tool_messages], results


def _call_parts(call: dict[str, Any], book: dict[str, Any]) -> tuple[str, str, str | None]:
    if call["type"] == "function":
        function = call["function"]
        return function["name"], function.get("arguments") or "", function.get("output")
    record = book["builtin"].get(call["id"]) or {}
    return record.get("name", call["type"]), record.get("arguments", "{}"), record.get("output", "")


# -- the whole request ------------------------------------------------------------------------
@dataclass
class Turn:
    request: EngineRequest
    offered: Offered
    prompt_tokens: int  # our count of the prompt (exact or estimated, see tokens.py)


def turn_reads(run: dict[str, Any]) -> list[tuple]:
    """The store reads ``build_turn`` makes for ``run`` (``store.read_ahead``: one round trip)."""
    return [("get", "assistant", run["assistant_id"], None), ("all", "message", run["thread_id"]),
            ("all", "step", run["id"])]


def build_turn(state, run: dict[str, Any], book: dict[str, Any], completion_left: int | None) -> Turn:
    """The next model call's request; raises :class:`PromptTooLong` when nothing fits."""
    store = state.store
    assistant = store.get("assistant", run["assistant_id"]) or {"id": run["assistant_id"], "name": None}
    history = [m for m in store.all("message", run["thread_id"]) if m.get("run_id") != run["id"]]
    rounds, results = run_rounds(store, run, book)
    offered, builtin_defs = offer_builtins(state, run["tools"])
    tools = function_definitions(run["tools"]) + builtin_defs
    system = system_message(run)
    kept, chat, count = _truncate(state, run, history, system, rounds, tools, completion_left)
    request = EngineRequest(
        assistant=assistant, model=run["model"], instructions=run["instructions"] or "", tools=run["tools"],
        messages=kept, tool_results=results, temperature=run.get("temperature"), top_p=run.get("top_p"),
        response_format=run.get("response_format") or "auto", run=run, chat=chat, offered_tools=tools,
        tool_choice=map_tool_choice(run.get("tool_choice"), offered, bool(tools),
                                    any(m.get("tool_calls") for m in rounds)),
        parallel_tool_calls=run.get("parallel_tool_calls") is not False,
        max_completion_tokens=completion_left, reasoning_effort=run.get("reasoning_effort"),
    )
    return Turn(request, offered, count)


def _truncate(state, run, history, system, rounds, tools, completion_left):
    """(kept thread messages, the chat, its token count) within the run's limits."""
    strategy = run.get("truncation_strategy") or {}
    if strategy.get("type") == "last_messages" and strategy.get("last_messages"):
        history = history[-strategy["last_messages"]:]
    count = tokens.counter(run["model"])
    converted = [chat_message(state.store, m) for m in history]
    window = tokens.context_window(run["model"], getattr(state.config, "context_windows", None))
    window_budget = window - (completion_left or 0)
    limit = run.get("max_prompt_tokens")
    budget = min(window_budget, limit) if limit else window_budget
    fixed = tokens.prompt_tokens(system + rounds, tools, count)
    sizes = [tokens.message_tokens(m, count) for m in converted]
    total, start = fixed + sum(sizes), 0
    while total > budget and start < len(sizes):
        total -= sizes[start]
        start += 1
    if total > budget or (start == len(sizes) and sizes):
        raise _too_long(run, limit, budget, window, fixed + (sizes[-1] if sizes else 0))
    return history[start:], system + converted[start:] + rounds, total


def _too_long(run, limit, budget, window, needed) -> PromptTooLong:
    if limit and budget == limit:
        return PromptTooLong("max_prompt_tokens", f"The prompt needs at least {needed} tokens; "
                             f"max_prompt_tokens is {limit}.")
    return PromptTooLong("context", f"The prompt needs at least {needed} tokens, more than the context window "
                         f"of {run['model']} ({window} tokens) allows. Shorten the newest message or the "
                         "instructions, or set context_windows for this model in the server config.")

