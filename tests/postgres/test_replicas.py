"""Several `asstctl serve` processes on one PostgreSQL database act as one server.

Replicas here are real subprocesses (tests/serve_process.py) on one schema of the session's
cluster, with the offline engine steered by a rules file: "slow" and "tool" turns think for a
few seconds (so a run is mid-flight when the test acts), "forever" turns for ten minutes.
An API-only replica (ASSTCTL_RUN_CAPACITY=0) never claims runs, which pins where a run executes.
"""

from __future__ import annotations

import re
import signal
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from asstctl.server.store.pg_schema import MIGRATIONS
from tests.conftest import make_client
from tests.serve_process import ServeProcess

RULES = """\
rules:
  - match: "slow"
    reply: "a slow answer"
    latency_ms: 4000
  - match: "tool"
    tool_calls: [{name: get_weather, arguments: {city: Paris}}]
    latency_ms: 4000
  - match: "forever"
    reply: "never sent"
    latency_ms: 600000
"""
WEATHER = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}
LEASE = "2"


@pytest.fixture
def replica(tmp_path, postgres_url):
    """replica(name, workers=None) -> a running `asstctl serve --db <postgres>`; all stopped at the end."""
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    started: list[ServeProcess] = []

    def start(name: str, workers: int | None = None, lease: str = LEASE) -> ServeProcess:
        env = {"ASSTCTL_RUN_LEASE_SECONDS": lease}
        if workers is not None:
            env["ASSTCTL_RUN_CAPACITY"] = str(workers)
        process = ServeProcess(tmp_path / name, "--db", postgres_url, "--rules", str(rules), env=env)
        started.append(process)
        return process

    yield start
    for process in started:
        process.__exit__(None, None, None)


def wait_for(condition, patience: float = 60.0):
    deadline = time.monotonic() + patience
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, "gave up waiting"
        time.sleep(0.05)


def new_thread(client, text: str) -> str:
    return client.beta.threads.create(messages=[{"role": "user", "content": text}]).id


def assistant_messages(client, thread_id: str) -> list:
    return [m for m in client.beta.threads.messages.list(thread_id=thread_id, limit=100).data if m.role == "assistant"]


def test_the_announcement_shows_postgres_without_a_password(tmp_path, postgres_url):
    with_password = postgres_url.replace("postgresql://asstctl@", "postgresql://asstctl:hunter2@")
    with ServeProcess(tmp_path, "--db", with_password) as api:  # trust auth: any password is accepted
        assert "(db: postgresql://asstctl@127.0.0.1:" in api.stdout()
        with make_client(api) as client:  # serving (a SIGTERM during start-up is lost: embedded.py)
            client.beta.assistants.list()
        assert api.stop() == 0
        assert "hunter2" not in api.stdout() + api.stderr()


def test_a_run_created_on_one_replica_is_streamed_and_read_on_another(replica, contract):
    api, worker = replica("api", workers=0), replica("worker")
    with make_client(api, contract) as on_api, make_client(worker, contract) as on_worker:
        bot = on_worker.beta.assistants.create(model="gpt-4o", name="bot")
        thread_id = new_thread(on_worker, "hello from the worker's side")
        with on_api.beta.threads.runs.create(thread_id=thread_id, assistant_id=bot.id, stream=True) as stream:
            events = [(event.event, event.data) for event in stream]  # executed by the worker
        names = [name for name, _ in events]
        assert names[:2] == ["thread.run.created", "thread.run.queued"] and names[-1] == "thread.run.completed"
        assert names.count("thread.message.completed") == 1 and "thread.message.delta" in names
        streamed = "".join(d.delta.content[0].text.value for n, d in events if n == "thread.message.delta")
        run_id = events[0][1].id
        polled = on_worker.beta.threads.runs.retrieve(run_id=run_id, thread_id=thread_id)
        assert polled.status == "completed"
        [message] = assistant_messages(on_worker, thread_id)
        assert message.content[0].text.value == streamed == '[offline gpt-4o] You said: "hello from the worker\'s side"'
        assert [m.id for m in assistant_messages(on_api, thread_id)] == [message.id]
        # and the other way round: created on the worker, polled to the end on the API-only replica
        again = on_worker.beta.threads.runs.create(thread_id=new_thread(on_api, "second"), assistant_id=bot.id)
        done = on_api.beta.threads.runs.poll(run_id=again.id, thread_id=again.thread_id)
        assert done.status == "completed"


