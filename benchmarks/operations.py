"""Operating the server (issue 26): what projects and observability cost per request.

One server, one assistant per caller; ``GET /v1/assistants/{id}`` over one keep-alive connection per
client, in alternating batches (so drift of the machine hits both sides alike), the median of the
batches' mean times reported:

- a project key (hashed, checked in the store on every request, reads scoped by project) against the
  server's ``--api-key`` (compared in memory, the default project), on SQLite (a read of the key before the
  request's) and on PostgreSQL (a throwaway cluster as in ``benchmarks.replicas``; n/a without one: the key,
  known to the server after its first request, checked in the statement of the request's own read);
- a server with ``--metrics`` and traces (the OpenTelemetry SDK, spans to an in-memory exporter; metrics
  only without the SDK) against the same server with its observing layer switched off between batches
  (two servers in one process differ by more than what is measured here).
"""

from __future__ import annotations

import statistics
import time
from typing import Any

from benchmarks.common import Row, Size, verdict

ADMIN = "bench-admin-" + "a" * 24
DEFAULT = "bench-default-" + "d" * 24
TARGET_MS = 1.0  # added per request
BATCH = 50


def operations_rows(size: Size) -> list[Row]:
    requests, per_batch = (2000, BATCH) if size.timed_targets else (10, 5)
    from asstctl.server.embedded import start_server

    keys = key_row(size, ":memory:", "SQLite", requests, per_batch)
    on_postgres = postgres_key_row(size, requests, per_batch)
    provider, what = tracer_provider()
    with start_server(":memory:", api_key=DEFAULT, metrics=True, tracer_provider=provider) as server:
        observer = server.state.extra["observer"]
        http = client(server.base_url, DEFAULT)
        ours, base = alternate(http, http, requests, per_batch,
                               switch=lambda side: setattr(observer, "active", side == 0))
    observed = row(size, f"observability: --metrics and {what}, per request vs neither", ours, base,
                   "the same server without them")
    return [keys, on_postgres, observed]


def key_row(size: Size, db: str, where: str, requests: int, per_batch: int) -> Row:
    from asstctl.server.embedded import start_server

    with start_server(db, api_key=DEFAULT, admin_key=ADMIN) as server:
        keyed = project_client(server)
        plain = client(server.base_url, DEFAULT)
        ours, base = alternate(keyed, plain, requests, per_batch)
    return row(size, f"projects on {where}: a request with a project key (hashed, looked up, reads scoped) vs "
               "--api-key", ours, base, "--api-key, compared in memory")


def postgres_key_row(size: Size, requests: int, per_batch: int) -> Row:
    """The key's check goes to the database here with the request's read (a fresh schema of benchmarks.replicas' cluster)."""
    from benchmarks.replicas import URL_ENV, drop, fresh, postgres

    with postgres() as base:
        if base is None:
            why = f"n/a (no PostgreSQL: set {URL_ENV} or install postgresql)"
            return Row(name="projects on PostgreSQL: a project key vs --api-key", measured=why, baseline="",
                       ratio="n/a", target=f"under {TARGET_MS:g} ms added per request", passed=None, data={})
        made: list[str] = []
        try:
            return key_row(size, fresh(base, made), "PostgreSQL", requests, per_batch)
        finally:
            drop(base, made)


def project_client(server) -> tuple[Any, str]:
    import openai

    admin = openai.OpenAI(base_url=server.base_url, api_key="unused", admin_api_key=ADMIN, max_retries=0)
    projects = admin.admin.organization.projects
    key = projects.service_accounts.create(projects.create(name="bench").id, name="bench").api_key.value
    admin.close()
    return client(server.base_url, key)


def client(base_url: str, key: str) -> tuple[Any, str]:
    """An HTTP client with ``key`` and the id of an assistant it owns."""
    import httpx2

    http = httpx2.Client(base_url=base_url, headers={"Authorization": f"Bearer {key}", "OpenAI-Beta": "assistants=v2"})
    made = http.post("/assistants", json={"model": "gpt-4o"})
    made.raise_for_status()
    return http, made.json()["id"]


def alternate(ours: tuple[Any, str], base: tuple[Any, str], requests: int, per_batch: int,
              switch=lambda side: None) -> tuple[float, float]:
    """Median of the per-batch mean seconds per request: (ours, the baseline); ``switch(side)`` before each batch."""
    timings: dict[int, list[float]] = {0: [], 1: []}
    for side in (0, 1):  # warm-up
        switch(side)
        batch(ours if side == 0 else base, per_batch)
    for _ in range(max(1, requests // per_batch)):
        for side, pair in enumerate((ours, base)):
            switch(side)
            timings[side].append(batch(pair, per_batch))
    ours[0].close()
    base[0].close()
    return statistics.median(timings[0]), statistics.median(timings[1])


def batch(pair: tuple[Any, str], n: int) -> float:
    http, assistant_id = pair
    started = time.perf_counter()
    for _ in range(n):
        http.get(f"/assistants/{assistant_id}").raise_for_status()
    return (time.perf_counter() - started) / n


def tracer_provider() -> tuple[Any, str]:
    try:
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    except ImportError:
        return None, "no traces (the otel extra is not installed)"
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(InMemorySpanExporter()))  # as in production
    return provider, "traces (batched to an in-memory exporter)"


def row(size: Size, name: str, ours: float, base: float, baseline: str) -> Row:
    added_ms = (ours - base) * 1000
    return Row(name=name, measured=f"{ours * 1000:.2f} ms ({added_ms:+.2f} ms)", baseline=f"{base * 1000:.2f} ms ({baseline})",
               ratio=f"{ours / base:.2f}x" if base else "-", target=f"under {TARGET_MS:g} ms added per request",
               passed=verdict(size, added_ms < TARGET_MS), data={"ours_s": ours, "baseline_s": base})
