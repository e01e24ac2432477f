"""A hostile Chat Completions upstream on loopback (its error answers serve the Responses engine too): raw HTTP/1.1 written by hand, so it can send what
no well-behaved server would (a 200 MB or endless error body, lone surrogates, endless streams,
floods of tiny deltas and a slow drip of them, the caller's key echoed back (also behind whitespace
padding that puts it across a cap; as a tool-call id or name), tool-call ids with lone surrogates,
of 20,000 characters, 129 calls in one reply, ``[DONE]`` without a finish_reason, a head that never comes).
``POST /embeddings`` answers a 400 with a 200 MB body.

The last user message names the behaviour (``BEHAVIOURS``). Everything is bounded: no answer sends
more than ``MAX_BYTES`` or lasts longer than ``MAX_SECONDS``, and each stops as soon as the client
hangs up. Valid chunks it sends are the official ``CreateChatCompletionStreamResponse`` shape, its
JSON errors ``ErrorResponse``: the first of each kind is validated as it is sent (``problems``).
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections import Counter
from typing import Any

from asstctl.server.engine.limits import CALLS, ERROR_BODY_CAP
from asstctl.server.engine.sse import ERROR_CHARS
from tests.upstream import problems

MAX_BYTES = 256 << 20
MAX_SECONDS = 60.0
PIECE = "x" * 99 + " "  # a 100-character delta
DRIP_SECONDS = 2.0  # how long the drip of separately flushed 100-character deltas lasts
BAD_BYTES = b"\xff\xfe and \xe2\x82"  # invalid UTF-8: two bytes no character starts with, a character cut short
BAD = "@BAD@"  # where ``_raw`` puts BAD_BYTES
# The huge and endless error bodies ask for their retries 100 ms apart (retry-after-ms, which the engine
# honours): 4 attempts then take well under a second, far inside the hostile tests' 5 s turn limit even on
# a loaded machine (the default 0.5 + 1 + 2 s of waits left 1.5 s, and a loaded run went past it).
QUICK_RETRY = "retry-after-ms: 100\r\n"
INTERRUPT_SECONDS = 0.4  # an answer of `interrupting` after the first two (which wait to be interrupted)
ARGUMENT_PIECES = 4000  # one-character fragments of one call's arguments (arguments-flood)
KEY_AT_CUT = 20  # characters of the key before a cap, the rest after it (padded-key-*)


class HostileUpstream:
    def __init__(self) -> None:
        self.seen: Counter[str] = Counter()  # requests per behaviour
        self.headers: list[dict[str, str]] = []
        self.bodies: list[dict[str, Any]] = []
        self.hung_up: Counter[str] = Counter()  # answers the client closed before their end
        self.dripped = 0  # deltas the last drip sent
        self.interrupted = 0  # answers another request interrupted (interrupting)
        self._answering: asyncio.Event | None = None  # set: the answer in progress is interrupted
        self.problems: list[str] = []  # schema violations of what it sent (each kind checked once)
        self.checked: set[str] = set()
        self._handlers: set[asyncio.Task] = set()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="hostile-upstream", daemon=True)
        self._thread.start()
        self._ready.wait(10)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)

        async def main():
            self._stopping = asyncio.Event()
            self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
            self.port = self._server.sockets[0].getsockname()[1]
            self._ready.set()
            await self._stopping.wait()
            self._server.close()
            for task in list(self._handlers):
                task.cancel()
            await asyncio.gather(*self._handlers, return_exceptions=True)
            await self._server.wait_closed()

        try:
            self._loop.run_until_complete(main())
        finally:
            self._loop.close()

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._stopping.set)
        self._thread.join(timeout=10)

    def __enter__(self) -> "HostileUpstream":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- one connection ---------------------------------------------------------------------
    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        self._handlers.add(task)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
                body = json.loads(await reader.readexactly(min(int(headers.get("content-length", 0)), 1 << 20)))
                self.headers.append(headers)
                self.bodies.append(body)
                embeddings = lines[0].split(" ")[1].split("?")[0].endswith("/embeddings")
                name = "embed-huge" if embeddings else behaviour_of(body)
                self.seen[name] += 1
                started = time.monotonic()
                keep = await getattr(self, "_" + name.replace("-", "_"))(writer, headers, started)
                if not keep:
                    break
        except (asyncio.IncompleteReadError, ConnectionError, ValueError, asyncio.CancelledError):
            pass
        finally:
            writer.close()
            self._handlers.discard(task)

    # -- helpers ------------------------------------------------------------------------------
    @staticmethod
    def _head(writer, status: int, extra: str) -> None:
        writer.write(f"HTTP/1.1 {status} X\r\n{extra}\r\n".encode())

    def _valid(self, text: str) -> str:
        """``text`` (server-sent events) as it is; its first chunk of each kind (the delta's keys and the
        finish_reason; an in-stream error) is validated against the official schema (``problems``)."""
        for line in text.splitlines():
            if line.startswith("data: {"):
                self._check(json.loads(line.removeprefix("data: ")))
        return text

    def _check(self, document: dict[str, Any]) -> None:
        if "error" in document:
            kind, schema = "error", "ErrorResponse"
        else:
            choice = document["choices"][0]
            kind = f"chunk {','.join(sorted(choice['delta']))} {choice['finish_reason']}"
            schema = "CreateChatCompletionStreamResponse"
        if kind not in self.checked:
            self.checked.add(kind)
            self.problems += [f"{kind}: {p}" for p in problems(schema, document)]

    async def _sse(self, writer, chunks, keep: bool = True) -> bool:
        self._head(writer, 200, "content-type: text/event-stream\r\ntransfer-encoding: chunked\r\n")
        for data in chunks:
            await self._chunk(writer, self._valid(f"data: {data}\n\n"))
        await self._chunk(writer, "data: [DONE]\n\n")
        writer.write(b"0\r\n\r\n")
        await writer.drain()
        return keep

    @staticmethod
    async def _chunk(writer, text: str) -> None:
        data = text.encode("utf-8", "surrogatepass")
        writer.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        await writer.drain()

    @staticmethod
    async def _raw(writer, text: str) -> None:
        """One chunk of ``text`` with BAD_BYTES (not UTF-8) where it says BAD, then the end of the body."""
        data = text.encode().replace(BAD.encode(), BAD_BYTES)
        writer.write(f"{len(data):x}\r\n".encode() + data + b"\r\n0\r\n\r\n")
        await writer.drain()

    async def _endless(self, writer, name: str, started: float, payload: str, pause: float) -> bool:
        """Chunks of ``payload`` until the client hangs up (or the bounds)."""
        sent = 0
        try:
            while sent < MAX_BYTES and time.monotonic() - started < MAX_SECONDS:
                await self._chunk(writer, payload)
                sent += len(payload)
                await asyncio.sleep(pause)
        except ConnectionError:
            self.hung_up[name] += 1
        return False

    # -- behaviours ---------------------------------------------------------------------------
    async def _huge_error(self, writer, headers, started) -> bool:
        """A 500 whose declared body is 200 MB (only sent while the client reads)."""
        return await self._huge(writer, 500, "huge-error", started, QUICK_RETRY)

    async def _huge(self, writer, status: int, name: str, started: float, extra: str = "") -> bool:
        self._head(writer, status, f"content-type: application/json\r\ncontent-length: {200 << 20}\r\n{extra}")
        block, sent = b"x" * 65536, 0
        try:
            while sent < 200 << 20 and time.monotonic() - started < MAX_SECONDS:
                writer.write(block)
                await writer.drain()
                sent += len(block)
        except ConnectionError:
            self.hung_up[name] += 1
        return False

    async def _endless_error(self, writer, headers, started) -> bool:
        self._head(writer, 500, f"content-type: text/plain\r\ntransfer-encoding: chunked\r\n{QUICK_RETRY}")
        return await self._endless(writer, "endless-error", started, "error " * 10000, 0)

    async def _endless_line(self, writer, headers, started) -> bool:
        """A 200 event stream whose first ``data:`` line never ends (no newline, ever): the same on every API."""
        self._head(writer, 200, "content-type: text/event-stream\r\ntransfer-encoding: chunked\r\n")
        await self._chunk(writer, 'data: {"id": "')
        return await self._endless(writer, "endless-line", started, "z" * 65536, 0)

    async def _endless_stream(self, writer, headers, started) -> bool:
        self._head(writer, 200, "content-type: text/event-stream\r\ntransfer-encoding: chunked\r\n")
        return await self._endless(writer, "endless-stream", started, self._valid(sse(delta({"content": "more "}))), 0.05)

    async def _slow_tokens(self, writer, headers, started) -> bool:
        self._head(writer, 200, "content-type: text/event-stream\r\ntransfer-encoding: chunked\r\n")
        return await self._endless(writer, "slow-tokens", started, self._valid(sse(delta({"content": "tok "}))), 0.01)

    async def _silent(self, writer, headers, started) -> bool:
        self._head(writer, 200, "content-type: text/event-stream\r\ntransfer-encoding: chunked\r\n")
        await self._chunk(writer, self._valid(sse(delta({"content": "Hello"}))))
        await asyncio.sleep(MAX_SECONDS)
        return False

    async def _surrogate(self, writer, headers, started) -> bool:
        # JSON escapes of a lone high and a lone low surrogate, as some tokenizers emit mid-character
        return await self._sse(writer, [json.dumps(delta({"content": "bad \ud800 and \udfff"})),
                                        json.dumps(delta({"content": " end"})), json.dumps(delta({}, "stop"))])

    async def _invalid_utf8(self, writer, headers, started) -> bool:
        self._head(writer, 200, "content-type: text/event-stream\r\ntransfer-encoding: chunked\r\n")
        await self._raw(writer, self._valid(sse(delta({"content": f"bad {BAD} end"})) + sse(delta({}, "stop")))
                        + "data: [DONE]\n\n")
        return True

    async def _flood(self, writer, headers, started) -> bool:
        """2 MB of text in 100-character deltas, as fast as the client reads."""
        chunk = self._valid(sse(delta({"content": PIECE})))
        self._head(writer, 200, "content-type: text/event-stream\r\ntransfer-encoding: chunked\r\n")
        batch = chunk * 100
        for _ in range(200):
            await self._chunk(writer, batch)
        await self._chunk(writer, self._valid(sse(delta({}, "stop"))) + "data: [DONE]\n\n")
        writer.write(b"0\r\n\r\n")
        await writer.drain()
        return True

    async def _oversize(self, writer, headers, started) -> bool:
        """More text than the reply cap, in 64 KB deltas."""
        self._head(writer, 200, "content-type: text/event-stream\r\ntransfer-encoding: chunked\r\n")
        return await self._endless(writer, "oversize", started, self._valid(sse(delta({"content": "y" * 65536}))), 0)

    async def _echo_key(self, writer, headers, started) -> bool:
        """The Authorization header echoed in the text, the key split across two deltas."""
        auth = headers.get("authorization", "")
        half = len(auth) // 2 + 3
        return await self._sse(writer, [json.dumps(delta({"content": "You sent " + auth[:half]})),
                                        json.dumps(delta({"content": auth[half:] + " to me."})),
                                        json.dumps(delta({}, "stop"))])

    async def _echo_key_end(self, writer, headers, started) -> bool:
        """The reply ends with the key but its last character (held as a possible start of the key until the end)."""
        return await self._sse(writer, [json.dumps(delta({"content": "You sent " + key_of(headers)[:-1]})),
                                        json.dumps(delta({}, "stop"))])

    async def _open_after_end(self, writer, headers, started) -> bool:
        """A whole answer ([DONE]), then the body goes on: a keep-alive comment every 0.1 s, never its end."""
        self._head(writer, 200, "content-type: text/event-stream\r\ntransfer-encoding: chunked\r\n")
        await self._chunk(writer, self._valid(sse(delta({"content": "All done."}, "stop"))) + "data: [DONE]\n\n")
        return await self._endless(writer, "open-after-end", started, ": keep-alive\n\n", 0.1)

    async def _tail_dropped(self, writer, headers, started) -> bool:
        """Text ending in "s" (the key's first character: held back), then the connection closed mid-answer."""
        self._head(writer, 200, "content-type: text/event-stream\r\ntransfer-encoding: chunked\r\n")
        await self._chunk(writer, self._valid(sse(delta({"content": "Here are things"}))))
        return False

    async def _echo_key_error(self, writer, headers, started) -> bool:
        """A 400 whose message echoes the header right where a 300-character cut would fall."""
        message = "p" * 290 + " Authorization: " + headers.get("authorization", "") + " is not valid here."
        payload = json.dumps({"error": {"message": message, "type": "invalid_request_error", "param": None,
                                        "code": None}}).encode()
        self._check(json.loads(payload))
        self._head(writer, 400, f"content-type: application/json\r\ncontent-length: {len(payload)}\r\n")
        writer.write(payload)
        await writer.drain()
        return True

    async def _padded_key_error(self, writer, headers, started) -> bool:
        """A 400 whose plain-text body is padded with spaces so that the key lies across ERROR_BODY_CAP."""
        payload = padded_key(headers, ERROR_BODY_CAP).encode()
        self._head(writer, 400, f"content-type: text/plain\r\ncontent-length: {len(payload)}\r\n")
        try:
            writer.write(payload)
            await writer.drain()
        except ConnectionError:
            pass
        return False

    async def _padded_key_stream_error(self, writer, headers, started) -> bool:
        """An error chunk inside the stream, padded so that the key lies across the in-stream cut (ERROR_CHARS)."""
        return await self._sse(writer, [json.dumps({"error": {"message": padded_key(headers, ERROR_CHARS),
                                                              "type": "server_error", "param": None, "code": None}})])

    async def _drip(self, writer, headers, started) -> bool:
        """100-character deltas, each its own flushed chunk, for DRIP_SECONDS; then the end."""
        self._head(writer, 200, "content-type: text/event-stream\r\ntransfer-encoding: chunked\r\n")
        self.dripped = 0
        piece = self._valid(sse(delta({"content": PIECE})))
        while time.monotonic() - started < DRIP_SECONDS:
            await self._chunk(writer, piece)
            self.dripped += 1
            await asyncio.sleep(0.002)
        await self._chunk(writer, self._valid(sse(delta({}, "stop"))) + "data: [DONE]\n\n")
        writer.write(b"0\r\n\r\n")
        await writer.drain()
        return True

    async def _done_no_finish(self, writer, headers, started) -> bool:
        return await self._sse(writer, [json.dumps(delta({"content": "partial an"}))])

    async def _done_empty_once(self, writer, headers, started) -> bool:
        if self.seen["done-empty-once"] == 1:
            return await self._sse(writer, [json.dumps(delta({"role": "assistant", "content": ""}))])
        return await self._sse(writer, [json.dumps(delta({"content": "Second time lucky."})),
                                        json.dumps(delta({}, "stop"))])

    async def _validation_500(self, writer, headers, started) -> bool:
        errors = "\n".join(f"  {{'type': 'missing', 'loc': ('body', 'logit_bias', {i}), 'msg': 'Field required', "
                           f"'input': None}}" for i in range(7))
        payload = json.dumps({"error": {"message": f"7 validation errors:\n{errors}", "type": "internal_server_error",
                                        "param": None, "code": None}}).encode()
        self._check(json.loads(payload))
        self._head(writer, 500, f"content-type: application/json\r\ncontent-length: {len(payload)}\r\n")
        writer.write(payload)
        await writer.drain()
        return True

    async def _no_head(self, writer, headers, started) -> bool:
        """The request read, then nothing at all (no status line) until the client hangs up."""
        await asyncio.sleep(MAX_SECONDS)
        return False

    async def _embed_huge(self, writer, headers, started) -> bool:
        """A 400 whose declared body is 200 MB (only sent while the client reads)."""
        return await self._huge(writer, 400, "embed-huge", started)

    async def _no_usage(self, writer, headers, started) -> bool:
        words = [json.dumps(delta({"content": f"word{i} "})) for i in range(600)]
        return await self._sse(writer, [*words, json.dumps(delta({}, "length"))])

    # -- tool calls: their ids and names (each answers "done." once the request carries the outputs) ----
    async def _call_id_surrogate(self, writer, headers, started) -> bool:
        return await self._calls(writer, [("call_\ud800x", "get_weather")])

    async def _call_id_key(self, writer, headers, started) -> bool:
        return await self._calls(writer, [("call_" + key_of(headers), "get_weather")])

    async def _call_name_key(self, writer, headers, started) -> bool:
        return await self._calls(writer, [("call_named", "fn_" + key_of(headers))])

    async def _huge_ids(self, writer, headers, started) -> bool:
        """5 calls with 20,000-character ids (100,000 characters of ids in all)."""
        return await self._calls(writer, [(f"call_{n}_" + "i" * 20_000, "get_weather") for n in range(5)])

    async def _many_calls(self, writer, headers, started) -> bool:
        return await self._calls(writer, [(f"call_{n}", "get_weather") for n in range(CALLS + 1)])

    async def _json_answer(self, writer, headers, started) -> bool:
        """A 200 that ignores ``stream: true``: a plain ``CreateChatCompletionResponse``."""
        return self._json(writer, 200, {
            "id": "chatcmpl-hostile", "object": "chat.completion", "created": 0, "model": "hostile",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "plain json answer", "refusal": None},
                         "finish_reason": "stop", "logprobs": None}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 3, "total_tokens": 6}}, "CreateChatCompletionResponse")

    async def _json_error_200(self, writer, headers, started) -> bool:
        """An ``ErrorResponse`` sent with status 200, echoing the key."""
        return self._json(writer, 200, {"error": {"message": f"model overloaded ({key_of(headers)}), try later",
                                                  "type": "server_error", "param": None, "code": None}})

    def _json(self, writer, status: int, document: dict[str, Any], schema: str = "ErrorResponse") -> bool:
        self.problems += [f"{schema}: {p}" for p in problems(schema, document)]
        payload = json.dumps(document).encode()
        self._head(writer, status, f"content-type: application/json\r\ncontent-length: {len(payload)}\r\n")
        writer.write(payload)
        return True

    async def _drop_connection(self, writer, headers, started) -> bool:
        """The request read, then the connection closed: no status line."""
        return False

    async def _drop_once(self, writer, headers, started) -> bool:
        if self.seen["drop-once"] == 1:
            return False
        return await self._sse(writer, [json.dumps(delta({"content": "Reconnected."})), json.dumps(delta({}, "stop"))])

    async def _interrupting(self, writer, headers, started) -> bool:
        """llama-cpp-python's server (its --interrupt_requests default): a request that arrives while another is
        answered ends that one's stream at once, unfinished (a role delta, no finish_reason). An answer takes
        INTERRUPT_SECONDS; the first two wait (up to 5 s) for the next request to interrupt them."""
        if self._answering is not None:
            self._answering.set()
        mine = self._answering = asyncio.Event()
        try:
            await asyncio.wait_for(mine.wait(), 5 if self.seen["interrupting"] <= 2 else INTERRUPT_SECONDS)
        except asyncio.TimeoutError:
            pass
        if self._answering is mine:
            self._answering = None
        if mine.is_set():
            self.interrupted += 1
            return await self._sse(writer, [json.dumps(delta({"role": "assistant", "content": ""}))])
        return await self._sse(writer, [json.dumps(delta({"content": "Answered."})), json.dumps(delta({}, "stop"))])

    async def _arguments_flood(self, writer, headers, started) -> bool:
        """One call whose arguments come in ARGUMENT_PIECES one-character fragments, 200 to a write."""
        fragments = [{"index": 0, "id": "call_flood", "type": "function", "function": {"name": "get_weather",
                                                                                       "arguments": '{"city": "'}}]
        fragments += [{"index": 0, "function": {"arguments": "z"}}] * ARGUMENT_PIECES + [
            {"index": 0, "function": {"arguments": '"}'}}]
        chunks = [self._valid(sse(delta({"tool_calls": [f]}))) for f in fragments] + [
            self._valid(sse(delta({}, "tool_calls"))), "data: [DONE]\n\n"]
        self._head(writer, 200, "content-type: text/event-stream\r\ntransfer-encoding: chunked\r\n")
        for n in range(0, len(chunks), 200):
            await self._chunk(writer, "".join(chunks[n:n + 200]))
        writer.write(b"0\r\n\r\n")
        await writer.drain()
        return True

    async def _dup_call_ids(self, writer, headers, started) -> bool:
        return await self._calls(writer, [("call_same", "get_weather"), ("call_same", "get_weather")])

    async def _calls(self, writer, calls: list[tuple[str, str]]) -> bool:
        if has_outputs(self.bodies[-1]):
            return await self._sse(writer, [json.dumps(delta({"content": "done."})), json.dumps(delta({}, "stop"))])
        return await self._sse(writer, [json.dumps(delta({"tool_calls": [{
            "index": n, "id": call_id, "type": "function", "function": {"name": name, "arguments": "{}"}}]}))
            for n, (call_id, name) in enumerate(calls)] + [json.dumps(delta({}, "tool_calls"))])


