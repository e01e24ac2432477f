"""One run is one trace across PostgreSQL replicas (issue 26): the requests that create a run and submit its
tool outputs are answered by an API-only replica (ASSTCTL_RUN_CAPACITY=0), the turns run on the other one,
each server with its own OpenTelemetry SDK and in-memory exporter. The turns continue the create request's
trace from the span contexts stored with the run (the two servers share no memory)."""

from __future__ import annotations

import time

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from asstctl.server.replicas import CAPACITY_ENV
from tests.server.conftest import KEY_ENV, Servers
from tests.upstream import Call, ScriptedUpstream, Text, ToolCalls

STOCK = {"type": "function", "function": {"name": "stock", "parameters": {
    "type": "object", "properties": {"sku": {"type": "string"}}}}}


def traced() -> tuple[TracerProvider, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter


def turns_of(exporter: InMemorySpanExporter, count: int) -> list:
    """The run turns' spans, once ``count`` have ended (a turn's span ends just after the run's change commits)."""
    deadline = time.monotonic() + 30
    while len(turns := [s for s in exporter.get_finished_spans() if s.name.startswith("invoke_agent")]) < count:
        assert time.monotonic() < deadline, f"{len(turns)} turn spans ended, waited for {count}"
        time.sleep(0.02)
    return sorted(turns, key=lambda s: s.start_time)


def test_turns_run_by_another_replica_stay_in_the_run_trace(postgres_url, contract, monkeypatch, caplog):
    """And with JSON logs, the run lines of the turns name the request that queued each (kept with the run);
    the run's own span ends on the replica that ends the run, a child of the create request."""
    caplog.set_level("INFO", logger="asstctl.server.access")
    (api_provider, api_spans), (worker_provider, worker_spans) = traced(), traced()
    with ScriptedUpstream() as upstream:
        monkeypatch.setenv(KEY_ENV, upstream.key)
        servers = Servers(postgres_url, upstream, contract)
        try:
            monkeypatch.setenv(CAPACITY_ENV, "0")  # never claims a run: the other replica runs every turn
            client, _ = servers.start(tracer_provider=api_provider, log_format="json")
            monkeypatch.delenv(CAPACITY_ENV)
            servers.start(tracer_provider=worker_provider, log_format="json")
            assistant = client.beta.assistants.create(model="gpt-4o", tools=[STOCK])
            thread = client.beta.threads.create(messages=[{"role": "user", "content": "Is A1 in stock?"}])
            upstream.queue(ToolCalls([Call("stock", {"sku": "A1"}, id="call_s1")]), Text("Three left."))
            run = client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=assistant.id,
                                                           poll_interval_ms=20)
            assert run.status == "requires_action"
            run = client.beta.threads.runs.submit_tool_outputs_and_poll(
                run_id=run.id, thread_id=thread.id, tool_outputs=[{"tool_call_id": "call_s1", "output": "3"}],
                poll_interval_ms=20)
            assert run.status == "completed"
            turns = turns_of(worker_spans, 2)
        finally:
            servers.close()
    assert not upstream.problems, upstream.problems
    requests = api_spans.get_finished_spans()
    assert not [s for s in requests if s.name.startswith("invoke_agent")]  # every turn ran on the other replica
    (created,) = [s for s in requests if s.name == "POST /v1/threads/{id}/runs"]
    (submitted,) = [s for s in requests if s.name == "POST /v1/threads/{id}/runs/{id}/submit_tool_outputs"]
    assert [t.attributes["asstctl.run.id"] for t in turns] == [run.id, run.id]
    assert [t.attributes["asstctl.run.status"] for t in turns] == ["requires_action", "completed"]
    assert {t.context.trace_id for t in turns} == {created.context.trace_id}  # one run, one trace
    (whole,) = [s for s in worker_spans.get_finished_spans() if s.name == f"run {assistant.id}"]
    assert all(t.parent.span_id == whole.context.span_id and t.parent.is_remote for t in turns)  # the run's span
    assert not turns[0].links  # queued by the request that created the run
    assert [(link.context.trace_id, link.context.span_id) for link in turns[1].links] == [
        (submitted.context.trace_id, submitted.context.span_id)]  # what queued it: the submit of tool outputs
    create_id, submit_id = (s.attributes["asstctl.request_id"] for s in (created, submitted))
    lines = [(r.status, r.request_id) for r in caplog.records if getattr(r, "event", None) == "run"
             and r.run_id == run.id]
    assert lines == [("queued", create_id), ("in_progress", create_id), ("requires_action", create_id),
                     ("queued", submit_id), ("in_progress", submit_id), ("completed", submit_id)], lines
    assert whole.parent.span_id == created.context.span_id and whole.attributes["asstctl.run.status"] == "completed"
    chats = [s for s in worker_spans.get_finished_spans() if s.name == "chat gpt-4o"]
    assert sorted(c.parent.span_id for c in chats) == sorted(t.context.span_id for t in turns)
