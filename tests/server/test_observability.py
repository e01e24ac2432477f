"""Operating the server (issue 26): the probes, /metrics after a scripted workload (parsed by
prometheus-client's own parser), the span tree of a run with a tool round (the OpenTelemetry SDK's
in-memory exporter), and JSON log lines from a real `asstctl serve` process."""

from __future__ import annotations

import json
import re
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx2 as httpx
import openai
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode
from prometheus_client.parser import text_string_to_metric_families

from asstctl.errors import ConfigError
from asstctl.server.embedded import start_server
from asstctl.server.projects import key_hash
from asstctl.server.engine.config import UpstreamConfig
from asstctl.server.engine.upstream import UpstreamEngine
from asstctl.server.replicas import CAPACITY_ENV
from asstctl.server.retrieval.embeddings import EmbeddingsConfig
from asstctl.server.store import open_store
from benchmarks.embeddings_server import hashing_embedder
from tests.pg_cluster import free_port
from tests.retrieval.test_runs import ask, support_assistant
from tests.serve_process import ServeProcess
from tests.conftest import make_client
from tests.server.conftest import FAST, KEY_ENV, Servers
from tests.upstream import Call, Failure, ScriptedUpstream, Text, ToolCalls
from tests.server.test_projects import ADMIN, admin_sdk, new_key, sdk

KEY = "app-" + "k" * 32
ROOT = Path(__file__).resolve().parents[2]


def test_probes_answer_without_a_key(tmp_path):
    with start_server(str(tmp_path / "db.sqlite3"), api_key=KEY) as server:
        root = server.base_url.removesuffix("/v1")
        assert httpx.get(root + "/healthz").json() == {"status": "ok"}
        ready = httpx.get(root + "/readyz")
        assert ready.status_code == 200 and ready.json()["status"] == "ok"
        assert httpx.get(server.base_url + "/assistants").status_code == 401  # the API itself still needs one
        assert httpx.get(root + "/metrics").status_code == 401


def test_readyz_answers_within_its_limit_while_the_database_hangs(tmp_path, caplog):
    """The database hangs (every statement waits for its lock): probes still answer, 503 after READY_TIMEOUT
    (2 s), one check in flight however many probes come; nothing written; 200 again once it is back. /metrics
    likewise: a 503 naming its 2 s limit, and a log line, one render in flight however many scrapes come."""
    db = tmp_path / "db.sqlite3"
    with start_server(str(db), api_key=KEY, metrics=True) as server:
        ready = server.base_url.removesuffix("/v1") + "/readyz"
        metrics = ready.removesuffix("/readyz") + "/metrics"
        assert httpx.get(ready).status_code == 200
        files = {path: path.stat().st_size for path in tmp_path.iterdir()}
        scrape = {"headers": {"Authorization": f"Bearer {KEY}"}, "timeout": 30}
        store = server.state.store  # the database stops answering: its connection and its read-only ones
        idle = [store._readers.get_nowait() for _ in range(store._readers.qsize())]  # (none is opened anew)
        with store._lock, store._read_lock, ThreadPoolExecutor(9) as pool:
            started = time.monotonic()
            scrapes = [pool.submit(httpx.get, metrics, **scrape) for _ in range(3)]
            answers = list(pool.map(lambda _: httpx.get(ready, timeout=30), range(6)))
            scrapes = [future.result() for future in scrapes]
            elapsed = time.monotonic() - started
            checking = [t for t in threading.enumerate() if t.name.startswith("asyncio_")]
        for reader in idle:
            store._readers.put(reader)
        assert [a.status_code for a in answers] == [503] * 6 and 1.9 < elapsed < 15, elapsed
        assert all(a.json() == {"status": "unavailable", "detail": "the database did not answer within 2 s"}
                   for a in answers)
        assert [a.status_code for a in scrapes] == [503] * 3, [a.text for a in scrapes]
        assert all("/metrics did not render within its 2 s limit" in a.json()["error"]["message"] for a in scrapes)
        assert "/metrics did not render within its 2 s limit" in caplog.text
        assert len(checking) <= 3, checking  # one check and one render in flight (and the first probe's thread)
        waited = time.monotonic()
        while (answer := httpx.get(ready)).status_code != 200 and time.monotonic() - waited < 10:
            time.sleep(0.05)
        assert answer.json() == {"status": "ok", "detail": "the database answers"}
        assert httpx.get(metrics, **scrape).status_code == 200
        for _ in range(5):
            httpx.get(ready)
        assert {path: path.stat().st_size for path in tmp_path.iterdir()} == files  # probes write nothing


def test_without_opentelemetry_the_server_runs_and_asking_for_traces_names_the_extra(monkeypatch, contract):
    for name in ("opentelemetry", "opentelemetry.sdk", "opentelemetry.sdk.resources", "opentelemetry.sdk.trace",
                 "opentelemetry.sdk.trace.export", "opentelemetry.trace", "opentelemetry.context"):
        monkeypatch.setitem(sys.modules, name, None)  # not importable
    monkeypatch.delenv("OTEL_SDK_DISABLED", raising=False)
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "console")
    with pytest.raises(ConfigError) as refused:
        start_server(":memory:")
    assert "OpenTelemetry is not installed" in refused.value.message and "asstctl[otel]" in refused.value.hint
    monkeypatch.delenv("OTEL_TRACES_EXPORTER")
    with start_server(":memory:", metrics=True, log_format="json") as server, sdk(server, contract, "any") as client:
        assert client.beta.assistants.create(model="gpt-4o").id.startswith("asst_")  # metrics and logs, no traces


def test_model_labels_stop_at_100_names_then_other(contract):
    with start_server(":memory:", metrics=True) as server, sdk(server, contract, "any") as client:
        observer = server.state.extra["observer"]
        assert [observer.model_label(f"model-{n}") for n in range(100)] == [f"model-{n}" for n in range(100)]
        assert observer.model_label("model-0") == "model-0"  # a known one stays itself
        assistant = client.beta.assistants.create(model="gpt-4o")  # the 101st name
        run = client.beta.threads.create_and_run_poll(assistant_id=assistant.id, poll_interval_ms=20, thread={
            "messages": [{"role": "user", "content": "hello"}]})
        assert run.status == "completed"
        found = samples(httpx.get(server.base_url.removesuffix("/v1") + "/metrics").text)
    models = {labels["model"] for name, rows in found.items() for labels, _ in rows if "model" in labels}
    assert models == {"other"}, models
    assert value(found, "asstctl_tokens_total", model="other", type="completion") == run.usage.completion_tokens


def samples(text: str) -> dict[str, list]:
    found: dict[str, list] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found.setdefault(sample.name, []).append((sample.labels, sample.value))
    return found


def value(found, name: str, **labels) -> float:
    return sum(v for got, v in found.get(name, []) if all(got.get(k) == want for k, want in labels.items()))


