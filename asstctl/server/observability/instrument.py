"""Model calls and built-in tool calls, timed, counted and traced: the server's engine and tools are
wrapped in these proxies (everything else about them is passed through)."""

from __future__ import annotations

import asyncio
import json
import re
import time
from contextlib import aclosing, contextmanager
from contextvars import ContextVar
from typing import Any, AsyncIterator

from asstctl.server.engine.base import EngineError, TextDelta, ToolCallDelta, TurnEnd, reply_events
from asstctl.server.observability import tracing

MAX_LABELS = 100  # distinct model names kept as label values; more are counted as "other"
MAX_CAPTURED = 64 << 10  # characters of prompt and of completion JSON a span keeps (content capture on)
CALL: ContextVar[tuple[str, Any] | None] = ContextVar("asstctl_model_call", default=None)  # (model label, span)
ANSWERED = re.compile(r"answered (\d{3})")


HTTP_METHODS = frozenset(("GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"))


def http_method(method: str) -> str:
    """A request's method as a label or span name: one of RFC 9110's and PATCH, else ``_OTHER`` (as the
    OpenTelemetry HTTP conventions say): a client inventing methods never adds a series."""
    return method if method in HTTP_METHODS else "_OTHER"


def bounded(seen: set[str], value: str) -> str:
    """``value`` as a label value, unless ``MAX_LABELS`` others came first (clients name models)."""
    if value in seen:
        return value
    if len(seen) >= MAX_LABELS:
        return "other"
    seen.add(value)
    return value


class ObservedEngine:
    def __init__(self, inner: Any, observer: Any):
        self._inner, self._observer = inner, observer
        self.name = getattr(inner, "name", type(inner).__name__)
        if hasattr(inner, "on_retry"):  # the upstream engine retries 429s, 5xx and lost connections
            inner.on_retry = self._retried

    def _retried(self, number: int, what: str) -> None:
        """A model call is sent again: counted (``reason``: the status, or ``connection``), and an event on
        the call's span."""
        answered = ANSWERED.match(what)
        reason = answered[1] if answered else "connection"
        model, span = CALL.get() or ("", None)
        if self._observer.metrics is not None:
            self._observer.metrics.upstream_retries.labels(self.name, model, reason).inc()
        if span is not None:
            span.add_event("retry", {"asstctl.retry.number": number, "asstctl.retry.reason": reason})

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def stream(self, request) -> AsyncIterator[Any]:
        observer, metrics = self._observer, self._observer.metrics
        model = observer.model_label(str(request.model or ""))
        started, first, end, code = time.monotonic(), None, None, None
        text: list[str] = []
        span = None
        if observer.tracer is not None:
            span = tracing.start_span(observer.tracer, f"chat {request.model}", _request_attributes(self, request,
                                      observer.capture), client=True)
        CALL.set((model, span))  # (the turn's task: the upstream's retries are counted under this call)
        try:
            async with aclosing(self._source(request)) as events:
                async for event in events:
                    if first is None and isinstance(event, (TextDelta, ToolCallDelta)):
                        first = time.monotonic()
                        if metrics is not None:
                            metrics.first_token.labels(model).observe(first - started)
                    if isinstance(event, TurnEnd):
                        end = event
                    elif observer.capture and isinstance(event, TextDelta) and sum(map(len, text)) < MAX_CAPTURED:
                        text.append(event.text)
                    yield event
        except EngineError as error:
            code = error.code
            raise
        except asyncio.CancelledError:
            raise
        except Exception:
            code = "server_error"
            raise
        finally:
            if metrics is not None:
                metrics.upstream_seconds.labels(self.name, model).observe(time.monotonic() - started)
                if code is not None:
                    metrics.upstream_errors.labels(self.name, model, code).inc()
            if span is not None:
                _finish(span, end, code, "".join(text) if observer.capture else None)

    def _source(self, request) -> AsyncIterator[Any]:
        stream = getattr(self._inner, "stream", None)
        if stream is not None:
            return stream(request)
        return self._replied(request)

    async def _replied(self, request) -> AsyncIterator[Any]:
        reply = await asyncio.to_thread(self._inner.respond, request)  # an engine with only respond()
        async with aclosing(reply_events(reply, request)) as events:
            async for event in events:
                yield event


def _request_attributes(engine: ObservedEngine, request, capture: bool) -> dict[str, Any]:
    upstream = getattr(engine._inner, "config", None)
    attributes = {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "openai" if upstream is not None else f"asstctl.{engine.name}",
        "gen_ai.request.model": request.model,
        "gen_ai.request.temperature": request.temperature,
        "gen_ai.request.top_p": request.top_p,
        "gen_ai.request.max_tokens": request.max_completion_tokens,
        "gen_ai.agent.id": (request.assistant or {}).get("id"),
        "gen_ai.conversation.id": (request.run or {}).get("thread_id"),
        "asstctl.run.id": (request.run or {}).get("id"),
        "asstctl.tools_offered": len(request.offered_tools or ()),
    }
    if capture:
        attributes["gen_ai.input.messages"] = capped(list(request.chat or request.messages or ()))
    return attributes


