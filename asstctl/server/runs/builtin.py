"""Built-in tool calls inside a run, and what they give the run's final message.

When the model calls the function offered for an attached built-in tool, the executor awaits
``tool.run(ctx, arguments)`` (``asstctl.server.tools.base``) itself: ``ctx.progress`` fragments
become ``thread.run.step.delta`` events (less the code input the writer already streamed while the
model wrote it), the outcome's ``call`` is the step's tool call, its
``output`` the ``tool`` message the model reads next. The outcome's citation sources, images and
written files are kept in the run's book until the final message: each source's marker found in
the text becomes a ``file_citation`` annotation, each image an ``image_file`` content part, each
written file a ``file_path`` annotation where the text mentions ``sandbox:<path>`` (else a
message attachment).
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import threading
from typing import Any, Callable

from asstctl.server.engine.base import EngineError
from asstctl.server.engine.limits import clean_text

log = logging.getLogger("asstctl.server.runs")


async def run_builtin(executor, run: dict[str, Any], step: dict[str, Any], call: dict[str, Any], offered,
                      book: dict[str, Any], assistant: dict[str, Any], thread: dict[str, Any],
                      send: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    """Run one built-in call; returns its step tool call. Raises EngineError when the run cannot go on.
    ``send`` publishes a step delta (called on the loop: ``rounds.ProgressDeltas.send``)."""
    from asstctl.server.tools.base import ToolContext, ToolError

    type_, tool, instance = offered.by_name[call["name"]]
    ctx = ToolContext(state=executor.state, run=run, assistant=assistant, thread=thread, call_id=call["id"],
                      tool=tool, include=tuple(book["include"]), progress=_progress(step, call, send))
    try:
        arguments = lenient_object(call["arguments"])
    except ValueError as exc:
        return _record(book, call, _empty_call(call, type_), f"Error: the arguments are not a JSON object ({exc}).")
    rule_code = getattr(executor.engine, "rule_code", None)  # the offline engine's own `code:` rules
    ctx.code_from_rules = type_ == "code_interpreter" and callable(rule_code) and arguments.get("code") in rule_code()
    try:
        outcome = await instance.run(ctx, arguments)
    except ToolError as exc:
        raise EngineError(exc.message, exc.code) from exc
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        log.exception("built-in tool %s failed on run %s", type_, run["id"])
        raise EngineError(f"The {type_} tool failed: {type(exc).__name__}: {exc}") from exc
    book["sources"].extend({"marker": s.marker, "file_id": s.file_id, "filename": s.filename, "quote": s.quote}
                           for s in outcome.sources)
    book["images"].extend(outcome.image_file_ids)
    book["written"].extend([path, file_id] for path, file_id in outcome.written_files)
    return _record(book, call, {**outcome.call, "id": call["id"]}, outcome.output)


def _record(book, call, step_call, output) -> dict[str, Any]:
    book["builtin"][call["id"]] = {"name": call["name"], "arguments": call["arguments"], "output": output}
    return step_call


def lenient_object(text: str | None) -> dict[str, Any]:
    """A tool call's arguments as small models write them: a JSON object, possibly with raw newlines
    or tabs inside its strings, in a code fence, or followed by more text. ValueError otherwise. Lone
    surrogates (a ``\\ud800`` escape) in its strings become U+FFFD (``limits.clean_text``)."""
    text = (text or "").strip() or "{}"
    fenced = _FENCE.match(text)
    if fenced:
        text = fenced.group(1).strip()
    decoder = json.JSONDecoder(strict=False)  # control characters inside strings are taken as they are
    start = text.find("{")
    if start < 0:
        raise ValueError("expected a JSON object")
    value, _ = decoder.raw_decode(text, start)  # trailing text after the object is ignored
    if not isinstance(value, dict):
        raise ValueError("expected a JSON object")
    return _cleaned(value)


def _cleaned(value: Any) -> Any:
    """``value`` (decoded JSON) with every string, keys included, through ``clean_text``."""
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, dict):
        return {clean_text(k): _cleaned(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_cleaned(v) for v in value]
    return value


_FENCE = re.compile(r"^```[\w-]*\s*\n?(.*?)\n?```", re.S)


def _empty_call(call: dict[str, Any], type_: str) -> dict[str, Any]:
    body = {"input": call.get("streamed_input") or "", "outputs": []} if type_ == "code_interpreter" else {}
    return {"id": call["id"], "type": type_, type_: body}


def _progress(step, call, send):
    loop, thread = asyncio.get_running_loop(), threading.get_ident()

    def emit(fragment: dict[str, Any]) -> None:
        fragment = _unstreamed(fragment, call.get("streamed_input") or "")
        if fragment is None:
            return
        part = {"index": call["index"], "id": call["id"], "type": call["type"], **fragment}
        data = {"id": step["id"], "object": "thread.run.step.delta",
                "delta": {"step_details": {"type": "tool_calls", "tool_calls": [part]}}}
        if threading.get_ident() == thread:
            send(data)
        else:
            loop.call_soon_threadsafe(send, data)

    return emit


def _unstreamed(fragment: dict[str, Any], streamed: str) -> dict[str, Any] | None:
    """The fragment without the code input the client already saw as the model wrote it (None: nothing left)."""
    body = fragment.get("code_interpreter")
    if not streamed or not isinstance(body, dict) or not isinstance(body.get("input"), str):
        return fragment
    code = body["input"]
    rest = code[len(streamed):] if code.startswith(streamed) else code
    body = {k: v for k, v in body.items() if k != "input"} | ({"input": rest} if rest else {})
    return {**fragment, "code_interpreter": body} if body else None


# -- the final message ---------------------------------------------------------------------------
def final_content(text: str, book: dict[str, Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(content blocks, attachments) of the run's final message, with the built-in tools' gains."""
    annotations = _citations(text, book["sources"])
    attachments = []
    for path, file_id in book["written"]:
        found = _file_paths(text, path, file_id)
        annotations.extend(found)
        if not found:
            attachments.append({"file_id": file_id, "tools": [{"type": "code_interpreter"}]})
    annotations.sort(key=lambda a: a["start_index"])
    content = [{"type": "text", "text": {"value": text, "annotations": annotations}}]
    content += [{"type": "image_file", "image_file": {"file_id": file_id}} for file_id in book["images"]]
    return content, attachments


