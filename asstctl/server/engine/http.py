"""A small asyncio HTTP/1.1 client for the upstream engine: keep-alive connections, streamed bodies.

Why not httpx: its connection pool does O(connections) work per request and resolves even an IP
literal on a worker thread, so 500 concurrent upstream streams queued for seconds with the CPU idle.
Here a request takes an idle connection of its origin (or opens one with ``asyncio.open_connection``),
writes the request, and the caller reads the response line by line; closing the response early (a
cancel) aborts the connection at once, so the upstream sees the request end. h11 (the HTTP/1.1 state
machine httpx itself builds on) does the parsing. No proxies, no redirects, no HTTP/2.

Imports only the standard library and h11.
"""

from __future__ import annotations

import asyncio
import ssl
import sys
import time
from collections import defaultdict
from contextlib import aclosing
from dataclasses import dataclass
from typing import AsyncIterator
from urllib.parse import urlencode, urlsplit

import h11

from asstctl.server.aio import Timeout, within

READ_SIZE = 65536
IDLE_EXPIRY = 4.0  # seconds an idle connection is kept (servers commonly drop them after 5)


class HttpError(Exception):
    """A transport failure: connect, read, write or protocol."""


class ConnectFailed(HttpError):
    """The connection could not be opened (refused, unreachable, TLS handshake)."""


class HttpTimeout(HttpError):
    """Connect, write or the wait for the next bytes took longer than allowed."""


class DeadlineReached(HttpTimeout):
    """The whole response took longer than its deadline (``Response.deadline``)."""


class Dropped(HttpError):
    """The server closed the connection before its response was complete (before its head: nothing came)."""


class TooLarge(HttpError):
    """One line of the body is longer than allowed."""


@dataclass
class Timeouts:
    connect: float = 10.0
    read: float = 120.0  # longest silence between two chunks (a local model's first token can be slow)
    write: float = 30.0


class Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader, self.writer = reader, writer
        self.h11 = h11.Connection(our_role=h11.CLIENT)
        self.idle_since = time.monotonic()

    def usable(self) -> bool:
        return (time.monotonic() - self.idle_since < IDLE_EXPIRY and not self.reader.at_eof()
                and not self.writer.is_closing())

    def abort(self) -> None:
        transport = self.writer.transport
        if transport is not None:
            transport.abort()


class Response:
    """A response whose body is read as it arrives; ``aclose()`` keeps or drops the connection."""

    def __init__(self, pool: "Pool", origin: tuple, connection: Connection, head: h11.Response, timeouts: Timeouts):
        self.pool, self.origin, self.connection, self.timeouts = pool, origin, connection, timeouts
        self.status_code = head.status_code
        self.headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in head.headers}
        self.finished = False
        self._closed = False
        self.deadline: float | None = None  # time.monotonic() by which the whole body must have come

    async def chunks(self) -> AsyncIterator[bytes]:
        while not self.finished:
            event = await next_event(self.connection, self.timeouts.read, self.deadline)
            if isinstance(event, h11.Data):
                yield bytes(event.data)
            elif isinstance(event, h11.EndOfMessage):
                self.finished = True
            elif isinstance(event, h11.ConnectionClosed):
                raise Dropped("the connection closed before the response was complete")

    async def line_batches(self, max_line: int) -> AsyncIterator[list[str]]:
        """The body's lines (invalid UTF-8 replaced), in the batches one read brought; a line longer
        than ``max_line`` bytes raises :class:`TooLarge`."""
        pending: list[bytes] = []
        size = 0
        async with aclosing(self.chunks()) as chunks:
            async for chunk in chunks:
                *complete, rest = chunk.split(b"\n")
                lines = []
                for piece in complete:
                    if pending:
                        piece, pending, size = b"".join([*pending, piece]), [], 0
                    lines.append(piece.rstrip(b"\r").decode("utf-8", "replace"))
                if rest:
                    pending.append(rest)
                    size += len(rest)
                    if size > max_line:
                        raise TooLarge(f"a line of the answer is longer than {max_line} bytes")
                if lines:
                    yield lines
        if pending:
            yield [b"".join(pending).rstrip(b"\r").decode("utf-8", "replace")]

    async def lines(self, max_line: int = 4 << 20) -> AsyncIterator[str]:
        async for batch in self.line_batches(max_line):
            for line in batch:
                yield line

    async def read(self, cap: int | None = None) -> bytes:
        """The body, or its first ``cap`` bytes (then the connection is dropped, the rest never read)."""
        parts, size = [], 0
        async with aclosing(self.chunks()) as chunks:
            async for chunk in chunks:
                parts.append(chunk)
                size += len(chunk)
                if cap is not None and size >= cap:
                    break
        return b"".join(parts)[:cap] if cap is not None else b"".join(parts)

    def close(self) -> None:
        """Return the connection to the pool after a complete response, else abort it (at once)."""
        if self._closed:
            return
        self._closed = True
        self.pool.release(self.origin, self.connection, reusable=self.finished)


