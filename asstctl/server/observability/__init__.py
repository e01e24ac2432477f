"""Operating the server: ``/healthz`` and ``/readyz``, ``/metrics`` (``--metrics``), OpenTelemetry traces
(``tracing``) and JSON logs (``--log-format json``, ``logs``).

``setup(state)`` builds the server's :class:`Observer` and returns its routes; ``wrap(app, state)`` is the
outermost ASGI layer: it answers the probes (unauthenticated, before anything else, never a database
write) and times, counts, traces and logs every other request. Runs are observed through hooks the
executor calls (``state.extra["observe_run"]`` around a turn's task, ``["observe_event"]`` per run
event; with tracing on, ``["trace_book"]`` as a request queues a run), model calls by wrapping the engine
(``instrument.ObservedEngine``) and built-in tool calls by wrapping the tools (``instrument.ObservedTools``).
With none of the three switched on, only the probes cost anything.

May import: the store's project scope, the engine's event types (``asstctl.server.engine.base``), the root
leaves, starlette, ``prometheus_client`` (with ``--metrics``) and OpenTelemetry (the ``otel`` extra, only
when tracing is on). Never the app, the routes or the executor (they call in through the hooks above).
"""

from __future__ import annotations

import asyncio
import copy
import functools
import json
import logging
import os
import re
import secrets
import socket
import time
from typing import Any, Callable

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from asstctl.server.observability import logs, tracing
from asstctl.server.observability.instrument import ObservedEngine, ObservedTools, bounded, embeddings_call, http_method
from asstctl.server.observability.probes import READY_TIMEOUT, Probes, one_at_a_time
from asstctl.server.store.scope import DEFAULT_PROJECT, current

REPLICA_ENV = "ASSTCTL_REPLICA"
SCRAPE_TIMEOUT = READY_TIMEOUT  # seconds a /metrics scrape waits for its figures (as /readyz for its checks)
log = logging.getLogger("asstctl.server")
RUN_EVENT = "thread.run."
TERMINAL = ("completed", "incomplete", "failed", "cancelled", "expired")
REQUEST_ID = re.compile(r"req_[0-9a-f]{32}")  # a request id as ``ObservedApp`` makes it


def replica_name() -> str:
    return os.environ.get(REPLICA_ENV, "").strip()[:100] or f"{socket.gethostname()}:{os.getpid()}"


