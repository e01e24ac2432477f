"""The lexical index of a large database leaves very common words out of a query for speed, only
when that provably cannot change the result: past ``PRUNE_FROM`` chunks the served top k is still
FTS5's ``ORDER BY bm25()`` top k, checked here by an independent query of the same index; a small
store beside a large one still finds what it shares with the query (only those common words)."""

from __future__ import annotations

import random
import re

import pytest

from asstctl.server.retrieval.filter_sql import FileFilter
from asstctl.server.retrieval.lexical import PRUNE_FROM, SCORE_BUDGET, SqliteLexicalIndex, fts_query, query_terms
from asstctl.server.store import Store

VOCABULARY = [f"w{n}x" for n in range(400)]
ZIPF = [1 / (rank + 1) for rank in range(len(VOCABULARY))]


@pytest.fixture(scope="module")
def large():
    """``PRUNE_FROM`` + 1,000 chunks of 6 words drawn from a Zipf-like vocabulary (the commonest words are in
    most chunks) in one store, 300 more in a small store, and the small store's two chunks of words
    the big store does not hold but for one common word."""
    store = Store(":memory:")
    index = SqliteLexicalIndex(store)
    rng = random.Random(5)
    for n in range(PRUNE_FROM // 1_000 + 1):  # the big store spans more than PRUNE_FROM rowids
        index.add("vs_big", f"file-{n}", [(" ".join(rng.choices(VOCABULARY, ZIPF, k=6)), 6) for _ in range(1_000)])
        store.insert("vector_store_file", {"id": f"file-{n}", "object": "vector_store.file", "vector_store_id": "vs_big",
                                           "status": "completed", "attributes": {"n": n}}, "vs_big")
    index.add("vs_small", "file-s", [(" ".join(rng.choices(VOCABULARY, ZIPF, k=6)), 6) for _ in range(300)])
    depot = index.add("vs_depot", "file-d", [("a w0x for the depot", 5), ("the depot opens at nine", 5)])
    yield store, index, depot, rng
    store.close()


def test_a_small_store_in_a_large_database_finds_the_words_left_out_for_speed(large):
    store, index, depot, _ = large
    hits = index.search(["vs_big"], None, "w0x w250x", 10)  # the big store: the rare word decides
    assert hits and all("w250x" in h.text for h in hits)
    found = index.search(["vs_depot"], None, "w0x w250x", 10)  # "w250x" is not in the small store
    assert [h.chunk_id for h in found] == depot[:1] and found[0].text == "a w0x for the depot"


def bm25_order(store: Store, store_id: str, query: str, k: int = -1, files: tuple[str, ...] = ()) -> list[tuple[int, float]]:
    """The reference: every chunk of the store (of those files, when given) matching any query
    word, ``ORDER BY bm25()`` (the best ``k``; all by default)."""
    only = f" AND c.file_id IN ({','.join('?' * len(files))})" if files else ""
    sql = ("SELECT c.id, -bm25(retrieval_fts) AS score FROM retrieval_fts f JOIN retrieval_chunks c ON c.id = f.rowid "
           f"WHERE retrieval_fts MATCH ? AND c.store_id = ?{only} ORDER BY score DESC, c.id LIMIT ?")
    with store.sql() as db:
        return db.execute(sql, (fts_query(query_terms(query)), store_id, *files, k)).fetchall()


TIE = 1e-4  # scores closer than this are ties: bm25() gives a word held by half the chunks or more an IDF of
# 1e-6, and the search leaves such words out of its statements (a chunk's score moves by less than 1e-5)


def same_order(got: list, reference: list[tuple[int, float]], k: int) -> bool:
    """The served top ``k`` is a top ``k`` of ``reference`` (every matching chunk, ``ORDER BY bm25()``):
    its chunks' reference scores are the reference's ``k`` best, position by position, to ``TIE``
    (tied chunks in any order), and each score served is its chunk's reference score to ``TIE``."""
    exact = dict(reference)
    if len(got) != min(k, len(reference)) or len({h.chunk_id for h in got}) != len(got):
        return False
    return all(h.chunk_id in exact and abs(exact[h.chunk_id] - reference[n][1]) <= TIE
               and abs(h.score - exact[h.chunk_id]) <= TIE for n, h in enumerate(got))


def test_past_prune_from_chunks_the_served_top_k_is_bm25s_top_k(large):
    """Queries of common words and one rarer word: the served top 10 and top 50 equal the
    reference's, on the big store and on a small store beside it, and so do the
    top 50 of a filter few files pass (the pruning before
    this test failed it)."""
    store, index, _, rng = large
    queries = [" ".join(rng.choices(VOCABULARY[:40], ZIPF[:40], k=rng.randint(2, 4)) + [rng.choice(VOCABULARY[60:300])])
               for _ in range(5)]
    for store_id in ("vs_big", "vs_small"):
        for query in queries:
            expected = bm25_order(store, store_id, query)
            for k in (10, 50):
                assert same_order(index.search([store_id], None, query, k), expected, k), (store_id, query, k)
    rule = {"type": "in", "key": "n", "value": [3, 11]}  # an attribute filter 2 files of 21 pass
    for query in queries[:3]:
        expected = bm25_order(store, "vs_big", query, files=("file-3", "file-11"))
        assert same_order(index.search(["vs_big"], None, query, 50, FileFilter(rule, store)), expected, 50), query



def scored_rows(store: Store, work) -> tuple[int, list[str]]:
    """How many chunks the ``bm25()``-ranked queries ``work()`` sends match in all (each query's
    rows counted apart), and those queries' MATCH expressions."""
    sent: list[str] = []
    with store.sql() as db:
        db.set_trace_callback(sent.append)
        try:
            work()
        finally:
            db.set_trace_callback(None)
        ranked = [re.search(r"MATCH '((?:[^']|'')*)'", sql).group(1).replace("''", "'") for sql in sent if "bm25(" in sql]
        count = "SELECT count(*) FROM retrieval_fts WHERE retrieval_fts MATCH ?"
        return sum(db.execute(count, (match,)).fetchone()[0] for match in ranked), ranked


def test_past_the_score_budget_the_commonest_words_are_left_out_and_the_rare_ones_decide(large):
    """Five common words and a rare one, over ``SCORE_BUDGET``: the common words join the scored
    ones rarest first while the chunks holding them fit; the rest are left out of the chunks scored
    (not of the scores). The answer is ``bm25()``'s order over the chunks holding a scored word
    (here also the unbudgeted order: common words alone do not outrank a rare one), its top holds
    the rare word, and the chunks its ranked queries score add up to at most the budget."""
    store, index, _, _ = large
    query, rare = "w0x w1x w2x w3x w5x w300x", "w300x"
    with store.sql() as db:
        held = {t: db.execute("SELECT count(*) FROM retrieval_fts WHERE retrieval_fts MATCH ?", (f'"{t}"',)).fetchone()[0]
                for t in query_terms(query)}
    scored = [rare]
    for word in sorted(set(held) - {rare}, key=held.__getitem__):
        if sum(held[t] for t in scored) + held[word] > SCORE_BUDGET:
            break
        scored.append(word)
    assert held[rare] < SCORE_BUDGET < sum(held.values()) and len(scored) < len(held)  # the query is over the budget
    everything = bm25_order(store, "vs_big", query)
    with store.sql() as db:
        texts = dict(db.execute(f"SELECT rowid, text FROM retrieval_fts WHERE rowid IN ({','.join('?' * len(everything))})",
                                [cid for cid, _ in everything]).fetchall())
    holding = [(cid, score) for cid, score in everything if set(texts[cid].split()) & set(scored)]
    hits = index.search(["vs_big"], None, query, 50)
    assert same_order(hits, holding, 50) and same_order(hits, everything, 50)
    assert all(rare in h.text.split() for h in hits[:10])
    rows, sent = scored_rows(store, lambda: index.search(["vs_big"], None, query, 50))
    assert 0 < rows <= SCORE_BUDGET < len(everything) and len(sent) <= 2, (rows, sent)
    # "w0x" is in more than half the chunks: bm25() weighs it 1e-6, so no statement names it (FTS5
    # would count its ~13,000 chunks for its IDF in each); "w1x" (fewer than half) is still scored
    assert held["w0x"] * 2 >= PRUNE_FROM + 1_300 > held["w1x"] * 2, held
    assert not any('"w0x"' in match for match in sent) and any('"w1x"' in match for match in sent), sent


def test_a_word_that_comes_to_fill_half_the_index_stops_being_scored_after_the_write():
    """The chunk counts behind that choice are kept only until the index's next write: a word in
    fewer than half the chunks is scored; once a write puts it in more than half, it is not."""
    store = Store(":memory:")
    index = SqliteLexicalIndex(store)
    for n in range(PRUNE_FROM // 1_000 + 1):
        index.add("vs", f"file-{n}", [(f"w{m % 50}x {'often' if m % 5 < 2 else 'filler'} {'rare' if m == 7 else ''}", 3)
                                       for m in range(1_000)])
    query = "often rare"

    def named() -> bool:
        _, sent = scored_rows(store, lambda: index.search(["vs"], None, query, 10))
        return any('"often"' in match for match in sent)

    assert named()  # in 40 % of the chunks: it weighs something
    index.add("vs", "more", [("often again", 2)] * 6_000)  # now in 14,400 of 27,000 chunks
    assert not named()
    hits = index.search(["vs"], None, query, 10)
    assert same_order(hits, bm25_order(store, "vs", query), 10) and "rare" in hits[0].text
    store.close()