def test_a_cancel_sent_to_another_replica_stops_the_run(replica, contract):
    api, worker = replica("api", workers=0), replica("worker")
    with make_client(api, contract) as on_api, make_client(worker, contract) as on_worker:
        bot = on_api.beta.assistants.create(model="gpt-4o")
        run = on_worker.beta.threads.runs.create(thread_id=new_thread(on_worker, "forever"), assistant_id=bot.id)
        wait_for(lambda: on_api.beta.threads.runs.retrieve(run_id=run.id, thread_id=run.thread_id).status
                 == "in_progress")
        assert on_api.beta.threads.runs.cancel(run_id=run.id, thread_id=run.thread_id).status == "cancelling"
        # the worker's ten-minute turn is woken by the cancel signal from the other replica
        final = wait_for(lambda: (r := on_api.beta.threads.runs.retrieve(run_id=run.id, thread_id=run.thread_id))
                         .status not in ("in_progress", "cancelling") and r)
        assert final.status == "cancelled" and final.cancelled_at is not None
        assert assistant_messages(on_worker, run.thread_id) == []


def test_a_replica_runs_the_runs_it_creates_while_it_has_room_and_queues_the_rest_for_the_others(
        replica, postgres_url, contract):
    small, other = replica("small", workers=1), replica("other")
    with make_client(small, contract) as client:
        first = start_mid_flight(client, "forever")
        assert holder(postgres_url, first.id, [small, other]) is small  # claimed in the transaction creating it
        second = start_mid_flight(client, "slow")  # no room left here: queued, claimed by the other replica
        assert holder(postgres_url, second.id, [small, other]) is other
        assert client.beta.threads.runs.poll(run_id=second.id, thread_id=second.thread_id).status == "completed"
        assert client.beta.threads.runs.retrieve(run_id=first.id, thread_id=first.thread_id).status == "in_progress"


def test_a_run_waiting_for_room_starts_when_a_run_of_the_full_replica_finishes(replica, contract):
    only = replica("only", workers=1, lease="600")  # its claimer's own look at the queue: every 200 s
    with make_client(only, contract) as client:
        first = start_mid_flight(client, "slow")
        bot = client.beta.assistants.create(model="gpt-4o")
        second = client.beta.threads.runs.create(thread_id=new_thread(client, "slow"), assistant_id=bot.id)
        assert client.beta.threads.runs.retrieve(run_id=second.id, thread_id=second.thread_id).status == "queued"
        assert client.beta.threads.runs.poll(run_id=first.id, thread_id=first.thread_id).status == "completed"
        wait_for(lambda: client.beta.threads.runs.retrieve(run_id=second.id, thread_id=second.thread_id).status
                 == "completed", patience=60)


def holder(postgres_url: str, run_id: str, replicas: list[ServeProcess]) -> ServeProcess:
    """The replica whose claimer holds the run (its pid is part of the lease owner)."""
    import psycopg

    with psycopg.connect(postgres_url) as conn:
        row = conn.execute("SELECT owner FROM run_queue WHERE run_id = %s", (run_id,)).fetchone()
    assert row is not None and row[0] is not None, "the run is not claimed"
    [found] = [r for r in replicas if f":{r.proc.pid}:" in row[0]]
    return found


def start_mid_flight(client, text: str, tools=()) -> object:
    bot = client.beta.assistants.create(model="gpt-4o", tools=list(tools))
    run = client.beta.threads.runs.create(thread_id=new_thread(client, text), assistant_id=bot.id)
    wait_for(lambda: client.beta.threads.runs.retrieve(run_id=run.id, thread_id=run.thread_id).status
             == "in_progress")
    return run


