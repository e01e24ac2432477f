"""Attribute filters evaluated in SQL (``filter_sql``) decide exactly as ``filters.matches`` does, on
SQLite and on PostgreSQL: every comparison against every kind of value, over records with booleans
beside 0/1, ints beside floats, strings beside numbers, keys with quotes and dots, NUL characters,
non-ASCII strings (code-point order, not the database's collation), integers past 2^53 and 2^64 (stored; a filter's integers fit 64 bits, a 400 says so),
missing and null attributes, and files not completed. Then the same through search itself: the
lexical index (both stores) and the dense index keep exactly the files that pass."""

from __future__ import annotations

import itertools

import pytest

from asstctl.server.retrieval.filter_sql import FileFilter, passes
from asstctl.server.retrieval.search import Retriever
from asstctl.server.store import open_store

RECORDS = [
    {"region": "eu", "year": 2024, "public": True, "score": 0.5},
    {"region": "us", "year": 2022.0, "public": False, "score": 1},
    {"region": "EU", "year": "2024", "flag": 1, "one": True},
    {"flag": True, "one": 1, "zero": 0, "no": False},
    {"name": "Zürich"}, {"name": "zebra"}, {"name": "éclair"}, {"name": "Z"}, {"name": ""},
    {'a"b.c': "dots", "$.x": 1, "it's": "quote"},
    {"nul": "x\x00y", "region": "eu"}, {"nul": "x"}, {"nul": "x\x00"},
    {"k\x00": "v", "region": "us"},
    {"big": 10**20}, {"big": 9007199254740993}, {"big": 9007199254740992.0}, {"big": 1e300}, {"big": -1.5},
    {},
    None,
]
KEYS = ["region", "year", "public", "score", "flag", "one", "name", "nul", "big", 'a"b.c', "k\x00", "missing"]
VALUES = ["eu", "EU", "us", "", "x", "x\x00", "x\x00y", "Zürich", "zebra", "Z", "éclair", "2024",
          2024, 2024.0, 2022, 1, 0, 1.0, 0.5, -1.5, 1e20, 2**63 - 1, 9007199254740992, 9007199254740993, 1e300,
          True, False]


def rules():
    for key, op, value in itertools.product(KEYS, ("eq", "ne", "gt", "gte", "lt", "lte"), VALUES):
        yield {"type": op, "key": key, "value": value}
    lists = [[], ["eu", "us"], [1, "eu"], [2024.0, 0.5], ["x\x00y", "x"], [1e20, -1.5, "Z"]]
    for key, op, value in itertools.product(KEYS, ("in", "nin"), lists):
        yield {"type": op, "key": key, "value": value}
    eu, recent = {"type": "eq", "key": "region", "value": "eu"}, {"type": "gte", "key": "year", "value": 2023}
    yield {"type": "and", "filters": [eu, recent]}
    yield {"type": "or", "filters": [eu, {"type": "and", "filters": [recent, {"type": "ne", "key": "public", "value": True}]}]}
    yield {"type": "and", "filters": []}
    yield {"type": "or", "filters": []}


@pytest.fixture(params=["sqlite", "postgres"])
def store(request):
    db = request.getfixturevalue("postgres_url") if request.param == "postgres" else ":memory:"
    opened = open_store(db)
    yield opened
    opened.close()


def add_files(store, vs_id, records, status="completed"):
    ids = {}
    with store.transaction():
        for n, attributes in enumerate(records):
            file_id = f"file-{vs_id}-{status}-{n:03d}"
            record = {"id": file_id, "object": "vector_store.file", "status": status, "created_at": 1,
                      "vector_store_id": vs_id, "attributes": attributes}
            store.insert("vector_store_file", record, vs_id)
            ids[file_id] = record
    return ids


def test_sql_decides_every_comparison_as_python_does(store):
    records = add_files(store, "vs_1", RECORDS)
    records.update(add_files(store, "vs_1", [{"region": "eu", "year": 2024}], status="in_progress"))
    add_files(store, "vs_2", [{"region": "eu"}])  # another store's file never passes
    checked = 0
    for rule in rules():
        expected = {file_id for file_id, record in records.items() if passes(record, rule)}
        assert FileFilter(rule, store).passing("vs_1", list(records)) == expected, rule
        checked += 1
    assert checked > 1500


def test_filtered_search_keeps_exactly_the_passing_files(store):
    retriever = Retriever(store)
    records = add_files(store, "vs_1", RECORDS[:-1])
    for n, file_id in enumerate(records):
        retriever.index("vs_1", file_id, [(f"parcel policy number {n}", 4), (f"parcel depot {n}", 3)], None)
    for rule in ({"type": "eq", "key": "region", "value": "eu"}, {"type": "ne", "key": "region", "value": "eu"},
                 {"type": "gt", "key": "nul", "value": "x"}, {"type": "lt", "key": "name", "value": "z"},
                 {"type": "in", "key": "one", "value": [1]}):
        expected = {file_id for file_id, record in records.items() if passes(record, rule)}
        for max_num_results in (3, 50):
            found = retriever.search(["vs_1"], ["parcel"], max_num_results=max_num_results, filters=rule)
            assert {r.file_id for r in found} <= expected and len(found) == min(max_num_results, 2 * len(expected)), rule
        assert {r.file_id for r in retriever.search(["vs_1"], ["parcel"], max_num_results=50, filters=rule)} == expected


def test_a_filtered_ranking_is_the_unfiltered_one_less_the_failing_files(store):
    retriever = Retriever(store)
    records = add_files(store, "vs_1", [{"keep": n % 37 == 0} for n in range(400)])
    for n, file_id in enumerate(records):  # scores differ by how often "parcel" is said
        retriever.index("vs_1", file_id, [("parcel " * (1 + n % 7) + f"depot {n}", 8), (f"parcel shelf {n}", 3)], None)
    rule = {"type": "eq", "key": "keep", "value": True}
    everything = retriever.lexical.search(["vs_1"], None, "parcel", 5000)
    assert len(everything) == 800
    for limit in (3, 50):  # past the first blocks of the ranking: 11 of 400 files pass
        expected = [h.chunk_id for h in everything if passes(records[h.file_id], rule)][:limit]
        got = retriever.lexical.search(["vs_1"], None, "parcel", limit, FileFilter(rule, store))
        assert [h.chunk_id for h in got] == expected and len(expected) == min(limit, 22)


def test_the_dense_index_walks_past_failing_files():
    import numpy as np

    store = open_store(":memory:")
    retriever = Retriever(store)
    records = add_files(store, "vs_1", [{"keep": n % 97 == 0} for n in range(600)])
    rng = np.random.default_rng(3)
    for file_id in records:
        ids = retriever.lexical.add("vs_1", file_id, [("text", 1)])
        retriever.dense.add("vs_1", file_id, "m", ids, rng.standard_normal((1, 8)).astype(np.float32))
    rule = {"type": "eq", "key": "keep", "value": True}
    found = retriever.dense.search(["vs_1"], None, "m", [1.0] * 8, 10, FileFilter(rule, store))
    texts = retriever.lexical.chunk_texts([cid for cid, _ in found])
    assert {texts[cid][0] for cid, _ in found} == {f for f, r in records.items() if passes(r, rule)}
    assert [s for _, s in found] == sorted((s for _, s in found), reverse=True)
    store.close()