class Observer:
    def __init__(self, state: Any):
        self.state = state
        config = state.config
        self.metrics = None
        if getattr(config, "metrics", False):
            from asstctl.server.observability.metrics import Metrics

            self.metrics = Metrics(state)
        self.tracer = tracing.tracer_for(config)
        self.capture = tracing.capture_content()
        self.json_logs = getattr(config, "log_format", "text") == "json"
        self.active = bool(self.metrics or self.tracer or self.json_logs)
        self.keys = tuple(key for key in (getattr(config, "api_key", None), getattr(config, "admin_key", None)) if key)
        self.replica = replica_name()
        self.probes = Probes(state)  # /readyz
        self._run_spans: dict[str, Any] = {}
        self._models: set[str] = set()
        self._scrapes: dict[str, asyncio.Future] = {}  # the /metrics render in flight

    # -- runs (called by the executor) -----------------------------------------------------
    def run_event(self, run: dict[str, Any], name: str, data: Any) -> None:
        if not name.startswith(RUN_EVENT) or name.startswith("thread.run.step"):
            return
        status = name[len(RUN_EVENT):]
        if status == "created":
            return
        project = current() or (self._project_of(run["id"]) if self.metrics or self.json_logs else None)
        if self.metrics is not None:
            self.metrics.runs.labels(status, project).inc()
            usage = data.get("usage") if status in TERMINAL and isinstance(data, dict) else None
            if usage:
                model = self.model_label(str(data.get("model") or ""))
                for kind in ("prompt", "completion"):
                    self.metrics.tokens.labels(kind, model, project).inc(usage.get(f"{kind}_tokens") or 0)
        if self.json_logs:
            error = (data.get("last_error") or {}).get("code") if isinstance(data, dict) else None
            logs.run_line(run["id"], status, project, run.get("thread_id"), error)
        if self.tracer is None:
            return
        turn = self._run_spans.get(run["id"])
        if turn is not None:
            turn[0].set_attribute("asstctl.run.status", status)
        if status in TERMINAL:
            self._run_span(run, status, project, *(turn[1:] if turn is not None else self._created_by(run["id"])))

    def _run_span(self, run: dict[str, Any], status: str, project: str | None, parent: Any, own: Any) -> None:
        """The run's own span, from its ``created_at`` to the status that ends it, on the replica that ends it:
        a child of the request that created the run (``parent``), with the id its turns (on whichever replicas)
        name as their parent (``own``, chosen as the run was created; None: a new id, the turns then sit beside
        it, under the request)."""
        created = run.get("created_at")
        started = int(created * 1e9) if isinstance(created, (int, float)) and created > 0 else None
        span = tracing.start_span(self.tracer, f"run {run.get('assistant_id') or ''}".strip(), {
            "asstctl.run.id": run["id"], "asstctl.run.status": status, "gen_ai.agent.id": run.get("assistant_id"),
            "gen_ai.request.model": run.get("model"), "gen_ai.conversation.id": run.get("thread_id"),
            "asstctl.project": project or current() or DEFAULT_PROJECT, "asstctl.replica": self.replica},
            parent=parent, start_time=started, span_id=own.span_id if own is not None and parent is not None and
            own.trace_id == parent.trace_id else None)
        if status in ("failed", "expired"):
            tracing.failed(span, status)
        span.end()

    def _created_by(self, run_id: str) -> tuple[Any, Any]:
        """The span contexts of the request that created the run and of the run's own span (its book's
        ``trace``), each None when missing."""
        try:
            book = self.state.store.get("run_state", run_id, run_id) or {}
        except Exception:  # noqa: BLE001 - the database: the run's span then starts a trace of its own
            return None, None
        trace = book.get("trace") if isinstance(book.get("trace"), dict) else {}
        return tracing.remote_context(trace.get("created_by")), tracing.remote_context(trace.get("run"))

    def _project_of(self, run_id: str) -> str:
        """The project of a run whose event comes from outside a request or a turn (the expiry sweep)."""
        try:
            return self.state.store.project_of("run", run_id) or DEFAULT_PROJECT
        except Exception:  # noqa: BLE001 - the database is down: the event is still counted
            return DEFAULT_PROJECT

    def trace_book(self, book: dict[str, Any]) -> bool:
        """(``state.extra["trace_book"]``, tracing or JSON logs on.) A request queues the run (its create, a
        submit of tool outputs): its span context goes in the run's book (``trace``: ``created_by``, kept from
        the first, ``queued_by``, and ``run``: the id chosen for the run's own span, the parent of its turns)
        and, with JSON logs, its request id (``request_id``), which the executor
        saves in the request's transaction, so whichever replica runs the turn continues the run's trace and
        logs the turn's lines with that request id. False (nothing to save) when there is nothing to keep."""
        context = tracing.current_context() if self.tracer is not None else None
        request_id = logs.REQUEST.get() if self.json_logs else None
        if context is None and request_id is None:
            return False
        trace = book.get("trace") if isinstance(book.get("trace"), dict) else {}
        kept: dict[str, Any] = {"request_id": request_id} if request_id is not None else {}
        if context is not None:
            queued_by, created_by = tracing.traceparent(context), trace.get("created_by")
            first = tracing.remote_context(created_by)
            kept.update(created_by=created_by if first else queued_by, queued_by=queued_by)
            own = trace.get("run") if first and tracing.remote_context(trace.get("run")) else None
            if own is None and tracing.chooses_ids(self.tracer):
                own = tracing.traceparent(tracing.future_span(first or context))
            if own is not None:
                kept["run"] = own
        book["trace"] = kept
        return True

    def _turn_facts(self, run_id: str, book_read: tuple) -> tuple[dict[str, Any], Any, Any, str | None]:
        """The run, the span contexts of the turn's parent (the run's own span, else the request that created
        the run) and of the request that queued this turn (its book's ``trace``, each validated; None when
        missing or malformed, or tracing off) and the id of the request that queued it (JSON logs): read in
        one round trip."""
        store = self.state.store
        with store.reads_kept():
            store.read_ahead([("get", "run", run_id, None), book_read])
            run, book = store.get("run", run_id) or {}, store.get(*book_read[1:]) or {}
        trace = book.get("trace") if isinstance(book.get("trace"), dict) else {}
        request_id = trace.get("request_id")
        request_id = request_id if isinstance(request_id, str) and REQUEST_ID.fullmatch(request_id) else None
        if self.tracer is None:
            return run, None, None, request_id
        created_by, own = tracing.remote_context(trace.get("created_by")), tracing.remote_context(trace.get("run"))
        parent = own if own is not None and created_by is not None and own.trace_id == created_by.trace_id \
            else created_by
        return run, (parent, created_by, own if parent is own else None), \
            tracing.remote_context(trace.get("queued_by")), request_id

    async def run_turn(self, run_id: str, work, book_read: tuple) -> Any:
        """The task of one run turn: its span (the parent of its model and tool calls' spans), a child of the
        run's span (else of the request that created the run), linked to the request that queued the turn when
        another one did (``trace_book``); with JSON logs, the turn's run lines carry the id of the request that
        queued it. ``book_read`` names the read of the run's book (``store.read_ahead``)."""
        if self.tracer is None and not self.json_logs:
            return await work
        try:
            run, parents, queued_by, request_id = await self.state.store.call(self._turn_facts, run_id, book_read)
        except Exception:  # noqa: BLE001 - the database: the turn meets it too, and fails the run its own way
            run, parents, queued_by, request_id = {}, None, None, None
        except BaseException:  # cancelled before the turn began
            work.close()
            raise
        request_token = logs.REQUEST.set(request_id)
        try:
            if self.tracer is None:
                return await work
            return await self._traced_turn(run_id, run, work, parents or (None, None, None), queued_by)
        finally:
            logs.REQUEST.reset(request_token)

    async def _traced_turn(self, run_id: str, run: dict[str, Any], work, parents: tuple, queued_by: Any) -> Any:
        parent = parents[0]
        span = tracing.start_span(self.tracer, f"invoke_agent {run.get('assistant_id') or ''}".strip(), {
            "gen_ai.operation.name": "invoke_agent", "gen_ai.agent.id": run.get("assistant_id"),
            "gen_ai.request.model": run.get("model"), "gen_ai.conversation.id": run.get("thread_id"),
            "asstctl.run.id": run_id, "asstctl.project": current() or DEFAULT_PROJECT,
            "asstctl.replica": self.replica}, parent=parent,
            links=(queued_by,) if queued_by is not None and queued_by not in (parent, parents[1]) else ())
        self._run_spans[run_id] = (span, *parents[1:])  # (the turn, the run's parent and own span context)
        token = tracing.attach(span)
        try:
            return await work
        except BaseException as error:
            tracing.failed(span, type(error).__name__)
            raise
        finally:
            tracing.detach(token)
            self._run_spans.pop(run_id, None)
            span.end()

    def model_label(self, model: str) -> str:
        return bounded(self._models, model)

    # -- /metrics -----------------------------------------------------------------------------
    async def metrics_endpoint(self, request: Request) -> Response:
        """The scrape reads the store: off the loop, one render in flight however many scrapers come, each
        waiting ``SCRAPE_TIMEOUT`` seconds at most (a hung database never holds a thread per scrape)."""
        from asstctl.server.observability.metrics import CONTENT_TYPE

        try:
            body = await one_at_a_time(self._scrapes, "metrics", self.metrics.render, SCRAPE_TIMEOUT)
        except asyncio.TimeoutError:
            message = (f"/metrics did not render within its {SCRAPE_TIMEOUT:g} s limit: the database does not "
                       "answer (/readyz says the same)")
            log.warning(message)
            return Response(json.dumps({"error": {"message": message, "type": "server_error", "param": None,
                                                  "code": "metrics_timeout"}}), 503, media_type="application/json")
        return Response(body, media_type=CONTENT_TYPE)


