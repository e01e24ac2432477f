"""The upstream engine: what asstctl adds on top of the model, and how many streams one process carries.

* Time to first token: a streamed run through ``asstctl serve --upstream`` (a subprocess) against the
  scripted Chat Completions upstream, vs the same streamed chat completion asked of that upstream
  directly, with the same SDK; p50 of the added time to the first delta, and the added time per delta.
* Concurrency: N streamed runs at once (``create_and_run``, stream) against an upstream that waits 1 s
  before answering; all must complete, wall time vs a single run's, the server's peak RSS.

The scripted upstream (tests/upstream.py) runs in its own process with its schema checks off (they
would dominate the figures; the tests keep them on).
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from benchmarks.common import Row, Size, ratio, seconds, verdict

ROOT = Path(__file__).resolve().parent.parent
MODEL = "gpt-4o"
TTFT_TARGET_MS = 10.0
PER_DELTA_TARGET_MS = 2.0
CONCURRENCY_TARGET = 3.0


def upstream_rows(size: Size) -> list[Row]:
    with scripted_upstream(first_delay=0.02, delay=0.002, deltas=size.stream_deltas) as upstream_url, \
            asstctl_serve(upstream_url) as server:
        with sdk(upstream_url) as direct_client, sdk(server.base_url) as our_client:
            assistant_id = our_client.beta.assistants.create(model=MODEL, instructions="Answer briefly.").id
            direct_stream(direct_client), run_stream(our_client, assistant_id)  # warm-up: connections, imports
            direct, ours = [], []
            for _ in range(size.streams):  # interleaved, so drift on a shared machine hits both alike
                direct.append(direct_stream(direct_client))
                ours.append(run_stream(our_client, assistant_id))
    rows = ttft_rows(size, ours, direct)
    with scripted_upstream(first_delay=1.0, delay=0.0, deltas=5, lean=True) as upstream_url, \
            asstctl_serve(upstream_url) as server:
        rows.append(concurrency_row(size, server))
    return rows


# -- processes --------------------------------------------------------------------------------
@contextmanager
def scripted_upstream(first_delay: float, delay: float, deltas: int, lean: bool = False) -> Iterator[str]:
    """The tests' scripted upstream (or with ``lean``, benchmarks/lean_upstream.py) as a process."""
    if lean:
        command = [sys.executable, "-m", "benchmarks.lean_upstream", "--first-delay", str(first_delay),
                   "--deltas", str(deltas)]
    else:
        command = [sys.executable, "-m", "tests.upstream", "--first-delay", str(first_delay), "--delay", str(delay),
                   "--deltas", str(deltas)]
    proc = subprocess.Popen(command, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        yield proc.stdout.readline().strip()
    finally:
        proc.stdin.close()
        proc.wait(timeout=30)
        proc.stdout.close()


@contextmanager
def asstctl_serve(upstream_url: str) -> Iterator[Any]:
    from tests.serve_process import ServeProcess

    with tempfile.TemporaryDirectory() as tmp, \
            ServeProcess(Path(tmp), "--db", ":memory:", "--upstream", upstream_url) as server:
        yield server
        server.stop()


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


# -- time to first token ----------------------------------------------------------------------
def sdk(base_url: str, **options: Any):
    from openai import OpenAI

    return OpenAI(base_url=base_url, api_key="asstctl-local", max_retries=0, **options)


def direct_stream(client: Any) -> tuple[float, float, int]:
    """(seconds to the first content delta, seconds from the first to the last, deltas)."""
    started = time.perf_counter()
    times = []
    stream = client.chat.completions.create(model=MODEL, messages=[{"role": "system", "content": "Answer briefly."},
                                                                   {"role": "user", "content": "ping"}],
                                            stream=True, stream_options={"include_usage": True})
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            times.append(time.perf_counter())
    return times[0] - started, times[-1] - times[0], len(times)


def run_stream(client: Any, assistant_id: str) -> tuple[float, float, int]:
    """The same for a streamed run on a fresh thread (created before the clock starts)."""
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "ping"}])
    started = time.perf_counter()
    times, status = [], None
    for event in client.beta.threads.runs.create(thread.id, assistant_id=assistant_id, stream=True):
        if event.event == "thread.message.delta":
            times.append(time.perf_counter())
        elif event.event.startswith("thread.run.") and event.event != "thread.run.step.delta":
            status = event.data.status
    if status != "completed" or not times:
        raise RuntimeError(f"benchmark broken: the streamed run ended {status} with {len(times)} deltas")
    return times[0] - started, times[-1] - times[0], len(times)


