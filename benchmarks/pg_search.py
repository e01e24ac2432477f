"""Search on PostgreSQL through the HTTP endpoint (part of ``--only vector_stores``).

The same stores as ``vector_store_scale`` (10,000 files / 100,000 chunks and 20 files beside them,
written as attaching leaves them, every chunk with a 256-dim vector) in a fresh schema of a
PostgreSQL cluster (``ASSTCTL_BENCH_POSTGRES_URL``, else a throwaway cluster like the tests' one, as
``benchmarks.replicas`` gets it), served by one replica: p95 of ``POST /v1/vector_stores/{id}/search``
over the same queries, lexical (PostgreSQL full-text search, ``pg_lexical``), hybrid (with the
scripted embedder on loopback) and with the attribute filter (``FILTER``), against the same targets
as SQLite's rows. Without PostgreSQL the rows are n/a.
"""

from __future__ import annotations

import statistics

from benchmarks.common import Row, Size, ratio, verdict


def pg_search_rows(size: Size, files: int, per_file: int, asked: list[str]) -> list[Row]:
    from benchmarks.replicas import URL_ENV, drop, fresh, postgres
    from benchmarks.retrieval import p95
    from benchmarks.vector_store_scale import (FILTERED_TARGET, HYBRID_TARGET_MS, LEXICAL_TARGET_MS, SMALL_FILES,
                                               build, measure)

    name = f"PostgreSQL search through the HTTP endpoint, {files:,} files / {files * per_file:,} chunks"
    targets = (("lexical", LEXICAL_TARGET_MS), ("hybrid", HYBRID_TARGET_MS))
    with postgres() as base:
        if base is None:
            why = f"n/a (no PostgreSQL: set {URL_ENV} or install postgresql)"
            return [Row(f"{name}: {kind} p95", why, "-", "-", f"p95 under {target:.0f} ms", None) for kind, target in targets]
        made: list[str] = []
        try:
            url = fresh(base, made)
            build_s = build(url, {"vs_big": files, "vs_small": SMALL_FILES}, per_file)
            settle(url)
            times = {kind: measure(url, asked, 0, embeddings=kind == "hybrid")[0] for kind, _ in targets}
        finally:
            drop(base, made)
    data = {"files": files, "chunks": files * per_file, "build_s": build_s, **times}
    rows = []
    for kind, target in targets:
        big, small = p95(times[kind]["vs_big"]), p95(times[kind]["vs_small"])
        rows.append(Row(f"{name}: {kind} p95", f"{big:.1f} ms (median {statistics.median(times[kind]['vs_big']):.1f} ms)",
                        f"{small:.1f} ms ({SMALL_FILES} files)", f"{ratio(big, small):.1f}x the small store",
                        f"p95 under {target:.0f} ms", verdict(size, big < target), data))
    for kind, _ in targets:
        filtered, plain = p95(times[kind]["filtered"]), p95(times[kind]["vs_big"])
        rows.append(Row(f"{name}: {kind} p95 with an attribute filter (~13 % of the files pass)",
                        f"{filtered:.1f} ms (median {statistics.median(times[kind]['filtered']):.1f} ms)",
                        f"{plain:.1f} ms (unfiltered)", f"{ratio(filtered, plain):.2f}x unfiltered",
                        f"at most {FILTERED_TARGET}x unfiltered", verdict(size, filtered <= FILTERED_TARGET * plain), data))
    return rows


def settle(url: str) -> None:
    """What autovacuum does soon after a bulk load (visibility map, hint bits, statistics), done now."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")


def pg_order_row() -> Row:
    """nDCG@10 of the lexical search as served on PostgreSQL (``ts_rank_cd``) against SQLite FTS5's
    ``bm25()`` order, on the retrieval benchmark's 74 labelled questions, with a paired bootstrap 95 %
    interval of the difference."""
    import random

    from benchmarks.replicas import URL_ENV, drop, fresh, postgres
    from benchmarks.retrieval_quality import bm25_ranking, build, load_corpus, ndcg10, served_ranking

    from asstctl.server.store import Store, open_store

    name = "retrieval quality on PostgreSQL: lexical order as served (ts_rank_cd, length-normalized), nDCG@10"
    target = "not below SQLite's bm25() order (the issue's bar)"
    docs, questions = load_corpus()
    labels = [doc for _, doc in questions]
    retriever, vs_id, names = build(Store(":memory:"), docs)
    bm25 = ndcg10([bm25_ranking(retriever, vs_id, names, q) for q, _ in questions], labels)
    with postgres() as base:
        if base is None:
            return Row(name, f"n/a (no PostgreSQL: set {URL_ENV} or install postgresql)", "-", "-", target, None)
        made: list[str] = []
        try:
            store = open_store(fresh(base, made))
            retriever, vs_id, names = build(store, docs)
            pg = ndcg10([served_ranking(retriever, vs_id, names, q) for q, _ in questions], labels)
            store.close()
        finally:
            drop(base, made)
    rng, n = random.Random(1), len(labels)
    diffs = sorted(sum(pg[i] - bm25[i] for i in picks) / n
                   for picks in ([rng.randrange(n) for _ in range(n)] for _ in range(2000)))
    mean_pg, mean_bm25 = sum(pg) / n, sum(bm25) / n
    return Row(f"{name} ({n} questions)", f"{mean_pg:.3f}", f"{mean_bm25:.3f} (SQLite FTS5 bm25() order)",
               f"{mean_pg - mean_bm25:+.3f} (95 % CI {diffs[50]:+.3f} to {diffs[1949]:+.3f})", target,
               mean_pg >= mean_bm25 - 1e-9, {"postgres": mean_pg, "bm25": mean_bm25, "ci": (diffs[50], diffs[1949])})
