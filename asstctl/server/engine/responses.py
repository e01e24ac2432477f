"""The Responses API upstream: each turn of a run as one streamed ``POST .../responses``.

Chosen with ``asstctl serve --upstream-api responses`` or ``engine.api: responses``. The engine is
the Chat Completions engine (``upstream.py``: the same HTTP client, retries, error messages, key
scrubbing, cancel) with another request body and another stream reader:

- the request (``CreateResponse``): ``store: false``, ``stream: true``; the executor's system or
  developer message becomes ``instructions``; thread messages become input messages; each earlier
  tool round of the run becomes its ``function_call`` items (with the model's ``call_id``) and one
  ``function_call_output`` per output; the run's functions and the built-in tools the server runs
  (file_search, code_interpreter) are offered as function tools, as on Chat Completions;
  ``max_output_tokens`` is what is left of the run's budget (at least 16, the API's minimum);
- reasoning models (``o1``, ``o3``, ``o4-mini``, ``gpt-5``...) get ``reasoning.effort`` and
  ``include: ["reasoning.encrypted_content"]``; the reasoning items of a round that called tools are
  kept (:class:`Carried`, in memory, bounded) and sent again before that round's calls in the run's
  next model calls, so the model keeps its reasoning across the tool rounds of one run;
- the stream (``ResponseStreamEvent``): ``response.output_text.delta`` and
  ``response.refusal.delta`` become ``TextDelta``; a ``function_call`` item and its
  ``response.function_call_arguments.delta`` events become ``ToolCallDelta``; ``response.completed``
  ends the turn with the usage, ``response.incomplete`` (``max_output_tokens``) with
  ``finish_reason: length`` (the run ends ``incomplete``), ``response.failed`` and ``error`` fail
  it like an error chunk on Chat Completions. A stream without one of these is a failed turn. A 200
  whose body is the finished ``Response`` as JSON (a server that ignores ``stream``) is read as the
  events it amounts to (:func:`response_lines`), and so is the output of a ``response.completed``
  (or ``.incomplete``) that comes after no output events at all.

The dialects of Chat Completions servers (``dialects.py``) are not learned here: the request goes
as built. Everything else is the Chat Completions engine's: retry once of a stream that ended
unfinished before anything was shown, the idle and whole-turn limits, the reply cap, the coalescing
of floods, the key scrubbed before an error is cut (``limits.py``).

Imports ``base``, ``dialects``, ``limits`` and ``upstream`` of this package.
"""

from __future__ import annotations

import json
import re
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Callable

from asstctl.server.engine.base import EngineEvent, EngineRequest, TextDelta, ToolCallDelta, TurnEnd, Usage
from asstctl.server.engine.dialects import Dialect
from asstctl.server.engine.limits import clean_text, scrub_cut
from asstctl.server.engine.upstream import UpstreamEngine, is_reasoning_model

MIN_OUTPUT_TOKENS = 16  # the Responses API refuses a smaller max_output_tokens
ENCRYPTED_REASONING = "reasoning.encrypted_content"
CARRY_ROUNDS = 2048  # tool rounds whose reasoning is kept (the oldest go first)
CARRY_SECONDS = 3600.0  # a round's reasoning is dropped after this (a run waiting that long for outputs)
CARRY_ROUND_BYTES = 1 << 20  # reasoning of one round larger than this is not kept (the model starts afresh)
CARRY_BYTES = 64 << 20  # reasoning kept for all runs together


class ResponsesEngine(UpstreamEngine):
    """A streaming engine on an upstream's Responses API (``base.StreamingEngine``)."""

    endpoint = "Responses API"
    learns = False  # Chat Completions dialects do not apply to a Responses body

    def __init__(self, config, **options):
        super().__init__(config, **options)
        self.carried = Carried()

    def __repr__(self) -> str:  # never the key
        return f"ResponsesEngine({self.config.host})"

    def _body(self, request: EngineRequest, model: str) -> dict[str, Any]:
        sent = self.config.deployment(model) if self.config.is_azure else model
        return response_body(request, sent, self.carried.lookup(_run_id(request)), reasoning=is_reasoning_model(model))

    def _shape(self, canonical: dict[str, Any], dialect: Dialect, reasoning: bool) -> dict[str, Any]:
        return canonical  # sent as built (dialects.shape reads Chat Completions messages)

    def _parser(self, request: EngineRequest) -> "ResponseParser":
        return ResponseParser(request.max_completion_tokens, lambda round: self.carried.keep(_run_id(request), round),
                              key=self.secret)

    def answer_lines(self, data: dict[str, Any]) -> list[str] | None:
        return response_lines(data)

    def _target(self, model: str) -> tuple[str, dict[str, str], dict[str, str]]:
        config = self.config
        if config.is_azure:  # Azure OpenAI: the deployment goes in the body's model, not the path
            base = re.sub(r"/openai$", "", config.url)
            return f"{base}/openai/responses", {"api-version": config.azure_api_version}, {"api-key": self._key}
        return f"{config.url}/responses", {}, {"authorization": f"Bearer {self._key}"}