def in_memory() -> tuple[TracerProvider, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter


def test_metrics_after_a_scripted_workload(store_db, upstream, contract, monkeypatch):
    """On SQLite and PostgreSQL: counters after a workload, then every gauge non-zero while a run is held
    at the upstream, a second waits in the queue and a file's ingestion is held at the embeddings upstream."""
    monkeypatch.setenv(CAPACITY_ENV, "1")  # one run at a time: the second one stays queued
    hold = threading.Event()
    embed = hashing_embedder(64)
    with ScriptedUpstream(key=None, embed=lambda texts: hold.wait(20) and embed(texts)) as embedder:
        servers = Servers(store_db, upstream, contract)
        try:
            check_metrics(servers, upstream, contract, embedder, hold)
        finally:
            hold.set()
            servers.close()
    assert not embedder.problems, embedder.problems  # the embeddings requests met the official schema


def check_metrics(servers, upstream, contract, embedder, hold):
    embeddings = EmbeddingsConfig(model="scripted-embed", base_url=embedder.base_url)
    provider, exporter = in_memory()
    _, server = servers.start(api_key=KEY, admin_key=ADMIN, metrics=True, embeddings=embeddings,
                              tracer_provider=provider)
    with admin_sdk(server, contract) as admin:
        project = admin.admin.organization.projects.create(name="shop").id
        key = new_key(admin, project)
    with sdk(server, contract, key) as shop:
        paused = workload(shop, upstream)
        found = scrape(server)
        check_counters(found, project)
        check_sandbox_span(exporter)
        (retried,) = [s for s in exporter.get_finished_spans() if any(e.name == "retry" for e in s.events)]
        assert retried.name == "chat gpt-4o" and [dict(e.attributes) for e in retried.events] == [
            {"asstctl.retry.number": 1, "asstctl.retry.reason": "429"}]
        server.store.update("run", paused.id, lambda r: r.update(expires_at=r["created_at"] - 1), paused.thread_id)
        notes = busy(shop, upstream, server, hold)  # meanwhile the expiry sweep, outside any request, expires ``paused``
        check_embeddings(shop, server, exporter, notes)
        waited = time.monotonic()
        while shop.beta.threads.runs.retrieve(paused.id, thread_id=paused.thread_id).status != "expired" \
                and time.monotonic() - waited < 10:
            time.sleep(0.05)
        assert value(scrape(server), "asstctl_runs_total", status="expired", project=project) == 1
        check_documented(httpx.get(server.base_url.removesuffix("/v1") + "/metrics",
                                   headers={"Authorization": f"Bearer {ADMIN}"}).text)


def check_embeddings(shop, server, exporter: InMemorySpanExporter, store_id: str) -> None:
    """The embeddings requests of an ingestion (a trace of its own) and of a search (a child of its request)."""
    assert shop.vector_stores.search(store_id, query="refunds").data
    found = scrape(server)
    assert value(found, "asstctl_upstream_request_duration_seconds_count", engine="embeddings",
                 model="scripted-embed") == 2
    spans = exporter.get_finished_spans()
    (searched,) = [s for s in spans if s.name == "POST /v1/vector_stores/{id}/search"]
    calls = sorted((s for s in spans if s.name == "embeddings scripted-embed"), key=lambda s: s.start_time)
    assert [c.parent.span_id if c.parent else None for c in calls] == [None, searched.context.span_id]
    assert [c.attributes["asstctl.embeddings.inputs"] for c in calls] == [1, 1]


DOCUMENTED = re.compile(r"^\| `(asstctl_\w+)` \| (counter|gauge|histogram) \|([^|]*)\|", re.M)


def check_documented(text: str) -> None:
    """docs/deploy.md's metric table against a real scrape: every metric, its type and its labels."""
    documented = {name: (kind, set(re.findall(r"`(\w+)`", re.sub(r"\([^)]*\)", "", labels))))
                  for name, kind, labels in DOCUMENTED.findall((ROOT / "docs" / "deploy.md").read_text())}
    scraped = {}
    for family in text_string_to_metric_families(text):
        if family.name.endswith("_created"):  # (the client's creation times of counters and histograms)
            continue
        labels = {name for sample in family.samples for name in sample.labels} - {"le"}
        scraped[family.name + ("_total" if family.type == "counter" else "")] = (family.type, labels)
    assert documented == scraped


def workload(shop, upstream):
    """Runs that complete, fail, run code, wait for a function's output (one of them then cancelled); returns
    the one still waiting."""
    assistant = shop.beta.assistants.create(model="gpt-4o")
    upstream.queue(Failure.rate_limit(retry_after="0"), Text("Hello there", usage=(11, 3)))  # sent twice
    thread = shop.beta.threads.create(messages=[{"role": "user", "content": "hi"}])
    run = shop.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=assistant.id, poll_interval_ms=20)
    assert run.status == "completed"
    upstream.queue(Failure.model_not_found("gpt-4o"))
    failed = shop.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=assistant.id, poll_interval_ms=20)
    assert failed.status == "failed"
    with pytest.raises(openai.NotFoundError):
        shop.beta.assistants.retrieve("asst_missing")
    coder = shop.beta.assistants.create(model="gpt-4o", tools=[{"type": "code_interpreter"}])
    upstream.queue(ToolCalls([Call("python", {"code": "print(6 * 7)"})]), Text("42."))
    computed = shop.beta.threads.create_and_run_poll(assistant_id=coder.id, poll_interval_ms=20,
                                                     thread={"messages": [{"role": "user", "content": "6 * 7?"}]})
    assert computed.status == "completed", computed.last_error
    tool = {"type": "function", "function": {"name": "stock", "parameters": {"type": "object", "properties": {}}}}
    waiting = shop.beta.assistants.create(model="gpt-4o", tools=[tool])
    upstream.queue(ToolCalls([Call("stock", {})]))
    paused = shop.beta.threads.create_and_run_poll(assistant_id=waiting.id, poll_interval_ms=20,
                                                   thread={"messages": [{"role": "user", "content": "stock?"}]})
    assert paused.status == "requires_action"
    upstream.queue(ToolCalls([Call("stock", {})]))
    dropped = shop.beta.threads.create_and_run_poll(assistant_id=waiting.id, poll_interval_ms=20,
                                                    thread={"messages": [{"role": "user", "content": "stock?"}]})
    shop.beta.threads.runs.cancel(dropped.id, thread_id=dropped.thread_id)
    assert shop.beta.threads.runs.poll(dropped.id, thread_id=dropped.thread_id,
                                       poll_interval_ms=20).status == "cancelled"
    return paused


