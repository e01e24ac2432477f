"""Replicas on PostgreSQL: runs/s and p95 run latency for 1, 2 and 4 `asstctl serve` processes on
one database, as ratios to one replica, with one SQLite process beside them; and the takeover time
after a kill -9 of the replica running a run.

Every replica is a real subprocess with the offline engine (``ping`` answered after ``engine_ms``).
``clients`` threads each create streamed runs round-robin over the replicas (a load balancer's
part) until ``replica_runs`` runs are done, after ``WARM_UP`` untimed runs per client (every replica's
connections opened and caches filled, as in a server that has been up); a run's latency is its create request to its
``thread.run.completed`` event. PostgreSQL is ``ASSTCTL_BENCH_POSTGRES_URL`` if set, else a
throwaway cluster like the tests' one (tests/pg_cluster.py); without either the rows are n/a.
"""

from __future__ import annotations

import itertools
import os
import signal
import statistics
import tempfile
import threading
import time
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any, Iterator

from benchmarks.common import Row, Size, ratio, seconds, verdict

URL_ENV = "ASSTCTL_BENCH_POSTGRES_URL"
LEASE = 3.0  # seconds: the takeover delay the lease allows
COUNTS = (1, 2, 4)
WARM_UP = 2  # untimed runs per client before each measurement
PG_TARGET = 0.9  # one PostgreSQL replica's runs/s against one SQLite process's (store calls off the loop)


def replica_rows(size: Size) -> list[Row]:
    with tempfile.TemporaryDirectory() as tmp, postgres() as base:
        tmp_path = Path(tmp)
        rules = tmp_path / "rules.yaml"
        rules.write_text(f'rules:\n  - match: "^ping"\n    reply: "pong"\n    latency_ms: {size.engine_ms:g}\n'
                         '  - match: "^slow"\n    reply: "late"\n    latency_ms: 1000\n')
        sqlite = throughput(size, tmp_path / "sqlite", rules, [str(tmp_path / "bench.sqlite3")])
        if base is None:
            return unmeasured(size, sqlite)
        made: list[str] = []
        try:
            results = {n: throughput(size, tmp_path / f"pg{n}", rules, [fresh(base, made)] * n) for n in COUNTS}
            takeover = takeover_seconds(tmp_path / "takeover", rules, fresh(base, made))
        finally:
            drop(base, made)
    return [*throughput_rows(size, sqlite, results), takeover_row(size, takeover)]


@contextmanager
def postgres() -> Iterator[str | None]:
    if os.environ.get(URL_ENV):
        yield os.environ[URL_ENV]
        return
    from tests import pg_cluster

    if pg_cluster.missing() is not None:
        yield None
        return
    cluster = pg_cluster.Cluster().start()
    try:
        yield cluster.url
    finally:
        cluster.stop()


def fresh(url: str, made: list[str]) -> str:
    """A new empty schema on the database at ``url`` (noted in ``made``), as a URL that uses it."""
    import psycopg

    schema = f"asstctl_bench_{os.getpid()}_{len(made)}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    made.append(schema)
    joiner = "&" if "?" in url else "?"
    return f"{url}{joiner}options=-csearch_path%3D{schema}"


def drop(url: str, made: list[str]) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        for schema in made:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def start(workdir: Path, db: str, rules: Path, lease: float = LEASE):
    from tests.serve_process import ServeProcess

    return ServeProcess(workdir, "--db", db, "--rules", str(rules),
                        env={"ASSTCTL_RUN_LEASE_SECONDS": f"{lease:g}"})


def throughput(size: Size, workdir: Path, rules: Path, dbs: list[str]) -> dict[str, Any]:
    """Runs/s and latencies with one replica per entry of ``dbs``, ``size.replica_clients`` clients."""
    from benchmarks.common import client_for

    with ExitStack() as stack:
        replicas = [stack.enter_context(start(workdir / f"r{i}", db, rules)) for i, db in enumerate(dbs)]
        clients = [client_for(replica) for replica in replicas]
        assistant_id = clients[0].beta.assistants.create(model="gpt-4o", name="bench").id

        def load(runs: int) -> tuple[list[float], float]:
            latencies: list[float] = []
            counter = itertools.count()

            def work() -> None:
                while (number := next(counter)) < runs:
                    latencies.append(streamed_run(clients[number % len(clients)], assistant_id))

            threads = [threading.Thread(target=work) for _ in range(size.replica_clients)]
            started = time.perf_counter()
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            return latencies, time.perf_counter() - started

        load(WARM_UP * size.replica_clients)  # every replica's connections opened, caches filled: not timed
        latencies, elapsed = load(size.replica_runs)
    return {"replicas": len(dbs), "runs": len(latencies), "seconds": elapsed,
            "runs_per_s": len(latencies) / elapsed, "p95_ms": p95(latencies) * 1000}


