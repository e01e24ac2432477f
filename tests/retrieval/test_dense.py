"""Dense retrieval through an upstream /embeddings: a scripted embeddings server on loopback
(every answer validated against the OpenAPI ``CreateEmbeddingResponse``), fused with BM25."""

from __future__ import annotations

import random
import re
import socket

import pytest

from asstctl.server.embedded import start_server
from asstctl.server.retrieval.embeddings import EmbeddingsConfig
from benchmarks.embeddings_server import serve_embeddings
from tests.conftest import make_client
from tests.contract import validator_for

# The scripted model: each concept is one axis; words of the same concept share it.
CONCEPTS = [("refund", "refunds", "reimbursement", "reimbursed", "money", "back"),
            ("ship", "shipping", "parcel", "parcels", "delivery", "courier"),
            ("warranty", "guarantee", "defect", "defects", "repair")]
KEY_ENV = "ASSTCTL_TEST_EMBEDDINGS_KEY"
SECRET = "sk-test-embeddings-secret-value"


def concept_embed(texts):
    out = []
    for text in texts:
        words = re.findall(r"\w+", text.lower())
        vector = [float(sum(w in group for w in words)) for group in CONCEPTS] + [0.01]
        out.append(vector)
    return out


def with_embeddings(base_url: str, db: str = ":memory:"):
    server = start_server(db)
    server.state.config.embeddings = EmbeddingsConfig(model="scripted-embed", base_url=base_url, api_key_env=KEY_ENV)
    return server


@pytest.fixture
def dense(request, monkeypatch, contract):
    """A client of a server with the scripted embeddings (on SQLite; ``indirect`` "postgres": on PostgreSQL)."""
    monkeypatch.setenv(KEY_ENV, SECRET)
    bodies: list = []
    db = request.getfixturevalue("postgres_url") if getattr(request, "param", "sqlite") == "postgres" else ":memory:"
    with serve_embeddings(concept_embed, bodies) as url, with_embeddings(url, db) as server:
        client = make_client(server, contract)
        yield client, bodies
        client.close()
    validator = validator_for("#/components/schemas/CreateEmbeddingResponse")
    for body in bodies:
        assert not list(validator.iter_errors(body)), body


def upload(client, name, data):
    return client.files.create(file=(name, data), purpose="assistants")


def test_dense_finds_what_words_alone_miss(dense):
    client, bodies = dense
    refunds = upload(client, "refunds.md", b"Money is paid back to the card within 5 business days.")
    shipping = upload(client, "shipping.md", b"Orders leave by courier the next morning.")
    vs = client.vector_stores.create(file_ids=[refunds.id, shipping.id])
    assert vs.file_counts.completed == 2
    page = client.vector_stores.search(vs.id, query="reimbursement")  # no word in common with refunds.md
    assert [r.filename for r in page.data][:1] == ["refunds.md"]
    assert bodies and bodies[-1]["model"] == "scripted-embed"
    both = client.vector_stores.search(vs.id, query="courier parcel")  # first in both rankings
    assert both.data[0].filename == "shipping.md" and both.data[0].score == 1.0


@pytest.mark.parametrize("dense", ["sqlite", "postgres"], indirect=True)
def test_hybrid_top_10_is_the_same_whether_10_or_50_are_asked(dense):
    """70 short notes over the scripted model's concepts (many ties in both rankings): the fused
    ranking's first 10 do not depend on ``max_num_results``; each search embeds its query."""
    client, bodies = dense
    rng = random.Random(9)
    words = [w for group in CONCEPTS for w in group] + "policy store team order card days".split()
    notes = [upload(client, f"n{i}.md", " ".join(rng.choices(words, k=4 + i % 11)).encode()) for i in range(70)]
    vs = client.vector_stores.create(name="hybrid")
    assert client.vector_stores.file_batches.create(vs.id, file_ids=[f.id for f in notes]).file_counts.completed == 70

    def ranked(query, k):
        return [(r.file_id, r.content[0].text, r.score) for r in client.vector_stores.search(vs.id, query=query,
                                                                                         max_num_results=k).data]

    for query in ("money back for a refund", "courier delivery of parcels", "repair under warranty", "card days"):
        embedded = len(bodies)
        fifty = ranked(query, 50)
        assert len(fifty) == 50 and len(bodies) == embedded + 1, query  # hybrid: the query was embedded
        assert ranked(query, 10) == fifty[:10], query


def test_dense_vectors_follow_file_removal(dense):
    client, _ = dense
    a = upload(client, "a.md", b"A warranty covers defects for two years.")
    vs = client.vector_stores.create(file_ids=[a.id])
    assert client.vector_stores.search(vs.id, query="guarantee").data[0].filename == "a.md"
    client.vector_stores.files.delete(a.id, vector_store_id=vs.id)
    assert client.vector_stores.search(vs.id, query="guarantee").data == []


def test_an_unreachable_embeddings_upstream_fails_the_file_without_leaking_the_key(monkeypatch, contract):
    monkeypatch.setenv(KEY_ENV, SECRET)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with with_embeddings(f"http://127.0.0.1:{port}/v1") as server:
        server.state.config.embeddings.timeout = 2.0
        client = make_client(server, contract)
        file = upload(client, "a.md", b"text to embed")
        vs = client.vector_stores.create(file_ids=[file.id])
        item = client.vector_stores.files.retrieve(file.id, vector_store_id=vs.id)
        assert vs.file_counts.failed == 1 and item.status == "failed"
        assert item.last_error.code == "server_error" and f"127.0.0.1:{port}" in item.last_error.message
        assert SECRET not in item.last_error.message
        client.close()