def test_a_replica_killed_mid_run_is_taken_over_and_each_run_finishes_once(replica, postgres_url, contract):
    replicas = [replica("a"), replica("b")]
    with make_client(replicas[0], contract) as first:
        slow = start_mid_flight(first, "slow")
        tool = start_mid_flight(first, "tool", [WEATHER])
    doomed = holder(postgres_url, slow.id, replicas)
    [survivor] = [r for r in replicas if r is not doomed]
    assert doomed.stop(signal.SIGKILL) == -signal.SIGKILL  # mid-turn: the engine thinks for 4 s
    with make_client(survivor, contract) as client:
        finished = client.beta.threads.runs.poll(run_id=slow.id, thread_id=slow.thread_id)
        assert finished.status == "completed"
        [message] = assistant_messages(client, slow.thread_id)
        assert message.content[0].text.value == "a slow answer" and message.run_id == slow.id
        [step] = client.beta.threads.runs.steps.list(run_id=slow.id, thread_id=slow.thread_id).data
        assert step.type == "message_creation" and step.status == "completed"
        waiting = client.beta.threads.runs.poll(run_id=tool.id, thread_id=tool.thread_id)
        assert waiting.status == "requires_action"
        [call] = waiting.required_action.submit_tool_outputs.tool_calls
        assert call.function.name == "get_weather"
        [step] = client.beta.threads.runs.steps.list(run_id=tool.id, thread_id=tool.thread_id).data
        assert step.type == "tool_calls" and [c.id for c in step.step_details.tool_calls] == [call.id]
        done = client.beta.threads.runs.submit_tool_outputs_and_poll(
            run_id=tool.id, thread_id=tool.thread_id, tool_outputs=[{"tool_call_id": call.id, "output": "sunny"}])
        assert done.status == "completed" and len(assistant_messages(client, tool.thread_id)) == 1


def test_a_frozen_replica_that_wakes_after_a_takeover_commits_nothing(replica, postgres_url, contract):
    replicas = [replica("a"), replica("b")]
    with make_client(replicas[0], contract) as first:
        slow = start_mid_flight(first, "slow")
    frozen = holder(postgres_url, slow.id, replicas)
    [other] = [r for r in replicas if r is not frozen]
    frozen.proc.send_signal(signal.SIGSTOP)  # stops renewing its lease, but its turn is still pending
    try:
        with make_client(other, contract) as client:
            assert client.beta.threads.runs.poll(run_id=slow.id, thread_id=slow.thread_id).status == "completed"
    finally:
        frozen.proc.send_signal(signal.SIGCONT)
    # woken, it finds the lease gone (renewal or write refused) and stops
    wait_for(lambda: re.search(f"run {slow.id}: .*another replica", frozen.stderr()))
    with make_client(frozen, contract) as client:
        [message] = assistant_messages(client, slow.thread_id)
        assert message.content[0].text.value == "a slow answer"
        assert len(client.beta.threads.runs.steps.list(run_id=slow.id, thread_id=slow.thread_id).data) == 1


def test_a_replica_stopped_cleanly_hands_its_runs_over_without_waiting_for_the_lease(replica, postgres_url,
                                                                                   contract):
    replicas = [replica("a", lease="600"), replica("b", lease="600")]  # a takeover would take 10 minutes
    with make_client(replicas[0], contract) as first:
        slow = start_mid_flight(first, "slow")
    leaving = holder(postgres_url, slow.id, replicas)
    [staying] = [r for r in replicas if r is not leaving]
    assert leaving.stop(signal.SIGTERM) == 0
    with make_client(staying, contract) as client:
        assert client.beta.threads.runs.poll(run_id=slow.id, thread_id=slow.thread_id).status == "completed"
        assert len(assistant_messages(client, slow.thread_id)) == 1


def test_replicas_starting_together_migrate_the_schema_once(replica, postgres_url, contract):
    import psycopg

    with ThreadPoolExecutor(3) as pool:  # three processes race through start-up and migration
        replicas = list(pool.map(lambda n: replica(f"r{n}"), range(3)))
    with psycopg.connect(postgres_url) as conn:
        versions = [row[0] for row in conn.execute("SELECT version FROM asstctl_schema ORDER BY version")]
    assert versions == list(range(1, len(MIGRATIONS) + 1))
    with make_client(replicas[0], contract) as one, make_client(replicas[2], contract) as two:
        made = one.beta.assistants.create(model="gpt-4o", name="shared")
        assert two.beta.assistants.retrieve(made.id).name == "shared"
