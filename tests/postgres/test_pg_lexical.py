"""file_search's lexical index on PostgreSQL behaves like the SQLite one: the stores and files
asked, the better chunk first, removal. Runs once ``asstctl.server.retrieval`` (file_search) is
part of the tree."""

from __future__ import annotations

import pytest

from asstctl.server.store import open_store
from asstctl.server.store.pg_schema import MIGRATIONS

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


def test_a_filtered_search_walks_past_the_first_thousand_chunks(postgres_url):
    """1,200 chunks all matching, the passing files' chunks ranked last: the filtered ranking is the
    unfiltered one less the failing files' chunks (ties in chunk id order), each file judged once,
    and asking for fewer only truncates it."""
    from asstctl.server.retrieval.filter_sql import FileFilter, passes
    from asstctl.server.retrieval.search import Retriever

    store = open_store(postgres_url)
    try:
        retriever, records = Retriever(store), {}
        with store.transaction():
            for n in range(40):
                records[f"file-{n:02d}"] = {"id": f"file-{n:02d}", "object": "vector_store.file", "status": "completed",
                                            "created_at": 1, "vector_store_id": "vs_1", "attributes": {"keep": n in (7, 31)}}
                store.insert("vector_store_file", records[f"file-{n:02d}"], "vs_1")
        for n, name in enumerate(records):  # the kept files' chunks say "parcel" once, the others 2 to 6 times
            retriever.index("vs_1", name, [(("parcel " * (1 if n in (7, 31) else 2 + (n + i) % 5)) + f"depot {n} {i}", 9)
                                           for i in range(30)], None)
        rule = {"type": "eq", "key": "keep", "value": True}
        everything = retriever.lexical.search(["vs_1"], None, "parcel", 2000)
        assert len(everything) == 1200
        expected = [h.chunk_id for h in everything if passes(records[h.file_id], rule)]
        assert len(expected) == 60 and everything.index(next(h for h in everything if h.chunk_id == expected[0])) >= 1000
        where = FileFilter(rule, store)
        got = retriever.lexical.search(["vs_1"], None, "parcel", 50, where)
        assert [h.chunk_id for h in got] == expected[:50]
        assert all(h.text.startswith("parcel depot") for h in got)
        assert len(where._judged) == 40  # each file judged once, however many of its chunks were read
        fewer = retriever.lexical.search(["vs_1"], None, "parcel", 5, FileFilter(rule, store))
        assert [h.chunk_id for h in fewer] == expected[:5]
        assert retriever.lexical.search(["vs_1"], None, "parcel", 50, FileFilter({"type": "eq", "key": "keep",
                                                                                     "value": "no"}, store)) == []
    finally:
        store.close()