def _run_id(request: EngineRequest) -> str:
    return str((request.run or {}).get("id") or "")


# -- the request ------------------------------------------------------------------------------
def response_body(request: EngineRequest, model: str, carried: "Lookup", reasoning: bool = False) -> dict[str, Any]:
    """The ``CreateResponse`` of one turn."""
    instructions, items = input_items(request.chat, carried)
    body: dict[str, Any] = {"model": model, "input": items, "stream": True, "store": False}
    if instructions is not None:
        body["instructions"] = instructions
    if request.offered_tools:
        body["tools"] = [function_tool(t) for t in request.offered_tools]
        if request.tool_choice is not None:
            body["tool_choice"] = tool_choice(request.tool_choice)
        body["parallel_tool_calls"] = bool(request.parallel_tool_calls)
    if request.max_completion_tokens is not None:
        body["max_output_tokens"] = max(MIN_OUTPUT_TOKENS, request.max_completion_tokens)
    if reasoning:  # reasoning models: no sampling parameters; their reasoning comes back encrypted
        if request.reasoning_effort:
            body["reasoning"] = {"effort": request.reasoning_effort}
        body["include"] = [ENCRYPTED_REASONING]
    else:
        if request.temperature is not None:
            body["temperature"] = request.temperature
        if request.top_p is not None:
            body["top_p"] = request.top_p
    text_format = output_format(request.response_format)
    if text_format is not None:
        body["text"] = {"format": text_format}
    return body


def input_items(chat: list[dict[str, Any]], carried: "Lookup") -> tuple[str | None, list[dict[str, Any]]]:
    """The executor's Chat Completions messages as ``instructions`` and Responses input items."""
    instructions, items = None, []
    for position, message in enumerate(chat):
        role, content = message.get("role", "user"), message.get("content")
        if position == 0 and role in ("system", "developer") and isinstance(content, str):
            instructions = content
        elif role == "tool":
            items.append({"type": "function_call_output", "call_id": message["tool_call_id"],
                          "output": content if isinstance(content, str) else json.dumps(content)})
        else:
            calls = message.get("tool_calls") or []
            round = carried(calls[0]["id"]) if calls else None
            if round is not None:
                items += round.reasoning
            if content:
                items.append({"type": "message", "role": role, "content": _content(content)})
            for call in calls:
                function = call.get("function") or {}
                item = {"type": "function_call", "call_id": call["id"], "name": function.get("name") or "",
                        "arguments": function.get("arguments") or ""}
                if round is not None and call["id"] in round.item_ids:
                    item["id"] = round.item_ids[call["id"]]  # the item its reasoning belongs to
                items.append(item)
    return instructions, items


def _content(content: Any) -> Any:
    if isinstance(content, str):
        return content
    parts = []
    for part in content:
        if part.get("type") == "image_url":
            image = part.get("image_url") or {}
            parts.append({"type": "input_image", "image_url": image.get("url"), "detail": image.get("detail") or "auto"})
        elif part.get("type") == "text":
            parts.append({"type": "input_text", "text": part.get("text") or ""})
    return parts


def function_tool(tool: dict[str, Any]) -> dict[str, Any]:
    """A Chat Completions tool definition as a Responses ``FunctionTool`` (``strict`` as declared:
    the Responses API would otherwise make every function strict)."""
    function = tool.get("function") or {}
    result = {"type": "function", "name": function.get("name") or "",
              "parameters": function.get("parameters") or {"type": "object", "properties": {}},
              "strict": bool(function.get("strict"))}
    if function.get("description"):
        result["description"] = function["description"]
    return result


def tool_choice(choice: Any) -> Any:
    if isinstance(choice, dict) and choice.get("type") == "function":
        return {"type": "function", "name": (choice.get("function") or {}).get("name") or choice.get("name")}
    return choice


