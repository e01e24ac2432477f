"""The Starlette application: routes from ``asstctl.server.routes``, plus the
cross-cutting rules of the real API (bearer auth, the ``OpenAI-Beta`` header,
the error envelope, ``x-request-id``) and fault/latency injection."""

from __future__ import annotations

import asyncio
import functools
import importlib
import json
import logging
import re
import secrets
import time
from collections import Counter
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse

from asstctl.errors import ConfigError
from asstctl.server.errors import APIError
from asstctl.server.faults import Faults
from asstctl.server.http import SafeJSONResponse, json_body
from asstctl.server import observability, projects
from asstctl.server.ingestion import gate
from asstctl.server.observability import logs
from asstctl.server.looplag import LoopLag
from asstctl.server.store import BaseStore, open_store
from asstctl.server.store.scope import KEY_CHECK, PROJECT

log = logging.getLogger("asstctl.server")

ROUTE_MODULES = ("assistants", "threads", "messages", "runs", "files", "vector_stores", "vector_store_search",
                 "organization", "models")
BETA_PREFIXES = ("/v1/assistants", "/v1/threads", "/v1/vector_stores")
ADMIN_PREFIXES = ("/v1/organization/", "/metrics")  # the admin key's routes (and only its)


DEFAULT_MAX_UPLOAD_MB = 512
DEFAULT_MAX_BODY_MB = 32


@dataclass
class ServerConfig:
    db: str = ":memory:"
    api_key: str | None = None
    faults: Faults = field(default_factory=Faults)
    rules_path: str | None = None  # offline engine steering rules (YAML)
    engine: Any = None  # an Engine; None = ``engine.build_engine``: upstream if set, else offline with ``rules_path``
    upstream: Any = None  # engine.config.UpstreamConfig: run turns on an upstream Chat Completions API
    # Dense retrieval: an ``asstctl.server.retrieval.embeddings.EmbeddingsConfig`` (upstream base URL,
    # key env var, model); None = lexical retrieval only.
    embeddings: Any = None
    max_model_calls: int = 25  # model calls per run before it fails (a tool loop that never answers)
    context_windows: dict[str, int] = field(default_factory=dict)  # model pattern -> tokens (overrides)
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_MB << 20  # one uploaded file (the API's limit: 512 MB)
    max_body_bytes: int = DEFAULT_MAX_BODY_MB << 20  # one JSON request body
    header_timeout: float = 10.0  # seconds a client may take to send a request's headers
    sandbox: Any = None  # code_interpreter limits (asstctl.server.sandbox.SandboxConfig); None = defaults
    admin_key: str | None = None  # manages projects and keys (/v1/organization/...), reads /metrics
    metrics: bool = False  # serve GET /metrics (Prometheus text format)
    ready_checks_upstream: bool = False  # /readyz also asks the upstream (GET /models; observability.probes)
    log_format: str = "text"  # "json": one line per request and per run transition (asstctl.server.observability)
    tracer_provider: Any = None  # an OpenTelemetry TracerProvider; None = from the OTEL_* variables (or no traces)
    ingest: Any = None  # ingestion workers and limits (asstctl.server.retrieval.pool.IngestLimits); None = defaults


@dataclass
class ServerState:
    config: ServerConfig
    store: BaseStore
    engine: Any
    stats: Counter = field(default_factory=Counter)  # "GET /v1/assistants" -> count
    extra: dict[str, Any] = field(default_factory=dict)  # room for route modules (run executor, ...)
    loop_lag: LoopLag = field(default_factory=LoopLag)  # the event loop's lag (stats(): p50/p99/max ms)