def scrape(server) -> dict[str, list]:
    refused = httpx.get(server.base_url.removesuffix("/v1") + "/metrics", headers={"Authorization": f"Bearer {KEY}"})
    assert refused.status_code == 403
    answer = httpx.get(server.base_url.removesuffix("/v1") + "/metrics", headers={"Authorization": f"Bearer {ADMIN}"})
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/plain")
    return samples(answer.text)


def check_counters(found, project: str) -> None:
    assert all(name.startswith("asstctl_") for name in found if not name.startswith(("python_", "process_")))
    assert value(found, "asstctl_runs_total", status="completed", project=project) == 2
    assert value(found, "asstctl_runs_total", status="failed", project=project) == 1
    assert value(found, "asstctl_runs_total", status="queued", project=project) == 5
    assert value(found, "asstctl_runs_total", status="requires_action", project=project) == 2
    assert value(found, "asstctl_runs_total", status="cancelled", project=project) == 1
    assert value(found, "asstctl_tokens_total", type="prompt", project=project, model="gpt-4o") >= 11
    assert value(found, "asstctl_tokens_total", type="completion", project=project) >= 3
    assert value(found, "asstctl_time_to_first_token_seconds_count", model="gpt-4o") == 5
    assert value(found, "asstctl_upstream_request_duration_seconds_count", model="gpt-4o") == 6
    assert value(found, "asstctl_upstream_errors_total", model="gpt-4o") == 1
    assert value(found, "asstctl_upstream_retries_total", engine="upstream", model="gpt-4o", reason="429") == 1
    assert value(found, "asstctl_http_requests_total", method="GET", route="/v1/assistants/{id}", status="404") == 1
    assert value(found, "asstctl_http_requests_total", method="POST", route="/v1/threads/{id}/runs", status="200") == 2
    assert value(found, "asstctl_tool_call_duration_seconds_count", tool="code_interpreter") == 1
    assert value(found, "asstctl_tool_call_duration_seconds_sum", tool="code_interpreter") > 0
    assert value(found, "asstctl_sandbox_sessions_active") == 1  # the thread's session lives on, idle
    assert value(found, "asstctl_event_loop_lag_seconds", quantile="1") >= 0  # the series is there
    assert {labels["quantile"] for labels, _ in found["asstctl_event_loop_lag_seconds"]} == {"0.5", "0.99", "1"}


def check_sandbox_span(exporter: InMemorySpanExporter) -> None:
    """The code_interpreter call (the workload's ``python`` call, run in the sandbox) is a child of its turn,
    between the turn's two model calls."""
    waited = time.monotonic()  # (a turn's span ends just after its run's change commits)
    while True:
        spans = exporter.get_finished_spans()
        (tool,) = [s for s in spans if s.name == "execute_tool code_interpreter"]
        if [s for s in spans if s.context.span_id == tool.parent.span_id] or time.monotonic() - waited > 10:
            break
        time.sleep(0.02)
    (turn,) = [s for s in spans if s.context.span_id == tool.parent.span_id]
    assert turn.name.startswith("invoke_agent") and turn.attributes["asstctl.run.id"] == tool.attributes["asstctl.run.id"]
    assert tool.context.trace_id == turn.context.trace_id and tool.status.status_code is not StatusCode.ERROR
    assert tool.attributes["gen_ai.tool.name"] == "code_interpreter" and tool.attributes["gen_ai.tool.call.id"]
    chats = sorted((s for s in spans if s.name == "chat gpt-4o" and s.parent.span_id == turn.context.span_id),
                   key=lambda s: s.start_time)
    assert len(chats) == 2 and chats[0].end_time <= tool.start_time and tool.end_time <= chats[1].start_time


def busy(shop, upstream, server, hold) -> str:
    """A run held mid-answer, a second one queued behind it, a file held at the embeddings upstream."""
    gate = threading.Event()
    assistant = shop.beta.assistants.create(model="gpt-4o")
    upstream.queue(Text("Held for a while", gate=gate), Text("Next"))
    asking = {"messages": [{"role": "user", "content": "hello"}]}
    held = shop.beta.threads.create_and_run(assistant_id=assistant.id, thread=asking)
    waited = time.monotonic()
    while upstream.gated < 1 and time.monotonic() - waited < 10:
        time.sleep(0.01)
    queued = shop.beta.threads.create_and_run(assistant_id=assistant.id, thread=asking)
    store = shop.vector_stores.create(name="notes")
    note = shop.files.create(file=("note.md", b"Refunds take five days."), purpose="assistants")
    attach = threading.Thread(target=shop.vector_stores.files.create, args=(store.id,), kwargs={
        "file_id": note.id, "attributes": {"status": "in_progress"}})  # a user's value: never the backlog's
    attach.start()  # answers once the file is ingested: after ``hold`` is set
    try:
        while embedder_waiting(shop, store.id) and time.monotonic() - waited < 10:
            time.sleep(0.01)
        found = scrape(server)
        assert value(found, "asstctl_runs_active") == 1
        assert value(found, "asstctl_run_queue_depth") == 1
        assert value(found, "asstctl_ingestion_backlog") == 1
    finally:
        gate.set()
        hold.set()
        attach.join(30)
    for run in (held, queued):
        done = shop.beta.threads.runs.poll(run.id, thread_id=run.thread_id, poll_interval_ms=20)
        assert done.status == "completed", done.last_error
    found = scrape(server)
    assert value(found, "asstctl_run_queue_depth") == 0 and value(found, "asstctl_ingestion_backlog") == 0
    return store.id


def embedder_waiting(shop, vs_id: str) -> bool:
    """True until the attached file is stored (in_progress: its ingestion is held at the embeddings upstream)."""
    return not shop.vector_stores.files.list(vs_id).data