def streamed_run(client: Any, assistant_id: str) -> float:
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "ping"}])
    began = time.perf_counter()
    with client.beta.threads.runs.create(thread_id=thread.id, assistant_id=assistant_id, stream=True) as stream:
        last = [event.event for event in stream][-1]
    if last != "thread.run.completed":
        raise RuntimeError(f"benchmark broken: a run ended with {last}")
    return time.perf_counter() - began


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(0.95 * (len(ordered) - 1))))]


def takeover_seconds(workdir: Path, rules: Path, db: str) -> float:
    """kill -9 of the replica running a 1 s turn → the run completed by the other, minus that 1 s."""
    from benchmarks.common import client_for

    with start(workdir / "a", db, rules) as one, start(workdir / "b", db, rules) as two:
        client = client_for(one)
        bot = client.beta.assistants.create(model="gpt-4o").id
        thread = client.beta.threads.create(messages=[{"role": "user", "content": "slow"}])
        run = client.beta.threads.runs.create(thread_id=thread.id, assistant_id=bot)
        while (owner := lease_owner(db, run.id)) is None:
            time.sleep(0.005)
        doomed, survivor = (one, two) if f":{one.proc.pid}:" in owner else (two, one)
        other = client_for(survivor)
        killed = time.perf_counter()
        doomed.stop(signal.SIGKILL)
        while other.beta.threads.runs.retrieve(run.id, thread_id=thread.id).status != "completed":
            time.sleep(0.02)
        return time.perf_counter() - killed - 1.0


def lease_owner(db: str, run_id: str) -> str | None:
    import psycopg

    with psycopg.connect(db) as conn:
        row = conn.execute("SELECT owner FROM run_queue WHERE run_id = %s", (run_id,)).fetchone()
    return row[0] if row else None


def throughput_rows(size: Size, sqlite: dict, results: dict[int, dict]) -> list[Row]:
    one = results[1]
    rows = [Row(
        name=f"runs/s, 1 PostgreSQL replica vs SQLite ({size.replica_clients} clients, {size.engine_ms:g} ms engine)",
        measured=f"{one['runs_per_s']:.1f} runs/s, p95 {one['p95_ms']:.0f} ms",
        baseline=f"{sqlite['runs_per_s']:.1f} runs/s, p95 {sqlite['p95_ms']:.0f} ms (one SQLite process)",
        ratio=f"{ratio(one['runs_per_s'], sqlite['runs_per_s']):.2f}x runs/s",
        target=f"at least {PG_TARGET}x", passed=verdict(size, one["runs_per_s"] >= PG_TARGET * sqlite["runs_per_s"]),
        data={"postgres": one, "sqlite": sqlite})]
    for n in COUNTS[1:]:
        many = results[n]
        rows.append(Row(
            name=f"runs/s and p95 latency, {n} PostgreSQL replicas vs 1",
            measured=f"{many['runs_per_s']:.1f} runs/s, p95 {many['p95_ms']:.0f} ms",
            baseline=f"{one['runs_per_s']:.1f} runs/s, p95 {one['p95_ms']:.0f} ms (1 replica)",
            ratio=f"{ratio(many['runs_per_s'], one['runs_per_s']):.2f}x runs/s, "
                  f"{ratio(many['p95_ms'], one['p95_ms']):.2f}x p95",
            target="reported", passed=None, data={"replicas": many, "one": one}))
    return rows


def takeover_row(size: Size, takeover: float) -> Row:
    return Row(
        name="takeover: kill -9 of the replica running a run → the other completes it (minus the 1 s turn)",
        measured=seconds(takeover), baseline=f"{LEASE:g} s lease", ratio=f"{takeover / LEASE:.2f}x the lease",
        target=f"under lease + lease/3 + 1 s ({LEASE * 4 / 3 + 1:.1f} s)", passed=verdict(size, takeover < LEASE * 4 / 3 + 1),
        data={"takeover_s": takeover, "lease_s": LEASE})


def unmeasured(size: Size, sqlite: dict) -> list[Row]:
    why = f"n/a (no PostgreSQL: set {URL_ENV} or install postgresql)"
    rows = [Row(name=f"runs/s, one SQLite process ({size.replica_clients} clients, {size.engine_ms:g} ms engine)",
                measured=f"{sqlite['runs_per_s']:.1f} runs/s, p95 {sqlite['p95_ms']:.0f} ms",
                baseline=why, ratio="n/a", target="reported", passed=None, data={"sqlite": sqlite})]
    return rows + [Row(name=f"runs/s, {n} PostgreSQL replicas", measured=why, baseline="", ratio="n/a",
                       target="reported", passed=None, data={}) for n in COUNTS]
