"""Hybrid search while files are being attached (``--only vector_stores``, on its big store).

A thread attaches ~1.5 KB Markdown files to the big store one request at a time, the whole
time, while the main thread runs ``searches`` hybrid searches of it through
``POST /v1/vector_stores/{id}/search`` (the real SDK, loopback): every attach moves the store's
generation, so nearly every search finds its in-memory matrix stale. Measured twice in one run,
each on a fresh server: with the dense index as it is (the files changed since are read, their
old rows marked dead, ``dense_matrix``) and, as the baseline, with ``incremental=False``: the
whole matrix read, decoded and clustered again on every change, as every search did before
(a third as many searches: each takes seconds at the full size). The target: the p95 at most a fifth of the baseline's (at the full size; n/a at the small one).
"""

from __future__ import annotations

import random
import threading
import time

from benchmarks.common import Row, Size, ratio, verdict
from benchmarks.retrieval import p95

TARGET = 0.2


def during_ingestion_rows(size: Size, db: str, vs_id: str, files: int, chunks: int, asked: list[str]) -> list[Row]:
    searches = 30 if size.timed_targets else 6
    before = measure(db, vs_id, asked[:searches // 3], incremental=False)  # (seconds each at the full size)
    after = measure(db, vs_id, asked[:searches], incremental=True)
    data = {"files": files, "chunks": chunks, "before": before, "after": after}
    ours, theirs = p95(after["ms"]), p95(before["ms"])
    return [Row(f"hybrid search during ingestion: p95 of a search while files are being attached, at {files:,} files / "
                f"{chunks:,} chunks", f"{ours:.1f} ms ({len(after['ms'])} searches, {after['attached']} files attached)",
                f"{theirs:.1f} ms (matrix reloaded whole on each change; {before['attached']} attached)",
                f"{ratio(ours, theirs):.2f}x", f"at most {TARGET}x the whole reload", verdict(size, ours <= TARGET * theirs),
                data)]


def measure(db: str, vs_id: str, asked: list[str], *, incremental: bool) -> dict:
    """Search times (ms) while a thread attaches files, and how many it attached meanwhile."""
    from asstctl.server.embedded import start_server
    from asstctl.server.retrieval.embeddings import EmbeddingsConfig
    from asstctl.server.retrieval.search import Retriever, dense_index
    from benchmarks.common import client_for
    from benchmarks.embeddings_server import hashing_embedder, serve_embeddings

    with serve_embeddings(hashing_embedder()) as url:
        config = EmbeddingsConfig(model="scripted", base_url=url, api_key_env="ASSTCTL_BENCH_NO_KEY")
        with start_server(db, embeddings=config) as server:
            dense = dense_index(server.store)
            dense.incremental = incremental
            server.state.extra["retriever"] = Retriever(server.store, config, dense=dense)
            client = client_for(server)
            client.vector_stores.search(vs_id, query=asked[0])  # the matrix loaded (and clustered) once
            stop, attached = threading.Event(), [0]
            attacher = threading.Thread(target=_attach, args=(client, vs_id, asked, stop, attached), daemon=True)
            attacher.start()
            times = []
            try:
                for query in asked:
                    seen = attached[0]
                    while attached[0] == seen and attacher.is_alive():  # a change since the last search
                        time.sleep(0.005)
                    started = time.perf_counter()
                    client.vector_stores.search(vs_id, query=query)
                    times.append((time.perf_counter() - started) * 1000)
            finally:
                stop.set()
                attacher.join()
            client.close()
    return {"ms": times, "attached": attached[0], "incremental": incremental}


def _attach(client, vs_id: str, words: list[str], stop: threading.Event, attached: list[int]) -> None:
    n = 0
    while not stop.is_set():
        text = f"# Ingested note {n}\n\n" + " ".join(random.Random(n).choices(words, k=150))
        file = client.files.create(file=(f"ingested-{n}.md", text[:1500].encode()), purpose="assistants")
        client.vector_stores.files.create(vector_store_id=vs_id, file_id=file.id)
        n += 1
        attached[0] = n