def test_the_span_tree_of_a_run_with_a_tool_round(tmp_path, contract, monkeypatch):
    monkeypatch.delenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", raising=False)
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    with start_server(":memory:", tracer_provider=provider, metrics=True) as server:
        client = sdk(server, contract, "any")
        assistant, returns, _ = support_assistant(client)
        run, steps, reply = ask(client, assistant, "When do I get my refund?")
        client.close()
        found = samples(httpx.get(server.base_url.removesuffix("/v1") + "/metrics").text)
    assert value(found, "asstctl_tool_call_duration_seconds_count", tool="file_search") == 1
    spans = exporter.get_finished_spans()
    (turn,) = [s for s in spans if s.name.startswith("invoke_agent")]
    assert turn.attributes["asstctl.run.id"] == run.id and turn.attributes["asstctl.run.status"] == "completed"
    (created,) = [s for s in spans if s.attributes.get("http.route") == "/v1/threads/{id}/runs"]
    (whole,) = [s for s in spans if s.name == f"run {assistant.id}"]  # the run's own span: created -> completed
    assert turn.parent.span_id == whole.context.span_id and turn.context.trace_id == created.context.trace_id
    children = sorted((s for s in spans if s.parent is not None and s.parent.span_id == turn.context.span_id),
                      key=lambda s: s.start_time)
    assert [s.name for s in children] == ["chat gpt-4o", "execute_tool file_search", "chat gpt-4o"]
    first, tool, second = children
    assert first.attributes["gen_ai.operation.name"] == "chat"
    assert first.attributes["gen_ai.request.model"] == "gpt-4o"
    assert first.attributes["gen_ai.response.finish_reasons"] == ("tool_calls",)
    assert second.attributes["gen_ai.response.finish_reasons"] == ("stop",)
    assert second.attributes["gen_ai.usage.input_tokens"] > 0 and second.attributes["gen_ai.usage.output_tokens"] > 0
    assert tool.attributes["gen_ai.tool.name"] == "file_search" and tool.attributes["asstctl.tool.sources"] >= 1
    assert first.end_time <= tool.start_time and tool.end_time <= second.start_time
    for span in spans:  # no prompt or completion text unless switched on
        assert not any(key in span.attributes for key in ("gen_ai.input.messages", "gen_ai.output.messages"))
        assert "refund" not in json.dumps(dict(span.attributes), default=str)
    assert created.attributes["http.response.status_code"] == 200
    assert created.attributes["asstctl.request_id"].startswith("req_")
    assert not turn.links  # queued by the request that created the run
    assert whole.attributes["asstctl.run.id"] == run.id and whole.attributes["asstctl.run.status"] == "completed"
    assert whole.parent.span_id == created.context.span_id and whole.context.trace_id == created.context.trace_id
    assert whole.start_time == run.created_at * 10**9 and second.end_time <= whole.end_time <= turn.end_time


def test_a_sampler_that_drops_every_span_leaves_requests_counted(monkeypatch):
    """Spans the sampler drops take no attributes and reach no exporter; the request series are the same
    whether looked up once per label set or, past the cache's bound, on every request."""
    from opentelemetry.sdk.trace.sampling import ALWAYS_OFF

    from asstctl.server.observability import metrics

    monkeypatch.setattr(metrics, "MAX_CACHED", 1)
    exporter = InMemorySpanExporter()
    provider = TracerProvider(sampler=ALWAYS_OFF)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    with start_server(":memory:", api_key=KEY, admin_key=ADMIN, metrics=True, tracer_provider=provider) as server:
        with httpx.Client(base_url=server.base_url, headers={"Authorization": f"Bearer {KEY}",
                                                             "OpenAI-Beta": "assistants=v2"}) as http:
            answers = [http.get("/assistants").status_code for _ in range(3)]
            answers += [http.get("/assistants/asst_missing").status_code for _ in range(2)]
        text = httpx.get(server.base_url.removesuffix("/v1") + "/metrics",
                         headers={"Authorization": f"Bearer {ADMIN}"}).text
    assert answers == [200, 200, 200, 404, 404]
    assert exporter.get_finished_spans() == ()
    found = samples(text)
    assert value(found, "asstctl_http_requests_total", method="GET", route="/v1/assistants", status="200") == 3
    assert value(found, "asstctl_http_requests_total", method="GET", route="/v1/assistants/{id}", status="404") == 2
    assert value(found, "asstctl_http_request_duration_seconds_count", route="/v1/assistants/{id}") == 2


def test_route_labels_and_span_names_are_route_templates_whatever_the_path(contract):
    """Ids, model names and random paths (answered or refused) never become a label or a span name: each
    request counts under its route's template, or ``unmatched``."""
    provider, exporter = in_memory()
    root_headers = {"Authorization": f"Bearer {KEY}", "OpenAI-Beta": "assistants=v2"}
    with start_server(":memory:", api_key=KEY, admin_key=ADMIN, metrics=True, tracer_provider=provider) as server:
        root = server.base_url.removesuffix("/v1")
        with httpx.Client(base_url=root, headers=root_headers) as http:
            for n in range(3):
                assert http.get(f"/v1/models/model-{n}").status_code == 404
                assert http.get(f"/v1/assistants/asst_{n}").status_code == 404
                assert http.get(f"/v1/threads/thread_{n}/runs/run_{n}/steps/step_{n}").status_code == 404
                assert httpx.get(f"{root}/scan-{n}").status_code == 401  # unauthenticated
                assert httpx.get(f"{root}/v1/threads/thread_{n}").status_code == 401  # refused before the router
                assert http.get(f"/v1/nothing-{n}/x").status_code == 404
                assert http.put(f"/v1/files/file-{n}").status_code == 404  # (a method the route lacks)
                assert http.request(f"BREW{n}", "/v1/assistants").status_code < 500  # invented methods: _OTHER
                assert httpx.request(f"X-{n}", f"{root}/v1/files").status_code == 401
                assert http.get(f"/v1/organization/projects/proj_{n}/api_keys/key_{n}",
                                headers={"Authorization": f"Bearer {ADMIN}"}).status_code == 404
            assert http.get(f"/v1/threads/{ADMIN}/runs/sk-proj-{'p' * 20}").status_code == 404  # keys in a path
            for sent in (TRACEPARENT, TRACEPARENT.upper()):  # a client's trace, then a malformed header
                assert http.get("/v1/files", headers={"traceparent": sent}).status_code == 200
        text = httpx.get(root + "/metrics", headers={"Authorization": f"Bearer {ADMIN}"}).text
        templates = server.state.extra["route_key"].templates()
        stats = dict(server.state.stats)
    found = samples(text)
    routes = {labels["route"] for name in ("asstctl_http_requests_total", "asstctl_http_request_duration_seconds_count")
              for labels, _ in found[name]}
    assert routes <= templates and "unmatched" in routes and "/v1/models/{id}" in routes, routes - templates
    assert value(found, "asstctl_http_requests_total", route="unmatched", status="401") == 3
    assert value(found, "asstctl_http_requests_total", route="unmatched", status="404") == 3
    assert value(found, "asstctl_http_requests_total", route="/v1/threads/{id}", status="401") == 3
    assert value(found, "asstctl_http_requests_total", method="PUT", route="/v1/files/{id}", status="404") == 3
    assert {labels["method"] for labels, _ in found["asstctl_http_requests_total"]} == {"GET", "PUT", "_OTHER"}
    assert value(found, "asstctl_http_requests_total", method="_OTHER", route="/v1/files", status="401") == 3
    assert value(found, "asstctl_http_requests_total", route="/v1/organization/projects/{id}/api_keys/{id}") == 3
    joined, alone = [s for s in exporter.get_finished_spans() if s.name == "GET /v1/files"]
    assert joined.context.trace_id == int(TRACEPARENT[3:35], 16) and joined.parent.span_id == int(TRACEPARENT[36:52], 16)
    assert alone.parent is None and alone.context.trace_id != joined.context.trace_id
    names = {span.name for span in exporter.get_finished_spans()}
    assert {name.split(" ", 1)[1] for name in names} <= templates and "GET unmatched" in names, names
    assert {key.split(" ", 1)[1] for key in stats if key != "total"} <= templates
    assert {key.split(" ", 1)[0] for key in stats if key != "total"} == {"GET", "PUT", "_OTHER"}
    assert "HTTP /v1/assistants" in names and not [name for name in names if "BREW" in name or "X-" in name]
    paths = [span.attributes["url.path"] for span in exporter.get_finished_spans() if "url.path" in span.attributes]
    assert "/v1/threads/sk-…redacted/runs/sk-…redacted" in paths and not [p for p in paths if "pppp" in p or ADMIN in p]


