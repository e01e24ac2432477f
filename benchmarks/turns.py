"""One smoke-test turn: time from the run request to the run's end, minus the engine's own latency.

The engine rule answers ``ping`` after ``engine_ms`` of simulated thinking. asstctl's runner streams
the run; the baselines are the SDK's ``create_and_poll`` polling like the real API asks (every
1,000 ms: this server's ``openai-poll-after-ms: 10`` header is overridden) and a loop that
retrieves the run every 500 ms.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

from benchmarks.common import PROJECT, Row, Size, client_for, latency_server, ratio, verdict

KEY = "pinger"
TARGET_MS = 20.0
TERMINAL = {"requires_action", "cancelled", "completed", "failed", "expired", "incomplete"}


def turn_rows(size: Size) -> list[Row]:
    with tempfile.TemporaryDirectory() as tmp, rules_server(Path(tmp), size.engine_ms) as server:
        client = client_for(server)
        assistant_id = deploy(client)
        ours = runner_overheads(client, size)
        polled = overheads(lambda: poll_with_sdk(client, assistant_id), size)
        looped = overheads(lambda: poll_every_500_ms(client, assistant_id), size)
    return [turn_row(size, ours, polled, "create_and_poll", "SDK create_and_poll, poll_interval_ms=1000"),
            turn_row(size, ours, looped, "a poll loop", "retrieve every 500 ms")]


def rules_server(tmp: Path, engine_ms: float):
    rules = tmp / "rules.yaml"
    rules.write_text(f'rules:\n  - match: "^ping"\n    reply: "pong"\n    latency_ms: {engine_ms:g}\n')
    return latency_server(rules_path=str(rules))


def deploy(client: Any) -> str:
    """An assistant tagged as `asstctl apply` leaves it, so the runner finds it by key."""
    from asstctl.ownership import tags

    return client.beta.assistants.create(model="gpt-4o", name=KEY, metadata=tags(PROJECT, KEY, "0" * 16)).id


def runner_overheads(client: Any, size: Size) -> list[float]:
    """The runner's turn latency (run request → terminal event) minus the engine's latency, per turn."""
    from asstctl.testing.conversations import Conversation, Turn
    from asstctl.testing.runner import RunOptions, run_conversations

    conversation = Conversation(KEY, "ping", Path("bench.test.yaml"), "bench", [Turn(0, "ping", "bench")])
    report = run_conversations(client, PROJECT, "bench", [conversation], RunOptions(repeat=size.turns))
    turns = [turn for attempt in report.results[0].attempts for turn in attempt.turns]
    if not report.passed or len(turns) != size.turns:
        raise RuntimeError(f"benchmark broken: the ping conversation failed: {report.results[0].problem()}")
    return [turn.latency_ms - size.engine_ms for turn in turns]


def overheads(run_turn: Callable[[], float], size: Size) -> list[float]:
    return [run_turn() - size.engine_ms for _ in range(size.turns)]


def poll_with_sdk(client: Any, assistant_id: str) -> float:
    thread_id = new_thread(client)
    started = time.perf_counter()
    run = client.beta.threads.runs.create_and_poll(thread_id=thread_id, assistant_id=assistant_id,
                                                   poll_interval_ms=1000)
    return finished(run, started)


def poll_every_500_ms(client: Any, assistant_id: str) -> float:
    thread_id = new_thread(client)
    started = time.perf_counter()
    run = client.beta.threads.runs.create(thread_id=thread_id, assistant_id=assistant_id)
    while run.status not in TERMINAL:
        time.sleep(0.5)
        run = client.beta.threads.runs.retrieve(run.id, thread_id=thread_id)
    return finished(run, started)


def new_thread(client: Any) -> str:
    thread = client.beta.threads.create()
    client.beta.threads.messages.create(thread.id, role="user", content="ping")
    return thread.id


def finished(run: Any, started: float) -> float:
    if run.status != "completed":
        raise RuntimeError(f"benchmark broken: the baseline run ended {run.status}")
    return (time.perf_counter() - started) * 1000


def turn_row(size: Size, ours: list[float], base: list[float], short: str, baseline: str) -> Row:
    mine, theirs = statistics.median(ours), statistics.median(base)
    return Row(
        name=f"test turn, {size.engine_ms:g} ms engine latency: overhead (median of {size.turns}) vs {short}",
        measured=f"{mine:.1f} ms",
        baseline=f"{theirs:.0f} ms ({baseline})",
        ratio=f"{ratio(theirs, mine):.0f}x less",
        target=f"under {TARGET_MS:g} ms",
        passed=verdict(size, mine < TARGET_MS),
        data={"overhead_ms": ours, "baseline_overhead_ms": base, "engine_ms": size.engine_ms},
    )