def setup(state: Any) -> list[Route]:
    """The server's observer (``state.extra["observer"]``), its hooks, and its routes."""
    observer = Observer(state)
    state.extra["observer"] = observer
    if not observer.active:
        return []
    state.extra["observe_event"] = observer.run_event
    state.extra["observe_run"] = observer.run_turn
    if observer.tracer is not None or observer.json_logs:
        state.extra["trace_book"] = observer.trace_book
    if observer.metrics is not None or observer.tracer is not None:
        state.engine = ObservedEngine(state.engine, observer)
        state.extra["tools"] = ObservedTools(observer)
        if getattr(state.config, "embeddings", None) is not None:  # this server's own copy carries its hook
            state.config.embeddings = copy.copy(state.config.embeddings)
            state.config.embeddings.observe = functools.partial(embeddings_call, observer)
    return [Route("/metrics", observer.metrics_endpoint, methods=["GET"])] if observer.metrics is not None else []


def wrap(app: Any, state: Any, route_key: Callable[[Any], str]) -> "ObservedApp":
    return ObservedApp(app, state.extra["observer"], route_key)


class ObservedApp:
    """The outermost ASGI layer: probes, then per request a span, metrics and a log line."""

    def __init__(self, app: Any, observer: Observer, route_key: Callable[[Any], str]):
        self.app, self.observer, self.route_key = app, observer, route_key
        self.state = observer.state  # the server's state, as the layer below exposes it

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope["path"]
        if path == "/healthz":
            return await _plain(send, 200, {"status": "ok"})
        if path == "/readyz":
            ready, detail = await self.observer.probes.ready()
            return await _plain(send, 200 if ready else 503, {"status": "ok" if ready else "unavailable",
                                                               "detail": detail})
        observer = self.observer
        if not observer.active:
            return await self.app(scope, receive, send)
        method, started = http_method(scope["method"]), time.monotonic()
        request_id = scope["asstctl.request_id"] = "req_" + secrets.token_hex(16)
        request_token = logs.REQUEST.set(request_id)
        answer = _Answer(send)
        span = token = None
        if observer.tracer is not None:
            span, token = tracing.request_span(observer.tracer, method, logs.redact(path, observer.keys), request_id,
                                               scope.get("headers", ()))
        try:
            await self.app(scope, receive, answer.send)
        finally:
            status, elapsed = answer.status, time.monotonic() - started
            route = scope.get("asstctl.route") or self.route_key(scope)  # (the layer below found it: the router's)
            if observer.metrics is not None:
                observer.metrics.answered(method, route, status, elapsed)
            if observer.json_logs:
                logs.request_line(observer.keys, request_id=request_id, method=scope["method"][:32], path=path,
                                  status=status, duration_ms=round(elapsed * 1000, 1),
                                  project=scope.get("asstctl.project"), run_id=_named(path, "run_"),
                                  thread_id=_named(path, "thread_"))
            logs.REQUEST.reset(request_token)
            if span is not None:
                tracing.end_request(span, token, status, method, route)


class _Answer:
    """The status a request was answered with (500 until the response starts)."""

    __slots__ = ("status", "_send")

    def __init__(self, send):
        self.status, self._send = 500, send

    def send(self, message):
        if message["type"] == "http.response.start":
            self.status = message["status"]
        return self._send(message)  # the server's own awaitable: no coroutine of ours per message


def _named(path: str, prefix: str) -> str | None:
    for part in path.split("/"):
        if part.startswith(prefix):
            return part
    return None


async def _plain(send, status: int, body: dict[str, Any]) -> None:
    data = json.dumps(body).encode()
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(data)).encode()),
        (b"cache-control", b"no-store")]})
    await send({"type": "http.response.body", "body": data})
