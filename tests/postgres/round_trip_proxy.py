"""A TCP proxy in front of PostgreSQL that counts round trips: each time a client sends after the
server answered (or first) on a connection is one. What the store sends is measured on the wire,
not by hooking the store."""

from __future__ import annotations

import select
import socket
import threading

from urllib.parse import urlsplit


class RoundTrips:
    def __init__(self, url: str):
        """``url``: postgresql://user@host:port/... (the tests' cluster); ``self.url`` the same through the proxy."""
        parts = urlsplit(url)
        self._target = (parts.hostname, parts.port or 5432)
        self._listener = socket.create_server(("127.0.0.1", 0))
        netloc = f"{parts.username}@127.0.0.1:{self._listener.getsockname()[1]}"
        self.url = parts._replace(netloc=netloc).geturl()
        self.count = 0
        self._lock = threading.Lock()
        self._closing = False
        threading.Thread(target=self._accept, daemon=True).start()

    def reset(self) -> None:
        with self._lock:
            self.count = 0

    def _accept(self) -> None:
        while not self._closing:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            server = socket.create_connection(self._target)
            threading.Thread(target=self._pump, args=(client, server), daemon=True).start()

    def _pump(self, client: socket.socket, server: socket.socket) -> None:
        answered = True  # the server spoke last (or nobody yet): the client's next send is a round trip
        with client, server:
            while True:
                ready, _, _ = select.select([client, server], [], [])
                for sock in ready:
                    data = sock.recv(65536)
                    if not data:
                        return
                    if sock is client:
                        if answered:
                            with self._lock:
                                self.count += 1
                        answered = False
                        server.sendall(data)
                    else:
                        answered = True
                        client.sendall(data)

    def close(self) -> None:
        self._closing = True
        self._listener.close()
