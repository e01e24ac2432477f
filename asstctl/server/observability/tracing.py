"""OpenTelemetry traces (the ``otel`` extra: ``pip install 'asstctl[otel]'``).

On when ``OTEL_TRACES_EXPORTER`` or an ``OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT`` is set (and
``OTEL_SDK_DISABLED`` is not true), configured by the standard ``OTEL_*`` variables (service name,
resource attributes, sampler, OTLP endpoint, headers and protocol: ``http/protobuf`` (the default) or ``grpc``,
whose exporter is not in the extra);
or with a ``tracer_provider`` in the server's config (tests: the SDK's in-memory exporter).

Spans: one per HTTP request (``GET /v1/threads/{id}``), one per run (``run {assistant}``: a child of the
request that created the run, from its ``created_at`` to the status that ends it), one per run turn
(``invoke_agent``: a child of the run's span, so a run with function-tool rounds is one tree, and linked to
the request that queued the turn, e.g. the submit of tool outputs: these span contexts are kept with the
run, as W3C ``traceparent`` strings, so the replica that runs a turn or ends the run may be another one;
the run's span id is chosen when the run is created and the span itself is recorded when the run ends),
children of the turn per model call (``chat {model}``, with the ``gen_ai.*`` attributes of the OpenTelemetry semantic
conventions for generative AI) and per built-in tool call (``execute_tool file_search`` is retrieval,
``execute_tool code_interpreter`` the sandbox). Prompt and completion text is recorded only with
``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true``.
"""

from __future__ import annotations

import contextvars
import os
import re
import secrets
from typing import Any

from asstctl.errors import ConfigError

CAPTURE_ENV = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"
EXPORTERS = ("otlp", "console", "none")
PROTOCOLS = ("http/protobuf", "grpc")  # OTLP's, as this server sends them (http/json: the Python SDK has none)
ON_ENVS = ("OTEL_TRACES_EXPORTER", "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
TRACEPARENT = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")  # W3C Trace Context, version 00


def wanted() -> bool:
    if os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    if not any(os.environ.get(name, "").strip() for name in ON_ENVS):
        return False
    return exporter_kind() != "none"


def exporter_kind() -> str:
    """``OTEL_TRACES_EXPORTER`` (default ``otlp``): one of EXPORTERS, or a ConfigError naming them."""
    kind = os.environ.get("OTEL_TRACES_EXPORTER", "").strip().lower() or "otlp"
    if kind not in EXPORTERS:
        raise ConfigError(f"OTEL_TRACES_EXPORTER={kind[:40]!r} is not supported: it takes one of "
                          f"{', '.join(EXPORTERS)} (one exporter, not a list)",
                          hint="Set OTEL_TRACES_EXPORTER=otlp with OTEL_EXPORTER_OTLP_ENDPOINT (any collector, "
                               "e.g. the OpenTelemetry Collector forwarding to Zipkin or Jaeger), console, or none.")
    return kind


def capture_content() -> bool:
    return os.environ.get(CAPTURE_ENV, "").strip().lower() == "true"


def tracer_for(config: Any):
    """The tracer of this server, or None when tracing is off. An SDK tracer's span ids come through
    ``_ChosenIds``, so a run's span can take the id its turns already name as their parent."""
    provider = getattr(config, "tracer_provider", None)
    if provider is None:
        if not wanted():
            return None
        provider = _provider_from_env()
    tracer = provider.get_tracer("asstctl.server")
    if getattr(tracer, "id_generator", None) is not None and not isinstance(tracer.id_generator, _ChosenIds):
        tracer.id_generator = _ChosenIds(tracer.id_generator)
    return tracer


_CHOSEN: contextvars.ContextVar[int | None] = contextvars.ContextVar("asstctl_span_id", default=None)


class _ChosenIds:
    """The tracer's own id generator, except for the one span started with ``start_span(span_id=...)``."""

    def __init__(self, ids):
        self.ids = ids

    def generate_span_id(self) -> int:
        chosen = _CHOSEN.get()
        if chosen is not None:
            _CHOSEN.set(None)
            return chosen
        return self.ids.generate_span_id()

    def generate_trace_id(self) -> int:
        return self.ids.generate_trace_id()

    def is_trace_id_random(self) -> bool:
        return self.ids.is_trace_id_random()


def chooses_ids(tracer) -> bool:
    """Whether a span of ``tracer`` can be given an id chosen in advance (``start_span(span_id=...)``)."""
    return isinstance(getattr(tracer, "id_generator", None), _ChosenIds)


def future_span(parent) -> Any:
    """The context of a span to be recorded later as a child of ``parent`` (a span context): its id chosen now."""
    otel = _api or api()
    return otel.SpanContext(parent.trace_id, secrets.randbits(63) + 1, is_remote=True,
                            trace_flags=otel.TraceFlags(int(parent.trace_flags) & otel.TraceFlags.SAMPLED))


def _provider_from_env():
    try:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter
    except ImportError:
        raise ConfigError("OTEL_* variables ask for traces, but OpenTelemetry is not installed",
                          hint="Install it with: pip install 'asstctl[otel]' (or unset OTEL_TRACES_EXPORTER and "
                               "OTEL_EXPORTER_OTLP_ENDPOINT).") from None
    resource = Resource.create()  # OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES (its service.name too)
    if str(resource.attributes.get("service.name", "unknown_service")).startswith("unknown_service"):  # none named
        resource = resource.merge(Resource({"service.name": "asstctl"}))
    provider = TracerProvider(resource=resource)  # OTEL_TRACES_SAMPLER(_ARG) are read by the SDK
    kind = exporter_kind()
    provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter() if kind == "console" else _otlp()))
    return provider


