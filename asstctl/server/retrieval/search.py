"""Ingestion and search over vector stores: the :class:`Retriever` the routes and the
``file_search`` tool share.

Search runs every query through the lexical index and, when embeddings are configured, the dense
index; the rankings are fused by reciprocal rank fusion (RRF, k = 60). Every ranking draws the same
``POOL`` candidates whatever ``max_num_results`` is, so asking for fewer results only truncates the
list (the top 10 of 50 are the 10 asked alone).

With one ranking (lexical only, one query) the order is FTS5's ``bm25()`` order, untouched: a
re-scoring by query-word coverage lost nDCG@10 against it (docs/benchmarks.md). The score shown is
``(coverage + s / (s + 8)) / 2``, where ``coverage`` is the share of the query's content words found
in the chunk and ``s`` its BM25 (BM25 alone is near 0 in a store of a few files, where every word is
rare), capped by the score of the result above it so that scores never rise down the list.
With several rankings the RRF sum is divided by its maximum (first in every ranking = 1.0).
``score_threshold`` drops results below it; ``max_num_results`` keeps the best ones.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from asstctl.server.retrieval import chunking
from asstctl.server.retrieval.dense import SqliteDenseIndex
from asstctl.server.retrieval.embeddings import Embedder, EmbeddingsError
from asstctl.server.retrieval.filter_sql import FileFilter
from asstctl.server.retrieval.lexical import SqliteLexicalIndex, query_terms

RRF_K = 60
POOL = 50  # candidates per ranking: the API's largest max_num_results
BM25_HALF = 8.0  # the BM25 score reported as 0.5
SCORE_FLOOR = 1e-6  # the least score a lexical hit shows (every hit matched a query word)
_LOCK = threading.Lock()


@dataclass
class Ingested:
    status: str  # "completed" | "failed"
    last_error: dict[str, str] | None = None
    chunks: int = 0


@dataclass
class Result:
    file_id: str
    seq: int
    text: str
    score: float


def rewrite(query: str) -> str:
    """The query as search keywords: its content words (question words and stopwords dropped)."""
    return " ".join(query_terms(query)) or query


def lexical_index(store):
    """The store's lexical index: FTS5 on SQLite, full-text search (tsvector, GIN) on PostgreSQL."""
    if getattr(store, "backend", None) == "postgres":
        from asstctl.server.retrieval.pg_lexical import PostgresLexicalIndex

        return PostgresLexicalIndex(store)
    return SqliteLexicalIndex(store)


def dense_index(store):
    """The store's dense index (vectors in its database, searched in memory with numpy)."""
    if getattr(store, "backend", None) == "postgres":
        from asstctl.server.retrieval.pg_dense import PostgresDenseIndex

        return PostgresDenseIndex(store)
    return SqliteDenseIndex(store)