def ttft_rows(size: Size, ours: list, direct: list) -> list[Row]:
    ttft_ours, ttft_direct = (statistics.median(t[0] for t in runs) for runs in (ours, direct))
    added_ms = (ttft_ours - ttft_direct) * 1000
    per_delta = [((o[1] - d[1]) / max(1, o[2] - 1)) * 1000 for o, d in zip(ours, direct)]
    per_delta_ms = statistics.median(per_delta)
    data = {"ours": ours, "direct": direct, "deltas": size.stream_deltas}
    return [
        Row(f"upstream engine: time to first token, p50 of {size.streams} streamed runs",
            f"{added_ms:.1f} ms added ({seconds(ttft_ours)})", f"{seconds(ttft_direct)} (the upstream directly)",
            f"{ratio(ttft_ours, ttft_direct):.2f}x", f"under {TTFT_TARGET_MS:g} ms added",
            verdict(size, added_ms < TTFT_TARGET_MS), data),
        Row(f"upstream engine: time per delta, {size.stream_deltas} deltas (median)",
            f"{per_delta_ms:.2f} ms added per delta", "the upstream directly", "-",
            f"under {PER_DELTA_TARGET_MS:g} ms added per delta", verdict(size, per_delta_ms < PER_DELTA_TARGET_MS),
            data),
    ]


# -- concurrency ------------------------------------------------------------------------------
async def one_then_many(base_url: str, n: int) -> tuple[float, float, list[str]]:
    """Wall time of one streamed run, then of ``n`` at once (warmed up first).

    The load comes from a lean asyncio client (asstctl's own upstream HTTP client reading the SSE
    stream), not the SDK: at 500 streams the SDK's httpx pool spends more CPU than the server."""
    from asstctl.server.engine.http import Pool
    from openai import OpenAI

    with OpenAI(base_url=base_url, api_key="asstctl-local", max_retries=0) as sdk_client:
        assistant_id = sdk_client.beta.assistants.create(model=MODEL, instructions="Answer briefly.").id
    body = json.dumps({"assistant_id": assistant_id, "stream": True,
                       "thread": {"messages": [{"role": "user", "content": "ping"}]}}).encode()
    headers = {"authorization": "Bearer asstctl-local", "openai-beta": "assistants=v2"}
    pool = Pool()

    async def one() -> str:
        status = "none"
        response = await pool.post(base_url + "/threads/runs", body, headers)
        try:
            async for line in response.lines():
                if line.startswith("event: thread.run.") and line[18:] in ("completed", "failed", "incomplete"):
                    status = line[18:]
        finally:
            response.close()
        return status

    try:
        await one()
        started = time.perf_counter()
        await one()
        single = time.perf_counter() - started
        started = time.perf_counter()
        statuses = list(await asyncio.gather(*(one() for _ in range(n))))
        return single, time.perf_counter() - started, statuses
    finally:
        await pool.aclose()


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def concurrency_row(size: Size, server: Any) -> Row:
    load = os.getloadavg()[0]
    cpu_before = cpu_seconds(server.proc.pid)
    single, wall, statuses = asyncio.run(one_then_many(server.base_url, size.concurrent))
    cpu = cpu_seconds(server.proc.pid) - cpu_before
    completed = statuses.count("completed")
    rss = peak_rss_mb(server.proc.pid)
    met = completed == size.concurrent and wall < CONCURRENCY_TARGET * single
    return Row(f"upstream engine: {size.concurrent} concurrent streamed runs, upstream latency 1 s",
               f"{seconds(wall)}, {completed}/{size.concurrent} completed, server peak RSS {rss:.0f} MB, "
               f"server CPU {cpu:.2f} s (load average {load:.1f})",
               f"{seconds(single)} (one run)", f"{ratio(wall, single):.2f}x",
               f"all complete, under {CONCURRENCY_TARGET:g}x one run",
               met if completed != size.concurrent else verdict(size, met),
               {"wall_s": wall, "single_s": single, "completed": completed, "rss_mb": rss, "server_cpu_s": cpu,
                "load_average": load})
