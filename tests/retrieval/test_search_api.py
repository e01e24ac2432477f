"""Vector store ingestion and search through the real SDK: failed files, counts, filters,
score_threshold, max_num_results, rewrite_query, chunking."""

from __future__ import annotations

import openai
import pytest

from asstctl.server.retrieval.chunking import count_tokens
from tests.retrieval import fixtures

DOCS = {
    "returns-eu.md": (b"# Returns in the EU\nEU customers may return items within 30 days of delivery.", {"region": "eu", "year": 2024, "public": True}),
    "returns-us.md": (b"# Returns in the US\nUS customers may return items within 60 days of delivery.", {"region": "us", "year": 2022, "public": True}),
    "shipping.md": (b"# Shipping\nOrders ship within 2 business days by parcel post.", {"region": "eu", "year": 2023, "public": False}),
    "warranty.md": (b"# Warranty\nElectronics carry a two year warranty against defects.", {"region": "uk", "year": 2025}),
}


def upload(client, name, data):
    return client.files.create(file=(name, data), purpose="assistants")


@pytest.fixture
def store(client):
    vs = client.vector_stores.create(name="kb")
    ids = {}
    for name, (data, attributes) in DOCS.items():
        file = upload(client, name, data)
        client.vector_stores.files.create(vector_store_id=vs.id, file_id=file.id, attributes=attributes)
        ids[name] = file.id
    return vs.id, ids


def names(page):
    return [r.filename for r in page.data]


def test_every_type_is_searchable_and_counts_are_exact(client):
    files = {
        "guide.pdf": fixtures.pdf_bytes("The zebra policy covers striped parcels."),
        "notes.docx": fixtures.docx_bytes(["Giraffe deliveries need tall vans."]),
        "deck.pptx": fixtures.pptx_bytes([("Pelican", "Pelican beaks hold parcels")]),
        "page.html": fixtures.html_bytes("Walrus tusks are measured monthly."),
        "data.json": fixtures.json_bytes({"animal": "okapi", "legs": 4}),
        "tool.py": b"def narwhal_horn():\n    return 'spiral'\n",
    }
    uploaded = {name: upload(client, name, data) for name, data in files.items()}
    vs = client.vector_stores.create(file_ids=[f.id for f in uploaded.values()])
    assert vs.file_counts.completed == 6 and vs.file_counts.failed == 0
    assert vs.usage_bytes == sum(f.bytes for f in uploaded.values())
    for word, name in [("zebra", "guide.pdf"), ("giraffe", "notes.docx"), ("pelican", "deck.pptx"),
                       ("walrus", "page.html"), ("okapi", "data.json"), ("narwhal_horn", "tool.py")]:
        assert names(client.vector_stores.search(vs.id, query=word))[:1] == [name], word


def test_unreadable_files_fail_with_last_error_and_are_not_searched(client):
    good = upload(client, "good.md", b"pangolin scales")
    image = upload(client, "photo.png", b"\x89PNG\r\n\x1a\npangolin")
    broken = upload(client, "broken.pdf", b"%PDF-1.4 pangolin garbage")
    vs = client.vector_stores.create(file_ids=[good.id, image.id, broken.id])
    counts = vs.file_counts
    assert (counts.completed, counts.failed, counts.total, vs.usage_bytes) == (1, 2, 3, good.bytes)
    errors = {f.id: f.last_error for f in client.vector_stores.files.list(vs.id)}
    assert errors[good.id] is None
    assert errors[image.id].code == "unsupported_file" and "photo.png" in errors[image.id].message
    assert errors[broken.id].code == "invalid_file" and "broken.pdf" in errors[broken.id].message
    assert {f.id for f in client.vector_stores.files.list(vs.id, filter="failed")} == {image.id, broken.id}
    assert names(client.vector_stores.search(vs.id, query="pangolin")) == ["good.md"]
    # read back: a format without text shows its raw bytes; bytes its parser rejects are an error saying so
    assert client.vector_stores.files.content(image.id, vector_store_id=vs.id).data[0].text.endswith("pangolin")
    with pytest.raises(openai.BadRequestError, match=f"content of file {broken.id} cannot be read back: .*broken.pdf"):
        client.vector_stores.files.content(broken.id, vector_store_id=vs.id)


def test_removed_and_deleted_files_leave_the_index(client):
    a, b = upload(client, "a.md", b"okapi stripes"), upload(client, "b.md", b"okapi legs")
    vs = client.vector_stores.create(file_ids=[a.id, b.id])
    assert sorted(names(client.vector_stores.search(vs.id, query="okapi"))) == ["a.md", "b.md"]
    client.vector_stores.files.delete(a.id, vector_store_id=vs.id)
    client.files.delete(b.id)
    assert names(client.vector_stores.search(vs.id, query="okapi")) == []
    assert client.vector_stores.retrieve(vs.id).file_counts.total == 0


def test_ranking_prefers_the_document_about_the_question(store, client):
    vs, _ = store
    page = client.vector_stores.search(vs, query="How many days do US customers have to return items?")
    assert names(page)[0] == "returns-us.md"
    assert page.data[0].content[0].text.startswith("# Returns in the US")
    assert page.data[0].attributes == {"region": "us", "year": 2022, "public": True}
    scores = [r.score for r in page.data]
    assert scores == sorted(scores, reverse=True) and all(0 < s <= 1 for s in scores)