def create_app(config: ServerConfig | None = None) -> Starlette:
    config = config or ServerConfig()
    for what, key in (("API key", config.api_key), ("admin key", config.admin_key)):
        problem = api_key_problem(key)
        if problem:
            raise ConfigError(f"unusable {what}: {problem}", hint=API_KEY_HINT)
    if config.admin_key is not None and config.admin_key == config.api_key:
        raise ConfigError("the admin key is the server's API key: a request with it is taken for the server's key, "
                          "so the admin key would never work", hint="Give the admin key a value of its own, e.g. "
                          "`openssl rand -hex 16`.")
    store = open_store(config.db)
    projects.ensure_default(store)
    engine = config.engine if config.engine is not None else _default_engine(config)
    routes = []
    for name in ROUTE_MODULES:
        routes.extend(importlib.import_module(f"asstctl.server.routes.{name}").routes)
    state = ServerState(config=config, store=store, engine=engine)
    routes.extend(observability.setup(state))
    state.extra["startup"], state.extra["shutdown"] = [state.loop_lag.start], [state.loop_lag.stop]
    app = Starlette(routes=routes, exception_handlers={APIError: _api_error, 404: _no_route, 405: _no_route, 500: _crash},
                    lifespan=_lifespan(state))
    app.state.asst = state
    for name in ROUTE_MODULES:
        setup = getattr(importlib.import_module(f"asstctl.server.routes.{name}"), "setup", None)
        if setup:
            setup(app.state.asst)
    route_key = RouteKeys(app.routes)
    state.extra["route_key"] = route_key
    return observability.wrap(ApiMiddleware(app, app.state.asst), app.state.asst, route_key)


def _lifespan(state: ServerState):
    """Route modules' ``state.extra["startup"]`` / ``["shutdown"]`` coroutines, on the server's loop."""

    @asynccontextmanager
    async def lifespan(app):
        for hook in state.extra.get("startup", []):
            await hook()
        yield
        for hook in reversed(state.extra.get("shutdown", [])):
            await hook()

    return lifespan


def _default_engine(config: ServerConfig) -> Any:
    from asstctl.server.engine import build_engine

    return build_engine(config)


def state_of(request: Request) -> ServerState:
    return request.app.state.asst


def stored(handler: Callable[..., Any]) -> Callable[[Request], Awaitable[Any]]:
    """A route whose work is synchronous (checks, store calls, its response), ``handler(state, request)``:
    it runs whole on the store's worker threads (``BaseStore.call``, the caller's project scope carried
    along), so its store calls never stall the event loop, on SQLite as on PostgreSQL."""

    @functools.wraps(handler)
    async def route(request: Request) -> Any:
        state = state_of(request)
        return await state.store.call(handler, state, request)

    return route


def threaded(handler: Callable[..., Any]) -> Callable[[Request], Awaitable[Any]]:
    """``stored`` for a route whose work grows with the data (a store's chunks, up to 10,000 files, a
    thread's messages): always on a thread (``run_in_threadpool``, the project scope carried along),
    never inline: SQLite's ``store.call`` runs inline on the loop whenever the store's lock is free."""
    @functools.wraps(handler)
    async def route(request: Request) -> Any:
        return await run_in_threadpool(handler, state_of(request), request)

    return route


def stored_with_body(handler: Callable[..., Any]) -> Callable[[Request], Awaitable[Any]]:
    """``stored`` for a route that takes a JSON body: read on the loop, then ``handler(state, request, body)``."""

    @functools.wraps(handler)
    async def route(request: Request) -> Any:
        state, body = state_of(request), await json_body(request)
        return await state.store.call(handler, state, request, body)

    return route


def error_response(error: APIError) -> JSONResponse:
    return SafeJSONResponse(error.body(), status_code=error.status, headers=error.headers)


async def _api_error(request: Request, exc: APIError) -> JSONResponse:
    return error_response(exc)


async def _no_route(request: Request, exc: Exception) -> JSONResponse:
    return error_response(APIError(404, f"Invalid URL ({request.method} {request.url.path})"))


async def _crash(request: Request, exc: Exception) -> JSONResponse:
    keys = request.app.state.asst.extra["observer"].keys
    path = logs.redact(request.url.path, keys)
    if _database_down(exc):  # not a bug of ours: one line, and a 503 the SDK retries
        log.error("the database did not answer %s %s: %s", request.method, path, type(exc).__name__)
        return error_response(APIError(
            503, "The server's database is not answering (it may be restarting). Retry later.",
            type="server_error", code="database_unavailable"))
    log.exception("unhandled error in %s %s", request.method, path)
    return error_response(
        APIError(500, "The server had an error while processing your request. Sorry about that!", type="server_error")
    )


def _database_down(exc: BaseException) -> bool:
    """PostgreSQL unreachable: psycopg's OperationalError (connection lost, refused, shutting down) or
    psycopg_pool's PoolTimeout (no connection could be made in time). By name: psycopg may not be installed."""
    for kind in type(exc).__mro__:
        if kind.__module__.split(".")[0] in ("psycopg", "psycopg_pool") and kind.__name__ in (
                "OperationalError", "PoolTimeout"):
            return True
    return False


