"""Vector stores at OpenAI's size, through the HTTP API (``--only vector_stores``).

- **search**: p95 of ``POST /v1/vector_stores/{id}/search`` (the real SDK, loopback) on a store of
  10,000 files and 100,000 chunks (80 generated words each, the retrieval benchmark's Zipf-like
  vocabulary), 200 queries, lexical (a server without embeddings) and hybrid (the same database
  served with embeddings: every chunk has a 256-dim vector, each query is embedded over loopback
  by the scripted embedder). The baseline is the same search on a store of 20 files.
- **lexical order**: the big store's top 10 as served against FTS5's own ``ORDER BY bm25()`` (an
  SQL query of the index), the same for at least ``ORDER_TARGET`` of the queries (``order_row``).
- **filtered search**: the same queries on the 10,000-file store with an attribute filter
  (``FILTER``: region "eu" and year from 2012, about 13 % of the files), p95 against the unfiltered
  p95 of the same run: the filter is evaluated in SQL, joined with the ranking, so its cost must
  not follow the number of files (target: at most ``FILTERED_TARGET`` x the unfiltered p95).
- **attach**: the median time of ``POST /v1/vector_stores/{id}/files`` (a ~1.5 KB Markdown file:
  extraction, chunking, indexing, counts) into the 10,000-file store against an empty store,
  interleaved; the target is flat cost (at most 1.5x).
- **search during ingestion**: hybrid searches of the big store while a thread attaches files to
  it, against the whole-matrix reload of every change (``benchmarks.ingest_search``).
- **PostgreSQL search** (full size only): the same search rows on PostgreSQL, and the nDCG@10 of
  its lexical order against SQLite's ``bm25()`` (``benchmarks.pg_search``).

The large store is written straight into a SQLite file (the store's records and the retriever's
indexes, as attaching would leave them) so the build takes seconds, not an ingestion's minutes.
"""

from __future__ import annotations

import itertools
import random
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.common import Row, Size, ratio, verdict
from benchmarks.ingest_search import during_ingestion_rows
from benchmarks.retrieval import WORDS_PER_CHUNK, p95, queries, vocabulary

LEXICAL_TARGET_MS, HYBRID_TARGET_MS, ATTACH_TARGET, FILTERED_TARGET = 50.0, 80.0, 1.5, 2.0
TIE = 1e-4  # scores closer than this are ties (a word bm25() weighs 1e-6 moves a score by less than 1e-5)
ORDER_TARGET = 0.95  # of the queries whose lexical top 10 is ORDER BY bm25()'s (exact within SCORE_BUDGET)
SMALL_FILES = 20
REGIONS = ("eu", "us", "uk", "apac")
FILTER = {"type": "and", "filters": [{"type": "eq", "key": "region", "value": "eu"},
                                     {"type": "gte", "key": "year", "value": 2012}]}


def scale_rows(size: Size) -> list[Row]:
    full = size.timed_targets
    files, per_file, searches, attaches = (10_000, 10, 200, 40) if full else (100, 5, 10, 4)
    with tempfile.TemporaryDirectory(prefix="asstctl-bench-vs-") as tmp:
        db = str(Path(tmp) / "big.sqlite3")
        build_s = build(db, {"vs_big": files, "vs_small": SMALL_FILES}, per_file)
        asked = queries(searches, random.Random(13))
        order = order_row(db, asked, files * per_file)
        lexical, attach = measure(db, asked, attaches, embeddings=False)
        hybrid, _ = measure(db, asked, 0, embeddings=True)
        during = during_ingestion_rows(size, db, "vs_big", files, files * per_file, asked)
    data = {"files": files, "chunks": files * per_file, "build_s": build_s, "lexical": lexical, "hybrid": hybrid,
            "attach": attach}
    name = f"search through the HTTP endpoint, {files:,} files / {files * per_file:,} chunks"
    rows = []
    for kind, times, target in (("lexical", lexical, LEXICAL_TARGET_MS), ("hybrid", hybrid, HYBRID_TARGET_MS)):
        big, small = p95(times["vs_big"]), p95(times["vs_small"])
        rows.append(Row(f"{name}: {kind} p95", f"{big:.1f} ms (median {statistics.median(times['vs_big']):.1f} ms)",
                        f"{small:.1f} ms ({SMALL_FILES} files)", f"{ratio(big, small):.1f}x the small store",
                        f"p95 under {target:.0f} ms", verdict(size, big < target), data))
    for kind, times in (("lexical", lexical), ("hybrid", hybrid)):
        filtered, plain = p95(times["filtered"]), p95(times["vs_big"])
        rows.append(Row(f"{name}: {kind} p95 with an attribute filter (~13 % of the files pass)",
                        f"{filtered:.1f} ms (median {statistics.median(times['filtered']):.1f} ms)",
                        f"{plain:.1f} ms (unfiltered)", f"{ratio(filtered, plain):.2f}x unfiltered",
                        f"at most {FILTERED_TARGET}x unfiltered", verdict(size, filtered <= FILTERED_TARGET * plain), data))
    big, empty = statistics.median(attach["vs_big"]), statistics.median(attach["vs_empty"])
    rows.append(Row(f"attach one ~1.5 KB file through the HTTP endpoint: into {files:,} files vs an empty store (median)",
                    f"{big:.1f} ms", f"{empty:.1f} ms (empty store)", f"{ratio(big, empty):.2f}x",
                    f"at most {ATTACH_TARGET}x", verdict(size, big <= ATTACH_TARGET * empty), data))
    rows += [order, *during]
    if not full:  # the PostgreSQL rows start a cluster of their own: at the full size only
        return rows
    from benchmarks.pg_search import pg_order_row, pg_search_rows

    return rows + pg_search_rows(size, files, per_file, asked) + [pg_order_row()]


