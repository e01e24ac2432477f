"""The HTTP/1.1 protocol the server runs on: uvicorn's h11 protocol plus a header timeout.

uvicorn times out idle keep-alive connections only after a response; a client that
connects and then sends a request's headers slowly, or half of them, would hold the
connection (and its memory) forever. Here the headers of every request must be complete
within ``header_timeout`` seconds of the connection opening or of the request's first
byte; otherwise the connection is closed. Header size stays capped by h11 (16 KiB).

Imports: uvicorn and h11 only.
"""

from __future__ import annotations

import asyncio

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol


def with_header_timeout(seconds: float) -> type[asyncio.Protocol]:
    """An ``H11Protocol`` subclass closing connections whose headers take over ``seconds``."""
    return type("HeaderTimeoutProtocol", (HeaderTimeoutProtocol,), {"header_timeout": seconds})


class HeaderTimeoutProtocol(H11Protocol):
    header_timeout: float = 10.0
    _header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_header_timer()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._awaiting_headers():
            self._arm_header_timer()  # a new request has begun (or the first is still incomplete)
        else:
            self._disarm_header_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_header_timer()
        super().connection_lost(exc)

    def _awaiting_headers(self) -> bool:
        """The peer is mid-way through a request's head (h11 saw bytes but no full request)."""
        idle = self.cycle is None or self.cycle.response_complete
        return idle and self.conn.their_state is h11.IDLE and bool(self.conn.trailing_data[0])

    def _arm_header_timer(self) -> None:
        if self._header_timer is None:
            self._header_timer = self.loop.call_later(self.header_timeout, self._headers_too_slow)

    def _disarm_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_too_slow(self) -> None:
        self._header_timer = None
        idle = self.cycle is None or self.cycle.response_complete
        if idle and self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self.transport.close()
