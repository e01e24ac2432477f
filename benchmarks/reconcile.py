"""`plan` and `apply` benchmarks, through the library the CLI calls (specs built in memory).

* plan: asstctl lists pages of 100 (``asstctl.reconcile.remote``); the baseline refreshes like a terraform
  provider: list the ids, then retrieve every object (8 at a time, asstctl's default parallelism).
* apply: create, then update, N assistants at ``--parallelism 8`` against ``--parallelism 1``;
  each phase is timed as `asstctl apply` does it: read the remote, plan, apply.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable

from benchmarks.common import (PROJECT, Row, Size, bench_specs, ceil_pages, client_for, latency_server, ratio,
                               seconds, timed, verdict)

PARALLELISM = 8
LIST, RETRIEVE = "GET /v1/assistants", "GET /v1/assistants/{id}"


@dataclass
class Measure:
    seconds: float
    requests: dict[str, int]


# -- plan ------------------------------------------------------------------------------------
def plan_rows(size: Size) -> list[Row]:
    specs = bench_specs(size.plan_n)
    with latency_server() as server:
        client = client_for(server)
        converge(client, specs, PARALLELISM)
        server.faults.latency_ms = size.latency_ms
        ours = measure(server, lambda: plan_by_listing(client, specs), size.repeats)
        base = measure(server, lambda: plan_by_retrieving(client, specs), size.repeats)
    return [request_row(size, ours, base), plan_time_row(size, ours, base)]


def measure(server: Any, plan: Callable[[], Any], repeats: int) -> Measure:
    """Requests of one plan (must find nothing to change), and the median wall time of ``repeats``."""
    times = []
    for _ in range(max(1, repeats)):
        server.state.stats.clear()
        elapsed, result = timed(plan)
        if result.has_changes():
            raise RuntimeError(f"benchmark broken: the plan of in-sync assistants has changes: {result.counts()}")
        times.append(elapsed)
    return Measure(sorted(times)[len(times) // 2], dict(server.state.stats))


def plan_by_listing(client: Any, specs: list[Any]) -> Any:
    from asstctl.reconcile.plan import build_plan
    from asstctl.reconcile.remote import read_remote

    return build_plan(specs, read_remote(client, PROJECT), project=PROJECT, target="bench")


def plan_by_retrieving(client: Any, specs: list[Any]) -> Any:
    """The per-object refresh: every id from the list, then one retrieve per object."""
    from asstctl.reconcile.plan import build_plan
    from asstctl.reconcile.remote import classify

    ids = [assistant.id for assistant in client.beta.assistants.list(limit=100, order="asc")]
    with ThreadPoolExecutor(PARALLELISM) as pool:
        objects = list(pool.map(lambda id: client.beta.assistants.retrieve(id).model_dump(mode="json"), ids))
    return build_plan(specs, classify(objects, PROJECT), project=PROJECT, target="bench")


def request_row(size: Size, ours: Measure, base: Measure) -> Row:
    pages, total = ceil_pages(size.plan_n), ours.requests.get("total", 0)
    lists = ours.requests.get(LIST, 0)
    return Row(
        name=f"plan, {size.plan_n:,} in-sync assistants: HTTP requests",
        measured=f"{total:,} ({lists:,} list)",
        baseline=f"{base.requests.get('total', 0):,} ({base.requests.get(LIST, 0):,} list + "
                 f"{base.requests.get(RETRIEVE, 0):,} retrieve)",
        ratio=f"{ratio(base.requests.get('total', 0), total):.0f}x fewer",
        target=f"exactly ceil(N/100) = {pages} list requests, nothing else",
        passed=lists == pages and total == pages,
        data={"n": size.plan_n, "ours": ours.requests, "baseline": base.requests, "expected_lists": pages},
    )


def plan_time_row(size: Size, ours: Measure, base: Measure) -> Row:
    speedup = ratio(base.seconds, ours.seconds)
    return Row(
        name=f"plan, {size.plan_n:,} in-sync assistants, {size.latency_ms:g} ms latency: wall time",
        measured=seconds(ours.seconds),
        baseline=f"{seconds(base.seconds)} (retrieve each, {PARALLELISM} threads)",
        ratio=f"{speedup:.1f}x faster",
        target="faster than the baseline",
        passed=verdict(size, speedup > 1),
        data={"seconds": ours.seconds, "baseline_seconds": base.seconds, "latency_ms": size.latency_ms},
    )


# -- apply -----------------------------------------------------------------------------------
def apply_rows(size: Size) -> list[Row]:
    sequential = apply_times(size, 1)
    parallel = apply_times(size, PARALLELISM)
    return [apply_row(size, phase, parallel[phase], sequential[phase]) for phase in ("create", "update")]


def apply_times(size: Size, parallelism: int) -> dict[str, float]:
    """Seconds to create N assistants, then to update all N, at ``parallelism``."""
    with latency_server(size.latency_ms) as server:
        client = client_for(server)
        create, created = timed(lambda: converge(client, bench_specs(size.apply_n, 1), parallelism))
        update, updated = timed(lambda: converge(client, bench_specs(size.apply_n, 2), parallelism))
    if created != size.apply_n or updated != size.apply_n:
        raise RuntimeError(f"benchmark broken: {created} created and {updated} updated of {size.apply_n}")
    return {"create": create, "update": update}


def converge(client: Any, specs: list[Any], parallelism: int) -> int:
    """Read the remote, plan and apply (what `asstctl apply --yes` does); the number of changes made."""
    from asstctl.reconcile.apply import apply_plan

    result = apply_plan(plan_by_listing(client, specs), client, parallelism=parallelism)
    if result.failed:
        raise RuntimeError(f"benchmark broken: {len(result.failed)} failed, e.g. {result.failed[0].error}")
    return len(result.outcomes)


def apply_row(size: Size, phase: str, parallel: float, sequential: float) -> Row:
    speedup = ratio(sequential, parallel)
    return Row(
        name=f"apply, {phase} {size.apply_n} assistants, {size.latency_ms:g} ms latency: --parallelism 8",
        measured=seconds(parallel),
        baseline=f"{seconds(sequential)} (--parallelism 1)",
        ratio=f"{speedup:.1f}x faster",
        target="at least 6x faster",
        passed=verdict(size, speedup >= 6),
        data={"seconds": parallel, "baseline_seconds": sequential, "n": size.apply_n},
    )