def _otlp():
    """The OTLP exporter: ``http/protobuf`` unless ``OTEL_EXPORTER_OTLP_(TRACES_)PROTOCOL`` says ``grpc`` (whose
    exporter the ``otel`` extra leaves out: it pulls in grpcio); any other protocol is refused by name."""
    protocol = (os.environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
                or "http/protobuf").strip().lower()
    if protocol not in PROTOCOLS:
        raise ConfigError(f"OTEL_EXPORTER_OTLP_PROTOCOL={protocol[:40]!r} is not supported: it takes "
                          f"{' or '.join(PROTOCOLS)}",
                          hint="Set OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf (a collector's port 4318), or unset it.")
    try:
        if protocol == "http/protobuf":
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        else:
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    except ImportError:
        package = "opentelemetry-exporter-otlp-proto-" + ("http" if protocol == "http/protobuf" else "grpc")
        raise ConfigError(f"the OTLP exporter for protocol {protocol!r} is not installed ({package})",
                          hint=f"Install it with: pip install {package} ('asstctl[otel]' has the http/protobuf one), "
                               "or set OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf (a collector's port 4318).") from None
    return OTLPSpanExporter()  # endpoint, headers, timeout, certificates: OTEL_EXPORTER_OTLP_* variables


class _Api:
    """The OpenTelemetry names the hot paths use, imported once (the first time tracing is on), so a request
    pays for no ``import`` statement."""

    def __init__(self):
        from opentelemetry import context, trace
        from opentelemetry.context import Context
        from opentelemetry.trace import Link, NonRecordingSpan, SpanContext, SpanKind, Status, StatusCode, TraceFlags

        self.attach, self.detach, self.current_span = context.attach, context.detach, trace.get_current_span
        self.in_context, self.Link, self.NonRecordingSpan = trace.set_span_in_context, Link, NonRecordingSpan
        self.SERVER, self.CLIENT, self.INTERNAL = SpanKind.SERVER, SpanKind.CLIENT, SpanKind.INTERNAL
        self.Status, self.ERROR = Status, StatusCode.ERROR
        self.SpanContext, self.TraceFlags, self.Context = SpanContext, TraceFlags, Context