def test_a_large_index_leaves_common_words_out_and_a_small_store_still_finds_them(index):
    """Past ``PRUNE_FROM`` chunks a word in most of them ("parcel") is left out when a rarer one
    remains, as on SQLite (else the chunks saying "parcel" six times would outrank those with the
    rare word); when the rare words find too few chunks the common ones come back rarest first; a
    small store sharing only the common word still finds it."""
    from asstctl.server.retrieval.lexical import PRUNE_FROM

    per_file = 2_000
    for n in range(PRUNE_FROM // per_file + 1):
        index.add("vs_big", f"file-{n}", [("parcel " * (6 if i % 50 == 0 else 1) + ("depot " if i % 40 == 0 else "")
                                           + f"number {n}-{i} zebra{i % 400}", 5) for i in range(per_file)])
    small = index.add("vs_small", "file-s", [("a parcel for the depot", 5), ("the depot opens at nine", 5)])
    hits = index.search(["vs_big"], None, "parcel zebra7", 10)
    assert len(hits) == 10 and all("zebra7 " in h.text + " " for h in hits)
    # 55 chunks say zebra7: for 100, the rarer of the common words ("depot", 2.5 %) comes back, not "parcel"
    wider = index.search(["vs_big"], None, "parcel depot zebra7", 100)
    assert len(wider) == 100 and all("zebra7 " in h.text + " " or "depot" in h.text for h in wider)
    assert {h.chunk_id for h in hits} <= {h.chunk_id for h in wider}
    found = index.search(["vs_small"], None, "parcel zebra7", 10)
    assert [h.chunk_id for h in found] == small[:1] and found[0].text == "a parcel for the depot"


def test_the_word_counts_follow_the_chunks_through_adds_and_removals(index, postgres_url):
    """``retrieval_terms`` (how many chunks hold each lexeme, read by the pruning) plus the chunks not
    folded in yet stays what ``ts_stat`` counts over the chunks, after adds (small ones left past the
    mark, a large one folding them in), a file's removal (folded or not) and a store's; a word no
    chunk holds any more leaves it."""
    from collections import Counter

    from asstctl.server.retrieval.pg_lexical import FOLD_AT

    def counts():
        with index.store.sql() as conn:
            kept = Counter(dict(conn.execute("SELECT lexeme, chunks FROM retrieval_terms").fetchall()))
            kept.update(dict(conn.execute("SELECT word, ndoc FROM ts_stat('SELECT tsv FROM retrieval_chunks "
                                          "WHERE id > (SELECT upto FROM retrieval_terms_upto)')").fetchall()))
            exact = dict(conn.execute("SELECT word, ndoc FROM ts_stat('SELECT tsv FROM retrieval_chunks')").fetchall())
        return dict(kept), exact

    def unfolded():
        with index.store.sql() as conn:
            return conn.execute("SELECT count(*) FROM retrieval_chunks "
                                "WHERE id > (SELECT upto FROM retrieval_terms_upto)").fetchone()[0]

    index.add("vs1", "f1", [("Parcels ship daily; the parcel depot", 6), ("depot hours", 2)])
    index.add("vs1", "f2", [("a zebra crossing near the depot", 6)])
    index.add("vs2", "f3", [("parcel zebra parcel", 3), ("quokka", 1)])
    kept, exact = counts()
    assert kept == exact and kept["parcel"] == 2 and kept["depot"] == 3 and kept["zebra"] == 2
    with index.store.sql() as conn:  # a database from before the table: the migration counts what is there
        conn.execute("DROP TABLE retrieval_terms")
        conn.execute("DROP TABLE retrieval_changes")  # (made by the later migration 5: run again too)
        conn.execute("DELETE FROM asstctl_schema WHERE version >= %s",
                     (next(n for n, script in enumerate(MIGRATIONS, 1) if "TABLE retrieval_terms" in script),))
    open_store(postgres_url).close()
    assert counts() == (kept, exact) and unfolded() == 0
    index.add("vs3", "f4", [("quokka parcel", 2)])
    assert unfolded() == 1 and counts()[0] == counts()[1]
    assert [h.file_id for h in index.search(["vs3"], None, "quokka parcel", 5)] == ["f4"]
    index.remove_store("vs3")  # never folded in: nothing to take off
    assert counts() == (kept, exact)
    index.add("vs3", "f5", [("quokka", 1)])
    index.add("vs3", "f6", [(f"quokka number {n}", 3) for n in range(FOLD_AT)])  # folds f5 in too
    assert unfolded() == 0 and counts()[0] == counts()[1] and counts()[0]["quokka"] == FOLD_AT + 2
    index.remove_store("vs3")
    assert counts() == (kept, exact)
    index.remove("vs1", "f1")
    kept, exact = counts()
    assert kept == exact and kept["parcel"] == 1 and "hour" not in kept and "daili" not in kept
    index.remove_store("vs2")
    kept, exact = counts()
    assert kept == exact == {"zebra": 1, "cross": 1, "near": 1, "depot": 1}
    index.remove("vs1", "f2")
    assert counts() == ({}, {})
