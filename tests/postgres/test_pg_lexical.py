"""file_search's lexical index on PostgreSQL behaves like the SQLite one: the stores and files
asked, the better chunk first, removal. Runs once ``asstctl.server.retrieval`` (file_search) is
part of the tree."""

from __future__ import annotations

import pytest

from asstctl.server.store import open_store

pytest.importorskip("asstctl.server.retrieval.lexical")

from asstctl.server.retrieval.pg_lexical import PostgresLexicalIndex  # noqa: E402


@pytest.fixture
def index(postgres_url):
    store = open_store(postgres_url)
    yield PostgresLexicalIndex(store)
    store.close()


def test_search_ranks_within_the_stores_and_files_asked(index):
    first = index.add("vs1", "f1", [("The refund policy allows returns within 30 days.", 9),
                                    ("Shipping is free over $50.", 6), ("Quotes ' and \\ backslashes", 4)])
    index.add("vs1", "f2", [("Refunds are processed by the billing team. Refund refund.", 10)])
    index.add("vs2", "f3", [("refund refund refund refund", 4)])
    assert len(first) == 3 and first == sorted(first)
    hits = index.search(["vs1"], None, "how are refunds processed?", 5)
    assert [h.file_id for h in hits] == ["f2", "f1"] and hits[0].score > hits[1].score
    assert [(h.file_id, h.seq) for h in index.search(["vs1"], None, "free shipping", 5)] == [("f1", 1)]
    assert [h.file_id for h in index.search(["vs1"], ["f1"], "refund", 5)] == ["f1"]
    assert index.search(["vs1"], None, "it's ' \\ quotes", 5)[0].text.startswith("Quotes")
    assert index.search(["vs1"], [], "refund", 5) == [] and index.search([], None, "refund", 5) == []
    assert index.chunk_texts(first[:1]) == {first[0]: ("f1", 0, "The refund policy allows returns within 30 days.")}


def test_removed_files_and_stores_are_not_found(index):
    index.add("vs1", "f1", [("refund policy", 2)])
    index.add("vs2", "f2", [("refund policy", 2)])
    index.remove("vs1", "f1")
    assert [h.file_id for h in index.search(["vs1", "vs2"], None, "refund", 5)] == ["f2"]
    index.remove_store("vs2")
    assert index.search(["vs1", "vs2"], None, "refund", 5) == []