class ApiMiddleware:
    """Pure ASGI middleware: request ids, auth, beta header, faults, latency, stats."""

    def __init__(self, app: Starlette, state: ServerState):
        self.app = app
        self.state = state

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        # counted as it arrives (a client that timed out still finds its request counted), by the route the
        # router will choose (RouteKeys matches as it does; also the layer above's label)
        route = scope["asstctl.route"] = self.state.extra["route_key"](scope)
        self.state.stats[f"{observability.http_method(scope['method'])} {route}"] += 1
        self.state.stats["total"] += 1
        await self._answer(scope, receive, send)

    async def _answer(self, scope, receive, send):
        request_id = scope.get("asstctl.request_id") or "req_" + secrets.token_hex(16)  # observability may set it
        started = time.monotonic()

        check, refused = None, None

        async def headed(message):
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", request_id.encode()))
                headers.append((b"openai-version", b"2020-10-01"))
                elapsed = int((time.monotonic() - started) * 1000)
                headers.append((b"openai-processing-ms", str(elapsed).encode()))
                message = {**message, "headers": headers}
            await send(message)

        async def send_with_headers(message):
            nonlocal refused
            if refused is None and message["type"] == "http.response.start" and check is not None \
                    and not check.passed and message.get("status") != 401:  # no statement checked the key
                refused = await self.state.store.call(projects.settle, self.state.store, check)
                if refused is not None:  # revoked meanwhile: the 401 goes instead of this response
                    return await _send_json(headed, refused)
            if refused is None:
                await headed(message)

        faults = self.state.config.faults
        if faults.latency_ms:
            await asyncio.sleep(faults.latency_ms / 1000)
        scope["asstctl.request_id"] = request_id
        caller = self._admit(scope, lookup=False)
        if caller is projects.LOOKUP:  # a project key this replica has not seen: looked up off the loop
            caller = await self.state.store.call(self._admit, scope)
            if caller is projects.LOOKUP:  # (a looked-up key never asks for another lookup: fail closed)
                caller = projects.refused()
        if isinstance(caller, APIError):
            return await _send_json(send_with_headers, caller)
        scope["asstctl.project"] = caller.project
        check = caller.check  # a known key on PostgreSQL: checked with the request's first statement
        token, checking = PROJECT.set(caller.project), KEY_CHECK.set(check)
        try:
            await self._pass(scope, receive, send, send_with_headers)
        finally:
            KEY_CHECK.reset(checking)
            PROJECT.reset(token)
            if check is not None and not check.passed:  # refused (or never checked): no project to log
                scope["asstctl.project"] = None
        if check is not None and refused is None and check.touch_due():  # after the response
            await self.state.store.call(projects.touch, self.state.store, check.record)

    async def _pass(self, scope, receive, send, send_with_headers):
        method, path, faults = scope["method"], scope["path"], self.state.config.faults
        fault = faults.pick(method, path)
        if fault in ("429", "500", "503"):
            return await _send_json(send_with_headers, _fault_error(fault, faults))
        if fault == "drop":
            return await _drop(send)
        if fault == "lost":
            await self.app(scope, receive, _discard)
            return await _drop(send)
        return await gate(self.state, self.app, scope, receive, send_with_headers)  # waits for its files' ingestion

    def _admit(self, scope, lookup: bool = True) -> projects.Caller | APIError:
        """Who the request comes from (the caller), or the error to answer it with; ``lookup=False``
        (on the loop): ``projects.LOOKUP`` for a project key that needs the store."""
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        config = self.state.config
        caller = projects.authenticate(self.state.store, config.api_key, config.admin_key,
                                       headers.get("authorization", ""), lookup)
        if isinstance(caller, APIError) or caller is projects.LOOKUP:
            return caller
        refused = self._refusal(scope["path"], caller, headers)
        if refused is not None and caller.check is not None and not caller.check.passed:
            return projects.LOOKUP  # a key not checked yet: looked up first (a revoked key gets its 401)
        return refused or caller

    def _refusal(self, path: str, caller: projects.Caller, headers: dict[str, str]) -> APIError | None:
        config = self.state.config
        if path == "/metrics" and not config.admin_key:
            # without an admin key: the server's own key (or an open loopback server), never a project's key
            # (the series name every project)
            if caller.key_id is not None:
                return APIError(403, "/metrics needs this server's own key (--api-key) or an admin key "
                                "(asstctl serve --admin-key-env VAR); project keys cannot read it.",
                                code="insufficient_permissions")
        elif path.startswith(ADMIN_PREFIXES) or path == "/v1/organization":
            if not caller.admin:
                return APIError(403, "This route needs the admin key of this asstctl server (asstctl serve "
                                "--admin-key-env VAR); project keys cannot manage projects.",
                                code="insufficient_permissions")
        elif caller.admin:
            return APIError(403, "The admin key manages projects and keys only: use a project's key "
                            "(POST /v1/organization/projects/{id}/service_accounts makes one).",
                            code="insufficient_permissions")
        if path.startswith(BETA_PREFIXES) and "assistants=v2" not in headers.get("openai-beta", ""):
            return APIError(
                400,
                "You must provide the 'OpenAI-Beta' header to access the Assistants API. "
                "Please try again by setting the header 'OpenAI-Beta: assistants=v2'.",
                code="invalid_beta",
            )
        return None