class Pool:
    """Keep-alive connections per (scheme, host, port); as many at once as requests need."""

    def __init__(self, timeouts: Timeouts | None = None, user_agent: str = "asstctl"):
        self.timeouts = timeouts or Timeouts()
        self.user_agent = user_agent
        self._idle: dict[tuple, list[Connection]] = defaultdict(list)
        self._ssl: ssl.SSLContext | None = None

    async def post(self, url: str, body: bytes, headers: dict[str, str], params: dict[str, str] | None = None,
                   deadline: float | None = None, method: str = "POST") -> Response:
        """Send a POST (or ``method``) and return once the response head arrived (the body is left to
        read); the head must come before ``deadline`` (``time.monotonic()``), if given."""
        parts = urlsplit(url)
        origin = (parts.scheme, parts.hostname, parts.port or (443 if parts.scheme == "https" else 80))
        target = (parts.path or "/") + ("?" + urlencode(params) if params else "")
        request = h11.Request(method=method, target=target, headers=[
            ("host", parts.netloc), ("user-agent", self.user_agent), ("content-type", "application/json"),
            ("accept", "text/event-stream"), ("content-length", str(len(body))), *headers.items()])
        while True:
            connection, reused = await self._connection(origin)
            try:
                return await self._exchange(origin, connection, request, body, deadline)
            except HttpError:
                connection.abort()
                if not reused:
                    raise
                # a kept-alive connection the server had closed meanwhile: once more on a fresh one
            except BaseException:
                connection.abort()
                raise

    async def _exchange(self, origin, connection: Connection, request: h11.Request, body: bytes,
                        deadline: float | None = None) -> Response:
        data = connection.h11.send(request) + connection.h11.send(h11.Data(data=body)) + \
            connection.h11.send(h11.EndOfMessage())
        connection.writer.write(data)
        await _within(connection.writer.drain(), self.timeouts.write, "sending the request")
        while True:
            event = await next_event(connection, self.timeouts.read, deadline)
            if isinstance(event, h11.Response):
                return Response(self, origin, connection, event, self.timeouts)
            if isinstance(event, h11.ConnectionClosed):
                raise Dropped("the server closed the connection before answering")
            # h11.InformationalResponse (100 Continue, ...): wait for the real one

    async def _connection(self, origin: tuple) -> tuple[Connection, bool]:
        idle = self._idle[origin]
        while idle:
            connection = idle.pop()
            if connection.usable():
                return connection, True
            connection.abort()
        scheme, host, port = origin
        context = self._context() if scheme == "https" else None
        try:
            reader, writer = await _within(asyncio.open_connection(host, port, ssl=context, limit=READ_SIZE * 4),
                                           self.timeouts.connect, "connecting")
        except HttpTimeout as error:
            raise ConnectFailed(str(error)) from None
        except OSError as error:
            raise ConnectFailed(error.strerror or str(error) or type(error).__name__) from None
        _no_delay(writer)
        return Connection(reader, writer), False

    def release(self, origin: tuple, connection: Connection, reusable: bool) -> None:
        state = connection.h11
        if reusable and state.our_state is h11.DONE and state.their_state is h11.DONE:
            state.start_next_cycle()
            connection.idle_since = time.monotonic()
            self._idle[origin].append(connection)
        else:
            connection.abort()

    def _context(self) -> ssl.SSLContext:
        if self._ssl is None:
            self._ssl = ssl.create_default_context()
        return self._ssl

    async def aclose(self) -> None:
        for connections in self._idle.values():
            for connection in connections:
                connection.writer.close()
        self._idle.clear()


async def next_event(connection: Connection, timeout: float, deadline: float | None = None):
    """The next h11 event of the response, reading from the socket as needed; waits at most
    ``timeout`` seconds for bytes, and never past ``deadline`` (``DeadlineReached``)."""
    while True:
        try:
            event = connection.h11.next_event()
        except h11.RemoteProtocolError as error:
            if connection.reader.at_eof():  # (h11's words for it: "can't handle event type ConnectionClosed ...")
                raise Dropped("the server closed the connection before answering" if connection.h11.their_state
                              is h11.SEND_RESPONSE else "the connection closed before the response was complete") \
                    from None
            raise HttpError(f"invalid HTTP from the server: {error}") from None
        if event is not h11.NEED_DATA:
            return event
        wait = timeout
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise DeadlineReached("the deadline of the whole answer passed")
            wait = min(wait, left)
        try:
            data = await _within(connection.reader.read(READ_SIZE), wait, "waiting for the response")
        except HttpTimeout:
            if deadline is not None and time.monotonic() >= deadline - 0.001:
                raise DeadlineReached("the deadline of the whole answer passed") from None
            raise
        except (ConnectionError, OSError) as error:
            raise HttpError(str(error) or type(error).__name__) from None
        connection.h11.receive_data(data)  # b"" marks the end of the stream


def read_wait(version: tuple[int, ...]):
    """The wait every read and write of this module goes through on Python ``version`` (a pure choice,
    so tests run both on any Python): ``awaitable`` within ``seconds``, else :class:`HttpTimeout`.

    Not ``asyncio.wait_for``: on Python 3.10/3.11 it can swallow a cancel that arrives together with
    the result (a cancelled run would read on). From 3.11 ``asyncio.timeout`` (no task per call; it
    tells its own cancel from another's); before, ``asyncio.wait`` on a task (``aio.within``), which
    never swallows one either. Both pass through the loop once first, so a flood of bytes never
    starves the others."""
    return _within_timeout if version >= (3, 11) else _within_task


async def _within_timeout(awaitable, seconds: float, doing: str):
    try:
        await asyncio.sleep(0)
    except BaseException:  # cancelled meanwhile: the call never starts
        awaitable.close()
        raise
    timer = asyncio.timeout(seconds)
    try:
        async with timer:
            return await awaitable
    except TimeoutError:
        if timer.expired():
            raise HttpTimeout(f"no progress for {seconds:g} s {doing}") from None
        raise


async def _within_task(awaitable, seconds: float, doing: str):
    try:
        return await within(awaitable, seconds)
    except Timeout:
        raise HttpTimeout(f"no progress for {seconds:g} s {doing}") from None


_within = read_wait(sys.version_info)


def _no_delay(writer: asyncio.StreamWriter) -> None:
    import socket

    sock = writer.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass
