"""Start the local server in-process on a free loopback port, and stop it cleanly.

    with start_server(db=":memory:") as server:
        client = OpenAI(base_url=server.base_url, api_key=server.api_key)

Used by the CLI's embedded default target and by the test suite.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
from dataclasses import dataclass, field
from typing import Any

from asstctl.server.app import ServerConfig, ServerState, create_app
from asstctl.server.faults import Faults

LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def check_bind(host: str, api_key: str | None) -> None:
    """Without an API key the server only ever listens on loopback."""
    if api_key is None and host not in LOOPBACK:
        raise ValueError(
            f"refusing to listen on {host} without an API key: anyone who can reach it could use it. "
            "Pass --api-key (or set ASSTCTL_SERVER_API_KEY), or bind 127.0.0.1."
        )


def quiet_uvicorn() -> None:
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).setLevel(logging.CRITICAL)


@dataclass
class EmbeddedServer:
    """A running in-process server. ``base_url`` ends with ``/v1``."""

    host: str
    port: int
    api_key: str
    state: ServerState
    _server: Any = field(repr=False, default=None)
    _thread: threading.Thread | None = field(repr=False, default=None)

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    @property
    def faults(self) -> Faults:
        return self.state.config.faults

    @property
    def store(self):
        return self.state.store

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        stopper = self.state.extra.get("stop")
        if stopper:
            stopper()
        self.state.store.close()

    def __enter__(self) -> "EmbeddedServer":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def start_server(
    db: str = ":memory:",
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    api_key: str | None = None,
    faults: Faults | None = None,
    rules_path: str | None = None,
    engine: Any = None,
) -> EmbeddedServer:
    """Start a server in a background thread and return once it accepts connections."""
    import uvicorn

    check_bind(host, api_key)
    config = ServerConfig(db=db, api_key=api_key, faults=faults or Faults(), rules_path=rules_path, engine=engine)
    app = create_app(config)
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    quiet_uvicorn()
    server = uvicorn.Server(
        uvicorn.Config(app, log_config=None, access_log=False, lifespan="off", timeout_graceful_shutdown=2)
    )
    ready = threading.Event()
    thread = threading.Thread(target=_serve, args=(server, sock, ready), name="asstctl-server", daemon=True)
    thread.start()
    ready.wait(10)
    return EmbeddedServer(host, sock.getsockname()[1], api_key or "asstctl-local", app.state, server, thread)


def _serve(server, sock: socket.socket, ready: threading.Event) -> None:
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)

    async def main():
        config = server.config
        if not config.loaded:
            config.load()
        server.lifespan = config.lifespan_class(config)
        await server.startup(sockets=[sock])
        ready.set()
        await server.main_loop()
        await server.shutdown(sockets=[sock])

    try:
        loop.run_until_complete(main())
    finally:
        ready.set()
        loop.close()
