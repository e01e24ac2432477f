"""A scripted Chat Completions server on loopback: the one stand-in the tests allow for a model.

    with ScriptedUpstream() as upstream:
        upstream.queue(Text("Hello there", deltas=["Hel", "lo", " there"], delay=0.05))
        ... point the upstream engine at upstream.base_url (key: upstream.key) ...
        assert upstream.requests[0].body["stream"] is True

Tests queue answers, served in order (an empty queue answers ``Text("You said: <last user
text>")``): ``Text`` (streamed in the given deltas, optionally with delays or cut off),
``ToolCalls`` (one or several, arguments sent in fragments, optionally after some text), and ``Failure`` (429 with
Retry-After, 500, 401, 404 model_not_found, ...). Every request body received is recorded
(``requests``). The server serves ``/v1/chat/completions`` and Azure OpenAI's
``/openai/deployments/{deployment}/chat/completions?api-version=...`` (``api-key`` header), and
the same two for ``/embeddings`` (vectors from ``embed``, default the hashing embedder of
``benchmarks.embeddings_server``; requests recorded too, validated as ``CreateEmbeddingRequest``,
answers as ``CreateEmbeddingResponse``).

It cannot drift from the real API: every request is validated against the official OpenAPI
document's ``CreateChatCompletionRequest`` (plus: no keys the schema does not define), every answer
before it is sent against ``CreateChatCompletionResponse`` / ``CreateChatCompletionStreamResponse`` /
``ErrorResponse`` (embeddings: ``CreateEmbeddingRequest`` / ``CreateEmbeddingResponse``). Violations land in ``problems``; the ``upstream`` fixture fails the test on any.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, StreamingResponse
from starlette.routing import Route

from benchmarks.embeddings_server import hashing_embedder, response_body
from tests.contract import spec, validator_for

SCHEMAS = "#/components/schemas/"
DEFAULT_KEY = "sk-scripted-upstream-0123456789abcdef"


# -- scripted answers ---------------------------------------------------------------------------
@dataclass
class Text:
    content: str
    deltas: list[str] | None = None  # how the content is streamed (default: about 4 characters a delta)
    delay: float = 0.0  # seconds before each delta after the first
    first_delay: float = 0.0  # seconds before the first chunk (the model's "time to first token")
    finish_reason: str = "stop"
    usage: tuple[int, int] | None = None  # (prompt, completion); default: estimated from the request
    cut: bool = False  # close the stream after the deltas: no finish_reason, no [DONE]
    gate: threading.Event | None = None  # after the first delta, hold the rest until the test sets it
    omit_usage: bool = False  # ignore stream_options.include_usage, as some local servers do

    def pieces(self) -> list[str]:
        if self.deltas is not None:
            assert "".join(self.deltas) == self.content, "deltas must add up to content"
            return self.deltas
        return [self.content[i:i + 4] for i in range(0, len(self.content), 4)] or [""]


@dataclass
class Call:
    name: str
    arguments: Any = field(default_factory=dict)  # a dict (sent as JSON) or a JSON string
    id: str | None = None  # default: call_<n>
    omit_id: bool = False  # send no id (the schema allows it; some local servers do so)

    def json(self) -> str:
        return self.arguments if isinstance(self.arguments, str) else json.dumps(self.arguments)


@dataclass
class ToolCalls:
    calls: list[Call]
    fragments: int = 3  # each call's arguments arrive in this many pieces
    delay: float = 0.0
    usage: tuple[int, int] | None = None
    finish_reason: str = "tool_calls"
    content: str = ""  # text the model writes before its calls (one content delta)
    gate: threading.Event | None = None  # after the first call's first fragment, hold the rest until set


@dataclass
class Failure:
    status: int
    message: str = "The server had an error while processing your request."
    type: str = "server_error"
    code: str | None = None
    retry_after: str | None = None  # the Retry-After header, as sent
    retry_after_ms: str | None = None
    raw: Any = None  # a body sent as it is instead of OpenAI's envelope (another server's own error shape)

    @classmethod
    def rate_limit(cls, retry_after: str | None = None) -> "Failure":
        return cls(429, "Rate limit reached for requests. Please try again later.", "requests",
                   "rate_limit_exceeded", retry_after=retry_after)

    @classmethod
    def model_not_found(cls, model: str) -> "Failure":
        return cls(404, f"The model `{model}` does not exist or you do not have access to it.",
                   "invalid_request_error", "model_not_found")


Answer = Text | ToolCalls | Failure


@dataclass
class Received:
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: dict[str, Any]
    at: float  # time.monotonic() on arrival
    client_port: int = 0  # the same for requests on one kept-alive connection

    @property
    def deployment(self) -> str | None:
        parts = self.path.split("/")
        return parts[3] if self.path.startswith("/openai/deployments/") else None


# -- the server ---------------------------------------------------------------------------------
class ScriptedUpstream:
    def __init__(self, key: str | None = DEFAULT_KEY, models: set[str] | None = None,
                 default: Callable[[dict[str, Any]], Answer] | None = None, validate: bool = True,
                 embed: Callable[[list[str]], list[list[float]]] | None = None,
                 refuse: Callable[[dict[str, Any]], "Failure | None"] | None = None):
        self.key = key  # None: no auth (like a local server)
        self.validate = validate  # False only for benchmarks: schema checks would dominate their timings
        self.models = models  # None: every model exists
        self.default = default or echo
        self.embed = embed or hashing_embedder(64)
        self.refuse = refuse  # a server's dialect: the Failure it answers a request it does not accept, or None
        self.refusals = 0
        self.model_lists = 0  # GET /models answered
        self.requests: list[Received] = []
        self.problems: list[str] = []
        self.disconnects = 0  # streams the client closed before they were finished
        self.disconnected = threading.Event()
        self.completed = 0  # streams sent to the end
        self.gate_timeouts = 0  # gated answers whose test never opened the gate (the client buffered)
        self.gate_limit = 10.0  # seconds a gate holds at most
        self.gated = 0  # answers held at their gate right now
        self._answers: deque[Answer] = deque()
        self.embed_failures: deque[Failure] = deque()  # answered, in order, to the next /embeddings requests
        self._lock = threading.Lock()
        self._ids = 0
        self._server, self._thread, self.port = _start(self._app())

    # -- test side ----------------------------------------------------------------------------
    @property
    def root_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        return f"{self.root_url}/v1"

    def queue(self, *answers: Answer) -> "ScriptedUpstream":
        with self._lock:
            self._answers.extend(answers)
        return self

    def wait_for_requests(self, n: int, timeout: float = 10.0) -> list[Received]:
        deadline = time.monotonic() + timeout
        while len(self.requests) < n and time.monotonic() < deadline:
            time.sleep(0.01)
        return self.requests

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)

    def __enter__(self) -> "ScriptedUpstream":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- serving ------------------------------------------------------------------------------
    def _app(self) -> Starlette:
        return Starlette(routes=[
            Route("/v1/chat/completions", self._chat, methods=["POST"]),
            Route("/openai/deployments/{deployment}/chat/completions", self._azure, methods=["POST"]),
            Route("/v1/embeddings", self._embeddings, methods=["POST"]),
            Route("/v1/models", self._models, methods=["GET"]),
            Route("/openai/deployments/{deployment}/embeddings", self._azure_embeddings, methods=["POST"]),
        ])

    async def _models(self, request: Request):
        """GET /models: the ``models`` it serves (none when every model exists), as ListModelsResponse."""
        failure = self._auth(request, azure=False)
        if failure is not None:
            return self._error(failure)
        self.model_lists += 1
        body = {"object": "list", "data": [{"id": model, "object": "model", "created": 1700000000,
                                            "owned_by": "scripted"} for model in sorted(self.models or ())]}
        self._check(lambda: problems("ListModelsResponse", body), "models list")
        return JSONResponse(body)

    async def _azure_embeddings(self, request: Request):
        if not request.query_params.get("api-version"):
            return self._error(Failure(404, "Resource not found", "invalid_request_error", "404"))
        return await self._embeddings(request, azure=True)

    async def _embeddings(self, request: Request, azure: bool = False):
        body = await request.json()
        self._check(lambda: problems("CreateEmbeddingRequest", body), "embeddings request")
        self._record(request, body)
        denied = self._auth(request, azure)
        if denied is not None:
            return self._error(denied)
        if self.embed_failures:
            return self._error(self.embed_failures.popleft())
        texts = [body["input"]] if isinstance(body.get("input"), str) else list(body.get("input") or [])
        refused = _over_token_limits(texts)
        if refused is not None:  # as OpenAI answers: per input 8,192 tokens, per request 300,000 in all
            self.refusals += 1
            return self._error(refused)
        payload = response_body(str(body.get("model")), texts, self.embed(texts))
        self._check(lambda: problems("CreateEmbeddingResponse", payload), "embeddings answer")
        return JSONResponse(payload)

    async def _azure(self, request: Request):
        if not request.query_params.get("api-version"):
            return self._error(Failure(404, "Resource not found", "invalid_request_error", "404"))
        return await self._chat(request, azure=True)

    async def _chat(self, request: Request, azure: bool = False):
        body = await request.json()
        self._check(lambda: request_problems(body), "request")
        self._record(request, body)
        denied = self._auth(request, azure)
        if denied is not None:
            return self._error(denied)
        if self.models is not None and body.get("model") not in self.models and not azure:
            return self._error(Failure.model_not_found(str(body.get("model"))))
        refused = self.refuse(body) if self.refuse is not None else None
        if refused is not None:
            self.refusals += 1
            return self._error(refused)
        answer = self._next(body)
        if isinstance(answer, Failure):
            return self._error(answer)
        if body.get("stream"):
            include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            chunks = self._chunks(answer, body, include_usage)
            return StreamingResponse(self._sse(chunks), media_type="text/event-stream")
        return self._json(answer, body)

    def _record(self, request: Request, body: dict[str, Any]) -> None:
        self.requests.append(Received(request.url.path, dict(request.query_params), dict(request.headers), body,
                                      time.monotonic(), request.client.port if request.client else 0))

    def _auth(self, request: Request, azure: bool) -> Failure | None:
        if self.key is None:
            return None
        presented = request.headers.get("api-key") if azure else request.headers.get("authorization", "")
        expected = self.key if azure else f"Bearer {self.key}"
        if presented == expected:
            return None
        # Like the real API, the message repeats what was presented: the engine must scrub it.
        return Failure(401, f"Incorrect API key provided: {presented}.", "invalid_request_error", "invalid_api_key")

    def _next(self, body: dict[str, Any]) -> Answer:
        with self._lock:
            if self._answers:
                return self._answers.popleft()
        return self.default(body)

    def _error(self, failure: Failure) -> JSONResponse:
        payload = {"error": {"message": failure.message, "type": failure.type, "param": None, "code": failure.code}}
        if failure.raw is not None:
            payload = failure.raw
        else:
            self._check(lambda: problems("ErrorResponse", payload), "error")
        headers = {}
        if failure.retry_after is not None:
            headers["retry-after"] = failure.retry_after
        if failure.retry_after_ms is not None:
            headers["retry-after-ms"] = failure.retry_after_ms
        return JSONResponse(payload, status_code=failure.status, headers=headers)

    def _check(self, found: Callable[[], list[str]], what: str) -> None:
        if self.validate:
            self.problems += [f"{what}: {p}" for p in found()]

    def _completion_id(self) -> str:
        with self._lock:
            self._ids += 1
            return f"chatcmpl-scripted{self._ids:06d}"

    # -- stream -------------------------------------------------------------------------------
    def _chunks(self, answer: Text | ToolCalls, body: dict[str, Any], include_usage: bool):
        """(delay or gate, chunk or None for a cut) pairs of one streamed answer."""
        include_usage = include_usage and not (isinstance(answer, Text) and answer.omit_usage)
        base = {"id": self._completion_id(), "object": "chat.completion.chunk", "created": int(time.time()),
                "model": body.get("model") or "scripted"}
        extra = {"usage": None} if include_usage else {}

        def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
            return {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **extra}

        first = answer.first_delay if isinstance(answer, Text) else 0.0
        out: list[tuple[Any, dict[str, Any] | None]] = [(first, chunk({"role": "assistant", "content": ""}))]
        if isinstance(answer, Text):
            out += [(answer.delay if i else 0.0, chunk({"content": p})) for i, p in enumerate(answer.pieces())]
            if answer.gate is not None and len(out) > 2:
                out[2] = (answer.gate, out[2][1])
            if answer.cut:
                return out + [(0.0, None)]
        else:
            if answer.content:
                out.append((0.0, chunk({"content": answer.content})))
            calls = [(answer.delay, chunk({"tool_calls": [f]})) for f in self._fragments(answer)]
            if answer.gate is not None and len(calls) > 1:
                calls[1] = (answer.gate, calls[1][1])
            out += calls
        out.append((0.0, chunk({}, answer.finish_reason)))
        if include_usage:
            out.append((0.0, {**base, "choices": [], "usage": usage_of(answer, body)}))
        return out

    def _fragments(self, answer: ToolCalls) -> list[dict[str, Any]]:
        fragments = []
        for index, call in enumerate(answer.calls):
            text = call.json()
            size = max(1, -(-len(text) // max(1, answer.fragments)))
            pieces = [text[i:i + size] for i in range(0, len(text), size)] or [""]
            call_id = call.id or f"call_scripted{index}{self._ids:04d}"
            head = {"index": index, "id": call_id, "type": "function", "function": {"name": call.name, "arguments": ""}}
            if call.omit_id:
                del head["id"]
            fragments.append(head)
            fragments += [{"index": index, "function": {"arguments": piece}} for piece in pieces]
        return fragments

    async def _sse(self, chunks):
        finished = False
        try:
            for delay, chunk in chunks:
                if isinstance(delay, threading.Event):
                    await self._wait_gate(delay)
                elif delay:
                    await asyncio.sleep(delay)
                if chunk is None:
                    finished = True
                    return
                self._check(lambda: problems("CreateChatCompletionStreamResponse", chunk), "stream chunk")
                yield f"data: {json.dumps(chunk)}\n\n"
            yield "data: [DONE]\n\n"
            finished = True
            self.completed += 1
        finally:
            if not finished:
                self.disconnects += 1
                self.disconnected.set()

    async def _wait_gate(self, gate: threading.Event) -> None:
        deadline = time.monotonic() + self.gate_limit
        self.gated += 1
        try:
            while not gate.is_set():
                if time.monotonic() > deadline:
                    self.gate_timeouts += 1
                    return
                await asyncio.sleep(0.005)
        finally:
            self.gated -= 1

    # -- non-streamed -------------------------------------------------------------------------
    def _json(self, answer: Text | ToolCalls, body: dict[str, Any]) -> JSONResponse:
        message: dict[str, Any] = {"role": "assistant", "content": None, "refusal": None}
        if isinstance(answer, Text):
            message["content"] = answer.content
        else:
            message["content"] = answer.content or None
            message["tool_calls"] = [{"id": c.id or f"call_scripted{i}", "type": "function",
                                      "function": {"name": c.name, "arguments": c.json()}}
                                     for i, c in enumerate(answer.calls)]
        payload = {"id": self._completion_id(), "object": "chat.completion", "created": int(time.time()),
                   "model": body.get("model") or "scripted", "usage": usage_of(answer, body),
                   "choices": [{"index": 0, "message": message, "finish_reason": answer.finish_reason,
                                "logprobs": None}]}
        self._check(lambda: problems("CreateChatCompletionResponse", payload), "response")
        return JSONResponse(payload)


# -- contract -----------------------------------------------------------------------------------
def _over_token_limits(texts: list[str]) -> Failure | None:
    """OpenAI's limits of a CreateEmbeddingRequest (the spec's ``input``): a 400 past 8,192 tokens in an
    input or 300,000 tokens summed across the inputs of one request."""
    from asstctl.server.retrieval.chunking import count_tokens

    counts = [count_tokens(text) for text in texts]
    if counts and max(counts) > 8192:
        return Failure(400, f"This model's maximum context length is 8192 tokens, however you requested "
                            f"{max(counts)} tokens in an input.", "invalid_request_error")
    if sum(counts) > 300_000:
        return Failure(400, f"Requested {sum(counts)} tokens, max 300000 tokens per request",
                       "invalid_request_error", "max_tokens_per_request")
    return None


def problems(schema: str, document: Any) -> list[str]:
    return [f"{schema}: {'/'.join(map(str, e.absolute_path))}: {e.message[:300]}"
            for e in validator_for(SCHEMAS + schema).iter_errors(document)]


def request_problems(body: Any) -> list[str]:
    found = problems("CreateChatCompletionRequest", body)
    if isinstance(body, dict):
        found += [f"CreateChatCompletionRequest: unknown key `{k}`" for k in sorted(set(body) - request_keys())]
    return found


def request_keys(schema: str = "CreateChatCompletionRequest") -> set[str]:
    """Every top-level key the request ``schema`` defines (through its ``allOf``)."""
    schemas = spec()["components"]["schemas"]

    def keys(node: dict[str, Any]) -> set[str]:
        if "$ref" in node:
            return keys(schemas[node["$ref"].removeprefix(SCHEMAS)])
        found = set(node.get("properties", {}))
        for part in node.get("allOf", []):
            found |= keys(part)
        return found

    return keys(schemas[schema])


def usage_of(answer: Text | ToolCalls, body: dict[str, Any]) -> dict[str, int]:
    if answer.usage is not None:
        prompt, completion = answer.usage
    else:
        prompt = max(1, len(json.dumps(body.get("messages") or [])) // 4)
        produced = answer.content if isinstance(answer, Text) else answer.content + "".join(c.json() for c in answer.calls)
        completion = max(1, len(produced) // 4)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def last_user_text(body: dict[str, Any]) -> str:
    for message in reversed(body.get("messages") or []):
        if message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, str):
                return content
            return " ".join(p.get("text", "") for p in content or [] if p.get("type") == "text")
    return ""


def echo(body: dict[str, Any]) -> Answer:
    return Text(f"You said: {last_user_text(body)}")


# -- uvicorn in a thread ------------------------------------------------------------------------
def _start(app: Starlette):
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(2048)
    server = uvicorn.Server(uvicorn.Config(app, log_config=None, access_log=False, lifespan="off",
                                           timeout_graceful_shutdown=1))
    ready = threading.Event()

    def run() -> None:
        async def main():
            server.config.load()
            server.lifespan = server.config.lifespan_class(server.config)
            await server.startup(sockets=[sock])
            ready.set()
            await server.main_loop()
            await server.shutdown(sockets=[sock])

        try:
            asyncio.run(main())
        finally:
            ready.set()
            sock.close()

    port = sock.getsockname()[1]
    thread = threading.Thread(target=run, name="scripted-upstream", daemon=True)
    thread.start()
    ready.wait(10)
    return server, thread, port


# -- as a process (benchmarks) ------------------------------------------------------------------
def main(argv: list[str] | None = None) -> None:
    """``python -m tests.upstream --first-delay 1 --deltas 5``: serve until stdin closes; prints the base URL."""
    import argparse
    import sys

    parser = argparse.ArgumentParser(prog="python -m tests.upstream")
    parser.add_argument("--first-delay", type=float, default=0.0, help="seconds before each answer's first chunk")
    parser.add_argument("--delay", type=float, default=0.0, help="seconds between deltas")
    parser.add_argument("--deltas", type=int, default=5)
    args = parser.parse_args(argv)
    words = [f"word{i} " for i in range(args.deltas)]

    def answer(body: dict[str, Any]) -> Answer:
        return Text("".join(words), deltas=words, first_delay=args.first_delay, delay=args.delay)

    with ScriptedUpstream(key=None, default=answer, validate=False) as upstream:
        print(upstream.base_url, flush=True)
        sys.stdin.read()


if __name__ == "__main__":
    main()
