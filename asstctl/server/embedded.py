"""Start the local server in-process on a free loopback port, and stop it cleanly.

    with start_server(db=":memory:") as server:
        client = OpenAI(base_url=server.base_url, api_key=server.api_key)

Used by the CLI's embedded default target and by the test suite. ``serve_forever``
is the foreground variant behind ``asstctl serve``.
"""

from __future__ import annotations

import asyncio
import gc
import ipaddress
import logging
import signal
import socket
import sys
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from asstctl.errors import ConfigError
from asstctl.server.app import ServerConfig, ServerState, create_app
from asstctl.server.faults import Faults

log = logging.getLogger("asstctl.server")
DEFAULT_DB = "server.sqlite3"  # under .asstctl/ of the project (the embedded target and `asstctl serve`)
GC_YOUNG = 10_000  # allocations between young collections in `asstctl serve` (Python's default: 700)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(host: str, api_key: str | None) -> None:
    """Without an API key the server only ever listens on loopback."""
    if not api_key and not is_loopback(host):
        raise ConfigError(
            f"refusing to listen on {host} without an API key: anyone who can reach it could use it",
            hint="Set ASSTCTL_SERVER_API_KEY (or pass --api-key), or listen on 127.0.0.1.",
        )


def quiet_uvicorn() -> None:
    """No start-up chatter and no tracebacks for injected connection drops; crashes are
    logged once, by the app's own handler (logger ``asstctl.server``)."""
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).setLevel(logging.CRITICAL)


def default_db(start: Path | None = None) -> Path:
    """``.asstctl/server.sqlite3`` under the project root (the current directory without a project)."""
    from asstctl.spec.project import STATE_DIR, find_root

    return (find_root(start) or Path.cwd()) / STATE_DIR / DEFAULT_DB


def default_rules(start: Path | None = None) -> str | None:
    """The project's ``engine_rules`` (so ``asstctl serve`` answers like the embedded target)."""
    from asstctl.spec.project import find_root, parse_project

    root = find_root(start)
    rules = parse_project(root).engine_rules if root else None
    return str(rules) if rules else None


def default_upstream(start: Path | None = None):
    """The project's ``engine:`` upstream (so ``asstctl serve`` answers like the embedded target), or None."""
    from asstctl.spec.project import find_root, parse_project

    root = find_root(start)
    return parse_project(root).engine if root else None


@dataclass
class EmbeddedServer:
    """A running server. ``base_url`` ends with ``/v1``."""

    host: str
    port: int
    api_key: str
    state: ServerState
    _server: Any = field(repr=False, default=None)
    _thread: threading.Thread | None = field(repr=False, default=None)

    @property
    def base_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/v1"

    @property
    def faults(self) -> Faults:
        return self.state.config.faults

    @property
    def store(self):
        return self.state.store

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
            wake = getattr(self._server, "asstctl_wake", None)
            if wake is not None:  # the loop may already be closed: then there is no one to wake
                try:
                    wake()
                except RuntimeError:
                    pass
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
    upstream: Any = None,
    **options: Any,
) -> EmbeddedServer:
    """Start a server in a background thread and return once it accepts connections.

    ``upstream`` (an ``engine.config.UpstreamConfig``) runs turns on that Chat Completions API;
    ``options``: more ``ServerConfig`` fields (``max_upload_bytes``, ...)."""
    server, sock = _prepare(db, host, port, api_key, faults, rules_path, engine, {**options, "upstream": upstream})
    ready = threading.Event()
    thread = threading.Thread(target=_serve, args=(server._server, sock, ready), name="asstctl-server", daemon=True)
    server._thread = thread
    thread.start()
    ready.wait(10)
    return server


def serve_forever(
    db: str,
    *,
    host: str = "127.0.0.1",
    port: int = 8321,
    api_key: str | None = None,
    faults: Faults | None = None,
    rules_path: str | None = None,
    upstream: Any = None,
    on_ready: Callable[[EmbeddedServer], None] = lambda server: None,
    **options: Any,
) -> None:
    """Serve in the foreground until SIGINT/SIGTERM, then shut down cleanly.

    ``on_ready`` runs once the socket is listening (connections made from then on queue up).
    ``options``: more ``ServerConfig`` fields (``max_upload_bytes``, ...).
    """
    server, sock = _prepare(db, host, port, api_key, faults, rules_path, None, {**options, "upstream": upstream})
    _log_to_stderr(options.get("log_format") == "json")
    _tune_gc()
    try:
        on_ready(server)
        with _signals_left_to_uvicorn():
            asyncio.run(_serve_then_close(server._server, sock, server.state))
    finally:
        server.stop()
        sock.close()


