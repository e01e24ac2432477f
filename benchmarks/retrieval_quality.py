"""Retrieval quality: recall@1, recall@5 and MRR of the labelled questions in
``benchmarks/retrieval_corpus`` for four rankings of documents:

- **term overlap** (the baseline): a copy of the scoring vector store search used before
  retrieval existed: the share of the query's terms found in each ~800-word chunk, ties in file order;
- **lexical**: the retriever's BM25 (SQLite FTS5);
- **dense**: embeddings only (cosine over the dense index), through a loopback ``/embeddings``;
- **hybrid**: BM25 and dense fused by reciprocal rank fusion (what the server does with embeddings).

A question counts as found at rank r when its labelled document is the r-th distinct file.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import yaml

CORPUS = Path(__file__).resolve().parent / "retrieval_corpus"
DEPTH = 20  # results asked per question


@dataclass
class Scores:
    recall1: float
    recall5: float
    mrr: float

    def text(self) -> str:
        return f"R@1 {self.recall1:.2f}, R@5 {self.recall5:.2f}, MRR {self.mrr:.3f}"


def load_corpus() -> tuple[dict[str, str], list[tuple[str, str]]]:
    docs = {p.name: p.read_text() for p in sorted((CORPUS / "docs").glob("*.md"))}
    questions = [(item["q"], item["doc"]) for item in yaml.safe_load((CORPUS / "questions.yaml").read_text())["questions"]]
    missing = {doc for _, doc in questions} - set(docs)
    if missing:
        raise SystemExit(f"questions.yaml names documents that do not exist: {sorted(missing)}")
    return docs, questions


def score(rankings: list[list[str]], labels: list[str]) -> Scores:
    r1 = r5 = rr = 0.0
    for ranking, label in zip(rankings, labels):
        rank = ranking.index(label) + 1 if label in ranking else None
        r1 += rank == 1
        r5 += rank is not None and rank <= 5
        rr += 1 / rank if rank else 0.0
    n = len(labels)
    return Scores(r1 / n, r5 / n, rr / n)


def distinct(names: list[str]) -> list[str]:
    return list(dict.fromkeys(names))


# --------------------------------------------------------------------------- the baseline (old search)


def old_terms(text: str) -> set[str]:
    return set(re.findall(r"[a-z0-9]+", text.lower()))


def old_chunks(text: str, words: int = 800) -> list[str]:
    split = text.split()
    return [" ".join(split[i : i + words]) for i in range(0, len(split), words)]


def term_overlap_search(docs: dict[str, str], query: str, limit: int = DEPTH) -> list[str]:
    """Today's search before retrieval: score = share of query terms in a chunk; stable sort."""
    wanted = old_terms(query)
    results = []
    for name, text in docs.items():
        for chunk in old_chunks(text):
            value = len(wanted & old_terms(chunk)) / len(wanted) if wanted else 0.0
            if value > 0:
                results.append((name, value))
    results.sort(key=lambda r: -r[1])
    return [name for name, _ in results[:limit]]


# --------------------------------------------------------------------------- ours


def build(store, docs: dict[str, str], embeddings=None):
    """A retriever over one vector store holding every document; returns (retriever, store id, names)."""
    from asstctl.server.retrieval.search import Retriever

    retriever = Retriever(store, embeddings)
    names = {}
    for n, (name, text) in enumerate(docs.items()):
        file_id = f"file-{n:04d}"
        names[file_id] = name
        done = retriever.ingest("vs_bench", file_id, name, text.encode(), None)
        if done.status != "completed":
            raise SystemExit(f"could not ingest {name}: {done.last_error}")
    return retriever, "vs_bench", names


def lexical_ranking(retriever, vs_id: str, names: dict[str, str], query: str) -> list[str]:
    hits = retriever.lexical.search([vs_id], None, query, DEPTH)
    return distinct([names.get(h.file_id, h.file_id) for h in hits])


def bm25_ranking(retriever, vs_id: str, names: dict[str, str], query: str) -> list[str]:
    """FTS5's own ``ORDER BY bm25()`` over the store's chunks: one SQL query of the index, independent
    of the search code (its pruning, its candidate pool); the words are the search's content words."""
    from asstctl.server.retrieval.lexical import fts_query, query_terms

    sql = ("SELECT c.file_id FROM retrieval_fts f JOIN retrieval_chunks c ON c.id = f.rowid WHERE retrieval_fts MATCH ? "
           "AND c.store_id = ? ORDER BY bm25(retrieval_fts), c.id LIMIT ?")
    with retriever.store.sql() as db:
        rows = db.execute(sql, (fts_query(query_terms(query)), vs_id, DEPTH)).fetchall()
    return distinct([names.get(file_id, file_id) for (file_id,) in rows])


def dense_ranking(retriever, vs_id: str, names: dict[str, str], query: str) -> list[str]:
    (vector,) = retriever.embedder.embed([query])
    found = retriever.dense.search([vs_id], None, retriever.embedder.model, vector, DEPTH)
    texts = retriever.lexical.chunk_texts([cid for cid, _ in found])
    return distinct([names.get(texts[cid][0], texts[cid][0]) for cid, _ in found])


