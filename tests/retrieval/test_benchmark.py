"""The retrieval benchmark runs at the small size, and its labelled corpus is well formed.
Timings are never asserted here (docs/benchmarks.md has the measured figures)."""

from __future__ import annotations

from benchmarks.common import SIZES
from benchmarks.retrieval import retrieval_rows
from benchmarks.vector_store_scale import scale_rows
from benchmarks.retrieval_quality import load_corpus, score, term_overlap_search


def test_the_corpus_has_enough_documents_questions_and_distractors():
    docs, questions = load_corpus()
    assert len(docs) >= 30 and len(questions) >= 50
    answered = {doc for _, doc in questions}
    assert len(answered) >= 25
    # every topic has a near-duplicate: a document sharing its first heading word
    heads = [text.splitlines()[0].lower() for text in docs.values()]
    assert len(set(heads)) == len(heads)


def test_metrics_count_ranks():
    result = score([["a", "b"], ["c", "a"], ["x"] * 6 + ["a"]], ["a", "a", "a"])
    assert (result.recall1, result.recall5) == (1 / 3, 2 / 3)
    assert abs(result.mrr - (1 + 0.5 + 1 / 7) / 3) < 1e-9


def test_the_baseline_is_the_old_term_overlap_search():
    docs = {"a.md": "refunds take five days", "b.md": "refunds and returns take ten days"}
    assert term_overlap_search(docs, "returns refunds") == ["b.md", "a.md"]


def test_every_retrieval_row_runs_at_the_small_size():
    rows = retrieval_rows(SIZES["small"])
    names = [row.name for row in rows]
    assert len(rows) == 7 and len(set(names)) == 7, names
    lexical = rows[0]
    assert lexical.data["lexical"]["recall5"] >= 0.9 and lexical.passed is True
    assert rows[2].passed is None  # hybrid vs lexical is judged only with a real embedding model
    order = rows[3].data["ndcg"]  # the lexical order as served is FTS5's bm25() order
    assert rows[3].passed is True and abs(order["served"] - order["bm25"]) < 1e-9, rows[3].measured
    assert "2,000 chunks" in rows[4].name and rows[4].passed is None and rows[5].passed is None
    assert rows[6].measured.endswith("MB/s")


def test_the_vector_store_rows_run_at_the_small_size():
    rows = scale_rows(SIZES["small"])  # through the HTTP API: search in a big and a small store, attach
    assert [row.name.split(":")[-1].strip() for row in rows[:2]] == ["lexical p95", "hybrid p95"]
    order = next(row for row in rows if row.name.startswith("lexical top 10 as served"))
    assert order.passed is True and order.data == {"same": 10, "queries": 10}  # against an SQL ORDER BY bm25()
    assert all(row.passed is None for row in rows if row is not order), "timing targets are not judged at the small size"
    data = rows[0].data
    assert (data["files"], data["chunks"]) == (100, 500)
    assert len(data["lexical"]["vs_big"]) == len(data["hybrid"]["vs_big"]) == 10
    assert len(data["attach"]["vs_big"]) == len(data["attach"]["vs_empty"]) == 4
    during = rows[-1].data  # hybrid searches while files are attached: incremental, then reloaded whole
    assert rows[-1].name.startswith("hybrid search during ingestion") and (len(during["after"]["ms"]), len(during["before"]["ms"])) == (6, 2)
    assert during["after"]["attached"] >= 6 and during["after"]["incremental"] and not during["before"]["incremental"]