def test_a_run_with_a_function_tool_round_is_one_trace(tmp_path, upstream, contract, caplog):
    """One run, one trace; each upstream call's span says what the upstream answered (gen_ai.*); a failed
    call's span says why (error.type) and ends in error status. The run's own span covers both turns; every
    JSON log line of the run names the request that queued its turn (the create, then the submit)."""
    provider, exporter = in_memory()
    caplog.set_level("INFO", logger="asstctl.server.access")
    mapped = UpstreamConfig(url=upstream.base_url, api_key_env=KEY_ENV, model_map=[("gpt-4*", "scripted-4o")])
    server = start_server(str(tmp_path / "db.sqlite3"), engine=UpstreamEngine(mapped, retry=FAST),
                          tracer_provider=provider, log_format="json")
    client = make_client(server, contract)
    try:
        assistant = client.beta.assistants.create(model="gpt-4o", tools=[{"type": "function", "function": {
            "name": "stock", "parameters": {"type": "object", "properties": {"sku": {"type": "string"}}}}}])
        upstream.queue(ToolCalls([Call("stock", {"sku": "A1"}, id="call_s1")], usage=(31, 7)),
                       Text("Three left.", usage=(45, 4)))
        raw = client.beta.threads.with_raw_response.create_and_run(assistant_id=assistant.id, thread={
            "messages": [{"role": "user", "content": "Is A1 in stock?"}]})
        created_by, run = raw.headers["x-request-id"], raw.parse()
        run = client.beta.threads.runs.poll(run.id, thread_id=run.thread_id, poll_interval_ms=20)
        assert run.status == "requires_action"
        raw = client.beta.threads.runs.with_raw_response.submit_tool_outputs(
            run_id=run.id, thread_id=run.thread_id, tool_outputs=[{"tool_call_id": "call_s1", "output": "3"}])
        submitted_by = raw.headers["x-request-id"]
        run = client.beta.threads.runs.poll(run.id, thread_id=run.thread_id, poll_interval_ms=20)
        assert run.status == "completed"
        upstream.queue(Failure.model_not_found("gpt-4o"))
        failed = client.beta.threads.runs.create_and_poll(thread_id=run.thread_id, assistant_id=assistant.id,
                                                          poll_interval_ms=20)
        assert failed.status == "failed"
    finally:
        client.close()
        server.stop()
    lines = [(r.status, r.request_id) for r in caplog.records if getattr(r, "event", None) == "run"
             and r.run_id == run.id]
    assert lines == [("queued", created_by), ("in_progress", created_by), ("requires_action", created_by),
                     ("queued", submitted_by), ("in_progress", submitted_by), ("completed", submitted_by)], lines
    spans = exporter.get_finished_spans()
    (failed_run,) = [s for s in spans if s.name == f"run {assistant.id}" and s.attributes["asstctl.run.id"] == failed.id]
    assert failed_run.attributes["asstctl.run.status"] == "failed" and failed_run.status.status_code is StatusCode.ERROR
    (failed_turn,) = [s for s in spans if s.attributes.get("asstctl.run.id") == failed.id
                      and s.name.startswith("invoke_agent")]
    (refused,) = [s for s in spans if s.name == "chat gpt-4o" and s.parent.span_id == failed_turn.context.span_id]
    assert refused.attributes["error.type"] == failed.last_error.code == "server_error"  # (the model is missing)
    assert refused.status.status_code is StatusCode.ERROR and "gen_ai.usage.input_tokens" not in refused.attributes
    spans = [s for s in spans if s.context.trace_id != failed_turn.context.trace_id]
    (created,) = [s for s in spans if s.attributes.get("http.route") == "/v1/threads/runs"]
    submit = "/v1/threads/{id}/runs/{id}/submit_tool_outputs"
    (submitted,) = [s for s in spans if s.attributes.get("http.route") == submit]
    turns = sorted((s for s in spans if s.name.startswith("invoke_agent")), key=lambda s: s.start_time)
    assert [t.attributes["asstctl.run.status"] for t in turns] == ["requires_action", "completed"]
    assert {t.context.trace_id for t in turns} == {created.context.trace_id}  # one run, one trace
    (whole,) = [s for s in spans if s.name == f"run {assistant.id}"]  # one span for the run, over both turns
    assert all(t.parent.span_id == whole.context.span_id for t in turns)  # request -> run -> turns -> calls
    assert not turns[0].links and [link.context.span_id for link in turns[1].links] == [submitted.context.span_id]
    assert whole.parent.span_id == created.context.span_id and whole.attributes["asstctl.run.status"] == "completed"
    assert whole.start_time <= turns[0].start_time and turns[0].end_time <= whole.end_time <= turns[1].end_time
    chats = sorted((s for s in spans if s.name == "chat gpt-4o"), key=lambda s: s.start_time)
    assert [c.parent.span_id for c in chats] == [t.context.span_id for t in turns]
    for chat, reason, (prompt, completion) in zip(chats, ("tool_calls", "stop"), ((31, 7), (45, 4)), strict=True):
        attributes = chat.attributes  # what the scripted upstream sent: its usage, its finish reason
        assert attributes["gen_ai.provider.name"] == "openai" and attributes["gen_ai.request.model"] == "gpt-4o"
        assert attributes["gen_ai.response.model"] == "scripted-4o"  # the model sent: after --model-map
        assert attributes["gen_ai.usage.input_tokens"] == prompt and attributes["gen_ai.usage.output_tokens"] == completion
        assert attributes["gen_ai.response.finish_reasons"] == (reason,) and "error.type" not in attributes
        assert chat.status.status_code is not StatusCode.ERROR


