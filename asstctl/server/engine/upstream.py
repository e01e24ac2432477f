"""The upstream engine: each turn of a run on an OpenAI-compatible Chat Completions API.

OpenAI, Azure OpenAI, or a local server (vLLM, Ollama, llama.cpp's server, a LiteLLM proxy).
The turn is one streamed ``POST .../chat/completions`` (``stream: true``,
``stream_options.include_usage``); :meth:`UpstreamEngine.stream` yields a ``TextDelta`` per content
delta and a ``ToolCallDelta`` per tool-call fragment as they arrive, then one ``TurnEnd``.

The request is built in OpenAI's shapes and sent in the upstream's dialect (``dialects.py``): a
refusal of a field's shape is adapted to, sent again at once and remembered per upstream model.

Faults: 429 and 5xx (and a refused or dropped connection) are retried with bounded exponential backoff
that honours ``Retry-After`` / ``retry-after-ms``, only before anything was yielded; a 500 that is a
validation error is not. A stream that ends unfinished before anything was shown is sent again after a
jittered wait; an upstream that interrupts requests when others arrive (llama-cpp-python) is then
sent one at a time. A turn ends at the whole-turn limit or just before the run's expiry. Everything else is an ``EngineError`` whose message names the upstream by
host and the fix. What comes back is bounded (``limits.py``: error bodies, idle timeout, whole-turn
limit, reply size, invalid text, floods). The key is read once, at start-up, from the environment
variable the configuration names; it is sent in a header and never appears in an error, a log line
or an event (everything from the upstream is scrubbed first).

Imports ``base``, ``config``, ``dialects``, ``http`` (a small asyncio HTTP/1.1 client), ``limits``
and ``sse`` of this package.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import re
import time
from contextlib import aclosing
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any, AsyncIterator
from urllib.parse import quote, urlsplit

from asstctl.server.engine import dialects
from asstctl.server.engine.base import EngineError, EngineEvent, EngineRequest, TextDelta, TurnEnd
from asstctl.server.engine.config import LOOPBACK_PLACEHOLDER, UpstreamConfig, resolve_key
from asstctl.server.engine.dialects import Dialect
from asstctl.server.engine.http import (ConnectFailed, DeadlineReached, Dropped, HttpError, HttpTimeout, Pool,
                                        Response, Timeouts, TooLarge)
from asstctl.server.engine.limits import (ERROR_BODY_CAP, ID_CHARS, MAX_LINE, Limits, ReplyGuard, clean_text, cut,
                                          detail_text, error_detail, scrub)
from asstctl.server.engine.sse import TurnParser

log = logging.getLogger("asstctl.server.engine")

REASONING_MODEL = re.compile(r"^(o\d|gpt-5)", re.IGNORECASE)
USER_AGENT = "asstctl-upstream-engine"
MAX_ADAPTATIONS = 6  # shape changes learned from refusals within one turn
MAX_LEARNED = 1000  # models whose accepted shapes are remembered, least recently used dropped first (any name a client sends may be one)
MODELS_CAP, MODELS_LIMIT = 1 << 20, 10_000  # the upstream's GET /models: bytes read, ids kept
MODELS_SECONDS, MODELS_TTL = 10.0, 60.0  # ... how long it may take, how long its answer is reused
INTERRUPTED_BACKOFF = 0.2  # seconds before an unfinished stream (nothing shown) is sent again: jittered, doubled
INTERRUPTIONS = 2  # unfinished streams while other requests were in flight, before requests go one at a time
AFTER_END = 1.0  # seconds an answer's body may go on after its end ([DONE], response.completed): then it is closed
EXPIRY_MARGIN = 5.0  # seconds before the run's expires_at by which a turn still streaming is ended (it fails, naming it)


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
    learns = True  # adapts to (and remembers) refusals of a field's shape: Chat Completions dialects only

    def __init__(self, config: UpstreamConfig, *, retry: RetryPolicy | None = None, timeouts: Timeouts | None = None,
                 limits: Limits | None = None):
        self.config = config
        self.retry = retry or RetryPolicy()
        self.limits = limits or config.limits
        self.timeouts = timeouts or Timeouts(read=self.limits.idle_seconds)
        self._key = resolve_key(config)  # ConfigError at start-up when a remote upstream has none
        self._pools: dict[Any, Pool] = {}  # one per event loop (the server has one)
        self._fixed = dialects.profile(config.dialect) if config.dialect else None
        self._learned: dict[str, Dialect] = {}  # upstream model -> what it accepts, for the process's life
        self._models: tuple[float, list[str]] | None = None  # (when, ids) of the upstream's GET /models
        self._in_flight = self._interruptions = 0  # requests to the upstream now; streams it interrupted so far
        self._one_at_a_time = False  # learned from INTERRUPTIONS interruptions (_interrupted)
        self._gates: dict[Any, asyncio.Semaphore] = {}  # the semaphore of one, per event loop
        self.on_retry: Any = None  # observability's hook: on_retry(retry number, what the upstream did)

    def __repr__(self) -> str:  # never the key
        return f"UpstreamEngine({self.config.host})"

    @property
    def secret(self) -> str | None:
        """The key to scrub from what the upstream sends back (None: the loopback placeholder)."""
        return None if self._key == LOOPBACK_PLACEHOLDER else self._key

    def dialect(self, model: str) -> Dialect:
        """What ``model`` on this upstream is sent: the named profile, else what was learned so far."""
        if self._fixed is not None and self._fixed.fixed:
            return self._fixed
        learned = self._learned.pop(model, None)
        if learned is None:  # (a named profile that learns, azure: its shapes first)
            return self._fixed or dialects.initial(legacy_max_tokens=not self.config.is_openai)
        self._learned[model] = learned  # now the most recently used: names sent once go before it
        return learned

    async def upstream_models(self) -> list[str]:
        """The model ids the upstream lists (``GET {upstream}/models``: at most MODELS_CAP bytes, MODELS_LIMIT
        ids, MODELS_SECONDS; reused for MODELS_TTL); [] when it lists none or cannot (Azure, an error)."""
        now = time.monotonic()
        if self._models is None or now - self._models[0] >= MODELS_TTL:
            self._models = (now, [] if self.config.is_azure else await self._fetch_models(now + MODELS_SECONDS))
        return self._models[1]

    async def _fetch_models(self, deadline: float) -> list[str]:
        try:
            response = await self._pool().post(f"{self.config.url}/models", b"", {"authorization": f"Bearer {self._key}"},
                                               deadline=deadline, method="GET")
            try:
                response.deadline = deadline
                body = await response.read(MODELS_CAP + 1)
            finally:
                response.close()
        except HttpError as exc:
            return self._no_models(f"{type(exc).__name__}")
        if response.status_code != 200:
            return self._no_models(f"HTTP {response.status_code}")
        if len(body) > MODELS_CAP:
            return self._no_models(f"its answer is over {MODELS_CAP} bytes (upstream.MODELS_CAP)")
        try:
            data = json.loads(body).get("data")
        except (ValueError, AttributeError):
            data = None
        if not isinstance(data, list):
            return self._no_models("its answer is not a ListModelsResponse")
        return [scrub(clean_text(item["id"]), self.secret) for item in data[:MODELS_LIMIT]  # (limits.ReplyGuard's ids too)
                if isinstance(item, dict) and isinstance(item.get("id"), str) and len(item["id"]) <= ID_CHARS]

    def _no_models(self, why: str) -> list[str]:
        log.warning("GET /v1/models lists no models of the upstream %s: GET /models failed (%s); it lists the "
                    "--model-map sources only, for %.0f s", self.config.host, why, MODELS_TTL)
        return []

    # -- one turn ---------------------------------------------------------------------------
    async def stream(self, request: EngineRequest) -> AsyncIterator[EngineEvent]:
        model = self.config.upstream_model(request.model)
        canonical = self._body(request, model)
        deadline, ending = self._deadline(request.run)
        host = self.config.host
        for attempt in range(self.retry.retries + 1):  # a stream that ended unfinished before anything was shown: again
            gate = await self._gate()
            try:
                response = await self._open(canonical, request.model, model, deadline, ending)
            except BaseException:
                self._leave(gate)
                raise
            parser, guard = self._parser(request), ReplyGuard(self.secret, self.limits.reply_chars)
            text: list[str] = []  # kept only to check an answer whose json_schema the upstream did not enforce
            unenforced = _is_json_schema(canonical) and not self.dialect(model).json_schema
            failure: EngineError | None = None  # raised once what the scrubbers held back was released
            ended = False  # the answer's end came ([DONE], response.completed): the body's end must follow soon
            try:
                async with aclosing(self._batches(response)) as batches:
                    async for batch in batches:  # to the end: the connection is reused
                        events: list[EngineEvent] = []
                        for line in batch:
                            events += parser.feed(line)
                        for event in guard.events(events):
                            if unenforced and isinstance(event, TextDelta):
                                text.append(event.text)
                            yield event
                        if guard.over:
                            break  # (every read waits on the loop, http._within: a flood never starves others)
                        if parser.done and not ended:  # (a body going on after it was closed at AFTER_END: not a fault)
                            ended, response.deadline = True, min(response.deadline or deadline, time.monotonic() + AFTER_END)
            except DeadlineReached:
                if not parser.done:
                    failure = self._turn_limit(ending)
            except HttpTimeout:
                if not parser.done:
                    what = "went silent for {:g} s mid-answer" if parser.started else "did not answer within {:g} s"
                    failure = self._error(f"the upstream {host} {what.format(self.timeouts.read)} "
                                          "(the idle timeout, engine.limits.idle_seconds)", "server_error")
            except TooLarge:
                if not parser.done:
                    failure = self._error(f"the upstream {host} sent a stream line longer than the {MAX_LINE >> 20} "
                                          "MiB line limit; the request was closed", "server_error")
            except Dropped as error:
                if parser.started and not parser.done:  # (not started: an unfinished stream, below)
                    failure = self._error(f"the upstream {host} closed the stream mid-answer ({error})", "server_error")
            except HttpError as error:
                if not parser.done:
                    failure = self._error(f"the upstream {host} closed the stream mid-answer ({error})", "server_error")
            finally:
                response.close()  # also on cancel: aborts the upstream connection at once
                self._leave(gate)
            for event in guard.flush():  # a tail held as a possible start of the key: shown (or redacted) now
                if isinstance(event, TextDelta):
                    text.append(event.text)
                yield event
            if failure is not None:
                raise failure
            if guard.over:
                log.warning("upstream %s: a reply longer than %d characters was cut (engine.limits.reply_chars)",
                            host, self.limits.reply_chars)
                yield TurnEnd("length", parser.end().usage, model)
                return
            if parser.error is not None:
                detail = detail_text(parser.error, self.secret)
                raise self._error(f"the upstream {host} failed mid-answer: {detail}", "server_error")
            if parser.finish_reason is None:
                self._interrupted()
                if not parser.started and attempt < self.retry.retries:
                    wait = min(self.retry.max_wait, INTERRUPTED_BACKOFF * 2 ** attempt * random.uniform(0.5, 1.5))
                    log.warning("upstream %s ended a stream without a finish_reason before any text; retry %d of %d "
                                "in %.2f s", host, attempt + 1, self.retry.retries, wait)
                    await asyncio.sleep(wait)  # (jittered: two runs interrupting each other fall out of step)
                    continue
                raise self._error(f"the upstream {host} ended the stream before the answer was finished "
                                  "(no finish_reason)", "server_error")
            end = parser.end()
            problem = dialects.schema_problem("".join(text), canonical.get("response_format")) \
                if unenforced and end.finish_reason == "stop" else None
            if problem is not None:
                raise self._error(f"the upstream {host} cannot enforce a json_schema response format (it was asked "
                                  f"for a JSON object with the schema in the instructions) and its answer does not "
                                  f"match the schema: {problem}", "server_error")
            end.model = model
            yield end
            return

    async def _gate(self) -> asyncio.Semaphore | None:
        """Once the upstream was seen interrupting requests (:meth:`_interrupted`): its semaphore of one,
        acquired (the wait is bounded by the turn holding it: its deadline); else None. Counts the request in flight."""
        gate = self._gates.setdefault(_loop(), asyncio.Semaphore(1)) if self._one_at_a_time else None
        if gate is not None:
            await gate.acquire()
        self._in_flight += 1
        return gate

    def _leave(self, gate: asyncio.Semaphore | None) -> None:
        self._in_flight -= 1
        if gate is not None:
            gate.release()

    def _interrupted(self) -> None:
        """A stream ended without a finish_reason. While other requests to the upstream were in flight it
        counts as an interruption (llama-cpp-python's server ends the running request when another arrives);
        after ``INTERRUPTIONS`` of them the upstream is sent one request at a time (logged once)."""
        if self._in_flight < 1 or self._one_at_a_time or self.config.is_openai:  # (OpenAI's: never one at a time)
            return
        self._interruptions += 1
        if self._interruptions >= INTERRUPTIONS:
            self._one_at_a_time = True
            log.warning("upstream %s ended %d streams unfinished while other requests to it were in flight (as "
                        "llama-cpp-python's server does, interrupting a request when another arrives); it is sent one "
                        "request at a time from now on (start llama-cpp-python with --interrupt_requests False to "
                        "serve requests together)", self.config.host, self._interruptions)

    def _batches(self, response: Response) -> AsyncIterator[list[str]]:
        """The answer's lines: an event stream's, or one chunk made of a JSON answer (:meth:`_json_answer`)."""
        kind = response.headers.get("content-type", "").lower()
        if "json" in kind and "event-stream" not in kind:
            return self._json_answer(response)
        return response.line_batches(MAX_LINE)

    async def _json_answer(self, response: Response) -> AsyncIterator[list[str]]:
        """A 200 that is JSON, not an event stream (a server that ignores ``stream: true``, or an error sent
        with status 200), read up to ``MAX_LINE`` bytes as one line of a stream would be: an answer becomes
        the stream lines it amounts to (:meth:`answer_lines`), an error fails the turn with its message (scrubbed)."""
        host = self.config.host
        body = await response.read(MAX_LINE + 1)
        if len(body) > MAX_LINE:
            raise self._error(f"the upstream {host} answered with a JSON body (not an event stream) longer than "
                              f"the {MAX_LINE >> 20} MiB line limit; the request was closed", "server_error")
        try:
            data = json.loads(body)
        except ValueError:
            data = None
        lines = self.answer_lines(data) if isinstance(data, dict) and not data.get("error") else None
        if lines is not None:
            yield lines
            return
        whole, _ = error_detail(body, self.secret)
        what = "an error" if isinstance(data, dict) and data.get("error") else "a JSON body that is not an answer"
        raise self._error(f"the upstream {host} answered 200 with {what} instead of an event stream: {cut(whole)}",
                          "server_error")

    def answer_lines(self, data: dict[str, Any]) -> list[str] | None:
        """A non-streamed answer (``chat.completion``) as the stream lines it amounts to: one chunk, then
        ``[DONE]`` (None: it is not one). The Responses engine reads a ``Response`` here."""
        choices = data.get("choices")
        if not isinstance(choices, list):
            return None
        chunk = {"choices": [{"index": c.get("index", 0), "delta": c.get("message") or {},
                              "finish_reason": c.get("finish_reason")} for c in choices if isinstance(c, dict)],
                 "usage": data.get("usage")}
        return [f"data: {json.dumps(chunk)}", "data: [DONE]"]

    def _body(self, request: EngineRequest, model: str) -> dict[str, Any]:
        """The canonical request of one turn (OpenAI's shapes; ``_shape`` sends it in the upstream's dialect)."""
        return request_body(request, model)

    def _shape(self, canonical: dict[str, Any], dialect: Dialect, reasoning: bool) -> dict[str, Any]:
        return dialects.shape(canonical, dialect, reasoning)

    def _parser(self, request: EngineRequest) -> TurnParser:
        """Reads the answer's lines (``feed``, ``error``, ``complete``, ``started``, ``end``); the
        Responses API engine (``responses.py``) puts its own request body and parser here."""
        return TurnParser(self.secret)

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

    async def _open(self, canonical: dict[str, Any], run_model: str, model: str, deadline: float,
                    ending: str | None = None) -> Response:
        """The 200 response of the upstream, its body not read yet. Retries 429, 5xx and refused
        connections; a refusal of a field's shape is adapted to (and remembered) and sent again."""
        url, params, headers = self._target(model)
        pool, reasoning, host = self._pool(), is_reasoning_model(model), self.config.host
        attempt = adaptations = 0
        while True:
            dialect = self.dialect(model)
            sent = self._shape(canonical, dialect, reasoning)
            payload = json.dumps(sent, ensure_ascii=False).encode("utf-8", "replace")
            last = attempt == self.retry.retries
            try:
                response = await pool.post(url, payload, headers, params, deadline)
            except DeadlineReached:
                raise self._turn_limit(ending) from None
            except ConnectFailed as error:
                if last:
                    raise self._error(f"cannot reach the upstream {host} ({error}) after "
                                      f"{attempt + 1} attempts: is it running?", "server_error") from None
                await self._pause(attempt, {}, f"connection failed ({error})")
                attempt += 1
                continue
            except Dropped:  # closed before answering: retried as a 5xx is
                if last:
                    raise self._error(f"the upstream {host} closed the connection before answering ({attempt + 1} "
                                      "attempts)", "server_error") from None
                await self._pause(attempt, {}, "closed the connection before answering")
                attempt += 1
                continue
            except HttpTimeout:  # no response head within the idle timeout (connect and write name their own)
                raise self._error(f"the upstream {host} did not answer within {self.timeouts.read:g} s "
                                  "(the idle timeout, engine.limits.idle_seconds)", "server_error") from None
            except HttpError as error:
                raise self._error(f"the upstream {host} failed to answer ({error})", "server_error") from None
            status = response.status_code
            if status == 200:
                response.deadline = deadline
                return response
            body = await self._error_body(response)
            whole, code = error_detail(body, self.secret, capped=len(body) >= ERROR_BODY_CAP)
            detail = cut(whole)
            if dialects.is_refusal(status, whole):
                if self.dialect(model) != dialect:  # another run learned meanwhile: its shapes first
                    continue
                learned = dialects.learn(whole, sent, dialect) \
                    if self.learns and adaptations < MAX_ADAPTATIONS else None
                if learned is not None:
                    adaptations += 1
                    if model not in self._learned and len(self._learned) >= MAX_LEARNED:
                        self._learned.pop(next(iter(self._learned)))  # the least recently used goes: learned again if asked
                    self._learned[model] = learned
                    log.warning("upstream %s refused a request for %s (%d); sending it again with %s", host, model,
                                status, dialects.describe(dialect, learned))
                    continue
                if status < 500 or code == "model_not_found":
                    raise self._status_error(status, detail, code, url, run_model, model, attempt + 1)
                raise self._error(f"the upstream {host} refused the request ({status}, not retried): {detail}",
                                  "server_error")
            if not (status == 429 or status >= 500) or last:
                raise self._status_error(status, detail, code, url, run_model, model, attempt + 1)
            await self._pause(attempt, response.headers, f"answered {status}")
            attempt += 1

    async def _error_body(self, response: Response) -> bytes:
        """At most ``ERROR_BODY_CAP`` bytes of an error answer; the rest is dropped with the connection."""
        try:
            return await response.read(ERROR_BODY_CAP)
        except HttpError:
            return b""
        finally:
            response.close()

    async def _pause(self, attempt: int, headers: Any, what: str) -> None:
        wait = self.retry.wait(attempt, headers)
        log.warning("upstream %s %s; retry %d of %d in %.2f s", self.config.host, what, attempt + 1,
                    self.retry.retries, wait)
        if self.on_retry is not None:
            self.on_retry(attempt + 1, what)
        await asyncio.sleep(wait)

    # -- errors -----------------------------------------------------------------------------
    def _status_error(self, status: int, detail: str, code: str | None, url: str, run_model: str, model: str,
                      attempts: int) -> EngineError:
        host = self.config.host
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

    def _deadline(self, run: dict[str, Any]) -> tuple[float, str | None]:
        """When the turn must end (``time.monotonic()``): at the whole-turn limit, or ``EXPIRY_MARGIN`` s
        before the run's ``expires_at`` if that comes first (the run then fails naming its expiry, rather
        than expiring with no last_error); with it, what ends the turn there (None: the turn limit)."""
        limit = time.monotonic() + self.limits.turn_seconds
        expires = run.get("expires_at") if isinstance(run, dict) else None
        if not isinstance(expires, (int, float)) or isinstance(expires, bool):
            return limit, None
        by_expiry = time.monotonic() + (expires - time.time() - EXPIRY_MARGIN)
        if by_expiry >= limit:
            return limit, None
        created = run.get("created_at")
        minutes = round((expires - created) / 60) if isinstance(created, (int, float)) else 0
        name = f"the run's {minutes}-minute expiry" if minutes >= 1 else "the run's expiry"
        return by_expiry, (f"the upstream {self.config.host} was still answering {EXPIRY_MARGIN:g} s before "
                           f"{name} (expires_at); the turn was ended there, before the whole-turn limit of "
                           f"{self.limits.turn_seconds:g} s (engine.limits.turn_seconds)")

    def _turn_limit(self, ending: str | None = None) -> EngineError:
        if ending is not None:
            return self._error(ending, "server_error")
        return self._error(f"the upstream {self.config.host} took longer than the whole-turn limit of "
                           f"{self.limits.turn_seconds:g} s (engine.limits.turn_seconds)", "server_error")

    def _error(self, message: str, code: str) -> EngineError:
        return EngineError(scrub(message, self.secret), code=code)


# -- the request ------------------------------------------------------------------------------
def is_reasoning_model(model: str) -> bool:
    return bool(REASONING_MODEL.match(model))


def request_body(request: EngineRequest, model: str) -> dict[str, Any]:
    """The canonical Chat Completions request of one turn (``CreateChatCompletionRequest``, OpenAI's
    shapes); ``dialects.shape`` turns it into what the upstream accepts."""
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


def _is_json_schema(body: dict[str, Any]) -> bool:
    fmt = body.get("response_format")
    return isinstance(fmt, dict) and fmt.get("type") == "json_schema"


def _loop() -> Any:
    return asyncio.get_running_loop()