BEHAVIOURS = [name.lstrip("_").replace("_", "-") for name in vars(HostileUpstream)
              if name.startswith("_") and not name.startswith("__")
              and name.lstrip("_") not in ("run", "handle", "head", "sse", "chunk", "raw", "endless", "huge", "calls", "json")]


def behaviour_of(body: dict[str, Any]) -> str:
    """The last user message's text, of a Chat Completions (``messages``) or Responses (``input``) request."""
    for message in reversed(body.get("messages") or body.get("input") or []):
        if message.get("role") == "user":
            text = message.get("content")
            text = text if isinstance(text, str) else ""
            return text.strip() if text.strip() in BEHAVIOURS else "no-usage"
    return "no-usage"


def has_outputs(body: dict[str, Any]) -> bool:
    """Whether a Chat Completions or Responses request carries tool outputs (its last item is one)."""
    last = (body.get("messages") or body.get("input") or [{}])[-1]
    return last.get("role") == "tool" or last.get("type") == "function_call_output"


def key_of(headers: dict[str, str]) -> str:
    return headers.get("authorization", "").removeprefix("Bearer ")


def padded_key(headers: dict[str, str], cap: int) -> str:
    """"oops", spaces, the caller's key (its first KEY_AT_CUT characters before ``cap``) and a tail."""
    key = key_of(headers)
    return "oops" + " " * (cap - 4 - KEY_AT_CUT) + key + " tail"


def delta(content: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {"id": "chatcmpl-hostile", "object": "chat.completion.chunk", "created": 0, "model": "hostile",
            "choices": [{"index": 0, "delta": content, "finish_reason": finish}]}


def sse(chunk: dict[str, Any]) -> str:
    return f"data: {json.dumps(chunk)}\n\n"
