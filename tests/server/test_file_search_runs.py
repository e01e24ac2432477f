"""A run with file_search end to end on each store (SQLite and PostgreSQL): ingestion, the
file_search step, a cited answer; then the same with dense retrieval (a scripted upstream
``/embeddings``), whose vectors live in the store (``retrieval_vectors``) and are fused with
full-text search."""

from __future__ import annotations

from asstctl.server.retrieval.embeddings import EmbeddingsConfig
from tests.conftest import make_client
from tests.retrieval.test_dense import KEY_ENV, SECRET, concept_embed
from tests.retrieval.test_runs import INCLUDE, ask, support_assistant
from benchmarks.embeddings_server import serve_embeddings


def cited_file(reply) -> str:
    (annotation,) = reply.content[0].text.annotations
    assert annotation.type == "file_citation"
    return annotation.file_citation.file_id


def test_a_file_search_run_cites_the_best_chunk(client):
    assistant, returns, _ = support_assistant(client)
    _, steps, reply = ask(client, assistant, "When do I get my refund?", include=[INCLUDE])
    (call,) = steps[0].step_details.tool_calls
    assert call.type == "file_search" and call.file_search.results[0].file_id == returns.id
    assert 0 < call.file_search.results[0].score <= 1
    assert "Refunds reach the card within 5 business days." in reply.content[0].text.value
    assert cited_file(reply) == returns.id


def test_a_file_search_run_with_embeddings_uses_the_stored_vectors(server, contract, monkeypatch):
    monkeypatch.setenv(KEY_ENV, SECRET)
    answers: list = []
    with serve_embeddings(concept_embed, answers) as url:
        server.state.config.embeddings = EmbeddingsConfig(model="scripted-embed", base_url=url, api_key_env=KEY_ENV)
        client = make_client(server, contract)
        assistant, returns, shipping = support_assistant(client)
        with server.store.sql() as db:
            stored = db.execute("SELECT count(*) FROM retrieval_vectors").fetchone()[0]
        assert stored >= 2  # one vector per chunk, in the store's own database
        # "parcel" and "courier" are not in shipping.md: only the vectors (ship/delivery concept) find it
        _, steps, reply = ask(client, assistant, "Where is my parcel with the courier?")
        client.close()
    (call,) = steps[0].step_details.tool_calls
    assert call.file_search.results[0].file_id == shipping.id
    assert cited_file(reply) == shipping.id
    assert len(answers) >= 2  # the two files' chunks (batched across files: one request), then the query