def output_format(response_format: Any) -> dict[str, Any] | None:
    """The run's ``response_format`` as the Responses ``text.format`` (None: plain text)."""
    if not isinstance(response_format, dict):
        return None
    kind = response_format.get("type")
    if kind == "json_object":
        return {"type": "json_object"}
    if kind != "json_schema":
        return None
    spec = response_format.get("json_schema") or {}
    result = {"type": "json_schema", "name": spec.get("name") or "response", "schema": spec.get("schema") or {}}
    for key in ("description", "strict"):
        if spec.get(key) is not None:
            result[key] = spec[key]
    return result


# -- reasoning carried between the tool rounds of a run ---------------------------------------
@dataclass
class Round:
    """What one model call that called tools leaves for the run's next calls."""

    reasoning: list[dict[str, Any]] = field(default_factory=list)  # reasoning items with encrypted content
    item_ids: dict[str, str] = field(default_factory=dict)  # call_id -> the function_call item's id
    kept_at: float = 0.0
    oversized: bool = False  # its reasoning was over CARRY_ROUND_BYTES: none of it is kept

    @property
    def size(self) -> int:
        return sum(len(item.get("encrypted_content") or "") for item in self.reasoning)


Lookup = Callable[[str], "Round | None"]  # a round's first call id -> the round, if its reasoning is kept


class Carried:
    """Reasoning of recent tool rounds, by run and the round's first call id: in this process only,
    bounded in count, bytes and age (the oldest go first). A round whose reasoning is gone (a
    restart, another replica, age) is sent without it: the model then reasons afresh, which the API
    allows."""

    def __init__(self, rounds: int = CARRY_ROUNDS, seconds: float = CARRY_SECONDS, total: int = CARRY_BYTES):
        self.rounds, self.seconds, self.total = rounds, seconds, total
        self._rounds: OrderedDict[tuple[str, str], Round] = OrderedDict()
        self._bytes = 0

    def keep(self, run_id: str, round: Round) -> None:
        if not round.reasoning or not round.item_ids or round.oversized or round.size > CARRY_ROUND_BYTES:
            return
        round.kept_at = time.monotonic()
        self._drop((run_id, next(iter(round.item_ids))))
        self._rounds[(run_id, next(iter(round.item_ids)))] = round
        self._bytes += round.size
        while len(self._rounds) > self.rounds or self._bytes > self.total:
            self._drop(next(iter(self._rounds)))

    def lookup(self, run_id: str) -> Lookup:
        def find(first_call_id: str) -> Round | None:
            round = self._rounds.get((run_id, first_call_id))
            if round is not None and time.monotonic() - round.kept_at > self.seconds:
                self._drop((run_id, first_call_id))
                return None
            return round

        return find

    def _drop(self, key: tuple[str, str]) -> None:
        round = self._rounds.pop(key, None)
        if round is not None:
            self._bytes -= round.size