def test_max_num_results_and_score_threshold(store, client):
    vs, _ = store
    query = "returns customers items delivery"
    assert len(client.vector_stores.search(vs, query=query).data) == 2
    assert len(client.vector_stores.search(vs, query=query, max_num_results=1).data) == 1
    scores = [r.score for r in client.vector_stores.search(vs, query="EU returns warranty").data]
    assert len(scores) >= 2 and scores[0] > scores[-1]
    cut = (scores[0] + scores[-1]) / 2
    kept = client.vector_stores.search(vs, query="EU returns warranty", ranking_options={"score_threshold": cut}).data
    assert 1 <= len(kept) < len(scores) and all(r.score >= cut for r in kept)
    assert client.vector_stores.search(vs, query="EU returns warranty", ranking_options={"score_threshold": 1}).data == []


@pytest.mark.parametrize("filters, expected", [
    ({"type": "eq", "key": "region", "value": "eu"}, {"returns-eu.md", "shipping.md"}),
    ({"type": "ne", "key": "region", "value": "eu"}, {"returns-us.md", "warranty.md"}),
    ({"type": "gt", "key": "year", "value": 2023}, {"returns-eu.md", "warranty.md"}),
    ({"type": "gte", "key": "year", "value": 2023}, {"returns-eu.md", "shipping.md", "warranty.md"}),
    ({"type": "lt", "key": "year", "value": 2023}, {"returns-us.md"}),
    ({"type": "lte", "key": "year", "value": 2023}, {"returns-us.md", "shipping.md"}),
    ({"type": "in", "key": "region", "value": ["us", "uk"]}, {"returns-us.md", "warranty.md"}),
    ({"type": "nin", "key": "region", "value": ["us", "uk"]}, {"returns-eu.md", "shipping.md"}),
    ({"type": "eq", "key": "public", "value": True}, {"returns-eu.md", "returns-us.md"}),
    ({"type": "and", "filters": [{"type": "eq", "key": "region", "value": "eu"},
                                 {"type": "gte", "key": "year", "value": 2024}]}, {"returns-eu.md"}),
    ({"type": "or", "filters": [{"type": "eq", "key": "region", "value": "us"},
                                {"type": "and", "filters": [{"type": "eq", "key": "region", "value": "uk"},
                                                            {"type": "gt", "key": "year", "value": 2024}]}]},
     {"returns-us.md", "warranty.md"}),
])
def test_attribute_filters(store, client, filters, expected):
    vs, _ = store
    query = "returns ship warranty customers orders electronics"
    assert set(names(client.vector_stores.search(vs, query=query, filters=filters))) == expected


@pytest.mark.parametrize("filters, param", [
    ({"type": "in", "key": "region", "value": "eu"}, "filters.value"),
    ({"type": "nin", "key": "region", "value": 3}, "filters.value"),
    ({"type": "in", "key": "region", "value": [["eu"]]}, "filters.value[0]"),
    ({"type": "eq", "key": "region", "value": {"a": 1}}, "filters.value"),
    ({"type": "and", "filters": [{"type": "in", "key": "k", "value": "x"}]}, "filters.filters[0].value"),
])
def test_bad_filters_are_400_with_the_path(store, client, filters, param):
    check_400(store, client, filters, param)


@pytest.mark.parametrize("filters, param", [
    ({"type": "gt", "key": "year", "value": 2**64}, "filters.value"),
    ({"type": "nin", "key": "year", "value": [1, -(2**70)]}, "filters.value[1]"),
])
def test_integers_past_64_bits_are_400_naming_the_limit(store, client, filters, param):
    assert "limited to 64 bits" in check_400(store, client, filters, param)["message"]


def check_400(store, client, filters, param):
    vs, _ = store
    with pytest.raises(openai.BadRequestError) as caught:
        client.vector_stores.search(vs, query="x", filters=filters)
    assert caught.value.body["param"] == param and caught.value.status_code == 400
    return caught.value.body


def test_rewrite_query_reports_the_keywords_it_searched(store, client):
    vs, _ = store
    page = client.vector_stores.search(vs, query="How long do I have to return items in the EU?", rewrite_query=True)
    assert page.search_query == ["long return items eu"]
    assert names(page)[0] == "returns-eu.md"
    plain = client.vector_stores.search(vs, query="How long do I have to return items in the EU?")
    assert plain.search_query == ["How long do I have to return items in the EU?"]
    several = client.vector_stores.search(vs, query=["warranty electronics", "parcel post"])
    assert set(names(several)[:2]) == {"warranty.md", "shipping.md"}


def test_static_chunking_sizes_the_search_results(client):
    text = " ".join(f"Section {i} describes the heron number {i} in detail." for i in range(300))
    file = upload(client, "herons.md", text.encode())
    vs = client.vector_stores.create(
        file_ids=[file.id], chunking_strategy={"type": "static", "static": {"max_chunk_size_tokens": 100, "chunk_overlap_tokens": 50}}
    )
    item = client.vector_stores.files.retrieve(file.id, vector_store_id=vs.id)
    assert item.chunking_strategy.static.max_chunk_size_tokens == 100
    results = client.vector_stores.search(vs.id, query="heron number 137", max_num_results=50).data
    assert results and all(count_tokens(r.content[0].text) <= 100 for r in results)
    assert "137" in results[0].content[0].text
    auto = client.vector_stores.create(file_ids=[file.id])
    big = client.vector_stores.search(auto.id, query="heron number 137").data
    assert max(count_tokens(r.content[0].text) for r in big) > 100