def order_row(db: str, asked: list[str], chunks: int) -> Row:
    """The big store's lexical top 10 as served (past ``PRUNE_FROM`` chunks the common words past
    ``SCORE_BUDGET`` are left out of the chunks scored, and words in half the chunks or more, which
    ``bm25()`` weighs 1e-6, out of the statements) against FTS5's own ``ORDER BY bm25()``, an SQL
    query of the index: a top 10 of it (each chunk served has, by ``bm25()``, the score of the
    reference's chunk at its place, to ``TIE``: tied chunks in any order), for at least
    ``ORDER_TARGET`` of the queries (exact within the budget, approximate past it)."""
    from asstctl.server.retrieval.lexical import fts_query, query_terms
    from asstctl.server.retrieval.search import Retriever
    from asstctl.server.store import open_store

    sql = ("SELECT c.id, -bm25(retrieval_fts) AS score FROM retrieval_fts f JOIN retrieval_chunks c ON c.id = f.rowid "
           "WHERE retrieval_fts MATCH ? AND c.store_id = 'vs_big' {} ORDER BY score DESC, c.id LIMIT 10")
    store = open_store(db)
    retriever, same = Retriever(store), 0
    for query in asked:
        served = [(h.chunk_id, h.score) for h in retriever.lexical.search(["vs_big"], None, query, 10)]
        match = fts_query(query_terms(query))
        with store.sql() as conn:
            ranked = conn.execute(sql.format(""), (match,)).fetchall()
            exact = dict(conn.execute(sql.format(f"AND c.id IN ({','.join('?' * len(served))})"),
                                      (match, *[cid for cid, _ in served])).fetchall()) if served else {}
        same += len(served) == len(ranked) == len(exact) and all(
            abs(exact[cid] - ranked[n][1]) <= TIE and abs(score - exact[cid]) <= TIE for n, (cid, score) in enumerate(served))
    store.close()
    return Row(f"lexical top 10 as served vs FTS5 ORDER BY bm25(), {chunks:,} chunks, {len(asked)} queries",
               f"{same}/{len(asked)} the same", "ORDER BY bm25() (an SQL query of the index)", f"{same / len(asked):.0%}",
               f"at least {ORDER_TARGET:.0%} the same", same >= ORDER_TARGET * len(asked),
               {"same": same, "queries": len(asked)})