class Retriever:
    def __init__(self, store, embeddings=None, *, lexical=None, dense=None):
        self.store = store
        self.lexical = lexical or lexical_index(store)
        self.dense = dense or dense_index(store)
        self.embedder = Embedder(embeddings) if embeddings is not None else None

    # ------------------------------------------------------------------ ingestion

    def ingest(self, store_id: str, file_id: str, filename: str, data: bytes, strategy: dict[str, Any] | None) -> Ingested:
        """(Re)index one file of a store in this thread (the server uses its worker pool instead,
        ``asstctl.server.ingestion``); a file we cannot read ends ``failed`` with ``last_error``."""
        from asstctl.server.retrieval.pool import run_job

        self.remove(store_id, file_id)
        done = run_job({"filename": filename, "data": data, "sizes": chunking.sizes(strategy)})
        if done[0] != "ok":
            return Ingested("failed", {"code": done[1], "message": done[2]})
        pieces = done[1]
        vectors = None
        if self.embedder is not None:
            try:
                vectors = self.embedder.embed([piece for piece, _ in pieces], [tokens for _, tokens in pieces])
            except EmbeddingsError as exc:
                return Ingested("failed", {"code": "server_error", "message": str(exc)})
        self.index(store_id, file_id, pieces, vectors)
        return Ingested("completed", None, len(pieces))

    def index(self, store_id: str, file_id: str, pieces: list[tuple[str, int]], vectors, model: str | None = None) -> None:
        """Replace a file's chunks (and their vectors, when given) in the indexes; call inside a transaction."""
        with self.store.transaction():
            self.remove(store_id, file_id)
            ids = self.lexical.add(store_id, file_id, pieces)
            if vectors is not None:
                self.dense.add(store_id, file_id, model or self.embedder.model, ids, vectors)

    def remove(self, store_id: str, file_id: str) -> None:
        with self.store.transaction():
            self.dense.remove(store_id, file_id)
            self.lexical.remove(store_id, file_id)

    def remove_store(self, store_id: str) -> None:
        with self.store.transaction():
            self.dense.remove_store(store_id)
            self.lexical.remove_store(store_id)

    # ------------------------------------------------------------------ search

    def search(
        self,
        store_ids: list[str],
        queries: list[str],
        *,
        max_num_results: int = 10,
        score_threshold: float = 0.0,
        file_ids: list[str] | None = None,
        filters: dict[str, Any] | None = None,
    ) -> list[Result]:
        """The best chunks of ``store_ids`` (restricted to ``file_ids`` when given) for ``queries``;
        ``filters`` (attribute filters, ``filters.check_filter``) are evaluated in SQL, joined with the
        ranking (``filter_sql``): only the records of the files ranked are read."""
        pool = max(POOL, max_num_results)  # never depends on max_num_results within the API's range
        where = FileFilter(filters, self.store) if filters else None
        rankings: list[list[int]] = []
        texts: dict[int, tuple[str, int, str]] = {}
        single: dict[int, float] = {}
        for query in queries:
            hits = self.lexical.search(store_ids, file_ids, query, pool, where)
            rankings.append([h.chunk_id for h in hits])
            texts.update({h.chunk_id: (h.file_id, h.seq, h.text) for h in hits})
            single = shown_scores(query_terms(query), hits)
        if self.embedder is not None and queries:
            vectors = self.embedder.embed(queries)
            for vector in vectors:
                rankings.append([cid for cid, _ in self.dense.search(store_ids, file_ids, self.embedder.model, vector, pool, where)])
        if len(rankings) == 1:
            ordered = list(single.items())  # BM25's order (ties keep it)
        else:
            ordered = sorted(fuse(rankings).items(), key=lambda pair: (-pair[1], pair[0]))
        ordered = [(cid, round(s, 6)) for cid, s in ordered if s > 0 and s >= score_threshold][:max_num_results]
        missing = [cid for cid, _ in ordered if cid not in texts]
        texts.update(self.lexical.chunk_texts(missing))
        return [Result(texts[cid][0], texts[cid][1], texts[cid][2], s) for cid, s in ordered if cid in texts]


def shown_scores(terms: list[str], hits: list) -> dict[int, float]:
    """The scores of one lexical ranking, in its (BM25) order: coverage and BM25 blended into
    [0, 1], each capped by the one above it (the order is BM25's; the score never rises)."""
    shown: dict[int, float] = {}
    cap = 1.0
    for hit in hits:
        cap = min(cap, max(SCORE_FLOOR, (coverage(terms, hit.text) + hit.score / (hit.score + BM25_HALF)) / 2))
        shown[hit.chunk_id] = cap
    return shown


def coverage(terms: list[str], text: str) -> float:
    """Share of ``terms`` found in ``text`` (a term matches a word starting with its stem-ish prefix)."""
    if not terms:
        return 0.0
    lowered = text.lower()
    return sum(1 for t in terms if t[: max(3, len(t) - 2)] in lowered) / len(terms)


def fuse(rankings: list[list[int]], k: int = RRF_K) -> dict[int, float]:
    """Reciprocal rank fusion, normalised so that first place in every ranking scores 1.0."""
    total: dict[int, float] = {}
    for ranking in rankings:
        for rank, cid in enumerate(ranking, 1):
            total[cid] = total.get(cid, 0.0) + 1.0 / (k + rank)
    best = len(rankings) / (k + 1)
    return {cid: min(1.0, s / best) for cid, s in total.items()}


def retriever_of(state) -> Retriever:
    """The server's retriever (built once, on the store, with ``state.config.embeddings``)."""
    retriever = state.extra.get("retriever")
    if retriever is None:
        with _LOCK:
            retriever = state.extra.get("retriever")
            if retriever is None:
                retriever = Retriever(state.store, getattr(state.config, "embeddings", None))
                state.extra["retriever"] = retriever
    return retriever