def capped(messages: list) -> str:
    """``messages`` as a JSON array of at most ``MAX_CAPTURED`` characters, still valid JSON: when longer, the
    newest messages that fit whole (each serialized once); when not even the newest does, it alone, every
    string cut to the longest length that fits."""
    text = json.dumps(messages, default=str)
    if len(text) <= MAX_CAPTURED:
        return text
    kept: list[str] = []
    size = 2  # "[]"
    for message in reversed(messages):
        one = json.dumps(message, default=str)
        size += len(one) + (2 if kept else 0)  # (", " between two)
        if size > MAX_CAPTURED:
            break
        kept.append(one)
    if kept:
        return "[" + ", ".join(reversed(kept)) + "]"
    newest = messages[-1:]
    low, high = 0, MAX_CAPTURED
    while low < high:  # the longest cut that fits
        middle = (low + high + 1) // 2
        if len(json.dumps(_cut(newest, middle), default=str)) <= MAX_CAPTURED:
            low = middle
        else:
            high = middle - 1
    text = json.dumps(_cut(newest, low), default=str)
    return text if len(text) <= MAX_CAPTURED else "[]"


def _cut(value: Any, length: int) -> Any:
    if isinstance(value, str):
        return value[:length]
    if isinstance(value, dict):
        return {key: _cut(item, length) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_cut(item, length) for item in value]
    return value


def _finish(span, end: TurnEnd | None, code: str | None, text: str | None) -> None:
    if end is not None:
        span.set_attribute("gen_ai.response.finish_reasons", [end.finish_reason])
        span.set_attribute("gen_ai.usage.input_tokens", end.usage.prompt_tokens)
        span.set_attribute("gen_ai.usage.output_tokens", end.usage.completion_tokens)
        if end.model:  # the model the upstream was sent (after --model-map); gen_ai.request.model is the run's
            span.set_attribute("gen_ai.response.model", end.model)
    if text is not None:
        span.set_attribute("gen_ai.output.messages", capped([{"role": "assistant", "content": text}]))
    if code is not None:
        span.set_attribute("error.type", code)
        tracing.failed(span, code)
    span.end()


@contextmanager
def embeddings_call(observer: Any, model: str, texts: int, background: bool):
    """One ``/embeddings`` request (``EmbeddingsConfig.observe``): its time and failures in the upstream
    metrics (engine ``embeddings``) and an ``embeddings {model}`` client span (ingestion's, ``background``:
    a trace of its own; a search's: a child of its tool call)."""
    started, code, span, metrics = time.monotonic(), None, None, observer.metrics
    if observer.tracer is not None:
        span = tracing.start_span(observer.tracer, f"embeddings {model}", {
            "gen_ai.operation.name": "embeddings", "gen_ai.provider.name": "openai", "gen_ai.request.model": model,
            "asstctl.embeddings.inputs": texts}, client=True, root=background)
    try:
        yield
    except BaseException as error:
        status = getattr(error, "status_code", None)
        code = str(status) if isinstance(status, int) else type(error).__name__
        raise
    finally:
        if metrics is not None:
            label = observer.model_label(model)
            metrics.upstream_seconds.labels("embeddings", label).observe(time.monotonic() - started)
            if code is not None:
                metrics.upstream_errors.labels("embeddings", label, code).inc()
        if span is not None:
            if code is not None:
                span.set_attribute("error.type", code)
                tracing.failed(span, code)
            span.end()


class ObservedTools(dict):
    """``state.extra["tools"]``: each built-in tool stored here is wrapped as it is made."""

    def __init__(self, observer: Any):
        super().__init__()
        self.observer = observer

    def __setitem__(self, key: str, tool: Any) -> None:
        super().__setitem__(key, _ObservedTool(tool, self.observer))


class _ObservedTool:
    def __init__(self, inner: Any, observer: Any):
        self._inner, self._observer = inner, observer
        self.type = getattr(inner, "type", "tool")

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def run(self, ctx, arguments: dict[str, Any]) -> Any:
        observer, started, span = self._observer, time.monotonic(), None
        if observer.tracer is not None:
            span = tracing.start_span(observer.tracer, f"execute_tool {self.type}", {
                "gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": self.type,
                "gen_ai.tool.type": "extension", "gen_ai.tool.call.id": getattr(ctx, "call_id", None),
                "asstctl.run.id": (getattr(ctx, "run", None) or {}).get("id")})
        token = tracing.attach(span) if span is not None else None  # its embeddings requests: children
        try:
            outcome = await self._inner.run(ctx, arguments)
            if span is not None:
                span.set_attribute("asstctl.tool.sources", len(getattr(outcome, "sources", ()) or ()))
            return outcome
        except BaseException as error:
            if span is not None:
                tracing.failed(span, type(error).__name__)
            raise
        finally:
            if observer.metrics is not None:
                observer.metrics.tool_seconds.labels(self.type).observe(time.monotonic() - started)
            if span is not None:
                tracing.detach(token)
                span.end()