def build(db: str, stores: dict[str, int], per_file: int) -> float:
    """Stores of generated files written as attaching leaves them: records and indexes."""
    import numpy as np

    from asstctl.server.retrieval.search import Retriever
    from asstctl.server.store import open_store

    started = time.perf_counter()
    store = open_store(db)
    retriever = Retriever(store)
    rng = random.Random(11)
    now = int(time.time())
    for vs_id, count in stores.items():
        texts = chunk_texts(count * per_file, rng)
        vectors = np.random.default_rng(len(vs_id)).standard_normal((len(texts), 256)).astype(np.float32)
        counts = {"in_progress": 0, "completed": count, "failed": 0, "cancelled": 0, "total": count}
        store.insert("vector_store", {"id": vs_id, "object": "vector_store", "created_at": now, "name": vs_id,
                                      "usage_bytes": 0, "file_counts": counts, "status": "completed",
                                      "last_active_at": now, "metadata": {}, "expires_at": None})
        for batch in range(0, count, 100):  # a transaction per 100 files (PostgreSQL: the word counts' rows)
            with store.transaction():
                for n in range(batch, min(count, batch + 100)):
                    file_id = f"file-{vs_id}-{n:05d}"
                    chunks = [(t, WORDS_PER_CHUNK) for t in texts[n * per_file:(n + 1) * per_file]]
                    store.insert("file", {"id": file_id, "object": "file", "bytes": 4000, "created_at": now,
                                          "filename": f"doc-{n:05d}.md", "purpose": "assistants",
                                          "status": "processed"})
                    store.insert("vector_store_file", {
                        "id": file_id, "object": "vector_store.file", "usage_bytes": 4000, "created_at": now,
                        "vector_store_id": vs_id, "status": "completed", "last_error": None,
                        "chunking_strategy": {"type": "static", "static": {"max_chunk_size_tokens": 800,
                                                                           "chunk_overlap_tokens": 400}},
                        "attributes": {"region": REGIONS[n % 4], "year": 2000 + n % 25, "public": n % 3 == 0}}, vs_id)
                    ids = retriever.lexical.add(vs_id, file_id, chunks)
                    retriever.dense.add(vs_id, file_id, "scripted", ids, vectors[n * per_file:(n + 1) * per_file])
    store.close()
    return time.perf_counter() - started


def chunk_texts(count: int, rng: random.Random) -> list[str]:
    """The retrieval benchmark's generated chunks (its vocabulary; cumulative weights computed once)."""
    words, weights = vocabulary()
    cumulative = list(itertools.accumulate(weights))
    return [" ".join(rng.choices(words, cum_weights=cumulative, k=WORDS_PER_CHUNK)) for _ in range(count)]


def measure(db: str, asked: list[str], attaches: int, *, embeddings: bool) -> tuple[dict, dict]:
    """Search times per store (ms), and attach times into the big and an empty store (ms)."""
    from asstctl.server.embedded import start_server
    from asstctl.server.retrieval.embeddings import EmbeddingsConfig
    from benchmarks.common import client_for
    from benchmarks.embeddings_server import hashing_embedder, serve_embeddings

    with serve_embeddings(hashing_embedder()) as url:
        config = EmbeddingsConfig(model="scripted", base_url=url, api_key_env="ASSTCTL_BENCH_NO_KEY") if embeddings else None
        with start_server(db, embeddings=config) as server:
            client = client_for(server)
            searched = {vs_id: timed_searches(client, vs_id, asked) for vs_id in ("vs_big", "vs_small")}
            searched["filtered"] = timed_searches(client, "vs_big", asked, FILTER)
            attached: dict[str, list[float]] = {"vs_big": [], "vs_empty": []}
            empty = client.vector_stores.create(name="empty").id if attaches else ""
            for n in range(attaches):
                data = (f"# Note {n}\n\n" + " ".join(random.Random(n).choices(asked, k=120)))[:1500].encode()
                for vs_id, key in ((("vs_big", "vs_big"), (empty, "vs_empty")) if n % 2 else
                                   ((empty, "vs_empty"), ("vs_big", "vs_big"))):
                    file = client.files.create(file=(f"note-{n}-{key}.md", data), purpose="assistants")
                    started = time.perf_counter()
                    client.vector_stores.files.create(vector_store_id=vs_id, file_id=file.id)
                    attached[key].append((time.perf_counter() - started) * 1000)
            client.close()
    return searched, attached


def timed_searches(client: Any, vs_id: str, asked: list[str], filters: dict | None = None) -> list[float]:
    client.vector_stores.search(vs_id, query=asked[0])  # warm caches (the dense matrix, the IVF clusters)
    extra = {"filters": filters} if filters else {}
    out = []
    for query in asked:
        started = time.perf_counter()
        page = client.vector_stores.search(vs_id, query=query, **extra)
        out.append((time.perf_counter() - started) * 1000)
        if not page.data and vs_id == "vs_big":  # (a 20-file store may well share no word with a query)
            raise RuntimeError(f"the benchmark's query {query!r} found nothing in {vs_id}")
    return out