def _tune_gc() -> None:
    """The serving process's collector: what startup built is frozen (never scanned again) and the
    young generation is larger, so hundreds of concurrent runs do not trigger a collection every few
    hundred allocations (about a sixth of the CPU of 500 concurrent streamed runs went to it)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_YOUNG, 20, 20)


def embeddings_config(upstream: Any):
    """file_search's embeddings on the upstream's ``/embeddings`` (same base URL and key variable;
    on Azure OpenAI the model's deployment, ``/openai/deployments/{deployment}/embeddings``)."""
    from asstctl.server.retrieval.embeddings import EmbeddingsConfig

    model = upstream.embeddings_model
    return EmbeddingsConfig(
        model=model,
        base_url=upstream.url,
        api_key_env=upstream.key_env,
        azure_api_version=upstream.azure_api_version,
        azure_deployment=upstream.deployment(model) if upstream.is_azure else None,
    )


def _prepare(db, host, port, api_key, faults, rules_path, engine, options) -> tuple[EmbeddedServer, socket.socket]:
    import uvicorn

    from asstctl.server.protocol import with_header_timeout

    check_bind(host, api_key or options.get("admin_key"))  # with only an admin key: project keys
    upstream = options.get("upstream")
    if upstream is not None and "context_windows" not in options:
        options = {**options, "context_windows": dict(upstream.context_windows)}
    if upstream is not None and upstream.max_model_calls and "max_model_calls" not in options:
        options = {**options, "max_model_calls": upstream.max_model_calls}
    if upstream is not None and upstream.embeddings_model and options.get("embeddings") is None:
        options = {**options, "embeddings": embeddings_config(upstream)}
    config = ServerConfig(
        db=db, api_key=api_key, faults=faults or Faults(), rules_path=rules_path, engine=engine, **options
    )
    sock = _listen(host, port)
    try:
        app = create_app(config)
    except BaseException:
        sock.close()
        raise
    quiet_uvicorn()
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            log_config=None,
            access_log=False,
            lifespan="on",
            timeout_graceful_shutdown=2,
            http=with_header_timeout(config.header_timeout),
        )
    )
    running = EmbeddedServer(host, sock.getsockname()[1], api_key or "asstctl-local", app.state, server)
    return running, sock


def _listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # Accepted connections inherit it: without, every keep-alive response waits ~40 ms (Nagle + delayed ACK).
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.bind((host.strip("[]"), port))
        sock.listen(2048)
    except OSError as error:
        sock.close()
        raise ConfigError(
            f"cannot listen on {host}:{port}: {error.strerror or error}",
            hint="Is another server using that port? Pick another one with --port (0 = any free port).",
        ) from None
    return sock


def _log_to_stderr(json_lines: bool = False) -> None:
    """One handler on the root logger, so every logger's lines (the server's, and libraries' warnings: the
    OpenTelemetry exporter's, psycopg_pool's, asyncio's) and Python warnings (``logging.captureWarnings``)
    come out in one format: with ``--log-format json`` every stderr line is a JSON object."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    if json_lines:
        from asstctl.server.observability import logs, replica_name

        logs.use_json(handler, replica_name())
    root = logging.getLogger()
    for previous in [h for h in root.handlers if getattr(h, "asstctl_stderr", False)]:
        root.removeHandler(previous)  # a second serve in this process replaces the first one's
    handler.asstctl_stderr = True
    root.addHandler(handler)
    logging.captureWarnings(True)
    log.setLevel(logging.INFO)


@contextmanager
def _signals_left_to_uvicorn() -> Iterator[None]:
    """uvicorn handles SIGINT/SIGTERM while serving, then re-raises the signal it caught
    against the handlers it found; make those no-ops so a stop is a clean exit 0."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, lambda *_: None) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


async def close_engine(state: ServerState) -> None:
    """Close the engine's upstream connection pool, on the loop that used it."""
    closer = getattr(state.engine, "aclose", None)
    if closer is not None:
        await closer()


async def _serve_then_close(server, sock: socket.socket, state: ServerState) -> None:
    watcher = asyncio.create_task(_when_stopping(server, state))
    await server.serve(sockets=[sock])
    watcher.cancel()
    await close_engine(state)


async def _when_stopping(server, state: ServerState) -> None:
    """Once a stop is asked (SIGTERM/SIGINT), run ``state.extra["stopping"]`` at once, before the
    connections drain: background work (ingestion) ends now instead of racing the shutdown."""
    while not server.should_exit:
        await asyncio.sleep(0.05)
    stopping(state)


def stopping(state: ServerState) -> None:
    for hook in state.extra.get("stopping", []):
        hook()


async def _main_loop(server, woken: asyncio.Event) -> None:
    """uvicorn's ``main_loop`` (``on_tick`` every 0.1 s: Date header, should_exit), except that
    ``stop()`` wakes it at once instead of waiting for the next tick."""
    counter = 0
    while not await server.on_tick(counter):
        counter = (counter + 1) % 864000
        try:
            await asyncio.wait_for(woken.wait(), 0.1)
        except asyncio.TimeoutError:
            pass


async def _shutdown(server, sock: socket.socket) -> None:
    """uvicorn's ``Server.shutdown`` without its fixed 0.1 s pause (a test suite starts a server per test):
    stop listening, ask every connection to close (an idle keep-alive one closes at once, a busy one after
    its response), poll every 5 ms until connections and tasks are gone, then the lifespan's shutdown."""
    for listener in server.servers:
        listener.close()
    sock.close()
    for connection in list(server.server_state.connections):
        connection.shutdown()
    try:
        await asyncio.wait_for(_drained(server), timeout=server.config.timeout_graceful_shutdown)
    except asyncio.TimeoutError:
        for task in server.server_state.tasks:
            task.cancel(msg="Task cancelled, timeout graceful shutdown exceeded")
    await server.lifespan.shutdown()


async def _drained(server) -> None:
    state = server.server_state
    while state.connections or state.tasks:
        await asyncio.sleep(0.005)
    for listener in server.servers:
        await listener.wait_closed()


def _serve(server, sock: socket.socket, ready: threading.Event) -> None:
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)

    async def main():
        config = server.config
        if not config.loaded:
            config.load()
        server.lifespan = config.lifespan_class(config)
        await server.startup(sockets=[sock])
        woken = asyncio.Event()
        server.asstctl_wake = lambda: loop.call_soon_threadsafe(woken.set)
        ready.set()
        await _main_loop(server, woken)
        stopping(server.config.app.state)
        await _shutdown(server, sock)
        await close_engine(server.config.app.state)

    try:
        loop.run_until_complete(main())
    finally:
        ready.set()
        loop.close()
