"""A scripted OpenAI Agents API (beta) on loopback: the stand-in the tests allow for that upstream.

    with ScriptedAgents() as api:
        api.queue(Answer("It is sunny.", calls=[("get_weather", {"city": "Paris"})], race=True))
        ... an `api: agents` target with base_url api.base_url, key api.key ...
        assert not api.problems

It serves what asstctl uses: ``/agents`` (create, retrieve, update, list with after/limit/order, delete) and
``/agents/sessions`` (create with ``stream: true``, retrieve, delete; ``GET/POST .../events``; a session shows
its agent's tools in the session's shape: ``session_tools``). Agents are
stored as the API materialises them (every server-resolved default of shared/reference/agents-beta.md §3
filled in); an update replaces ``metadata`` and ``tools`` whole and resets a field sent as null. Limits:
16 metadata pairs (keys ≤64, values ≤512), tools ≤3 MiB of compact JSON; a violation is a 400.

A session turn streams the events of a root turn: ``in_progress``, ``turn.created``/``in_progress``, the
user's message item, for each scripted call a ``function_call`` item then ``requires_action`` (waiting for
a ``tool_result``), the answer's message (content part, text deltas), ``turn.completed`` with usage, and
``idle`` (with ``fail``: ``turn.failed`` with the error, or with ``error_event`` an ``error`` event and a
``turn.failed`` without one, then ``idle``; ``session_fail``: ``agent.session.failed``; ``budget``: the session
pauses at its spending limit, ``agent.session.budget_reached``;
``subagent``: a subagent's whole turn first; ``approval``: an MCP (or, with ``COMPUTER_USE``, a computer-use)
approval ``requires_action`` until cancelled; ``mcp`` / ``search``: an ``mcp_call`` / ``web_search_call`` item the
API ran, first). With ``race`` a call is registered
only after a first tool result for it was refused with 400 "Unknown pending tool call: <call id>", code
``invalid_request_error`` (counted in ``race_rejections``), as when the item event beats the registration.

It cannot drift from the SDK: every request (headers ``OpenAI-Beta: agents=v1`` and the key included) is
checked against the SDK's param types, every object and event against its models (tests/agents/sdk_types.py);
violations land in ``problems``. ``lose_creates``: the next N agent creates are committed but answered 500
(a lost response); ``fail_next``: answers N requests of a method (and path) with 500 (or a given 400) before
handling them.
Recorded for the tests: each request's SDK retry count (``retry_counts``), each tool result's Idempotency-Key
and whether it was accepted (``tool_posts``), the most agent creates in flight at once (``peak_creates``, with
``create_delay``); ``Answer.delay`` paces the text deltas (generation time).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import re
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from tests.agents.scripted_rules import limits, materialized, session_tools
from tests.agents.sdk_types import ErrorBody, request_problems, response_problems
from tests.upstream import _start

DEFAULT_KEY = "sk-scripted-agents-0123456789abcdef"
RACE_WAIT = 2.0  # seconds a racing call waits for the too early tool result before it is registered anyway
TOOL_WAIT = 20.0  # seconds a turn waits for a tool result before it fails
COMPUTER_USE = "computer_use"  # Answer.approval: a computer-use approval (the browser asks to visit an origin)


@dataclass
class Answer:
    text: str
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # function calls before the text
    race: bool = False  # register each call late: an immediate tool result meets the pending-call race
    usage: tuple[int, int] = (20, 8)  # (input, output) tokens
    fail: tuple[str, str] | None = None  # (code, message): the turn fails instead of answering
    delay: float = 0.0  # seconds before each text delta (generation time)
    subagent: str | None = None  # a subagent's turn says this first (its message is not the root's reply)
    approval: str | None = None  # an MCP server label (or COMPUTER_USE): the turn asks to approve a call (and waits)
    session_fail: str | None = None  # the whole session fails with this error
    error_event: bool = False  # with fail: the error comes as an `error` event, the failed turn has none
    budget: bool = False  # the session pauses at its spending limit (budget_reached) instead of answering
    mcp: tuple[str, str, dict[str, Any]] | None = None  # (server label, tool, arguments): an MCP call the API runs
    search: str | None = None  # a web search (its query) the API runs


def _types():
    from openai.pagination import SyncCursorPage
    from openai.types.beta import agent_create_params, agent_list_params, agent_update_params
    from openai.types.beta.agent import Agent
    from openai.pagination import SyncPage
    from openai.types import Model
    from openai.types.beta.agent_deleted import AgentDeleted
    from openai.types.beta.agent_session import AgentSession
    from openai.types.beta.agent_session_deleted import AgentSessionDeleted
    from openai.types.beta.agent_session_event import AgentSessionEvent
    from openai.types.beta.agents import session_create_params
    from openai.types.beta.agents.sessions import event_create_params

    return {"create": agent_create_params.AgentCreateParams, "update": agent_update_params.AgentUpdateParams,
            "agent": Agent, "deleted": AgentDeleted, "session": AgentSession, "session_deleted": AgentSessionDeleted,
            "event": AgentSessionEvent, "session_create": session_create_params.SessionCreateParamsStreaming,
            "events_create": event_create_params.EventCreateParams, "list": agent_list_params.AgentListParams,
            "page": SyncCursorPage[Agent], "models": SyncPage[Model]}


class ScriptedAgents:
    def __init__(self, key: str = DEFAULT_KEY):
        self.key = key
        self.types = _types()
        self.agents: dict[str, dict[str, Any]] = {}
        self.sessions: dict[str, Session] = {}
        self.requests: list[tuple[str, str, Any]] = []  # (method, path, body)
        self.retry_counts: list[int] = []  # each request's X-Stainless-Retry-Count (0: a fresh SDK call)
        self.problems: list[str] = []
        self.answers: deque[Answer] = deque()
        self.tool_results: list[dict[str, Any]] = []
        self.tool_posts: list[tuple[str, str | None, bool]] = []  # (call id, Idempotency-Key, accepted) per post
        self.race_rejections = 0
        self.lose_creates = 0
        self.failures: list[list[Any]] = []  # [method, path pattern, times left]
        self.create_delay = 0.0  # seconds an agent create takes (so parallel creates overlap)
        self.explicit_defaults = False  # return optional defaults too (scripted_rules.materialized's `explicit`)
        self.default_effort: str | None = None  # the effort an omitted one resolves to (None: returned as null)
        self.models = ["gpt-5", "gpt-5-mini", "gpt-4.1"]  # what GET /v1/models lists (the plan's model check)
        self.creating = self.peak_creates = 0
        self._ids = itertools.count(1)
        self._clock = itertools.count(int(time.time()))
        self._lock = threading.Lock()
        self._server, self._thread, self.port = _start(self._errors_checked(self._app()))

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def queue(self, *answers: Answer) -> "ScriptedAgents":
        self.answers.extend(answers)
        return self

    def fail_next(self, method: str, times: int = 1, path: str = ".*", refuse: str | None = None) -> None:
        """Answer the next ``times`` requests of ``method`` whose path matches ``path`` (a regex) with 500, or
        with ``refuse``: 400 ``invalid_request_error`` with this message ("{call_id}": the first event's call)."""
        self.failures.append([method, re.compile(path), times, refuse])

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)

    def __enter__(self) -> "ScriptedAgents":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def _app(self) -> Starlette:
        return Starlette(routes=[
            Route("/v1/agents", self._agents, methods=["GET", "POST"]),
            Route("/v1/agents/sessions", self._session_create, methods=["POST"]),
            Route("/v1/agents/sessions/{sid}", self._session, methods=["GET", "DELETE"]),
            Route("/v1/agents/sessions/{sid}/events", self._events, methods=["GET", "POST"]),
            Route("/v1/agents/{aid}", self._agent, methods=["GET", "POST", "DELETE"]),
            Route("/v1/models", self._models, methods=["GET"]),
        ], exception_handlers={404: self._invalid_url, 405: self._invalid_url})

    async def _invalid_url(self, request: Request, exc: Exception) -> Response:
        """A path or method the API does not serve, answered as OpenAI does (a JSON error, not Starlette's text)."""
        return error(404, f"Invalid URL ({request.method} {request.url.path})", "invalid_request_error")

    def _errors_checked(self, app: Starlette) -> Any:
        """The app, with every error response's body (status 400 and up) checked against the SDK's error shape."""

        async def checked(scope: Any, receive: Any, send: Any) -> None:
            sent = {"status": 200, "body": b""}

            async def watch(message: dict[str, Any]) -> None:
                if message["type"] == "http.response.start":
                    sent["status"] = message["status"]
                elif message["type"] == "http.response.body" and sent["status"] >= 400:
                    sent["body"] += message.get("body", b"")
                    if not message.get("more_body"):
                        self.problems += error_problems(sent["body"], f"{sent['status']} {scope.get('path')}")
                await send(message)

            await app(scope, receive, watch if scope["type"] == "http" else send)

        return checked

    async def _models(self, request: Request) -> Response:
        """GET /v1/models, as OpenAI answers it (not an Agents API route: no beta header)."""
        self.requests.append((request.method, request.url.path, None))
        self.retry_counts.append(int(request.headers.get("x-stainless-retry-count", "0")))
        if request.headers.get("authorization") != f"Bearer {self.key}":
            return error(401, "Incorrect API key provided.", "invalid_request_error")
        return self._send({"object": "list", "data": [
            {"id": model, "object": "model", "created": 1_700_000_000, "owned_by": "openai"} for model in self.models]},
            "models")

    # -- plumbing ---------------------------------------------------------------------------------
    def _id(self, prefix: str) -> str:
        return f"{prefix}_{next(self._ids):024x}"

    async def _enter(self, request: Request, params: Any = None) -> tuple[Any, Response | None]:
        """(body, early answer): auth, the beta header, body validation, scripted 500s."""
        body = None
        if request.method == "POST":
            raw = await request.body()
            body = json.loads(raw) if raw else {}
        self.requests.append((request.method, request.url.path, body))
        self.retry_counts.append(int(request.headers.get("x-stainless-retry-count", "0")))
        if request.headers.get("authorization") != f"Bearer {self.key}":
            return body, error(401, "Incorrect API key provided.", "invalid_request_error")
        if request.headers.get("openai-beta") != "agents=v1":
            self.problems.append(f"{request.method} {request.url.path}: OpenAI-Beta is "
                                 f"{request.headers.get('openai-beta')!r}, not agents=v1")
        if params is not None:
            found = request_problems(body, params, f"{request.method} {request.url.path}")
            if found:
                self.problems += found
                return body, error(400, "; ".join(found), "invalid_request_error")
        for failure in self.failures:
            if failure[2] and failure[0] == request.method and failure[1].fullmatch(request.url.path):
                failure[2] -= 1  # retry-after-ms: the SDK's own retries come quickly
                if failure[3] is not None:
                    call_id = ((body or {}).get("events") or [{}])[0].get("call_id")
                    return body, error(400, failure[3].format(call_id=call_id), "invalid_request_error",
                                       code="invalid_request_error")
                return body, error(500, "The server had an error processing your request.", "server_error",
                                   headers={"retry-after-ms": "10"})
        return body, None

    def _send(self, data: dict[str, Any], model: str, status: int = 200) -> JSONResponse:
        self.problems += response_problems(data, self.types[model], model)
        return JSONResponse(data, status_code=status)

    # -- agents -----------------------------------------------------------------------------------
    async def _agents(self, request: Request) -> Response:
        if request.method == "GET":
            _, early = await self._enter(request)
            return early or self._list(request)
        body, early = await self._enter(request, self.types["create"])
        if early:
            return early
        problem = limits(body)
        if problem:
            return error(400, problem, "invalid_request_error", param=problem.split(":")[0])
        self.creating += 1
        self.peak_creates = max(self.peak_creates, self.creating)
        try:
            await asyncio.sleep(self.create_delay)
        finally:
            self.creating -= 1
        now = next(self._clock)
        obj = {"id": self._id("agent"), "object": "agent", "created_at": now, "updated_at": now}
        obj.update(materialized(body, explicit=self.explicit_defaults, effort=self.default_effort))
        with self._lock:
            self.agents[obj["id"]] = obj
            if self.lose_creates:
                self.lose_creates -= 1
                return error(500, "The server had an error processing your request.", "server_error")
        return self._send(obj, "agent")

    def _list(self, request: Request) -> Response:
        """A page (the SDK's CursorPage: ``data``, ``has_more``; ``object``/``first_id``/``last_id`` inferred,
        agents-beta.md §4) for a query the SDK's ``AgentListParams`` allow (limit 1 to 100)."""
        query = {key: int(value) if key == "limit" and value.isdigit() else value
                 for key, value in request.query_params.items()}
        found = request_problems(query, self.types["list"], "GET /agents query")
        if isinstance(query.get("limit"), int) and not 1 <= query["limit"] <= 100:
            found.append(f"GET /agents query.limit: {query['limit']} is not between 1 and 100")
        if found:
            self.problems += found
            return error(400, "; ".join(found), "invalid_request_error")
        objects = list(self.agents.values())
        if query.get("order", "desc") == "desc":
            objects.reverse()
        if query.get("after"):
            ids = [obj["id"] for obj in objects]
            objects = objects[ids.index(query["after"]) + 1:] if query["after"] in ids else []
        limit = int(query.get("limit", 20))
        page = objects[:limit]
        data = {"object": "list", "data": page, "has_more": len(objects) > limit,
                "first_id": page[0]["id"] if page else None, "last_id": page[-1]["id"] if page else None}
        inferred = tuple(f"page.{key}: not a field" for key in ("object", "first_id", "last_id"))
        self.problems += [p for p in response_problems(data, self.types["page"], "page") if not p.startswith(inferred)]
        return JSONResponse(data)

    async def _agent(self, request: Request) -> Response:
        agent_id = request.path_params["aid"]
        body, early = await self._enter(request, self.types["update"] if request.method == "POST" else None)
        if early:
            return early
        obj = self.agents.get(agent_id)
        if obj is None:
            return error(404, f"No agent found with id '{agent_id}'.", "invalid_request_error")
        if request.method == "GET":
            return self._send(obj, "agent")
        if request.method == "DELETE":
            del self.agents[agent_id]
            return self._send({"id": agent_id, "object": "agent.deleted", "deleted": True}, "deleted")
        problem = limits(body)
        if problem:
            return error(400, problem, "invalid_request_error")
        obj.update(materialized(body, obj, self.explicit_defaults, self.default_effort))
        obj["updated_at"] = next(self._clock)
        return self._send(obj, "agent")

    # -- sessions ---------------------------------------------------------------------------------
    async def _session_create(self, request: Request) -> Response:
        body, early = await self._enter(request, self.types["session_create"])
        if early:
            return early
        agent = self.agents.get(body.get("agent_id"))
        if agent is None:
            return error(404, f"No agent found with id '{body.get('agent_id')}'.", "invalid_request_error")
        if body.get("environment") != {"type": "none"} or not isinstance(body.get("input"), str):
            self.problems.append(f"session create: environment {body.get('environment')} / input {body.get('input')!r}")
        now = next(self._clock)
        snapshot = {key: agent[key] for key in ("id", "model", "name", "instructions", "reasoning", "text",
                                               "service_tier", "multi_agent", "compaction", "experimental")}
        snapshot["tools"] = session_tools(agent["tools"])
        session = Session(self, {
            "id": self._id("sess"), "object": "agent.session", "agent": snapshot, "created_at": now,
            "last_active_at": now, "environment": {"type": "none"}, "status": "idle", "required_actions": [],
            "metadata": body.get("metadata") or {}, "vault_ids": [], "usage": None, "error": None,
            "spend_control": {"limit": None, "consumed": None}})
        self.sessions[session.id] = session
        queue = session.subscribe()
        session.emit("agent.session.created", session=session.snapshot())
        session.start(body["input"])
        return StreamingResponse(session.sse(queue), media_type="text/event-stream")

    async def _found(self, request: Request, params: Any = None) -> tuple[Any, "Session | None", Response | None]:
        """(body, the session of the path, early answer)."""
        body, early = await self._enter(request, params)
        session = self.sessions.get(request.path_params["sid"])
        if early is None and session is None:
            early = error(404, "No session found.", "invalid_request_error")
        return body, session, early

    async def _session(self, request: Request) -> Response:
        _, session, early = await self._found(request)
        if early:
            return early
        if request.method == "GET":
            return self._send(session.snapshot(), "session")
        if session.obj["status"] not in ("idle", "failed", "budget_reached"):
            return error(409, "Cancel the session's running turn before deleting it.", "invalid_request_error")
        del self.sessions[session.id]
        return self._send({"id": session.id, "object": "agent.session.deleted", "deleted": True}, "session_deleted")

    async def _events(self, request: Request) -> Response:
        body, session, early = await self._found(request, self.types["events_create"] if request.method == "POST" else None)
        if early:
            return early
        if request.method == "GET":
            return StreamingResponse(session.sse(session.subscribe()), media_type="text/event-stream")
        key = request.headers.get("idempotency-key")
        if not key:
            self.problems.append("POST events without an Idempotency-Key")
        if key in session.keys:
            return Response(status_code=202)
        for event in body["events"]:
            refused = session.accept(event)
            if event["type"] == "agent.session.input.tool_result":
                self.tool_posts.append((event["call_id"], key, refused is None))
            if refused:
                return refused
        session.keys.add(key)
        return Response(status_code=202)


