"""``GET /metrics``: the server's figures in the Prometheus text format (``prometheus-client``).

Counters and histograms are kept per server (one ``CollectorRegistry`` each, so several servers in one
process never mix); gauges that the store or the executor already know (queue depth, active runs and
sandbox sessions, ingestion backlog, event-loop lag) are read when scraped. Every name starts with
``asstctl_``; ``project`` is a label where it is cheap (runs and tokens). docs/deploy.md lists them all.
"""

from __future__ import annotations

import logging
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily

log = logging.getLogger("asstctl.server")

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# The ingestion backlog: the sum of the ``file_counts.in_progress`` each vector store keeps (moved with
# every file change, never recounted), read from the stores' parsed bodies: one row per vector store, no
# file read, and a file's own attributes (``{"status": "in_progress"}`` is a user's value) never counted.
BACKLOG_SQL = {
    "sqlite": "SELECT coalesce(sum(json_extract(body, '$.file_counts.in_progress')), 0) FROM objects "
              "WHERE kind = 'vector_store'",
    "postgres": "SELECT coalesce(sum((body::jsonb #>> '{file_counts,in_progress}')::bigint), 0) FROM objects "
                "WHERE kind = 'vector_store'",
}
MAX_CACHED = 1_000  # label sets of answered requests whose series are kept at hand (more are looked up each time)
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


class Metrics:
    def __init__(self, state: Any):
        self.state = state
        self.registry = registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter("asstctl_http_requests", "HTTP requests answered, by route and status.",
                                ["method", "route", "status"], registry=registry)
        self.request_seconds = Histogram("asstctl_http_request_duration_seconds", "Time to answer an HTTP request "
                                         "(a stream: until it ends).", ["route"], buckets=LATENCY_BUCKETS,
                                         registry=registry)
        self.runs = Counter("asstctl_runs", "Runs that entered each status on this replica.",
                            ["status", "project"], registry=registry)
        self.first_token = Histogram("asstctl_time_to_first_token_seconds", "From the start of a model call to its "
                                     "first text or tool-call delta.", ["model"], buckets=LATENCY_BUCKETS,
                                     registry=registry)
        self.upstream_seconds = Histogram("asstctl_upstream_request_duration_seconds", "Duration of a whole model "
                                          "call (the engine's stream, to its end).", ["engine", "model"],
                                          buckets=LATENCY_BUCKETS, registry=registry)
        self.upstream_errors = Counter("asstctl_upstream_errors", "Model calls that failed, by error code.",
                                       ["engine", "model", "code"], registry=registry)
        self.upstream_retries = Counter("asstctl_upstream_retries", "Model calls sent again (429, 5xx, a lost "
                                        "connection), by reason: the status or connection.",
                                        ["engine", "model", "reason"], registry=registry)
        self.tokens = Counter("asstctl_tokens", "Tokens of model calls, by type (prompt or completion).",
                              ["type", "model", "project"], registry=registry)
        self.tool_seconds = Histogram("asstctl_tool_call_duration_seconds", "Built-in tool calls (file_search, "
                                      "code_interpreter).", ["tool"], buckets=LATENCY_BUCKETS, registry=registry)
        registry.register(_Gauges(state))
        self._answered: dict[tuple[str, str, int], tuple[Any, Any]] = {}  # (method, route, status) -> its series

    def answered(self, method: str, route: str, status: int, seconds: float) -> None:
        """A request answered: its count and its duration, in series looked up once per label set."""
        series = self._answered.get((method, route, status))
        if series is None:
            series = self.requests.labels(method, route, str(status)), self.request_seconds.labels(route)
            if len(self._answered) < MAX_CACHED:
                self._answered[(method, route, status)] = series
        series[0].inc()
        series[1].observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _Gauges:
    """Figures read at scrape time from what the server already keeps."""

    def __init__(self, state: Any):
        self.state = state

    def describe(self):
        return []

    def collect(self):
        state = self.state
        yield _gauge("asstctl_run_queue_depth", "Runs queued and not claimed by any replica.", _queue_depth(state))
        executor = state.extra.get("runs")
        active = len(getattr(executor, "_tasks", {})) if executor is not None else 0
        yield _gauge("asstctl_runs_active", "Runs whose turn this replica is working on now.", active)
        tool = state.extra.get("tools", {}).get("code_interpreter")
        sessions = sum(len(getattr(getattr(tool, pool, None), "sessions", None) or {})
                       for pool in ("pool", "plain_pool"))  # plain_pool: no bubblewrap, the project's own rules
        yield _gauge("asstctl_sandbox_sessions_active", "Live code_interpreter sandbox sessions on this replica.",
                     sessions)
        yield _gauge("asstctl_ingestion_backlog", "Vector store files still being ingested (status in_progress).",
                     _backlog(state))
        lag = getattr(state, "loop_lag", None) or state.extra.get("loop_lag")
        if lag is not None:
            family = GaugeMetricFamily("asstctl_event_loop_lag_seconds", "How late the event loop runs its "
                                       "callbacks (recent window).", labels=["quantile"])
            stats = lag.stats()
            for name, quantile in (("p50_ms", "0.5"), ("p99_ms", "0.99"), ("max_ms", "1")):
                if stats.get(name) is not None:
                    family.add_metric([quantile], float(stats[name]) / 1000)
            yield family


def _gauge(name: str, doc: str, value: float | None) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, doc)
    if value is not None:
        family.add_metric([], value)
    return family


def _queue_depth(state) -> int | None:
    try:
        return int(state.store._fetch("SELECT count(*) FROM run_queue WHERE owner IS NULL")[0][0])
    except Exception as error:  # noqa: BLE001 - the database is down: the gauge is absent, /readyz says why
        log.warning("metrics: cannot read the run queue (%s)", type(error).__name__)
        return None


def _backlog(state) -> int | None:
    try:
        return int(state.store._fetch(BACKLOG_SQL[state.store.backend])[0][0])
    except Exception as error:  # noqa: BLE001 - as above
        log.warning("metrics: cannot read the ingestion backlog (%s)", type(error).__name__)
        return None
