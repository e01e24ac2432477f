"""Dense embeddings through an upstream's OpenAI-compatible ``POST /embeddings``.

:class:`EmbeddingsConfig` says where (``base_url``), with which key (read from the environment
variable ``api_key_env`` at call time, never stored or logged) and which ``model``. The server
uses it when ``ServerConfig.embeddings`` is set; without it retrieval is lexical only.

Requests carry up to ``batch_size`` inputs (the API's most is 2,048) of at most ``MAX_INPUT_TOKENS``
tokens each, and ``MAX_REQUEST_TOKENS`` tokens in all (OpenAI answers a 400 past either: "a maximum of
300,000 tokens summed across all inputs in a single request"). A rate limit (429) is retried after a backoff (the
upstream's ``retry-after`` when it sends one, else 0.5 s doubling up to 8 s) for at most
``retry_seconds`` in all, then the error names the limit; a 5xx or a lost connection is retried twice.
:class:`Embedder` is the blocking client (search queries); :class:`EmbeddingBatcher` the one
ingestion uses on the server's loop: it gathers the chunks of every file being ingested into
full requests (inputs across files), so 500 small files cost about 500 / ``batch_size`` requests;
it keeps the vectors that came back as numpy float32 rows (``float32_rows``), an eighth of the
memory of Python float lists, until each file has all of its own.

Errors go through the upstream engine's bounds (``engine.limits``): an error body is read up to
``ERROR_BODY_CAP`` (the transport drops the rest with the connection), the key and any echoed
``Authorization`` / ``api-key`` header are scrubbed before the upstream's message is cut to
``DETAIL_CHARS``, so neither a file's nor a run's ``last_error`` nor the log ever carries the key.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from dataclasses import dataclass
from typing import Any

from asstctl.server.aio import within
from asstctl.server.engine.limits import ERROR_BODY_CAP, cut, detail_text, error_detail, scrub


MAX_INPUT_TOKENS = 8192  # tokens in one input (every OpenAI embedding model)
MAX_REQUEST_TOKENS = 300_000  # tokens summed across the inputs of one request


class EmbeddingsError(Exception):
    """The upstream did not return embeddings (the message names the upstream, never the key)."""


@dataclass
class EmbeddingsConfig:
    model: str  # e.g. "text-embedding-3-small"
    base_url: str  # the upstream's API root, e.g. "http://127.0.0.1:8001/v1"
    api_key_env: str = "OPENAI_API_KEY"  # the environment variable holding the upstream's key
    dimensions: int | None = None  # ask for shorter vectors (models that support it)
    batch_size: int = 64  # inputs per request
    timeout: float = 60.0
    azure_api_version: str | None = None  # set: Azure OpenAI (base_url is the resource endpoint, key in api-key)
    azure_deployment: str | None = None  # Azure: the deployment serving ``model`` (default: the model's name)
    retry_seconds: float = 60.0  # backing off on 429 / 5xx for at most this long per request
    parallel: int = 2  # ingestion's requests in flight at once

    @property
    def request_model(self) -> str:
        """The name sent upstream: on Azure the deployment (it goes in the path), else the model."""
        return (self.azure_deployment or self.model) if self.azure_api_version else self.model


def observed(config: EmbeddingsConfig, texts: int, background: bool = False):
    """Around one ``/embeddings`` request: the observability hook (``config.observe``: a span and metrics,
    asstctl.server.observability) when the server set one, else nothing."""
    hook = getattr(config, "observe", None)
    return hook(config.model, texts, background) if hook is not None else contextlib.nullcontext()


def make_client(config: EmbeddingsConfig, asynchronous: bool = False):
    import httpx2
    import openai

    key = os.environ.get(config.api_key_env) or "no-key"
    if asynchronous:  # closed by EmbeddingBatcher.aclose
        http = openai.DefaultAsyncHttpxClient(transport=_AsyncCappedErrors(httpx2.AsyncHTTPTransport()))
    else:
        http = _ClosingClient(transport=_CappedErrors(httpx2.HTTPTransport()))
    common = {"api_key": key, "timeout": config.timeout, "max_retries": 0, "http_client": http}  # we back off ourselves
    if config.azure_api_version:  # POST {endpoint}/openai/deployments/{deployment}/embeddings?api-version=...
        kind = openai.AsyncAzureOpenAI if asynchronous else openai.AzureOpenAI
        return kind(azure_endpoint=config.base_url, api_version=config.azure_api_version, **common)
    return (openai.AsyncOpenAI if asynchronous else openai.OpenAI)(base_url=config.base_url, **common)


def _ClosingClient(**kwargs):
    """The SDK's default HTTP client, closed when it is dropped (as the SDK's own is: an Embedder is
    never closed explicitly)."""
    import openai

    class Closing(openai.DefaultHttpxClient):
        def __del__(self) -> None:
            try:
                self.close()
            except Exception:
                pass

    return Closing(**kwargs)


def _capped_response(response, body: bytes):
    """``response`` with ``body`` (its first ``ERROR_BODY_CAP`` bytes at most) as its whole content."""
    import httpx2

    encoded = response.headers.get("content-encoding", "identity").lower() != "identity"
    capped = len(body) >= ERROR_BODY_CAP
    drop = (b"content-length", b"transfer-encoding") + ((b"content-encoding",) if capped else ())
    headers = [(k, v) for k, v in response.headers.raw if k.lower() not in drop]
    if capped and encoded:  # cut short, it cannot be decoded
        body = b"(a compressed error body over %d bytes, not read)" % ERROR_BODY_CAP
    return httpx2.Response(response.status_code, headers=headers, content=body, extensions=response.extensions)


class _CappedErrors:
    """A transport whose error answers (status >= 400) are read up to ERROR_BODY_CAP, the rest dropped."""

    def __init__(self, inner):
        self.inner = inner

    def handle_request(self, request):
        response = self.inner.handle_request(request)
        if response.status_code < 400:
            return response
        parts, size = [], 0
        try:
            for chunk in response.stream:
                parts.append(chunk)
                size += len(chunk)
                if size >= ERROR_BODY_CAP:
                    break
        finally:
            response.stream.close()  # before its end: the connection is dropped
        return _capped_response(response, b"".join(parts)[:ERROR_BODY_CAP])

    def close(self) -> None:
        self.inner.close()

    def __enter__(self):
        self.inner.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.inner.__exit__(*exc)


class _AsyncCappedErrors:
    """The same for the asynchronous client."""

    def __init__(self, inner):
        self.inner = inner

    async def handle_async_request(self, request):
        response = await self.inner.handle_async_request(request)
        if response.status_code < 400:
            return response
        parts, size = [], 0
        try:
            async for chunk in response.stream:
                parts.append(chunk)
                size += len(chunk)
                if size >= ERROR_BODY_CAP:
                    break
        finally:
            await response.stream.aclose()
        return _capped_response(response, b"".join(parts)[:ERROR_BODY_CAP])

    async def aclose(self) -> None:
        await self.inner.aclose()

    async def __aenter__(self):
        await self.inner.__aenter__()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.inner.__aexit__(*exc)


def failure(config: EmbeddingsConfig, what: str) -> EmbeddingsError:
    """An :class:`EmbeddingsError` naming the upstream; ``what`` (the upstream's words) scrubbed of the key
    and any echoed auth header, then cut (``engine.limits``)."""
    key = os.environ.get(config.api_key_env)
    return EmbeddingsError(scrub(f"The embeddings upstream {config.base_url} {what}", key))


def upstream_message(config: EmbeddingsConfig, exc: Exception) -> str:
    """What the upstream said: its error body's message (read to ERROR_BODY_CAP, scrubbed, then cut), or
    the transport's failure."""
    key = os.environ.get(config.api_key_env)
    response = getattr(exc, "response", None)
    if response is not None:
        body = response.content
        message, _ = error_detail(body, key, capped=len(body) >= ERROR_BODY_CAP)
        return f"{getattr(response, 'status_code', '?')}: {cut(message)}"
    return detail_text(str(getattr(exc, "message", exc)), key)


def checked_tokens(texts: list[str], tokens: list[int] | None) -> list[int]:
    """The texts' token counts (counted when not given); :class:`EmbeddingsError` naming the limit when one
    is over ``MAX_INPUT_TOKENS``."""
    if tokens is None:
        from asstctl.server.retrieval.chunking import count_tokens

        tokens = [count_tokens(text) for text in texts]
    longest = max(tokens, default=0)
    if longest > MAX_INPUT_TOKENS:
        raise EmbeddingsError(f"A text of {longest:,} tokens cannot be embedded: the limit is "
                              f"{MAX_INPUT_TOKENS:,} tokens per input of an embeddings request.")
    return tokens


def request_args(config: EmbeddingsConfig, batch: list[str]) -> dict[str, Any]:
    extra = {"dimensions": config.dimensions} if config.dimensions else {}
    return {"model": config.request_model, "input": batch, "encoding_format": "float", **extra}


def vectors_of(config: EmbeddingsConfig, body: str, expected: int) -> list[list[float]]:
    """The vectors of a raw CreateEmbeddingResponse (JSON: building SDK objects for thousands of floats
    costs more than the request), in input order."""
    try:
        items = sorted(json.loads(body)["data"], key=lambda item: item["index"])
        vectors = [[float(x) for x in item["embedding"]] for item in items]
    except (ValueError, KeyError, TypeError) as exc:
        raise failure(config, f"sent an answer that is not a CreateEmbeddingResponse ({type(exc).__name__}: "
                              f"{cut(str(exc))}).") from None
    if len(vectors) != expected:
        raise failure(config, f"returned {len(vectors)} vectors for {expected} inputs.")
    return vectors


def float32_rows(config: EmbeddingsConfig, body: str, expected: int) -> list[Any]:
    """The vectors of a raw CreateEmbeddingResponse as numpy float32 rows (4 bytes a number, where a
    list of Python floats holds about 32): what ingestion keeps while a file's requests come back."""
    import numpy as np

    return [np.asarray(vector, dtype=np.float32) for vector in vectors_of(config, body, expected)]


def backoff(config: EmbeddingsConfig, exc: Exception, attempt: int, started: float) -> float:
    """Seconds to wait before retrying after ``exc``; raises :class:`EmbeddingsError` when it is final."""
    import openai

    passing = isinstance(exc, openai.RateLimitError) or (  # a 5xx or a lost connection: twice more, as the SDK does
        isinstance(exc, (openai.InternalServerError, openai.APIConnectionError)) and attempt < 2)
    response = getattr(exc, "response", None)
    delay = min(8.0, 0.5 * 2**attempt)
    if response is not None:
        try:
            header = response.headers.get("retry-after-ms")
            delay = float(header) / 1000 if header else float(response.headers.get("retry-after") or delay)
        except (TypeError, ValueError):
            pass
    spent = time.monotonic() - started
    if passing and spent + delay <= config.retry_seconds:
        return max(0.0, delay)
    limit = f" (retried for {spent:.1f} s, the limit is {config.retry_seconds:g} s)" if passing else ""
    raise failure(config, f"failed for model {config.model!r}: {type(exc).__name__} "
                          f"{upstream_message(config, exc)}{limit}") from None


class Embedder:
    def __init__(self, config: EmbeddingsConfig):
        self.config = config
        self._client = make_client(config)

    @property
    def model(self) -> str:
        return self.config.model

    def embed(self, texts: list[str], tokens: list[int] | None = None) -> list[list[float]]:
        """One vector per text, in order, in requests within the API's limits (``tokens``: the texts'
        token counts, counted here when not given)."""
        wanted, out = _Wanted(texts, checked_tokens(texts, tokens), None), []
        while wanted.sent < len(texts):  # packed as the batcher packs its requests
            [(_, first, count)] = _fill([wanted], max(1, self.config.batch_size))
            out.extend(self._request(texts[first:first + count]))
        return out

    def _request(self, batch: list[str]) -> list[list[float]]:
        import openai

        started, attempt = time.monotonic(), 0
        while True:
            try:
                with observed(self.config, len(batch)):
                    raw = self._client.embeddings.with_raw_response.create(**request_args(self.config, batch))
                return vectors_of(self.config, raw.http_response.text, len(batch))
            except openai.OpenAIError as exc:
                time.sleep(backoff(self.config, exc, attempt, started))
                attempt += 1


class _Wanted:
    """One caller's texts (and their token counts), filled in as the requests holding them come back
    (float32 rows)."""

    def __init__(self, texts: list[str], tokens: list[int], future: asyncio.Future | None):
        self.texts, self.tokens, self.future = texts, tokens, future
        self.vectors: list[Any] = [None] * len(texts)
        self.sent = 0  # texts handed to a request so far
        self.left = len(texts)


class EmbeddingBatcher:
    """Ingestion's embeddings on the server's loop: texts of many files in full requests."""

    linger = 0.02  # seconds a request that is not full waits for more texts

    def __init__(self, config: EmbeddingsConfig):
        self.config = config
        self.model = config.model
        self._client = None
        self._queue: list[_Wanted] = []
        self._flights: set[asyncio.Task] = set()
        self._ready: asyncio.Event | None = None
        self._runner: asyncio.Task | None = None
        self.requests = 0

    async def embed(self, texts: list[str], tokens: list[int] | None = None) -> list[list[float]]:
        """One vector per text, in order; ``tokens``: the texts' token counts (chunks carry theirs),
        counted here when not given."""
        if not texts:
            return []
        tokens = await asyncio.to_thread(checked_tokens, texts, None) if tokens is None else checked_tokens(texts, tokens)
        wanted = _Wanted(texts, tokens, asyncio.get_running_loop().create_future())
        self._queue.append(wanted)
        if self._runner is None or self._runner.done():
            self._ready = asyncio.Event()
            self._runner = asyncio.create_task(self._run(), name="asstctl-embeddings")
        self._ready.set()
        return await wanted.future

    async def _run(self) -> None:
        size, parallel = max(1, self.config.batch_size), max(1, self.config.parallel)
        while True:
            if not self._queue:
                self._ready.clear()
                try:
                    await within(self._ready.wait(), 5.0)
                except asyncio.TimeoutError:
                    if not self._queue:
                        return
                continue
            if (sum(len(w.texts) - w.sent for w in self._queue) < size
                    and sum(sum(w.tokens[w.sent:]) for w in self._queue) < MAX_REQUEST_TOKENS):
                await asyncio.sleep(self.linger)  # not a full request yet: give other files a moment
            while len(self._flights) >= parallel:
                await asyncio.wait(self._flights, return_when=asyncio.FIRST_COMPLETED)
            parts = _fill(self._queue, size)
            self._queue = [w for w in self._queue if w.sent < len(w.texts)]
            if parts:
                flight = asyncio.create_task(self._send(parts))
                self._flights.add(flight)
                flight.add_done_callback(self._flights.discard)

    async def _send(self, parts: list[tuple[_Wanted, int, int]]) -> None:
        import openai

        batch = [text for wanted, start, take in parts for text in wanted.texts[start : start + take]]
        started, attempt = time.monotonic(), 0
        if self._client is None:
            self._client = make_client(self.config, asynchronous=True)
        try:
            while True:
                try:
                    self.requests += 1
                    with observed(self.config, len(batch), background=True):
                        raw = await self._client.embeddings.with_raw_response.create(**request_args(self.config,
                                                                                                   batch))
                    body = raw.http_response.text
                    vectors = await asyncio.to_thread(float32_rows, self.config, body, len(batch))
                    break
                except openai.OpenAIError as exc:
                    await asyncio.sleep(backoff(self.config, exc, attempt, started))
                    attempt += 1
        except EmbeddingsError as exc:
            for wanted, _, _ in parts:
                if not wanted.future.done():
                    wanted.future.set_exception(EmbeddingsError(str(exc)))
            self._queue = [w for w in self._queue if not w.future.done()]
            return
        at = 0
        for wanted, start, take in parts:
            wanted.vectors[start : start + take] = vectors[at : at + take]
            at += take
            wanted.left -= take
            if not wanted.left and not wanted.future.done():
                wanted.future.set_result(wanted.vectors)

    async def aclose(self) -> None:
        for task in [*self._flights, *([self._runner] if self._runner else [])]:
            task.cancel()
        for wanted in self._queue:
            if not wanted.future.done():
                wanted.future.cancel()
        if self._client is not None:
            await self._client.close()


def _fill(queue: list[_Wanted], size: int) -> list[tuple[_Wanted, int, int]]:
    """The next request's ``(caller, first text, count)`` parts: texts in queue order, at most ``size``
    of them and ``MAX_REQUEST_TOKENS`` tokens in all (always at least one text); marks them sent."""
    parts, count, total = [], 0, 0
    for wanted in queue:
        take = 0
        while (count + take < size and wanted.sent + take < len(wanted.texts)
               and (count + take == 0 or total + wanted.tokens[wanted.sent + take] <= MAX_REQUEST_TOKENS)):
            total += wanted.tokens[wanted.sent + take]
            take += 1
        if take:
            parts.append((wanted, wanted.sent, take))
            wanted.sent += take
            count += take
        if wanted.sent < len(wanted.texts):
            break  # full (by count or tokens)
    return parts