class Session:
    """One session's state machine, its turns (asyncio tasks on the server's loop) and its subscribers."""

    def __init__(self, api: ScriptedAgents, obj: dict[str, Any]):
        self.api, self.obj, self.id = api, obj, obj["id"]
        self.queues: list[asyncio.Queue] = []
        self.pending: dict[str, asyncio.Future] = {}
        self.racing: dict[str, asyncio.Event] = {}  # calls not registered yet (the pending-call race)
        self.keys: set[str] = set()
        self.task: asyncio.Task | None = None
        self.turn: dict[str, Any] | None = None

    def snapshot(self) -> dict[str, Any]:
        return json.loads(json.dumps(self.obj))

    def subscribe(self) -> asyncio.Queue:
        queue: asyncio.Queue = asyncio.Queue()
        self.queues.append(queue)
        return queue

    def emit(self, kind: str, **fields: Any) -> None:
        event = {"type": kind, "event_id": self.api._id("evt"), **fields}
        self.api.problems += response_problems(event, self.api.types["event"], kind)
        for queue in self.queues:
            queue.put_nowait(event)

    async def sse(self, queue: asyncio.Queue):
        try:
            while True:
                event = await queue.get()
                yield f"data: {json.dumps(event)}\n\n"
                if event["type"] in ("agent.session.idle", "agent.session.failed", "agent.session.budget_reached"):
                    yield "data: [DONE]\n\n"
                    return
        finally:
            self.queues.remove(queue)

    def start(self, text: str) -> None:
        self.task = asyncio.get_running_loop().create_task(self.run_turn(text))

    def accept(self, event: dict[str, Any]) -> Response | None:
        kind = event["type"]
        if kind == "agent.session.input.message":
            if self.obj["status"] != "idle":
                return error(409, "The session already has a turn in progress.", "invalid_request_error")
            self.start("".join(part.get("text", "") for item in event["input"] for part in item["content"]))
        elif kind == "agent.session.input.tool_result":
            future = self.pending.get(event["call_id"])
            if future is None or (self.turn or {}).get("id") != event["turn_id"]:
                self.api.race_rejections += 1
                if event["call_id"] in self.racing:
                    self.racing.pop(event["call_id"]).set()
                return error(400, f"Unknown pending tool call: {event['call_id']}", "invalid_request_error",
                             code="invalid_request_error")  # the SDK's is_pending_call_race wants this code
            self.api.tool_results.append(event)
            if not future.done():
                future.set_result(event)
        elif kind == "agent.session.input.cancel" and self.task is not None and not self.task.done():
            self.task.cancel()
        return None

    def _turn(self, status: str, **extra: Any) -> dict[str, Any]:
        self.turn = {**(self.turn or {}), "status": status, **extra}
        return dict(self.turn)

    def _status(self, status: str, kind: str, actions: list[dict[str, Any]] | None = None) -> None:
        self.obj["status"], self.obj["required_actions"] = status, actions or []
        self.obj["last_active_at"] = int(time.time())
        self.emit(kind, session=self.snapshot())

    async def run_turn(self, text: str) -> None:
        answer = self.api.answers.popleft() if self.api.answers else Answer(f"You said: {text}")
        turn_id = self.api._id("turn")
        now = int(time.time())
        self.turn = {"id": turn_id, "object": "agent.session.turn", "session_id": self.id,
                     "agent_id": self.obj["agent"]["id"], "subagent_id": None, "created_at": now,
                     "started_at": None, "completed_at": None, "error": None, "usage": None}
        ids = {"session_id": self.id, "turn_id": turn_id}
        try:
            self._status("in_progress", "agent.session.in_progress")
            self.emit("agent.session.turn.created", turn=self._turn("queued"), **ids)
            self.emit("agent.session.turn.in_progress", turn=self._turn("in_progress", started_at=now), **ids)
            self.emit("agent.session.turn.item.added", item={
                "id": self.api._id("msg"), "type": "message", "role": "user", "status": "completed", "turn_id": turn_id,
                "content": [{"type": "input_text", "text": text}]}, **ids)
            if answer.fail is not None:
                error = {"code": answer.fail[0], "message": answer.fail[1]}
                if answer.error_event:
                    self.emit("error", error={**error, "type": "server_error", "param": None}, session_id=self.id)
                turn = self._turn("failed", completed_at=int(time.time()), error=None if answer.error_event else error)
                self.emit("agent.session.turn.failed", turn=turn, **ids)
                return
            if answer.budget:
                self.obj["spend_control"] = {"limit": 50, "consumed": 50}
                self._status("budget_reached", "agent.session.budget_reached")
                return
            if answer.session_fail is not None:
                self.obj["error"] = answer.session_fail
                self._status("failed", "agent.session.failed")
                return
            if answer.subagent is not None:
                await self._subagent(answer.subagent, turn_id)
            if answer.approval is not None:
                await self._approval(answer.approval, turn_id)
            index = self._hosted(answer, ids)
            for name, arguments in answer.calls:
                await self._call(name, arguments, index, answer.race, ids)
                index += 1
            await self._message(answer.text, index, ids, answer.delay)
            usage = {"input_tokens": answer.usage[0], "input_tokens_details": {"cached_tokens": 0},
                     "output_tokens": answer.usage[1], "output_tokens_details": {"reasoning_tokens": 0},
                     "total_tokens": sum(answer.usage)}
            turn = self._turn("completed", completed_at=int(time.time()), usage=usage)
            self.emit("agent.session.turn.completed", turn=turn, usage=usage, **ids)
            self.obj["usage"] = usage
        except (asyncio.CancelledError, TimeoutError):
            self.emit("agent.session.turn.cancelled", turn=self._turn("cancelled", completed_at=int(time.time())), **ids)
        finally:
            self.pending.clear()
            if self.obj["status"] not in ("failed", "budget_reached"):
                self._status("idle", "agent.session.idle")

    async def _call(self, name: str, arguments: dict[str, Any], index: int, race: bool, ids: dict[str, str]) -> None:
        call_id = self.api._id("call")
        item = {"id": self.api._id("fc"), "type": "function_call", "call_id": call_id, "name": name,
                "arguments": json.dumps(arguments), "status": "in_progress", "turn_id": ids["turn_id"]}
        self.emit("agent.session.turn.item.added", item=item, output_index=index, **ids)
        self.emit("agent.session.turn.item.done", item={**item, "status": "completed"}, output_index=index, **ids)
        if race:  # not registered until a first, too early tool result was refused (or RACE_WAIT passed)
            self.racing[call_id] = asyncio.Event()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.racing[call_id].wait(), RACE_WAIT)
        future = self.pending[call_id] = asyncio.get_running_loop().create_future()
        self._turn("waiting")
        action = {"type": "function_call", "call_id": call_id, "name": name, "arguments": item["arguments"],
                  "turn_id": ids["turn_id"]}
        self._status("requires_action", "agent.session.requires_action", [action])
        await asyncio.wait_for(future, TOOL_WAIT)
        del self.pending[call_id]
        self._turn("in_progress")
        self._status("in_progress", "agent.session.in_progress")

    def _hosted(self, answer: Answer, ids: dict[str, str]) -> int:
        """The calls the API runs itself (an MCP tool, a web search), done at once; the next output index."""
        items = []
        if answer.mcp is not None:
            label, name, arguments = answer.mcp
            items.append({"id": self.api._id("mcp"), "type": "mcp_call", "server_label": label, "name": name,
                          "arguments": arguments, "output": {"hits": 1}, "error": None, "status": "completed"})
        if answer.search is not None:
            items.append({"id": self.api._id("ws"), "type": "web_search_call", "status": "completed",
                          "action": {"type": "search", "query": answer.search}})
        for index, item in enumerate(items):
            self.emit("agent.session.turn.item.done", item={**item, "turn_id": ids["turn_id"]}, output_index=index,
                      **ids)
        return len(items)

    async def _subagent(self, text: str, parent_turn: str) -> None:
        """A subagent's whole turn (created, in progress, its message, completed) inside the root turn."""
        now = int(time.time())
        subagent = {"id": self.api._id("subagent"), "object": "agent.session.subagent", "session_id": self.id,
                    "parent_agent_id": self.obj["agent"]["id"], "name": "helper", "opened_at": now,
                    "closed_at": None, "status": "active", "instructions": None}
        self.emit("agent.session.subagent.created", subagent=subagent)
        ids = {"session_id": self.id, "turn_id": self.api._id("turn")}
        turn = {"id": ids["turn_id"], "object": "agent.session.turn", "session_id": self.id,
                "agent_id": self.obj["agent"]["id"], "subagent_id": subagent["id"], "created_at": now,
                "started_at": now, "completed_at": None, "error": None, "usage": None}
        self.emit("agent.session.turn.created", turn={**turn, "status": "queued"}, **ids)
        self.emit("agent.session.turn.in_progress", turn={**turn, "status": "in_progress"}, **ids)
        await self._message(text, 0, ids, 0)
        usage = {"input_tokens": 5, "input_tokens_details": {"cached_tokens": 0}, "output_tokens": 3,
                 "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 8}
        self.emit("agent.session.turn.completed", turn={**turn, "status": "completed", "completed_at": now,
                                                         "usage": usage}, usage=usage, **ids)

    async def _approval(self, label: str, turn_id: str) -> None:
        """The turn asks to approve an MCP call (or a computer-use step) and waits for an answer (a cancel ends it;
        none: TOOL_WAIT)."""
        self._turn("waiting")
        action = {"type": "mcp_approval_request", "request_id": self.api._id("mcpr"), "turn_id": turn_id, "request": {
            "type": "mcp_tool_call", "server_label": label, "name": "search", "arguments": {"q": "refunds"},
            "message": f"Allow {label}.search?"}}
        if label == COMPUTER_USE:
            action = {"type": "computer_use_approval_request", "request_id": self.api._id("cuar"), "turn_id": turn_id,
                      "request": {"type": "browser_origin_access", "origin": "https://shop.example.com",
                                  "reason": "The agent wants to open the shop."}}
        self._status("requires_action", "agent.session.requires_action", [action])
        await asyncio.wait_for(asyncio.get_running_loop().create_future(), TOOL_WAIT)

    async def _message(self, text: str, index: int, ids: dict[str, str], delay: float) -> None:
        item_id = self.api._id("msg")
        item = {"id": item_id, "type": "message", "role": "assistant", "phase": "final_answer", "turn_id": ids["turn_id"]}
        self.emit("agent.session.turn.item.added", item={**item, "status": "in_progress", "content": []},
                  output_index=index, **ids)
        at = {"item_id": item_id, "output_index": index, "content_index": 0, **ids}
        self.emit("agent.session.turn.content_part.added", part={"type": "output_text", "text": ""}, **at)
        for start in range(0, len(text), 5):
            await asyncio.sleep(delay)
            self.emit("agent.session.turn.output_text.delta", delta=text[start:start + 5], **at)
        self.emit("agent.session.turn.output_text.done", text=text, **at)
        self.emit("agent.session.turn.content_part.done", part={"type": "output_text", "text": text}, **at)
        self.emit("agent.session.turn.item.done", item={**item, "status": "completed",
                                                        "content": [{"type": "output_text", "text": text}]},
                  output_index=index, session_id=ids["session_id"], turn_id=ids["turn_id"])


# -- the API's rules ------------------------------------------------------------------------------
def error_problems(raw: bytes, where: str) -> list[str]:
    """What is wrong with an error response's body: not JSON, or not ``{"error": ErrorObject}``."""
    try:
        data = json.loads(raw)
    except ValueError:
        return [f"{where}: the error body is not JSON: {raw[:80]!r}"]
    return response_problems(data, ErrorBody, where)


def error(status: int, message: str, kind: str, param: str | None = None, headers: dict[str, str] | None = None,
          code: str | None = None) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": kind, "param": param, "code": code}}, status_code=status,
                        headers=headers)