def _occurrences(text: str, needle: str) -> list[int]:
    found, start = [], text.find(needle) if needle else -1
    while start >= 0:
        found.append(start)
        start = text.find(needle, start + len(needle))
    return found


def _citations(text: str, sources: list[dict[str, Any]]) -> list[dict[str, Any]]:
    seen, result = set(), []
    for source in sources:
        marker = source["marker"]
        if marker in seen:
            continue
        seen.add(marker)
        for start in _occurrences(text, marker):
            result.append({"type": "file_citation", "text": marker, "start_index": start,
                           "end_index": start + len(marker), "file_citation": {"file_id": source["file_id"]}})
    return result


def _file_paths(text: str, path: str, file_id: str) -> list[dict[str, Any]]:
    link = path if path.startswith("sandbox:") else f"sandbox:{path}"
    return [{"type": "file_path", "text": link, "start_index": start, "end_index": start + len(link),
             "file_path": {"file_id": file_id}} for start in _occurrences(text, link)]


def extra_deltas(message_id: str, content: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Message deltas announcing the final message's annotations and image parts."""
    deltas = []
    annotations = content[0]["text"]["annotations"]
    if annotations:
        parts = [{"index": i, **a} for i, a in enumerate(annotations)]
        block = {"index": 0, "type": "text", "text": {"value": "", "annotations": parts}}
        deltas.append(block)
    for index, part in enumerate(content[1:], start=1):
        deltas.append({"index": index, **part})
    return [{"id": message_id, "object": "thread.message.delta", "delta": {"content": [d]}} for d in deltas]