def hybrid_ranking(retriever, vs_id: str, names: dict[str, str], query: str) -> list[str]:
    return distinct([names.get(r.file_id, r.file_id) for r in retriever.search([vs_id], [query], max_num_results=DEPTH)])


def quality(embed, model_name: str) -> dict[str, Scores]:
    """Scores of the four rankings; ``embed`` serves the loopback /embeddings."""
    from asstctl.server.retrieval.embeddings import EmbeddingsConfig
    from asstctl.server.store import Store
    from benchmarks.embeddings_server import serve_embeddings

    docs, questions = load_corpus()
    labels = [doc for _, doc in questions]
    out = {"term overlap": score([term_overlap_search(docs, q) for q, _ in questions], labels)}
    with serve_embeddings(embed) as url:
        config = EmbeddingsConfig(model=model_name, base_url=url, api_key_env="ASSTCTL_BENCH_NO_KEY")
        retriever, vs_id, names = build(Store(":memory:"), docs, config)
        for label, ranking in (("lexical", lexical_ranking), ("dense", dense_ranking), ("hybrid", hybrid_ranking)):
            out[label] = score([ranking(retriever, vs_id, names, q) for q, _ in questions], labels)
    return out


# --------------------------------------------------------------------------- lexical order: nDCG@10


def ndcg10(rankings: list[list[str]], labels: list[str]) -> list[float]:
    """nDCG@10 per question with one relevant document: 1 / log2(rank + 1) within the top 10."""
    import math

    return [1 / math.log2(r.index(label) + 2) if label in r[:10] else 0.0 for r, label in zip(rankings, labels)]


def rescored_ranking(retriever, vs_id: str, names: dict[str, str], query: str) -> list[str]:
    """The order the search had before: BM25 hits re-sorted by ``(coverage + s / (s + 8)) / 2``."""
    from asstctl.server.retrieval.lexical import query_terms
    from asstctl.server.retrieval.search import BM25_HALF, POOL, coverage

    terms = query_terms(query)
    hits = retriever.lexical.search([vs_id], None, query, POOL)
    hits.sort(key=lambda h: -(coverage(terms, h.text) + h.score / (h.score + BM25_HALF)) / 2)
    return distinct([names.get(h.file_id, h.file_id) for h in hits])


def served_ranking(retriever, vs_id: str, names: dict[str, str], query: str) -> list[str]:
    return distinct([names.get(r.file_id, r.file_id) for r in retriever.search([vs_id], [query], max_num_results=DEPTH)])


def lexical_order(distractors: int = 0) -> dict[str, object]:
    """nDCG@10 of the lexical search as served (no embeddings), FTS5's ``bm25()`` order (an SQL query
    of the index, ``bm25_ranking``) and the old coverage re-scoring, with paired bootstrap 95 %
    intervals of served minus re-scored (``ci``) and of served minus ``bm25()`` (``ci_bm25``).
    ``distractors``: that many more chunks in the same store, of words drawn from the corpus's own
    (as often as they occur there), so that past ``PRUNE_FROM`` chunks the search's pruning is what
    is measured: its common words are the corpus's common words."""
    import random

    from asstctl.server.store import Store

    docs, questions = load_corpus()
    labels = [doc for _, doc in questions]
    store = Store(":memory:")
    retriever, vs_id, names = build(store, docs)
    if distractors:
        add_distractors(retriever, vs_id, docs, distractors)
    per = {label: ndcg10([ranking(retriever, vs_id, names, q) for q, _ in questions], labels)
           for label, ranking in (("served", served_ranking), ("bm25", bm25_ranking), ("rescored", rescored_ranking))}
    rng, n = random.Random(1), len(labels)
    samples = [[rng.randrange(n) for _ in range(n)] for _ in range(2000)]

    def interval(other: str) -> tuple[float, float]:
        diffs = sorted(sum(per["served"][i] - per[other][i] for i in picks) / n for picks in samples)
        return diffs[50], diffs[1949]

    store.close()
    return {"ndcg": {k: sum(v) / n for k, v in per.items()}, "ci": interval("rescored"), "ci_bm25": interval("bm25"),
            "questions": n, "chunks": distractors}


def add_distractors(retriever, vs_id: str, docs: dict[str, str], count: int, words_per_chunk: int = 80) -> None:
    """``count`` chunks of ``words_per_chunk`` words drawn from the corpus's words, each as often as
    it occurs there, added to the store's lexical index in files of 100 chunks."""
    import random

    words = re.findall(r"[a-z]+", " ".join(docs.values()).lower())
    rng = random.Random(3)
    for start in range(0, count, 100):
        chunks = [(" ".join(rng.choices(words, k=words_per_chunk)), words_per_chunk) for _ in range(min(100, count - start))]
        with retriever.store.transaction():
            retriever.lexical.add(vs_id, f"file-noise-{start // 100}", chunks)
