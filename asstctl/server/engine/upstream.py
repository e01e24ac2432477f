"""The upstream engine: each turn of a run on an OpenAI-compatible Chat Completions API.

OpenAI, Azure OpenAI, or a local server (vLLM, Ollama, llama.cpp's server, a LiteLLM proxy).
The turn is one streamed ``POST .../chat/completions`` (``stream: true``,
``stream_options.include_usage``); :meth:`UpstreamEngine.stream` yields a ``TextDelta`` per content
delta and a ``ToolCallDelta`` per tool-call fragment as they arrive, then one ``TurnEnd``.

Faults: 429 and 5xx (and a refused connection) are retried with bounded exponential backoff that
honours ``Retry-After`` / ``retry-after-ms``, only before anything was yielded. Everything else is an
``EngineError`` whose message names the upstream by host and the fix. The key is read once, at
start-up, from the environment variable the configuration names; it is sent in a header and
never appears in an error, a log line or an event (messages from the upstream are scrubbed too).

Imports ``base``, ``config``, ``http`` (a small asyncio HTTP/1.1 client) and ``sse`` of this package.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any, AsyncIterator
from urllib.parse import quote, urlsplit

from asstctl.server.engine.base import EngineError, EngineEvent, EngineRequest
from asstctl.server.engine.config import UpstreamConfig, resolve_key
from asstctl.server.engine.http import ConnectFailed, HttpError, HttpTimeout, Pool, Response, Timeouts
from asstctl.server.engine.sse import TurnParser

log = logging.getLogger("asstctl.server.engine")

REASONING_MODEL = re.compile(r"^(o\d|gpt-5)", re.IGNORECASE)
USER_AGENT = "asstctl-upstream-engine"


@dataclass(frozen=True)
class RetryPolicy:
    retries: int = 3  # further attempts after the first
    backoff: float = 0.5  # seconds before the first retry, doubled each time (without a Retry-After)
    max_wait: float = 20.0  # cap on any single wait, Retry-After included

    def wait(self, attempt: int, headers: Any) -> float:
        hinted = retry_after(headers)
        return min(self.max_wait, hinted if hinted is not None else self.backoff * (2 ** attempt))


class UpstreamEngine:
    """A streaming engine (``base.StreamingEngine``) on one upstream, with one pooled HTTP client."""

    name = "upstream"
    endpoint = "chat completions endpoint"  # as a 404 names what is missing

    def __init__(self, config: UpstreamConfig, *, retry: RetryPolicy | None = None, timeouts: Timeouts | None = None):
        self.config = config
        self.retry = retry or RetryPolicy()
        self.timeouts = timeouts or Timeouts()
        self._key = resolve_key(config)  # ConfigError at start-up when a remote upstream has none
        self._pools: dict[Any, Pool] = {}  # one per event loop (the server has one)

    def __repr__(self) -> str:  # never the key
        return f"UpstreamEngine({self.config.host})"

    # -- one turn ---------------------------------------------------------------------------
    async def stream(self, request: EngineRequest) -> AsyncIterator[EngineEvent]:
        model = self.config.upstream_model(request.model)
        body = self._body(request, model)
        response = await self._open(body, request.model, model)
        parser = self._parser(request)
        try:
            async for line in response.lines():  # to the body's end, so the connection can be reused
                for event in parser.feed(line):
                    yield event
        except HttpTimeout:
            what = "went silent for {:g} s mid-answer" if parser.started else "did not answer within {:g} s"
            raise self._error(f"the upstream {self.config.host} {what.format(self.timeouts.read)}",
                              "server_error") from None
        except HttpError as error:
            raise self._error(f"the upstream {self.config.host} closed the stream mid-answer ({error})",
                              "server_error") from None
        finally:
            response.close()  # also on cancel: aborts the upstream connection at once
        if parser.error is not None:
            raise self._error(f"the upstream {self.config.host} failed mid-answer: {parser.error}", "server_error")
        if not parser.complete:
            raise self._error(f"the upstream {self.config.host} ended the stream before the answer was finished",
                              "server_error")
        yield parser.end()

    def _body(self, request: EngineRequest, model: str) -> dict[str, Any]:
        return request_body(request, model, legacy_max_tokens=not self.config.is_openai)

    def _parser(self, request: EngineRequest) -> TurnParser:
        """Reads the answer's lines (``feed``, ``error``, ``complete``, ``started``, ``end``); the
        Responses API engine (``responses.py``) puts its own request body and parser here."""
        return TurnParser()

    async def aclose(self) -> None:
        """Close the connection pool of the running event loop (the server calls this on stop)."""
        pool = self._pools.pop(_loop(), None)
        if pool is not None:
            await pool.aclose()

    # -- HTTP -------------------------------------------------------------------------------
    def _pool(self) -> Pool:
        loop = _loop()
        pool = self._pools.get(loop)
        if pool is None:
            pool = self._pools[loop] = Pool(self.timeouts, user_agent=USER_AGENT)
        return pool

    def _target(self, model: str) -> tuple[str, dict[str, str], dict[str, str]]:
        """URL, query parameters and auth header of the chat completions endpoint."""
        config = self.config
        if config.is_azure:
            base = re.sub(r"/openai$", "", config.url)
            url = f"{base}/openai/deployments/{quote(config.deployment(model), safe='')}/chat/completions"
            return url, {"api-version": config.azure_api_version}, {"api-key": self._key}
        return f"{config.url}/chat/completions", {}, {"authorization": f"Bearer {self._key}"}

    async def _open(self, body: dict[str, Any], run_model: str, model: str) -> Response:
        """The 200 response of the upstream, its body not read yet; retries 429, 5xx and refused connections."""
        url, params, headers = self._target(model)
        payload = json.dumps(body, ensure_ascii=False).encode()
        pool = self._pool()
        for attempt in range(self.retry.retries + 1):
            last = attempt == self.retry.retries
            try:
                response = await pool.post(url, payload, headers, params)
            except ConnectFailed as error:
                if last:
                    raise self._error(f"cannot reach the upstream {self.config.host} ({error}) after "
                                      f"{attempt + 1} attempts: is it running?", "server_error") from None
                await self._pause(attempt, {}, f"connection failed ({error})")
                continue
            except HttpTimeout:
                raise self._error(f"the upstream {self.config.host} did not answer within "
                                  f"{self.timeouts.read:g} s", "server_error") from None
            except HttpError as error:
                raise self._error(f"the upstream {self.config.host} failed to answer ({error})",
                                  "server_error") from None
            if response.status_code == 200:
                return response
            content = await self._error_body(response)
            retryable = response.status_code == 429 or response.status_code >= 500
            if not retryable or last:
                raise self._status_error(response, content, url, run_model, model, attempt + 1)
            await self._pause(attempt, response.headers, f"answered {response.status_code}")
        raise AssertionError("unreachable")

    async def _error_body(self, response: Response) -> bytes:
        try:
            return await response.read()
        except HttpError:
            return b""
        finally:
            response.close()

    async def _pause(self, attempt: int, headers: Any, what: str) -> None:
        wait = self.retry.wait(attempt, headers)
        log.warning("upstream %s %s; retry %d of %d in %.2f s", self.config.host, what, attempt + 1,
                    self.retry.retries, wait)
        await asyncio.sleep(wait)

    # -- errors -----------------------------------------------------------------------------
    def _status_error(self, response: Response, content: bytes, url: str, run_model: str, model: str,
                      attempts: int) -> EngineError:
        status, host = response.status_code, self.config.host
        detail, code = upstream_error(content)
        if status == 429:
            return self._error(f"the upstream {host} is rate limiting requests (429 after {attempts} attempts): "
                               f"{detail}", "rate_limit_exceeded")
        if status >= 500:
            return self._error(f"the upstream {host} failed ({status} after {attempts} attempts): {detail}",
                               "server_error")
        if status in (401, 403):
            return self._error(f"the upstream {host} refused the key ({status}): check ${self.config.key_env}, "
                               "the variable it is read from (--upstream-key-env / engine.api_key_env)",
                               "server_error")
        if code == "model_not_found" or (status == 404 and "model" in detail.lower()):
            mapped = f" (the run's model `{run_model}`, mapped)" if model != run_model else ""
            return self._error(
                f"the upstream {host} has no model `{model}`{mapped}: map `{run_model}` to a model it serves with "
                f"--model-map '{run_model}=MODEL' or engine.model_map in asstctl.yaml", "server_error")
        if status == 404:
            return self._error(f"the upstream {host} has no {self.endpoint} at {urlsplit(url).path} "
                               "(404): check the --upstream URL (OpenAI-compatible servers usually end in /v1)",
                               "server_error")
        return self._error(f"the upstream {host} rejected the request ({status}): {detail}", "server_error")

    def _error(self, message: str, code: str) -> EngineError:
        return EngineError(scrub(message, self._key), code=code)


# -- the request ------------------------------------------------------------------------------
def is_reasoning_model(model: str) -> bool:
    return bool(REASONING_MODEL.match(model))


def request_body(request: EngineRequest, model: str, legacy_max_tokens: bool = False) -> dict[str, Any]:
    """The Chat Completions request of one turn (``CreateChatCompletionRequest``).

    ``legacy_max_tokens``: also send the limit as ``max_tokens``, which local servers (llama.cpp's,
    Ollama's) read instead of ``max_completion_tokens``; OpenAI and Azure get only the latter."""
    body: dict[str, Any] = {
        "model": model,
        "messages": request.chat,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    if request.offered_tools:
        body["tools"] = request.offered_tools
        if request.tool_choice is not None:
            body["tool_choice"] = request.tool_choice
        body["parallel_tool_calls"] = bool(request.parallel_tool_calls)
    reasoning = is_reasoning_model(model)
    if request.max_completion_tokens is not None:
        body["max_completion_tokens"] = request.max_completion_tokens
        if legacy_max_tokens and not reasoning:
            body["max_tokens"] = request.max_completion_tokens
    if reasoning and request.reasoning_effort:
        body["reasoning_effort"] = request.reasoning_effort
    if not reasoning:  # reasoning models reject sampling parameters
        if request.temperature is not None:
            body["temperature"] = request.temperature
        if request.top_p is not None:
            body["top_p"] = request.top_p
    if isinstance(request.response_format, dict) and request.response_format.get("type") not in (None, "auto"):
        body["response_format"] = request.response_format
    return body


# -- helpers ----------------------------------------------------------------------------------
def retry_after(headers: Any) -> float | None:
    """Seconds the upstream asked to wait: ``retry-after-ms``, or ``retry-after`` (seconds or an HTTP date)."""
    try:
        if headers.get("retry-after-ms"):
            return max(0.0, float(headers["retry-after-ms"]) / 1000)
        value = headers.get("retry-after")
        if not value:
            return None
        try:
            return max(0.0, float(value))
        except ValueError:
            from datetime import datetime, timezone

            return max(0.0, (parsedate_to_datetime(value) - datetime.now(timezone.utc)).total_seconds())
    except (TypeError, ValueError):
        return None


def upstream_error(content: bytes) -> tuple[str, str | None]:
    """The upstream's own error message (first line, bounded) and code, if it sent the usual envelope."""
    try:
        data = json.loads(content or b"null")
    except ValueError:
        data = None
    error = data.get("error") if isinstance(data, dict) else None
    if isinstance(error, dict):
        message, code = str(error.get("message") or ""), error.get("code")
    elif isinstance(error, str):
        message, code = error, None
    else:
        message, code = content.decode("utf-8", "replace"), None
    message = (message.strip().splitlines() or ["no details"])[0][:300]
    return message, code if isinstance(code, str) else None


def scrub(text: str, key: str) -> str:
    return text.replace(key, "[redacted]") if key and len(key) >= 4 else text


def _loop() -> Any:
    return asyncio.get_running_loop()