def test_the_run_keeps_its_trace_context_only_with_tracing_on(tmp_path, contract, monkeypatch):
    """An API-only server keeps the span context of the request that creates a run in the run's book (W3C
    traceparent form; nothing without tracing), for the replica that will run it. One that takes runs over
    ignores a stored value that is not a traceparent: its turn then starts a trace of its own."""
    provider, exporter = TracerProvider(), InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    db, runs = str(tmp_path / "db.sqlite3"), []
    monkeypatch.setenv(CAPACITY_ENV, "0")  # runs nothing: the runs stay queued
    for options in ({}, {"tracer_provider": provider}):
        with start_server(db, **options) as server, sdk(server, contract, "any") as client:
            thread = client.beta.threads.create(messages=[{"role": "user", "content": "hello"}])
            run = client.beta.threads.runs.create(thread_id=thread.id, assistant_id=client.beta.assistants.create(
                model="gpt-4o").id)
            runs.append((run, server.state.store.get("run_state", run.id, run.id)))
    (plain, plain_book), (traced, book) = runs
    assert plain_book is None  # no write without tracing
    (created,) = [s for s in exporter.get_finished_spans() if s.name == "POST /v1/threads/{id}/runs"]
    stored = f"00-{created.context.trace_id:032x}-{created.context.span_id:016x}-01"
    own = book["trace"].pop("run")  # the id chosen for the run's own span, in the same trace
    assert book["trace"] == {"created_by": stored, "queued_by": stored}
    assert own.startswith(stored[:36]) and own != stored and len(own) == len(stored)
    book["trace"] = {"created_by": stored.upper(), "queued_by": stored + "\n", "run": own[:-1] + "x"}
    store = open_store(db)
    store.save("run_state", book, traced.id)
    store.close()
    monkeypatch.delenv(CAPACITY_ENV)
    exporter.clear()
    with start_server(db, tracer_provider=provider) as server, sdk(server, contract, "any") as client:
        for run in (plain, traced):
            assert client.beta.threads.runs.poll(run.id, thread_id=run.thread_id, poll_interval_ms=20).status == \
                "completed"
    turns = {s.attributes["asstctl.run.id"]: s for s in exporter.get_finished_spans() if s.name.startswith("invoke")}
    assert turns.keys() == {plain.id, traced.id}
    assert all(turn.parent is None and not turn.links for turn in turns.values())
    assert turns[traced.id].context.trace_id != created.context.trace_id


TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"  # the W3C Trace Context example


@pytest.mark.parametrize("value", [TRACEPARENT, TRACEPARENT[:-2] + "00"])
def test_a_stored_traceparent_reads_back_as_a_remote_parent(value):
    from asstctl.server.observability import tracing

    context = tracing.remote_context(value)
    assert context.is_remote and context.is_valid and tracing.traceparent(context) == value


@pytest.mark.parametrize("value", [
    None, 7, {"a": 1}, "", TRACEPARENT.upper(), "01" + TRACEPARENT[2:],  # upper case, another version
    TRACEPARENT[:3] + "0" * 32 + TRACEPARENT[35:], TRACEPARENT[:36] + "0" * 16 + TRACEPARENT[52:],  # zero ids
    TRACEPARENT + "\n", " " + TRACEPARENT, TRACEPARENT + "-extra", "00-" + "a" * 100_000])
def test_anything_else_stored_is_ignored(value):
    from asstctl.server.observability import tracing

    assert tracing.remote_context(value) is None


def test_prompt_and_completion_text_only_when_switched_on(contract, monkeypatch):
    monkeypatch.setenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "true")
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    with start_server(":memory:", tracer_provider=provider) as server, sdk(server, contract, "any") as client:
        assistant = client.beta.assistants.create(model="gpt-4o")
        thread = client.beta.threads.create(messages=[{"role": "user", "content": "say the magic word"}])
        run = client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=assistant.id,
                                                       poll_interval_ms=20)
        reply = client.beta.threads.messages.list(thread.id, run_id=run.id).data[0].content[0].text.value
    (chat,) = [s for s in exporter.get_finished_spans() if s.name == "chat gpt-4o"]
    assert "say the magic word" in chat.attributes["gen_ai.input.messages"]
    assert json.loads(chat.attributes["gen_ai.output.messages"]) == [{"role": "assistant", "content": reply}]


def test_captured_content_stops_at_64_kib_and_stays_json(upstream, contract, monkeypatch):
    """A prompt and a reply longer than the 64 KiB cap (quotes and newlines: JSON escapes them): each
    attribute is at most 64 KiB and parses as JSON (each string cut at its end)."""
    from asstctl.server.observability.instrument import MAX_CAPTURED

    monkeypatch.setenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "true")
    provider, exporter = in_memory()
    engine = UpstreamEngine(UpstreamConfig(url=upstream.base_url, api_key_env=KEY_ENV), retry=FAST)
    long = '"quoted"\n' * 9000  # 90,000 characters, more in JSON
    upstream.queue(Text("reply:" + long, deltas=["reply:", *[long[i:i + 9000] for i in range(0, len(long), 9000)]]))
    with start_server(":memory:", engine=engine, tracer_provider=provider) as server, \
            sdk(server, contract, "any") as client:
        assistant = client.beta.assistants.create(model="gpt-4o")
        run = client.beta.threads.create_and_run_poll(assistant_id=assistant.id, poll_interval_ms=20, thread={
            "messages": [{"role": "user", "content": "old question"}, {"role": "user", "content": "ask:" + long}]})
        assert run.status == "completed", run.last_error
    (chat,) = [s for s in exporter.get_finished_spans() if s.name == "chat gpt-4o"]
    for name, start in (("gen_ai.input.messages", "ask:"), ("gen_ai.output.messages", "reply:")):
        text = chat.attributes[name]
        assert 60_000 < len(text) <= MAX_CAPTURED == 64 << 10, (name, len(text))
        assert start in json.dumps(json.loads(text)), name