# -- the stream -------------------------------------------------------------------------------
class ResponseParser:
    """One streamed Response (server-sent events) into engine events; the same surface as the Chat
    Completions ``sse.TurnParser``: ``feed(line)``, ``error``, ``complete``, ``started``, ``end()``."""

    def __init__(self, budget: int | None = None, keep=None, key: str | None = None):
        self.key = key  # scrubbed from a cut text before it is cut (limits.scrub_cut)
        self.budget = budget  # the run's tokens left: a reply over it (max_output_tokens >= 16) is cut
        self.keep = keep  # called with the Round at the end of a turn that called tools
        self.status: str | None = None  # completed | incomplete | failed
        self.error: str | None = None
        self.incomplete_reason: str | None = None
        self.usage: Usage | None = None
        self.round = Round()
        self._calls: dict[int, dict[str, Any]] = {}  # output_index -> {index, arguments: Relayed}
        self._texts: dict[tuple[int, int], Relayed] = {}  # (output_index, content_index) -> text relayed
        self.items = False  # an output item was announced or done (else the final response's output is read)
        self.started = False

    def feed(self, line: str) -> list[EngineEvent]:
        if self.status is not None or not line.startswith("data:"):
            return []  # ``event:`` lines (the type is in the data too), separators, comments
        data = line[5:].strip()
        if data == "[DONE]":  # not the Responses API's, but some proxies add it
            return []
        try:
            event = json.loads(data)
        except ValueError:
            return self._fail(f"an event that is not JSON: {scrub_cut(data, self.key, 80)!r}")
        if not isinstance(event, dict):
            return []
        handler = HANDLERS.get(event.get("type"))
        return handler(self, event) if handler is not None else []

    # -- events -------------------------------------------------------------------------------
    def _item_added(self, event: dict[str, Any]) -> list[EngineEvent]:
        self.items = True
        item = event.get("item") or {}
        if item.get("type") != "function_call":
            return []
        return self._open_call(event.get("output_index", len(self._calls)), item)

    def _open_call(self, output_index: int, item: dict[str, Any]) -> list[EngineEvent]:
        arguments = _text(item.get("arguments"))
        call = {"index": len(self._calls), "arguments": Relayed(arguments)}
        self._calls[output_index] = call
        call_id = str(item.get("call_id") or item.get("id") or "") or None
        if call_id and item.get("id"):  # (a call_id sent twice: the first item's; the second is shown as call_id_2)
            self.round.item_ids.setdefault(call_id, str(item["id"]))
        self.started = True
        return [ToolCallDelta(call["index"], call_id, str(item.get("name") or "") or None, arguments)]

    def _arguments(self, event: dict[str, Any]) -> list[EngineEvent]:
        call = self._calls.get(event.get("output_index"))
        delta = _text(event.get("delta"))
        if call is None or not delta:
            return []
        call["arguments"].add(delta)
        return [ToolCallDelta(call["index"], arguments=delta)]

    def _arguments_done(self, event: dict[str, Any]) -> list[EngineEvent]:
        call = self._calls.get(event.get("output_index"))
        return [] if call is None else self._rest_of_call(call, _text(event.get("arguments")))

    def _rest_of_call(self, call: dict[str, Any], arguments: str) -> list[EngineEvent]:
        """What a ``.done`` event has beyond the deltas (a server that sends no deltas sends it all there)."""
        rest = call["arguments"].rest(arguments)
        if not rest:
            return []
        call["arguments"].add(rest)
        return [ToolCallDelta(call["index"], arguments=rest)]

    def _text_delta(self, event: dict[str, Any]) -> list[EngineEvent]:
        delta = _text(event.get("delta"))
        if not delta:
            return []
        place = (event.get("output_index", 0), event.get("content_index", 0))
        self._texts.setdefault(place, Relayed()).add(delta)
        self.started = True
        return [TextDelta(delta)]

    def _text_done(self, event: dict[str, Any]) -> list[EngineEvent]:
        full = _text(event.get("text") if event.get("type") == "response.output_text.done" else event.get("refusal"))
        place = (event.get("output_index", 0), event.get("content_index", 0))
        rest = self._texts.setdefault(place, Relayed()).rest(full)
        return self._text_delta({**event, "delta": rest}) if rest else []

    def _item_done(self, event: dict[str, Any]) -> list[EngineEvent]:
        self.items = True
        item = event.get("item") or {}
        if item.get("type") == "reasoning":
            encrypted = item.get("encrypted_content")
            if isinstance(encrypted, str) and encrypted and item.get("id"):  # store: false: nothing to refer to without
                self.round.reasoning.append({"type": "reasoning", "id": item["id"], "summary": item.get("summary") or [],
                                             "encrypted_content": encrypted})
                if self.round.size > CARRY_ROUND_BYTES:  # too much to carry: the next call reasons afresh
                    self.round.reasoning, self.round.oversized = [], True
            return []
        if item.get("type") != "function_call":
            return []
        index = event.get("output_index", len(self._calls))
        call = self._calls.get(index)
        if call is None:  # announced only when done
            return self._open_call(index, item)
        return self._rest_of_call(call, _text(item.get("arguments")))

    def _finished(self, event: dict[str, Any]) -> list[EngineEvent]:
        response = event.get("response") or {}
        events: list[EngineEvent] = []
        if not self.items and not self._texts:  # a server that streamed nothing of its output: the final one's
            for line in (response_lines({**response, "status": "completed"}) or [])[:-1]:
                events += self.feed(line)
        self.status = {"response.completed": "completed", "response.incomplete": "incomplete"}[event["type"]]
        self.incomplete_reason = (response.get("incomplete_details") or {}).get("reason")
        if isinstance(response.get("usage"), dict):
            self.usage = _usage(response["usage"])
        return events

    def _failed(self, event: dict[str, Any]) -> list[EngineEvent]:
        error = (event.get("response") or {}).get("error") if event.get("type") == "response.failed" else event
        error = error if isinstance(error, dict) else {}
        message = str(error.get("message") or "the response failed without a message")
        return self._fail(f"{message} ({error['code']})" if isinstance(error.get("code"), str) else message)

    def _fail(self, message: str) -> list[EngineEvent]:
        self.status, self.error = "failed", message  # scrubbed, then cut, by the engine (limits.detail_text)
        return []

    # -- the end ------------------------------------------------------------------------------
    @property
    def done(self) -> bool:
        """The stream said its last word (completed, incomplete or failed): nothing after it is read."""
        return self.status is not None

    @property
    def complete(self) -> bool:
        return self.status in ("completed", "incomplete")

    @property
    def finish_reason(self) -> str | None:
        """As Chat Completions would say it; None until the response completed or ended incomplete."""
        if not self.complete:
            return None
        if self.incomplete_reason in ("max_output_tokens", "content_filter"):
            return "length" if self.incomplete_reason == "max_output_tokens" else "content_filter"
        return "tool_calls" if self._calls else "stop"

    def end(self) -> TurnEnd:
        usage, reason = self.usage or Usage(), self.finish_reason or "stop"
        if self.budget is not None and usage.completion_tokens > self.budget:  # the API's minimum was over it
            usage.completion_tokens, reason = self.budget, "length"
        if reason == "tool_calls" and self.keep is not None:
            self.keep(self.round)
        return TurnEnd(reason, usage)