_api: _Api | None = None


def api() -> _Api:
    global _api
    if _api is None:
        _api = _Api()
    return _api


def start_span(tracer, name: str, attributes: dict[str, Any], *, server: bool = False, client: bool = False,
               links: tuple = (), parent: Any = None, start_time: int | None = None, root: bool = False,
               span_id: int | None = None):
    """A span; a child of ``parent`` (a span context, e.g. a request's that has ended) when given, else of
    the current span (``root``: of none, a trace of its own); ``span_id``: the id ``future_span`` chose for
    it (a tracer that ``chooses_ids``)."""
    otel = _api or api()
    kind = otel.SERVER if server else otel.CLIENT if client else otel.INTERNAL
    context = otel.in_context(otel.NonRecordingSpan(parent)) if parent is not None else otel.Context() if root \
        else None
    token = _CHOSEN.set(span_id) if span_id is not None else None
    try:
        return tracer.start_span(name, context=context, kind=kind,
                                 links=[otel.Link(c) for c in links] if links else None,
                                 attributes={k: v for k, v in attributes.items() if v is not None},
                                 start_time=start_time)
    finally:
        if token is not None:
            _CHOSEN.reset(token)


def request_span(tracer, method: str, path: str, request_id: str, headers=()) -> tuple[Any, Any]:
    """An HTTP request's span, made the current one: (the span, the token for ``end_request``, which names
    it by its route once the router has chosen one: ``GET /v1/threads/{id}``); a child of
    the client's span when the request carries a W3C ``traceparent`` header (anything else there is
    ignored). Everything it records at its start goes in one dict (one call into the SDK's attribute checks,
    not one per key)."""
    otel = _api or api()
    parent = next((remote_context(value.decode("latin-1")) for name, value in headers if name == b"traceparent"),
                  None)
    context = otel.in_context(otel.NonRecordingSpan(parent)) if parent is not None else None
    span = tracer.start_span(_name(method), kind=otel.SERVER, context=context, attributes={
        "http.request.method": method, "url.path": path, "asstctl.request_id": request_id})
    return span, attach(span)


def _name(method: str) -> str:
    return "HTTP" if method == "_OTHER" else method  # (the HTTP conventions' name for a method they do not know)


def end_request(span, token, status: int, method: str, route: str) -> None:
    if span.is_recording():  # the sampler kept it (a dropped span takes no attributes)
        span.update_name(f"{_name(method)} {route}")
        span.set_attributes({"http.route": route, "http.response.status_code": status})
        if status >= 500:
            failed(span, f"HTTP {status}")
    detach(token)
    span.end()


def current_context() -> Any:
    """The current span's context when one is recording (a request's span), else None."""
    span = (_api or api()).current_span()
    return span.get_span_context() if span.is_recording() else None


def traceparent(context) -> str:
    """A span context as a W3C ``traceparent`` string (``00-<trace id>-<span id>-<flags>``)."""
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{int(context.trace_flags) & 1:02x}"


def remote_context(value: Any) -> Any:
    """The (remote) span context a stored ``traceparent`` names, or None for anything else: another version,
    upper case, the all-zero ids the W3C forbids, a value that is not a string."""
    found = TRACEPARENT.fullmatch(value) if isinstance(value, str) else None
    if found is None or not int(found[1], 16) or not int(found[2], 16):
        return None
    otel = _api or api()
    return otel.SpanContext(int(found[1], 16), int(found[2], 16), is_remote=True,
                            trace_flags=otel.TraceFlags(int(found[3], 16) & otel.TraceFlags.SAMPLED))


def attach(span) -> Any:
    """Make ``span`` the current one (in this task's context); returns the token for ``detach``."""
    otel = _api or api()
    return otel.attach(otel.in_context(span))


def detach(token) -> None:
    (_api or api()).detach(token)


def failed(span, description: str) -> None:
    otel = _api or api()
    span.set_status(otel.Status(otel.ERROR, description))