def test_json_logs_one_line_per_request_and_run_transition(tmp_path, contract):
    """A real `asstctl serve --admin-key-env VAR --metrics --log-format json`: the admin API and /metrics
    answer as documented, and no key (the server's, the admin's, a project's, a wrong one) is ever logged."""
    wrong = "sk-wrong-" + "w" * 32
    env = {"ASSTCTL_SERVER_API_KEY": KEY, "ASSTCTL_REPLICA": "replica-7", "F26_ADMIN": ADMIN,
           # traces to a collector that is not there: the exporter's complaints are JSON lines too
           "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{free_port()}", "OTEL_EXPORTER_OTLP_PROTOCOL":
           "http/protobuf", "OTEL_EXPORTER_OTLP_TIMEOUT": "0.3", "OTEL_BSP_SCHEDULE_DELAY": "20",
           "OTEL_BSP_EXPORT_TIMEOUT": "500", "OTEL_TRACES_EXPORTER": "otlp", "OTEL_SDK_DISABLED": "false"}
    with ServeProcess(tmp_path / "serve", "--db", ":memory:", "--log-format", "json", "--admin-key-env", "F26_ADMIN",
                      "--metrics", "--unsafe-code-interpreter", env=env) as process:
        with admin_sdk(process, contract) as admin:  # the Administration API: 200s
            project_key = new_key(admin, admin.admin.organization.projects.create(name="shop").id)
        metrics = process.base_url.removesuffix("/v1") + "/metrics"
        assert httpx.get(metrics, headers={"Authorization": f"Bearer {ADMIN}"}).status_code == 200
        assert httpx.get(metrics.removesuffix("/metrics") + "/healthz").status_code == 200  # not logged
        assert httpx.get(metrics, headers={"Authorization": f"Bearer {project_key}"}).status_code == 403
        with sdk(process, contract, wrong) as refused, pytest.raises(openai.AuthenticationError):
            refused.beta.assistants.list()  # a 401
        with sdk(process, contract, project_key) as shop:
            shop.beta.assistants.list()
            for key in (project_key, KEY, ADMIN, wrong):  # a key pasted into the path: logged redacted
                with pytest.raises(openai.NotFoundError):
                    shop.beta.threads.runs.list(thread_id=key)
            with pytest.raises(openai.NotFoundError):
                shop.beta.assistants.retrieve(project_key)
        client = sdk(process, contract, KEY)
        assistant = client.beta.assistants.create(model="gpt-4o")
        thread = client.beta.threads.create(messages=[{"role": "user", "content": "hello"}])
        raw = client.beta.threads.runs.with_raw_response.create(thread_id=thread.id, assistant_id=assistant.id)
        run = raw.parse()
        request_id = raw.headers["x-request-id"]
        client.beta.threads.runs.poll(run.id, thread_id=thread.id, poll_interval_ms=20)
        client.close()
        assert process.stop() == 0
        lines = [json.loads(line) for line in process.stderr().splitlines()]  # every line, the last one too
        text = process.stderr()
    assert any(line["logger"].startswith("opentelemetry.") for line in lines), text[-2000:]  # not a plain line
    assert lines[-1]["message"] == "asstctl serve: stopped" and lines[-1]["replica"] == "replica-7"
    assert [line["level"] for line in lines if "--unsafe-code-interpreter" in line["message"]] == ["warning"]
    for key in (KEY, ADMIN, project_key, wrong):  # neither a key nor any 8 characters of it
        assert not [key[i:i + 8] for i in range(len(key) - 7) if key[i:i + 8] in text], key[:4]
    assert {(line["method"], line["path"], line["status"]) for line in lines if line.get("event") == "request"} >= {
        ("POST", "/v1/organization/projects", 200), ("GET", "/metrics", 403), ("GET", "/v1/assistants", 401)}
    assert not [line for line in lines if line.get("path") in ("/healthz", "/readyz")]  # probes: no line
    redacted = [(line["path"], line["message"]) for line in lines if "redacted" in line.get("path", "")]
    assert redacted == [("/v1/threads/sk-…redacted/runs", "GET /v1/threads/sk-…redacted/runs 404")] * 4 + [
        ("/v1/assistants/sk-…redacted", "GET /v1/assistants/sk-…redacted 404")], redacted
    (created,) = [line for line in lines if line.get("request_id") == request_id and line["event"] == "request"]
    assert created["event"] == "request" and created["method"] == "POST" and created["status"] == 200
    assert created["thread_id"] == thread.id and created["project"] == "proj_default"
    assert created["replica"] == "replica-7" and created["duration_ms"] >= 0
    transitions = [line for line in lines if line.get("event") == "run" and line["run_id"] == run.id]
    assert [line["status"] for line in transitions] == ["queued", "in_progress", "completed"]
    assert all(line["request_id"] == request_id for line in transitions)  # the request that queued the turn
    assert all(line["replica"] == "replica-7" and line["project"] == "proj_default"
               for line in lines if line.get("event") == "run")