def response_lines(data: dict[str, Any]) -> list[str] | None:
    """A non-streamed ``Response`` (a server that ignores ``stream: true``) as the stream events it amounts
    to: each text or refusal as its ``.done`` event, each other item (function call, reasoning) as its
    ``response.output_item.done``, then ``response.completed`` or ``.incomplete``. None: not a finished one."""
    output, status = data.get("output"), data.get("status")
    if not isinstance(output, list) or status not in ("completed", "incomplete"):
        return None
    events: list[dict[str, Any]] = []
    for index, item in enumerate(output):
        if not isinstance(item, dict):
            continue
        if item.get("type") != "message":
            events.append({"type": "response.output_item.done", "output_index": index, "item": item})
            continue
        for number, part in enumerate(item.get("content") or []):
            kind = part.get("type") if isinstance(part, dict) else None
            if kind in ("output_text", "refusal"):
                field = "text" if kind == "output_text" else "refusal"
                events.append({"type": f"response.{kind}.done", "output_index": index, "content_index": number,
                               field: part.get(field)})
    events.append({"type": f"response.{status}", "response": data})
    return [f"data: {json.dumps(event)}" for event in events]


class Relayed:
    """What was relayed of one text or one call's arguments: its pieces, joined only when a ``.done``
    event is compared with them (adding each delta to a string would copy the whole text every time:
    20,000 deltas of 100 characters took 22 s, the event loop blocked all along)."""

    def __init__(self, first: str = ""):
        self.pieces, self.size = ([first] if first else []), len(first)

    def add(self, piece: str) -> None:
        self.pieces.append(piece)
        self.size += len(piece)

    def rest(self, whole: str) -> str:
        """What ``whole`` (the full text of a ``.done`` event) has beyond what was relayed ("" if nothing,
        or if it does not continue it)."""
        if len(whole) <= self.size:
            return ""
        relayed = "".join(self.pieces)
        self.pieces = [relayed]
        return whole[len(relayed):] if whole.startswith(relayed) else ""


HANDLERS = {
    "response.output_item.added": ResponseParser._item_added,
    "response.output_item.done": ResponseParser._item_done,
    "response.output_text.delta": ResponseParser._text_delta,
    "response.refusal.delta": ResponseParser._text_delta,
    "response.output_text.done": ResponseParser._text_done,
    "response.refusal.done": ResponseParser._text_done,
    "response.function_call_arguments.delta": ResponseParser._arguments,
    "response.function_call_arguments.done": ResponseParser._arguments_done,
    "response.completed": ResponseParser._finished,
    "response.incomplete": ResponseParser._finished,
    "response.failed": ResponseParser._failed,
    "error": ResponseParser._failed,
}


def _text(value: Any) -> str:
    """A string from the stream; lone surrogates (``"\\ud800"`` in the JSON: not text) become U+FFFD."""
    return clean_text(value) if isinstance(value, str) else ""


def _usage(data: dict[str, Any]) -> Usage:
    def count(name: str) -> int:
        value = data.get(name)
        return value if isinstance(value, int) and value >= 0 else 0

    return Usage(prompt_tokens=count("input_tokens"), completion_tokens=count("output_tokens"))
