"""file_search's embeddings come from the upstream: ``asstctl serve --embeddings-model`` and
``engine.embeddings`` in asstctl.yaml point dense retrieval at the upstream's ``/embeddings``
(same base URL, same key variable; Azure OpenAI: the model's deployment path). The scripted
upstream serves ``/embeddings`` and checks every request and answer against the official schemas."""

from __future__ import annotations

from click.testing import CliRunner

from asstctl.cli import cli
from asstctl.spec.project import parse_project
from asstctl.server.embedded import start_server
from asstctl.server.engine.config import UpstreamConfig
from tests.conftest import make_client
from tests.engine.conftest import KEY_ENV
from tests.serve_process import ServeProcess
from tests.upstream import Call, Failure, ToolCalls

DOCS = b"Refunds are paid back to the card within five business days. Parcels ship by courier."


def upload_and_search(client, query: str = "how long do refunds take?"):
    file = client.files.create(file=("policy.md", DOCS), purpose="assistants")
    store = client.vector_stores.create(name="policies", file_ids=[file.id])
    assert client.vector_stores.retrieve(store.id).file_counts.completed == 1
    return list(client.vector_stores.search(store.id, query=query))


def embedding_requests(upstream):
    return [r for r in upstream.requests if r.path.endswith("/embeddings")]


def test_serve_embeddings_model_sends_file_search_to_the_upstream(tmp_path, keyed, contract):
    with ServeProcess(tmp_path, "--db", ":memory:", "--upstream", keyed.base_url, "--upstream-key-env", KEY_ENV,
                      "--embeddings-model", "scripted-embed", "--embeddings-batch-size", "2") as server:
        assert f"file_search: embeddings model scripted-embed on 127.0.0.1:{keyed.port}" in server.stdout()
        client = make_client(server, contract)
        hits = upload_and_search(client)
        sent = embedding_requests(keyed)
        long = client.files.create(file=("long.md", DOCS * 24), purpose="assistants")  # 5 chunks of 100 tokens
        client.vector_stores.create(name="batched", file_ids=[long.id], chunking_strategy={
            "type": "static", "static": {"max_chunk_size_tokens": 100, "chunk_overlap_tokens": 0}})
        batched = [len(r.body["input"]) for r in embedding_requests(keyed)[len(sent):]]
        echoed = echoed_key_errors(client, keyed)
        client.close()
    assert hits and "Refunds" in hits[0].content[0].text
    assert sorted(batched, reverse=True) == [2, 2, 1], batched  # --embeddings-batch-size 2 reached the batcher
    assert len(sent) >= 2  # the chunks at ingestion, the query at search
    assert {r.path for r in sent} == {"/v1/embeddings"} and {r.body["model"] for r in sent} == {"scripted-embed"}
    assert all(r.headers["authorization"] == f"Bearer {keyed.key}" for r in sent)
    assert sent[-1].body["input"] == ["how long do refunds take?"]
    secret = keyed.key[-16:]  # (its start, "sk-scripted-upstream", shares words with the model and the messages)
    for text in [*echoed, server.stdout() + server.stderr()]:  # last_error of the file, of the run; the log
        assert keyed.key not in text and not any(secret[i:i + 6] in text for i in range(11)), text[-2000:]


def echoed_key_errors(client, upstream) -> list[str]:
    """An /embeddings 400 echoing the key and its Authorization header (3,000 characters) at ingestion and at
    a file_search query: the file's and the run's last_error, each scrubbed and cut to about 500 characters."""
    key = upstream.key
    echo = Failure(400, "p" * 100 + f" Authorization: Bearer {key} is not valid; the key {key} is unknown. "
                   + "q" * 3000, "invalid_request_error")
    store = client.vector_stores.create(name="echo")
    upstream.embed_failures.append(echo)
    file = client.files.create(file=("echo.md", b"Parcels ship by courier."), purpose="assistants")
    ingested = client.vector_stores.files.create_and_poll(file.id, vector_store_id=store.id, poll_interval_ms=20)
    assert ingested.status == "failed", ingested.status
    upstream.embed_failures.append(echo)
    upstream.queue(ToolCalls([Call("file_search", {"queries": ["parcels?"]})]))
    bot = client.beta.assistants.create(model="gpt-4o", tools=[{"type": "file_search"}],
                                        tool_resources={"file_search": {"vector_store_ids": [store.id]}})
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "How do parcels ship?"}])
    run = client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=bot.id, poll_interval_ms=20)
    assert run.status == "failed", run.status
    messages = [ingested.last_error.message, run.last_error.message]
    for message in messages:
        assert "Authorization: Bearer [redacted] is not valid; the key [redacted] is unknown." in message, message
        assert len(message) < 700, len(message)
    return messages


def test_without_the_option_retrieval_stays_lexical(keyed, contract):
    with start_server(":memory:", upstream=UpstreamConfig(url=keyed.base_url, api_key_env=KEY_ENV)) as server:
        assert server.state.config.embeddings is None
        client = make_client(server, contract)
        assert upload_and_search(client)
        client.close()
    assert embedding_requests(keyed) == []


def test_azure_embeddings_go_to_the_models_deployment(keyed, contract):
    config = UpstreamConfig(url=keyed.root_url, api_key_env=KEY_ENV, azure_api_version="2024-10-21",
                            azure_deployments={"text-embedding-3-small": "prod-embed"},
                            embeddings={"model": "text-embedding-3-small"})
    with start_server(":memory:", upstream=config) as server:
        client = make_client(server, contract)
        assert upload_and_search(client)
        client.close()
    sent = embedding_requests(keyed)
    assert sent and {r.path for r in sent} == {"/openai/deployments/prod-embed/embeddings"}
    assert all(r.query.get("api-version") == "2024-10-21" and r.headers["api-key"] == keyed.key for r in sent)


def test_the_engine_section_names_the_embeddings_model(tmp_path):
    (tmp_path / "asstctl.yaml").write_text(
        "project: demo\nengine:\n  upstream: http://127.0.0.1:9/v1\n  embeddings: {model: text-embedding-3-small}\n")
    assert parse_project(tmp_path).engine.embeddings_model == "text-embedding-3-small"
    (tmp_path / "asstctl.yaml").write_text("project: demo\nengine:\n  upstream: http://127.0.0.1:9/v1\n")
    assert parse_project(tmp_path).engine.embeddings_model is None


def test_embeddings_model_without_an_upstream_is_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["serve", "--db", ":memory:", "--embeddings-model", "m"])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "Error: --embeddings-model needs an upstream serving /embeddings: give --upstream URL" in result.output
