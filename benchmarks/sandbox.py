"""code_interpreter sandbox: a session's cold start (bwrap + the REPL, up to its first answer) and the
overhead of a warm call, against a bare ``python -I -c pass`` process started in the same run."""

from __future__ import annotations

import asyncio
import statistics
import subprocess
import sys
import time

from benchmarks.common import Row, Size, ratio, verdict

COLD_TARGET_MS = 500
WARM_TARGET_MS = 50


def sandbox_rows(size: Size) -> list[Row]:
    from asstctl.server.sandbox import SandboxConfig, SandboxUnavailable, SessionPool

    runs = max(2, size.startup_runs)
    bare = statistics.median(_bare_python() for _ in range(runs))
    baseline = f"{bare * 1000:.0f} ms (python -I -c pass)"
    loop = asyncio.new_event_loop()
    pool = SessionPool(SandboxConfig(max_sessions=runs + 1))
    try:
        cold = [loop.run_until_complete(_timed(pool, f"cold-{i}")) for i in range(runs)]
        warm = [loop.run_until_complete(_timed(pool, "cold-0")) for _ in range(runs * 5)]
    except SandboxUnavailable as error:
        return [_missing(name, baseline, str(error)) for name in _names(runs)]
    finally:
        loop.run_until_complete(pool.aclose())
        loop.close()
    cold_s, warm_s = statistics.median(cold), statistics.median(warm)
    names = _names(runs)
    return [
        Row(names[0], f"{cold_s * 1000:.0f} ms", baseline, f"{ratio(cold_s, bare):.1f}x the bare start",
            f"under {COLD_TARGET_MS} ms", verdict(size, cold_s * 1000 < COLD_TARGET_MS),
            {"seconds": cold_s, "baseline_seconds": bare, "samples": cold}),
        Row(names[1], f"{warm_s * 1000:.1f} ms", baseline, f"{ratio(bare, warm_s):.0f}x less than a new process",
            f"under {WARM_TARGET_MS} ms", verdict(size, warm_s * 1000 < WARM_TARGET_MS),
            {"seconds": warm_s, "baseline_seconds": bare, "samples": warm}),
    ]


def _names(runs: int) -> list[str]:
    return [f"code_interpreter sandbox: cold start, first call (median of {runs})",
            f"code_interpreter sandbox: warm call overhead (median of {runs * 5})"]


async def _timed(pool, key: str) -> float:
    started = time.perf_counter()
    result = await pool.run(key, "pass")
    elapsed = time.perf_counter() - started
    if result.error:
        raise RuntimeError(f"the benchmark's cell failed: {result.logs}")
    return elapsed


def _bare_python() -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-I", "-c", "pass"], check=True)
    return time.perf_counter() - started


def _missing(name: str, baseline: str, why: str) -> Row:
    return Row(name, f"not measured: {why.split('.')[0]}", baseline, "-", "-", None, {})