API_KEY_HINT = "Use printable ASCII without spaces, e.g. `openssl rand -hex 16`."
MIN_EXPOSED_KEY = 16  # characters: the least a key (the server's, the admin's) has when listening beyond loopback


def exposed_key_problem(key: str | None, host: str) -> str | None:
    """Why ``key`` is too weak for a server on ``host``, beyond loopback (never echoing it or its length), or None."""
    if not key or len(key) >= MIN_EXPOSED_KEY:
        return None
    return (f"it is shorter than {MIN_EXPOSED_KEY} characters, too easy to guess on {host}, which is beyond loopback: "
            "use a longer one, e.g. `openssl rand -hex 16`, or listen on 127.0.0.1")


def api_key_problem(key: str | None) -> str | None:
    """Why a server API key could never be presented by a client (never echoing it), or None.
    ``None`` means no key; an empty or blank one is refused (it would look like none)."""
    if key is None:
        return None
    if not key.strip():
        return "it is empty or blank"
    if not key.isascii():
        return "it holds non-ASCII characters, which an HTTP header cannot carry"
    if not key.isprintable() or key != key.strip() or " " in key:
        return "it holds spaces or control characters"
    return None


UNMATCHED = "unmatched"  # the route key of a path no route matches (a scan, a typo): one label for all of them


class RouteKeys:
    """A request's route key (stats, the ``route`` metric label, span names): the template of the route that
    matches it, each parameter as ``{id}`` (``/v1/threads/{id}/runs``), or ``unmatched``: a label set no
    client can grow (ids, model names and random paths never become labels)."""

    def __init__(self, routes):
        self.routes = [(route.path_format.split("{", 1)[0], route.path_regex.match, route.methods,
                        _template(route.path_format)) for route in routes]

    def __call__(self, scope) -> str:
        path, method, partial = scope["path"], scope["method"], None  # (asked as the request arrives)
        for prefix, match, methods, template in self.routes:  # as Starlette's router: the first route that
            if path.startswith(prefix) and match(path):        # takes the method, else the first of another
                if methods is None or method in methods:       # method (its 405)
                    return template
                partial = partial or template
        return partial or UNMATCHED

    def templates(self) -> set[str]:
        return {template for *_, template in self.routes} | {UNMATCHED}


def _template(path_format: str) -> str:
    return re.sub(r"\{[^}]*\}", "{id}", path_format)


def _fault_error(kind: str, faults: Faults) -> APIError:
    if kind == "429":
        return APIError(
            429,
            "Rate limit reached for requests (injected by asstctl serve). Please try again shortly.",
            type="requests",
            code="rate_limit_exceeded",
            headers={"retry-after-ms": str(faults.retry_after_ms)},
        )
    message = "The server had an error while processing your request. Sorry about that! (injected)"
    return APIError(int(kind), message, type="server_error")


async def _send_json(send, error: APIError) -> None:
    body = json.dumps(error.body()).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    headers += [(k.encode(), v.encode()) for k, v in error.headers.items()]
    await send({"type": "http.response.start", "status": error.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _discard(message) -> None:
    return None


class DroppedConnection(Exception):
    """Raised to make the ASGI server close the connection mid-response (fault injection)."""


async def _drop(send) -> None:
    await send(
        {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"1048576")]}
    )
    await send({"type": "http.response.body", "body": b"{", "more_body": True})
    raise DroppedConnection("connection dropped by fault injection")
