"""The lexical index of a large database leaves very common words out of a query for speed; a small
store beside a large one must still find what it shares with the query (only those common words)."""

from __future__ import annotations

from asstctl.server.retrieval.lexical import PRUNE_FROM, SqliteLexicalIndex
from asstctl.server.store import Store


def test_a_small_store_in_a_large_database_finds_the_words_left_out_for_speed():
    store = Store(":memory:")
    index = SqliteLexicalIndex(store)
    per_file = 2_000
    for n in range(PRUNE_FROM // per_file + 1):  # one big store: every chunk says "parcel"
        index.add("vs_big", f"file-{n}", [(f"parcel number {n}-{i} zebra{i % 400}", 5) for i in range(per_file)])
    small = index.add("vs_small", "file-s", [("a parcel for the depot", 5), ("the depot opens at nine", 5)])
    hits = index.search(["vs_big"], None, "parcel zebra7", 10)  # the big store: the rare word decides
    assert hits and all("zebra7" in h.text for h in hits)
    found = index.search(["vs_small"], None, "parcel zebra7", 10)  # "zebra7" is not in the small store
    assert [h.chunk_id for h in found] == small[:1] and found[0].text == "a parcel for the depot"
