"""A scripted Responses API server on loopback: the stand-in for a model behind ``POST /v1/responses``.

    with ScriptedResponses() as upstream:
        upstream.queue(Reply("Hello there", deltas=["Hel", "lo", " there"]))
        ... point the Responses engine at upstream.base_url (key: upstream.key) ...
        assert upstream.requests[0].body["store"] is False

Tests queue replies, served in order (an empty queue answers ``Reply("You said: <last user
text>")``): a ``Reply`` streams, in this order, its reasoning items (``encrypted_content`` given),
its text (or refusal) in deltas, its function calls (arguments in fragments), then ends
``completed``, ``incomplete`` (``incomplete="max_output_tokens"``), ``failed`` (``failed=(code,
message)``), with an ``error`` event (``error=...``), or not at all (``cut``). A ``Failure`` (of
tests/upstream.py) answers with its HTTP status and ``ErrorResponse``. Every request received is
recorded (``requests``); queueing, auth and errors are the scripted Chat Completions server's. Served on ``/v1/responses`` and Azure OpenAI's
``/openai/responses?api-version=...`` (``api-key`` header).

It cannot drift from the real API: every request is validated against the official OpenAPI
document's ``CreateResponse`` (plus: no keys the schema does not define), every stream event before
it is sent against its own schema of the ``ResponseStreamEvent`` union (the ``Response`` objects
they carry included), every error against ``ErrorResponse``. Violations land in ``problems``.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import StreamingResponse
from starlette.routing import Route

from tests.contract import spec
from tests.upstream import DEFAULT_KEY, SCHEMAS, Call, Failure, ScriptedUpstream, problems, request_keys


@dataclass
class Reply:
    text: str = ""
    deltas: list[str] | None = None  # how the text is streamed (default: about 4 characters a delta)
    calls: list[Call] = field(default_factory=list)  # function calls after the text
    fragments: int = 3  # each call's arguments arrive in this many pieces
    reasoning: list[str] = field(default_factory=list)  # encrypted_content of reasoning items before the rest
    refusal: str | None = None  # a refusal instead of text
    incomplete: str | None = None  # "max_output_tokens" | "content_filter": ends response.incomplete
    failed: tuple[str, str] | None = None  # (code, message): ends response.failed
    error: tuple[str, str] | None = None  # (code, message): ends with an ``error`` event
    cut: bool = False  # the stream stops after the output, with no terminal event
    usage: tuple[int, int] | None = None  # (input, output); default: estimated
    delay: float = 0.0  # seconds before each text delta after the first

    def pieces(self) -> list[str]:
        if self.deltas is not None:
            assert "".join(self.deltas) == self.text, "deltas must add up to text"
            return self.deltas
        return [self.text[i:i + 4] for i in range(0, len(self.text), 4)]


class ScriptedResponses(ScriptedUpstream):
    """The scripted Chat Completions server's machinery (queue, auth, errors, recording) on the Responses paths."""

    def __init__(self, key: str | None = DEFAULT_KEY):
        self._numbers = itertools.count(1)
        super().__init__(key=key, default=lambda body: Reply(f"You said: {last_user_text(body)}"))

    def _app(self) -> Starlette:
        return Starlette(routes=[Route("/v1/responses", self._responses, methods=["POST"]),
                                 Route("/openai/responses", self._azure_responses, methods=["POST"])])

    def bodies(self) -> list[dict[str, Any]]:
        return [r.body for r in self.requests]

    async def _azure_responses(self, request: Request):
        if not request.query_params.get("api-version"):
            return self._error(Failure(404, "Resource not found", "invalid_request_error", "404"))
        return await self._responses(request, azure=True)

    async def _responses(self, request: Request, azure: bool = False):
        body = await request.json()
        self._check(lambda: request_problems(body), "request")
        self._record(request, body)
        answer = self._auth(request, azure) or self._next(body)
        if isinstance(answer, Failure):
            return self._error(answer)
        return StreamingResponse(self._events_sse(self._events(answer, body)), media_type="text/event-stream")

    async def _events_sse(self, events):
        finished = False
        try:
            for delay, event in events:
                if delay:
                    await asyncio.sleep(delay)
                self._check(lambda: event_problems(event), "stream event")
                yield f"event: {event['type']}\ndata: {json.dumps(event)}\n\n"
            finished = True
            self.completed += 1
        finally:
            if not finished:  # the client closed the stream (a cancelled run)
                self.disconnects += 1
                self.disconnected.set()

    # -- one streamed response ----------------------------------------------------------------
    def _events(self, reply: Reply, body: dict[str, Any]) -> list[tuple[float, dict[str, Any]]]:
        """(delay, event) pairs; each event's ``sequence_number`` in order."""
        number = next(self._numbers)
        response = response_object(f"resp_scripted{number:06d}", body)
        out: list[tuple[float, dict[str, Any]]] = []

        def send(kind: str, delay: float = 0.0, **fields: Any) -> None:
            out.append((delay, {"type": kind, "sequence_number": len(out), **fields}))

        send("response.created", response=response)
        send("response.in_progress", response=response)
        output: list[dict[str, Any]] = []
        for n, encrypted in enumerate(reply.reasoning):
            item = {"type": "reasoning", "id": f"rs_{number:04d}{n}", "summary": []}
            send("response.output_item.added", output_index=len(output), item=item)
            item = {**item, "encrypted_content": encrypted}
            send("response.output_item.done", output_index=len(output), item=item)
            output.append(item)
        if reply.text or reply.refusal is not None:
            output.append(self._message(send, reply, f"msg_{number:04d}", len(output)))
        for n, call in enumerate(reply.calls):
            output.append(self._call(send, reply, call, f"fc_{number:04d}{n}", f"call_{number:04d}{n}", len(output)))
        if reply.cut:
            return out
        if reply.error is not None:
            send("error", code=reply.error[0], message=reply.error[1], param=None)
            return out
        final = {**response, "output": output, "usage": usage_of(reply, body)}
        if reply.failed is not None:
            send("response.failed", response={**final, "status": "failed",
                                              "error": {"code": reply.failed[0], "message": reply.failed[1]}})
        elif reply.incomplete is not None:
            send("response.incomplete", response={**final, "status": "incomplete",
                                                  "incomplete_details": {"reason": reply.incomplete}})
        else:
            send("response.completed", response={**final, "status": "completed", "completed_at": int(time.time())})
        return out

    @staticmethod
    def _message(send, reply: Reply, item_id: str, index: int) -> dict[str, Any]:
        item = {"type": "message", "id": item_id, "role": "assistant", "status": "in_progress", "content": []}
        send("response.output_item.added", output_index=index, item=item)
        where = {"item_id": item_id, "output_index": index, "content_index": 0}
        if reply.refusal is not None:
            send("response.content_part.added", part={"type": "refusal", "refusal": ""}, **where)
            send("response.refusal.delta", delta=reply.refusal, **where)
            send("response.refusal.done", refusal=reply.refusal, **where)
            part = {"type": "refusal", "refusal": reply.refusal}
        else:
            send("response.content_part.added", part={"type": "output_text", "text": "", "annotations": [],
                                                      "logprobs": []}, **where)
            for n, piece in enumerate(reply.pieces()):
                send("response.output_text.delta", reply.delay if n else 0.0, delta=piece, logprobs=[], **where)
            send("response.output_text.done", text=reply.text, logprobs=[], **where)
            part = {"type": "output_text", "text": reply.text, "annotations": [], "logprobs": []}
        send("response.content_part.done", part=part, **where)
        item = {**item, "status": "completed", "content": [part]}
        send("response.output_item.done", output_index=index, item=item)
        return item

    @staticmethod
    def _call(send, reply: Reply, call: Call, item_id: str, default_call_id: str, index: int) -> dict[str, Any]:
        item = {"type": "function_call", "id": item_id, "call_id": call.id or default_call_id, "name": call.name,
                "arguments": "", "status": "in_progress"}
        send("response.output_item.added", output_index=index, item=item)
        text = call.json()
        size = max(1, -(-len(text) // max(1, reply.fragments)))
        for start in range(0, len(text), size):
            send("response.function_call_arguments.delta", item_id=item_id, output_index=index,
                 delta=text[start:start + size])
        send("response.function_call_arguments.done", item_id=item_id, output_index=index, name=call.name,
             arguments=text)
        item = {**item, "arguments": text, "status": "completed"}
        send("response.output_item.done", output_index=index, item=item)
        return item


def response_object(response_id: str, body: dict[str, Any]) -> dict[str, Any]:
    """The ``Response`` as created (in progress), echoing what the request asked for."""
    return {
        "id": response_id, "object": "response", "created_at": int(time.time()), "status": "in_progress",
        "completed_at": None, "error": None, "incomplete_details": None, "instructions": body.get("instructions"),
        "max_output_tokens": body.get("max_output_tokens"), "model": body.get("model") or "scripted",
        "output": [], "parallel_tool_calls": body.get("parallel_tool_calls", True), "previous_response_id": None,
        "reasoning": body.get("reasoning"), "store": False, "temperature": body.get("temperature", 1.0),
        "text": body.get("text") or {"format": {"type": "text"}}, "tool_choice": body.get("tool_choice", "auto"),
        "tools": body.get("tools") or [], "top_p": body.get("top_p", 1.0), "truncation": "disabled",
        "metadata": {},  # usage: only once finished
    }


def usage_of(reply: Reply, body: dict[str, Any]) -> dict[str, Any]:
    if reply.usage is not None:
        prompt, completion = reply.usage
    else:
        prompt = max(1, len(json.dumps(body.get("input") or [])) // 4)
        completion = max(1, len(reply.text + "".join(c.json() for c in reply.calls)) // 4)
    return {"input_tokens": prompt, "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
            "output_tokens": completion, "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": prompt + completion}


# -- contract -----------------------------------------------------------------------------------
def request_problems(body: Any) -> list[str]:
    """``CreateResponse``, its input items one by one: a message with a content list is valid under two
    members of the document's ``InputItem`` oneOf (``EasyInputMessage`` and ``InputMessage``, which the
    API tells apart by a discriminator that JSON Schema has not), so messages are checked against
    ``EasyInputMessage``, what the engine sends, and every other item against ``InputItem``."""
    if not isinstance(body, dict) or not isinstance(body.get("input"), list):
        return problems("CreateResponse", body)
    found = problems("CreateResponse", {**body, "input": ""})
    for n, item in enumerate(body["input"]):
        message = isinstance(item, dict) and "role" in item
        found += [f"input/{n}: {p}" for p in problems("EasyInputMessage" if message else "InputItem", item)]
    found += [f"CreateResponse: unknown key `{k}`" for k in sorted(set(body) - request_keys("CreateResponse"))]
    return found


_EVENT_SCHEMAS: dict[str, str] = {}


def event_problems(event: dict[str, Any]) -> list[str]:
    """Problems of one stream event against its own member of ``ResponseStreamEvent`` (by its type)."""
    if not _EVENT_SCHEMAS:
        schemas = spec()["components"]["schemas"]
        for member in schemas["ResponseStreamEvent"]["anyOf"]:
            name = member["$ref"].removeprefix(SCHEMAS)
            for kind in schemas[name].get("properties", {}).get("type", {}).get("enum", []):
                _EVENT_SCHEMAS.setdefault(kind, name)
    name = _EVENT_SCHEMAS.get(event.get("type"))
    return problems(name, event) if name else [f"ResponseStreamEvent: no event type `{event.get('type')}`"]


def last_user_text(body: dict[str, Any]) -> str:
    for item in reversed(body.get("input") or []):
        if item.get("role") == "user":
            content = item.get("content")
            return content if isinstance(content, str) else " ".join(p.get("text", "") for p in content or [])
    return ""
