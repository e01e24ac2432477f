"""Loopback network pieces for the lean reader's tests: a logging forward proxy (absolute-URL requests and
CONNECT tunnels, like squid or tinyproxy), a TLS front for a server with a self-signed certificate, and a
server that redirects every request elsewhere. Each runs in daemon threads until closed."""

from __future__ import annotations

import http.client
import select
import socket
import ssl
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit


def _pipe(a: socket.socket, b: socket.socket) -> None:
    """Copy bytes both ways until either side closes."""
    try:
        while True:
            ready, _, _ = select.select([a, b], [], [], 30)
            if not ready:
                return
            for source in ready:
                data = source.recv(65536)
                if not data:
                    return
                while isinstance(source, ssl.SSLSocket) and source.pending():  # decrypted, unseen by select
                    data += source.recv(source.pending())
                (b if source is a else a).sendall(data)
    except OSError:
        return
    finally:
        a.close()
        b.close()


class _Running:
    def __init__(self, server: ThreadingHTTPServer):
        self.server = server
        self.url = f"http://127.0.0.1:{server.server_address[1]}"
        threading.Thread(target=server.serve_forever, daemon=True).start()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


class LoggingProxy(_Running):
    """A forward proxy on loopback; ``seen``: each request line it got ("GET http://...", "CONNECT host:port")."""

    def __init__(self):
        seen: list[str] = []

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_CONNECT(self) -> None:
                seen.append(f"CONNECT {self.path}")
                host, port = self.path.rsplit(":", 1)
                upstream = socket.create_connection((host, int(port)))
                self.send_response(200, "Connection established")
                self.end_headers()
                self.close_connection = True
                _pipe(self.connection, upstream)

            def _forward(self) -> None:
                seen.append(f"{self.command} {self.path}")
                url = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                upstream = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("proxy-connection", "connection")}
                upstream.request(self.command, url.path + (f"?{url.query}" if url.query else ""), body, headers)
                answer = upstream.getresponse()
                data = answer.read()
                self.send_response(answer.status, answer.reason)
                for key, value in answer.getheaders():
                    if key.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                upstream.close()

            do_GET = do_POST = do_DELETE = _forward

        super().__init__(ThreadingHTTPServer(("127.0.0.1", 0), Handler))
        self.seen = seen


class Redirector(_Running):
    """Answers every request with ``status`` and a Location of ``to`` (None: itself) + the request's path."""

    def __init__(self, to: str | None, status: int = 307):
        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:
                self.send_response(status)
                self.send_header("Location", (to or itself.url).rstrip("/") + self.path)
                self.send_header("Content-Length", "0")
                self.end_headers()

        itself = self
        super().__init__(ThreadingHTTPServer(("127.0.0.1", 0), Handler))


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 (and its key) that no system trusts, made by the openssl command."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True, timeout=60)
    return cert, key


class TLSFront:
    """https://127.0.0.1:PORT in front of a plain-HTTP server on loopback (``port``), with ``cert``."""

    def __init__(self, port: int, cert: Path, key: Path):
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(cert, key)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.target = port
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        try:
            wrapped = self.context.wrap_socket(client, server_side=True)
        except (OSError, ssl.SSLError):  # a client that does not trust the certificate hangs up
            client.close()
            return
        _pipe(wrapped, socket.create_connection(("127.0.0.1", self.target)))

    def close(self) -> None:
        self.listener.close()
