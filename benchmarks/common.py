"""Shared pieces of the benchmarks: sizes, result rows, timing, a server with latency, specs, the machine."""

from __future__ import annotations

import math
import os
import platform
import statistics
import sys
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator

PROJECT = "bench"


@dataclass(frozen=True)
class Size:
    plan_n: int  # in-sync assistants read by `plan`
    apply_n: int  # assistants created, then updated, by `apply`
    latency_ms: float  # injected into every request of the plan and apply benchmarks
    engine_ms: float  # the engine rule's simulated thinking time (turn benchmark)
    turns: int  # smoke-test turns measured per strategy
    specs: int  # spec files `asstctl validate` reads
    repeats: int  # timed repetitions of plan (the median is reported)
    startup_runs: int  # runs of each start-up command (the median is reported)
    timed_targets: bool = True  # False: too small for the timing targets to mean anything (reported n/a)
    streams: int = 20  # streamed runs timed through the upstream engine, and direct calls (p50)
    stream_deltas: int = 20  # deltas of each of those answers
    concurrent: int = 500  # streamed runs at once against an upstream with 1 s latency
    replica_runs: int = 400  # streamed runs per replica-count measurement (replicas benchmark)
    replica_clients: int = 8  # client threads creating those runs
    ingest_files: int = 10_000  # ~1.5 KB files attached to one store (ingestion benchmark)
    hostile_scale: float = 1.0  # the hostile files' size against the issue's (ingestion benchmark)


SIZES = {
    "small": Size(plan_n=12, apply_n=12, latency_ms=5, engine_ms=50, turns=1, specs=5, repeats=1, startup_runs=2, timed_targets=False,
                  streams=2, stream_deltas=5, concurrent=10,
                  replica_runs=8, replica_clients=2, ingest_files=100, hostile_scale=0.01),
    "full": Size(plan_n=1000, apply_n=200, latency_ms=50, engine_ms=200, turns=10, specs=100, repeats=3, startup_runs=10),
}


@dataclass
class Row:
    """One line of the table: ours against a baseline, and the target it must meet."""

    name: str
    measured: str
    baseline: str
    ratio: str
    target: str
    passed: bool | None  # None: could not be measured here
    data: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def verdict(size: Size, met: bool) -> bool | None:
    """PASS/MISS of a timing target; None (n/a) at a size too small to judge it."""
    return met if size.timed_targets else None


def ceil_pages(n: int, page: int = 100) -> int:
    return max(1, math.ceil(n / page))


def ratio(slow: float, fast: float) -> float:
    return slow / fast if fast > 0 else math.inf


def seconds(value: float) -> str:
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.2f} s"


def timed(function: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    result = function()
    return time.perf_counter() - started, result


def median_time(function: Callable[[], Any], repeats: int) -> float:
    return statistics.median(timed(function)[0] for _ in range(max(1, repeats)))


@contextmanager
def latency_server(latency_ms: float = 0.0, rules_path: str | None = None) -> Iterator[Any]:
    """An in-memory asstctl server in this process, with ``latency_ms`` on every request."""
    from asstctl.server.embedded import start_server
    from asstctl.server.faults import Faults

    with start_server(":memory:", faults=Faults(latency_ms=latency_ms), rules_path=rules_path) as server:
        yield server


def client_for(server: Any) -> Any:
    """The SDK client exactly as the CLI makes it (retries and timeout of ``open_target``)."""
    from asstctl.backends.targets import make_client

    return make_client(server.base_url, server.api_key, max_retries=2, timeout=60.0)


def bench_specs(n: int, version: int = 1) -> list[Any]:
    from asstctl.spec.model import AssistantSpec

    return [
        AssistantSpec(key=f"bot-{i:04d}", path=Path(f"assistants/bot-{i:04d}.yaml"),
                      fields={"model": "gpt-4o", "name": f"Bot {i}", "instructions": f"You are bot {i}, v{version}."})
        for i in range(n)
    ]


def machine() -> dict[str, Any]:
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu_model(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "executable": sys.executable,
    }


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"