@pytest.mark.parametrize("env, on", [
    ({}, False),
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4317"}, True),
    ({"OTEL_TRACES_EXPORTER": "console"}, True),
    ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4317"}, False),
    ({"OTEL_SDK_DISABLED": "true", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"}, False),
])
def test_tracing_follows_the_standard_variables(monkeypatch, env, on):
    from asstctl.server.app import ServerConfig
    from asstctl.server.observability import tracing

    for name in (*tracing.ON_ENVS, "OTEL_SDK_DISABLED"):
        monkeypatch.delenv(name, raising=False)
    for name, setting in env.items():
        monkeypatch.setenv(name, setting)
    assert tracing.wanted() is on
    if env.get("OTEL_TRACES_EXPORTER") == "console":
        assert tracing.tracer_for(ServerConfig()) is not None


@pytest.mark.parametrize("env, name", [
    ({}, "asstctl"), ({"OTEL_SERVICE_NAME": "shop"}, "shop"), ({"OTEL_RESOURCE_ATTRIBUTES": "service.name=web"}, "web"),
    ({"OTEL_SERVICE_NAME": "shop", "OTEL_RESOURCE_ATTRIBUTES": "service.name=web,team=a"}, "shop"),
])
def test_the_service_name_is_asstctl_unless_the_otel_variables_name_one(monkeypatch, env, name):
    from asstctl.server.observability import tracing

    for variable in ("OTEL_SERVICE_NAME", "OTEL_RESOURCE_ATTRIBUTES"):
        monkeypatch.delenv(variable, raising=False)
    for variable, setting in {"OTEL_TRACES_EXPORTER": "console", **env}.items():
        monkeypatch.setenv(variable, setting)
    provider = tracing._provider_from_env()
    try:
        assert provider.resource.attributes["service.name"] == name
    finally:
        provider.shutdown()


@pytest.mark.parametrize("exporter", ["zipkin", "otlp,console", "jaeger"])
def test_an_exporter_this_server_does_not_have_is_refused_by_name(monkeypatch, exporter):
    from asstctl.server.app import ServerConfig
    from asstctl.server.observability import tracing

    monkeypatch.delenv("OTEL_SDK_DISABLED", raising=False)
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", exporter)
    with pytest.raises(ConfigError) as refused:
        tracing.tracer_for(ServerConfig())
    assert f"OTEL_TRACES_EXPORTER={exporter!r} is not supported" in refused.value.message
    assert "otlp, console, none" in refused.value.message


def test_an_admin_key_equal_to_the_api_key_is_refused_at_start(tmp_path):
    with pytest.raises(ConfigError) as refused:
        start_server(":memory:", api_key=KEY, admin_key=KEY)
    assert "the admin key is the server's API key" in refused.value.message and KEY not in str(refused.value)


@pytest.mark.parametrize("env, option, named", [
    ({"ASSTCTL_SERVER_API_KEY": KEY, "F26_SHORT": "short-admin"}, ["--admin-key-env", "F26_SHORT"],
     "--admin-key-env: the admin key in F26_SHORT"),
    ({"ASSTCTL_SERVER_API_KEY": "short-server"}, [], "--api-key / ASSTCTL_SERVER_API_KEY: the API key"),
])
def test_a_short_key_is_refused_beyond_loopback_by_its_variable(env, option, named):
    from click.testing import CliRunner

    from asstctl.cli import cli

    result = CliRunner().invoke(cli, ["serve", "--host", "0.0.0.0", "--db", ":memory:", *option], env=env)
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    assert f"{named}: it is shorter than 16 characters, too easy to guess on 0.0.0.0, which is beyond loopback: " \
           "use a longer one, e.g. `openssl rand -hex 16`, or listen on 127.0.0.1" in result.output, result.output
    assert "short-" not in result.output


class Collector:
    """An OTLP/HTTP trace collector on loopback: the protobuf bodies POSTed to /v1/traces."""

    def __init__(self):
        import http.server

        received = self.received = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                received.append((self.path, self.headers["Content-Type"], body))
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_port}"

    def spans(self) -> list[tuple[dict, Any]]:
        """(resource attributes, span) of every span received so far."""
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

        found = []
        for _, _, body in list(self.received):
            request = ExportTraceServiceRequest.FromString(body)
            for resource in request.resource_spans:
                attributes = {a.key: a.value.string_value for a in resource.resource.attributes}
                found.extend((attributes, span) for scope in resource.scope_spans for span in scope.spans)
        return found

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def test_spans_go_to_an_otlp_collector_configured_by_otel_variables(contract, monkeypatch):
    collector = Collector()
    try:
        for name, setting in {"OTEL_EXPORTER_OTLP_ENDPOINT": collector.url, "OTEL_EXPORTER_OTLP_PROTOCOL":
                              "http/protobuf", "OTEL_BSP_SCHEDULE_DELAY": "50",
                              "OTEL_RESOURCE_ATTRIBUTES": "deployment.environment=ci,service.name=asstctl-test"}.items():
            monkeypatch.setenv(name, setting)
        monkeypatch.delenv("OTEL_SERVICE_NAME", raising=False)  # the service's name from the resource attributes
        monkeypatch.delenv("OTEL_TRACES_EXPORTER", raising=False)
        monkeypatch.delenv("OTEL_SDK_DISABLED", raising=False)
        with start_server(":memory:") as server, sdk(server, contract, "any") as client:
            assistant = client.beta.assistants.create(model="gpt-4o")
            run = client.beta.threads.create_and_run_poll(assistant_id=assistant.id, poll_interval_ms=20, thread={
                "messages": [{"role": "user", "content": "hello"}]})
            assert run.status == "completed"
            waited = time.monotonic()
            while not any(s.name.startswith("invoke_agent") for _, s in collector.spans()) \
                    and time.monotonic() - waited < 10:
                time.sleep(0.02)
        spans = collector.spans()
        assert {path for path, _, _ in collector.received} == {"/v1/traces"}
        assert {kind for _, kind, _ in collector.received} == {"application/x-protobuf"}
        names = {span.name for _, span in spans}
        assert "POST /v1/threads/runs" in names and f"invoke_agent {assistant.id}" in names, names
        resource, turn = next((r, s) for r, s in spans if s.name.startswith("invoke_agent"))
        assert resource["service.name"] == "asstctl-test" and resource["deployment.environment"] == "ci"
        assert {a.key: a.value.string_value for a in turn.attributes}["asstctl.run.id"] == run.id
    finally:
        collector.close()


def test_readyz_checks_the_upstream_only_when_asked(contract, monkeypatch):
    monkeypatch.setenv("F26_WRONG_KEY", "sk-not-the-upstream-key-0123456789")

    def readyz(url: str, key_env: str = KEY_ENV, **options) -> httpx.Response:
        engine = UpstreamEngine(UpstreamConfig(url=url, api_key_env=key_env))
        with start_server(":memory:", engine=engine, **options) as server:
            return httpx.get(server.base_url.removesuffix("/v1") + "/readyz", timeout=10)

    with ScriptedUpstream() as model:
        monkeypatch.setenv(KEY_ENV, model.key)
        ready = readyz(model.base_url, ready_checks_upstream=True)
        assert ready.status_code == 200, ready.text
        assert ready.json()["detail"] == "the database answers; the upstream answers" and model.model_lists == 1
        refused = readyz(model.base_url, "F26_WRONG_KEY", ready_checks_upstream=True)
        assert refused.status_code == 503 and "the upstream answered GET /models with HTTP 401" in refused.text
    assert not model.problems, model.problems  # the GET /models requests met the official schema
    nowhere = f"http://127.0.0.1:{free_port()}/v1"
    started = time.monotonic()
    down = readyz(nowhere, ready_checks_upstream=True)
    assert down.status_code == 503 and "the upstream cannot be reached" in down.json()["detail"], down.text
    assert time.monotonic() - started < 8  # bounded: a probe never hangs on the upstream
    assert readyz(nowhere).status_code == 200  # not asked: the database alone
    with pytest.raises(ConfigError, match="--ready-checks-upstream needs an upstream"):
        start_server(":memory:", ready_checks_upstream=True)


def test_without_an_admin_key_the_servers_key_reads_metrics_and_a_projects_key_does_not(tmp_path, contract):
    """Also (docs/deploy.md): with no key at all the server is the default project's, on loopback, and a project
    key still selects its project; an admin key alone (no --api-key) is enough to listen beyond loopback."""
    db = str(tmp_path / "keys.sqlite3")
    with start_server(db, api_key=KEY, admin_key=ADMIN) as server, admin_sdk(server, contract) as admin:
        project_key = new_key(admin, admin.admin.organization.projects.create(name="shop").id)
    with start_server(db) as server, sdk(server, contract, project_key) as shop, sdk(server, contract, "x") as anyone:
        made = shop.beta.assistants.create(model="gpt-4o").id
        assert [a.id for a in shop.beta.assistants.list()] == [made] and not anyone.beta.assistants.list().data
    with start_server(db, host="0.0.0.0", admin_key=ADMIN) as server, sdk(server, contract, project_key) as shop:
        assert [a.id for a in shop.beta.assistants.list()] == [made]
        assert httpx.get(server.base_url + "/assistants").status_code == 401
    with start_server(db, api_key=KEY, metrics=True) as server:  # (keys made before, e.g. `asstctl serve keys`)
        url = server.base_url.removesuffix("/v1") + "/metrics"
        answers = {name: httpx.get(url, headers={"Authorization": f"Bearer {key}"})
                   for name, key in (("server", KEY), ("project", project_key))}
    assert answers["server"].status_code == 200 and "asstctl_http_requests_total" in answers["server"].text
    files = b"".join(path.read_bytes() for path in tmp_path.glob("keys.sqlite3*"))  # the database and its WAL
    assert key_hash(project_key).encode() in files  # the key is stored: hashed, never its value nor a part of it
    assert project_key.encode() not in files and project_key[-12:].encode() not in files
    assert answers["project"].status_code == 403, answers["project"].text
    assert answers["project"].json()["error"]["code"] == "insufficient_permissions"
