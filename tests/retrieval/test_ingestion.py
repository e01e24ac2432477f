"""Ingestion off the loop (issue 22): hostile files end ``failed`` naming the limit they hit (or complete
in bounded memory), the loop stays responsive while a batch ingests, embeddings go in batches across
files and back off on 429, and SIGTERM mid-batch stops the server fast with the files resumed on the
next start. Hostile files are made here, scaled down, against limits scaled down with them."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import statistics
import threading
import time

import httpx2 as httpx
import numpy as np
import pytest

from asstctl.server.embedded import start_server
from asstctl.server.looplag import LoopLag
from asstctl.server.retrieval.chunking import TokenLimit, chunk_stream, chunk_text
from asstctl.server.retrieval.embeddings import EmbeddingBatcher, Embedder, EmbeddingsConfig
from asstctl.server.retrieval.extract import extract_text
from asstctl.server.retrieval.pool import IngestLimits, PoolClosed, WorkerPool
from tests.conftest import make_client
from tests.retrieval import fixtures
from tests.serve_process import ServeProcess
from tests.upstream import Failure, ScriptedUpstream

LIMITS = IngestLimits(workers=2, memory_mb=128, file_seconds=30, max_file_tokens=20_000)
PROSE = "Refund requests for damaged parcels are reviewed within five business days by the returns desk. "


@pytest.fixture(scope="module")
def limited():
    with start_server(":memory:", ingest=LIMITS) as server:
        yield server


@pytest.fixture
def client(limited, contract):
    sdk = make_client(limited, contract, timeout=60)
    yield sdk
    sdk.close()


def docx_of(paragraphs: int, text: str = "x") -> bytes:
    """A minimal DOCX of ``paragraphs`` one-run paragraphs."""
    return fixtures.docx_xml(f"<w:p><w:r><w:t>{text}</w:t></w:r></w:p>" * paragraphs)


HOSTILE = {  # name -> (bytes, status, words the last_error must hold)
    "tiny-elements.html": (b"<html><body>" + b"<i>a</i>" * 15_000 + b"</body></html>", "failed", ["20,000 tokens"]),
    "nested.html": (b"<div>" * 30_000 + PROSE.encode() + b"</div>" * 30_000, "completed", []),
    "paragraphs.docx": (docx_of(15_000), "failed", ["20,000 tokens"]),
    # streamed (never parsed whole, which took past 128 MB): the walk reaches the token limit first
    "keys.json": (json.dumps({f"key{i}": i for i in range(1_000_000)}).encode(), "failed", ["20,000 tokens"]),
    "huge.txt": (PROSE.encode() * 3_000, "failed", ["20,000 tokens"]),
    # 3 KB zipped, 1.2 MB of empty paragraphs (the tester's 14 KB held 1.5 M: 28.7 s of a worker): refused unread
    "empty-paragraphs.docx": (fixtures.docx_xml("<w:p/>" * 200_000), "failed", ["expands more than 100x"]),
    # nesting grew the reprinter's memory until the worker's cap ended it (74 s for 10 MB)
    "deep.json": (b"[" * 100_000 + b"]" * 100_000, "failed", ["more than 1,000 levels deep"]),
}


def test_hostile_files_end_failed_naming_the_limit_and_the_workers_stay_bounded(client, limited):
    vs = client.vector_stores.create(name="hostile")
    for name, (data, status, words) in HOSTILE.items():
        file = client.files.create(file=(name, data), purpose="assistants")
        item = client.vector_stores.files.create(vector_store_id=vs.id, file_id=file.id)
        assert item.status == status, (name, item.last_error)
        if status == "failed":
            assert item.last_error.code == "invalid_file" and all(w in item.last_error.message for w in words), item.last_error
            assert name in item.last_error.message
    stats = limited.state.extra["ingestion"].stats()["pool"]
    assert stats["killed"] == 0  # every file ended at a limit it names, none at the workers' memory limit
    assert all(rss < LIMITS.memory_mb for rss in stats["rss_mb"]), stats
    counts = client.vector_stores.retrieve(vs.id).file_counts
    assert (counts.completed, counts.failed, counts.in_progress) == (1, 6, 0)
    hits = client.vector_stores.search(vs.id, query="damaged parcels refund").data
    assert hits and hits[0].filename == "nested.html"


def test_the_loop_stays_responsive_while_a_batch_ingests(client, limited):
    ids = [client.files.create(file=(f"doc{i}.md", (f"# Doc {i}\n" + PROSE * 15).encode()), purpose="assistants").id
           for i in range(100)]
    big = [client.files.create(file=(f"big{i}.txt", PROSE.encode() * 800), purpose="assistants").id for i in range(4)]
    client.vector_stores.create(name="warm", file_ids=ids[:1])  # the server loads the tokenizer once (a one-off stall)
    vs = client.vector_stores.create(name="busy")
    jobs = limited.state.extra["ingestion"].stats()["pool"]["jobs"]
    limited.state.loop_lag.reset()
    done = {}
    worker = threading.Thread(target=lambda: done.update(batch=client.vector_stores.file_batches.create(
        vector_store_id=vs.id, file_ids=big + ids)))
    worker.start()
    latencies = []
    with httpx.Client(timeout=10) as http:
        while worker.is_alive():
            started = time.perf_counter()
            assert http.get(limited.base_url + "/models").status_code == 200  # the probe (no store read)
            latencies.append(time.perf_counter() - started)
            time.sleep(0.05)
    worker.join()
    assert done["batch"].file_counts.completed == 104, done["batch"].file_counts
    # the 4 big files went to the worker processes; the 100 small ones (1.5 KB) were done in server threads
    assert limited.state.extra["ingestion"].stats()["pool"]["jobs"] == jobs + 4
    # with the workers warm (no hostile file kills one now) the batch takes ~0.3 s, and this thread shares the
    # GIL with the server's: a few probes, while the loop's own monitor samples it every 20 ms (>= 5 below)
    assert len(latencies) >= 2
    lag = limited.state.loop_lag.stats()
    # Ingesting in the loop stalled it for the whole batch (seconds, a stall per file); what is left is GIL
    # sharing with the store threads (p99 ~70 ms on 2 cores shared with other jobs; ~5 ms idle), and on a
    # loaded machine at most one wake-up the OS scheduled late (one 176 ms sample of 73 seen in CI; one of 1,201 ms
    # of 75 at load average 10). A stall per file would show as many slow samples.
    slow = sorted(round(s * 1000) for s in limited.state.loop_lag.samples if s > 0.15)
    assert lag["samples"] >= 5 and len(slow) <= 1 and lag["max_ms"] < 2500, (lag, slow)
    assert max(latencies) < 1.0 and statistics.median(latencies) < 0.05, sorted(latencies)[-5:]


def test_embeddings_go_in_batches_across_files_and_back_off_on_429(contract):
    """``IngestLimits.embeddings_batch`` (``asstctl serve --embeddings-batch-size``; over the embeddings
    config's own 64) caps the inputs per request, filled with chunks of several files; the event loop
    stays on time while they embed (on the loop, the issue saw ``GET /v1/models`` unanswered for 150 s)."""
    with ScriptedUpstream(key=None) as upstream:
        upstream.embed_failures.append(Failure.rate_limit(retry_after="0.2"))
        embeddings = EmbeddingsConfig(model="scripted-embed", base_url=upstream.base_url)
        limits = dataclasses.replace(LIMITS, embeddings_batch=16)
        with start_server(":memory:", embeddings=embeddings, ingest=limits) as server:
            sdk = make_client(server, contract, timeout=60)
            ids = [sdk.files.create(file=(f"n{i}.md", f"Note {i}: {PROSE}".encode()), purpose="assistants").id
                   for i in range(40)]
            vs = sdk.vector_stores.create(name="dense")
            server.state.loop_lag.reset()
            batch = sdk.vector_stores.file_batches.create(vector_store_id=vs.id, file_ids=ids)
            lag, slow = server.state.loop_lag.stats(), [s for s in server.state.loop_lag.samples if s > 0.15]
            assert batch.status == "completed" and batch.file_counts.completed == 40, batch.file_counts
            sdk.close()
    sent = [r for r in upstream.requests if r.path.endswith("/embeddings")]
    sizes = [len(r.body["input"]) for r in sent]
    assert 1 + 40 / 16 <= len(sent) <= 20 and max(sizes) == 16, sizes  # not one request per file, none over 16
    # a one-off stall may come from loading the tokenizer (first file); a stall per file would show many
    assert lag["samples"] >= 3 and len(slow) <= 2 and lag["max_ms"] < 2500, (lag, slow)
    assert sum(len(r.body["input"]) for r in sent[1:]) == 40  # every chunk embedded once, after the 429
    retry = next(r for r in sent[1:] if r.body["input"] == sent[0].body["input"])
    assert retry.at - sent[0].at >= 0.15  # the 429's retry-after was honoured
    assert not upstream.problems


def test_embeddings_failures_retry_as_documented_then_fail_the_file_naming_why(contract):
    """A 5xx is retried twice (two pass, three fail the file), 429s are retried until
    ``retry_seconds`` is spent, an answer that is not a CreateEmbeddingResponse fails the file at
    once: each failed file's ``last_error`` says what happened and names the upstream."""
    with ScriptedUpstream(key=None) as upstream:
        embeddings = EmbeddingsConfig(model="scripted-embed", base_url=upstream.base_url, retry_seconds=1.0)
        with start_server(":memory:", embeddings=embeddings) as server:
            assert server.state.extra["ingestion"].limits.max_file_tokens == 5_000_000  # the API's cap per file, by default
            sdk = make_client(server, contract, timeout=60)
            vs = sdk.vector_stores.create(name="flaky")

            def attach(name: str, *failures: Failure):
                upstream.embed_failures.extend(failures)
                sent = len(upstream.requests)
                file_id = sdk.files.create(file=(name, f"{name}: {PROSE}".encode()), purpose="assistants").id
                item = sdk.vector_stores.files.create(vector_store_id=vs.id, file_id=file_id)
                deadline = time.monotonic() + 30
                while item.status == "in_progress" and time.monotonic() < deadline:
                    time.sleep(0.05)
                    item = sdk.vector_stores.files.retrieve(file_id, vector_store_id=vs.id)
                upstream.embed_failures.clear()
                return item, len(upstream.requests) - sent

            busy = Failure(503, "The engine is currently overloaded.", retry_after="0.05")
            item, sent = attach("two-5xx.md", busy, busy)
            assert (item.status, sent) == ("completed", 3)
            item, sent = attach("three-5xx.md", busy, busy, busy)
            assert (item.status, item.last_error.code, sent) == ("failed", "server_error", 3)
            assert "InternalServerError" in item.last_error.message and upstream.base_url in item.last_error.message
            item, sent = attach("rate-limited.md", *[Failure.rate_limit(retry_after="0.3")] * 20)
            assert item.status == "failed" and "RateLimitError" in item.last_error.message, item.last_error
            assert "the limit is 1 s" in item.last_error.message and 3 <= sent <= 5, (item.last_error, sent)
            item, sent = attach("malformed.md", Failure(200, raw={"object": "list", "data": [{"index": 0}]}))
            assert (item.status, item.last_error.code, sent) == ("failed", "server_error", 1)
            assert "not a CreateEmbeddingResponse (KeyError: 'embedding')" in item.last_error.message
            counts = sdk.vector_stores.retrieve(vs.id).file_counts
            assert (counts.completed, counts.failed) == (1, 3)
            sdk.close()
    assert not upstream.problems


def test_sigterm_mid_batch_stops_within_10s_and_the_next_start_resumes(tmp_path, contract):
    db = str(tmp_path / "server.sqlite3")
    with ServeProcess(tmp_path, "--db", db, "--ingest-workers", "1") as server:
        sdk = make_client(server, contract, timeout=60)
        ids = [sdk.files.create(file=(f"long{i}.txt", (f"Part {i}. " + PROSE * 6000).encode()), purpose="assistants").id
               for i in range(16)]
        vs = sdk.vector_stores.create(name="interrupted")
        batcher = make_client(server, timeout=3)
        sender = threading.Thread(target=lambda: _quietly(lambda: batcher.vector_stores.file_batches.create(
            vector_store_id=vs.id, file_ids=ids)))
        sender.start()
        deadline = time.monotonic() + 30
        while sdk.vector_stores.retrieve(vs.id).file_counts.completed < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        counts = sdk.vector_stores.retrieve(vs.id).file_counts
        assert counts.completed >= 1 and counts.in_progress >= 1, counts
        sdk.close()
        started = time.monotonic()
        code = server.stop()
        sender.join()
        batcher.close()
        assert code == 0 and time.monotonic() - started < 10, (code, time.monotonic() - started, server.stderr()[-2000:])
        assert "Traceback" not in server.stderr()
    with ServeProcess(tmp_path / "again", "--db", db) as server:
        sdk = make_client(server, contract, timeout=60)
        deadline = time.monotonic() + 60
        while sdk.vector_stores.retrieve(vs.id).file_counts.in_progress and time.monotonic() < deadline:
            time.sleep(0.1)
        counts = sdk.vector_stores.retrieve(vs.id).file_counts
        errors = [f.last_error for f in sdk.vector_stores.files.list(vs.id, limit=100) if f.last_error]
        assert (counts.completed, counts.in_progress, counts.failed) == (16, 0, 0), (counts, errors, server.stderr()[-2000:])
        deadline = time.monotonic() + 10  # (the log line may reach the captured stderr a moment later)
        while "resuming the ingestion of" not in server.stderr() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert "resuming the ingestion of" in server.stderr()
        sdk.close()


def _quietly(call) -> None:
    try:
        call()
    except Exception:  # the request is cut by the stop: that is the point
        pass


# --------------------------------------------------------------------------- the pieces


def test_streamed_chunks_match_whole_text_chunks_and_the_token_cap_is_enforced():
    text = "".join(f"Line {i}: {PROSE}\n" for i in range(3000))
    pieces = [text[i : i + 7919] for i in range(0, len(text), 7919)]
    streamed = list(chunk_stream(pieces, 200, 50, limit=10**7))
    whole = chunk_text(text, 200, 50)
    assert len(streamed) == len(whole) and [n for _, n in streamed] == [n for _, n in whole]
    assert sum(a == b for (a, _), (b, _) in zip(streamed, whole)) >= 0.95 * len(whole)  # segment seams may differ
    with pytest.raises(TokenLimit, match="more than 1,000 tokens"):
        list(chunk_stream([text], 200, 50, limit=1000))


def test_streamed_docx_and_html_keep_paragraphs_tables_and_drop_scripts():
    text = extract_text("d.docx", fixtures.docx_bytes(["first para", "second para"], [["zone", "EU"], ["a", "b"]]))
    assert text.split("\n")[:4] == ["first para", "second para", "zone | EU", "a | b"]
    html = b"<p>one &amp; two</p><script>if (a < b) { hidden() }</script><style>p{}</style><p>three</p>"
    assert extract_text("p.html", html) == "one & two\nthree"


def test_a_file_over_the_time_limit_fails_and_its_worker_is_replaced():
    pool = WorkerPool(IngestLimits(workers=1, memory_mb=256, file_seconds=0.3))
    try:
        slow = pool.run({"filename": "slow.txt", "data": PROSE.encode() * 60_000, "max_tokens": 10**8})
        assert slow[0] == "error" and "0.3 s" in slow[2] and "--ingest-timeout" in slow[2], slow
        fast = pool.run({"filename": "ok.md", "data": b"# fine\nsmall file"})
        assert fast == ("ok", [("# fine\nsmall file", 5)])
        assert pool.stats()["killed"] == 1 and pool.stats()["started"] == 2
    finally:
        pool.close()


def test_the_pool_takes_files_round_robin_per_store():
    """Four files of store A wait ahead of one of store B (the tester's four slow DOCX delayed a 40 KB .txt of
    another store by 131 s): B's goes next, once A's running file ends, not after all of A's."""
    pool = WorkerPool(IngestLimits(workers=1, memory_mb=256, file_seconds=30))
    order: list[str] = []
    slow = {"filename": "a.txt", "data": PROSE.encode() * 2_000}
    try:
        futures = [pool.submit(slow, "vs_a") for _ in range(4)] + [pool.submit({"filename": "b.md", "data": b"# B"}, "vs_b")]
        for name, future in zip(["a1", "a2", "a3", "a4", "b"], futures):
            future.add_done_callback(lambda _, name=name: order.append(name))
        assert all(future.result(timeout=60)[0] == "ok" for future in futures)
    finally:
        pool.close()
    assert order.index("b") <= 1, order  # first-come first-served ran it last
    with pytest.raises(PoolClosed):
        pool.submit(slow, "vs_a")


def test_a_worker_that_grew_past_recycle_mb_is_replaced_and_its_memory_returns():
    """A worker holding 24 MB after its file (the file's bytes: the job stays referenced until the
    next one) grew past ``recycle_mb`` (16): it is ended after that file and the next file gets a
    fresh worker back near the first one's size; a small file leaves its worker in place."""
    import os

    from asstctl.server.retrieval.pool import rss_bytes

    pool = WorkerPool(IngestLimits(workers=1, memory_mb=256, file_seconds=30, recycle_mb=16))
    try:
        assert pool.run({"filename": "a.md", "data": b"# small"})[0] == "ok"
        assert pool.run({"filename": "b.md", "data": b"# small too"})[0] == "ok"
        first = pool._all[0].proc.pid
        base = rss_bytes(first)
        assert pool.stats()["recycled"] == 0 and pool.stats()["started"] == 1  # small files: the same worker
        big = pool.run({"filename": "big.bin", "data": os.urandom(1 << 20) * 24})  # a type we do not read
        assert big[0] == "error" and big[1] == "unsupported_file", big
        assert pool.stats()["recycled"] == 1 and not os.path.exists(f"/proc/{first}")
        assert pool.run({"filename": "c.md", "data": b"# after"})[0] == "ok"
        second = pool._all[0].proc.pid
        assert second != first and pool.stats()["started"] == 2
        assert rss_bytes(second) < base + (16 << 20), (rss_bytes(second) >> 20, base >> 20)
    finally:
        pool.close()


def test_the_loop_lag_monitor_sees_a_blocked_loop():
    async def main():
        lag = LoopLag(interval=0.01)
        await lag.start()
        await asyncio.sleep(0.05)
        time.sleep(0.2)  # blocks the loop: what the monitor is there to catch
        await asyncio.sleep(0.05)
        await lag.stop()
        return lag.stats()

    stats = asyncio.run(main())
    assert stats["max_ms"] >= 150 and stats["samples"] >= 5 and stats["p50_ms"] < 50, stats


def test_cross_file_batches_keep_each_callers_order():
    with ScriptedUpstream(key=None) as upstream:
        batcher = EmbeddingBatcher(EmbeddingsConfig(model="m", base_url=upstream.base_url, batch_size=8))

        async def main():
            texts = [[f"file {f} chunk {c}" for c in range(n)] for f, n in enumerate((5, 9, 3))]
            got = await asyncio.gather(*(batcher.embed(t) for t in texts))
            await batcher.aclose()
            return texts, got

        texts, got = asyncio.run(main())
    assert [len(v) for v in got] == [5, 9, 3]
    assert all(v.dtype == np.float32 for vectors in got for v in vectors)  # 4 bytes a number while a file waits
    assert got[1][4].tolist() == np.asarray(upstream.embed([texts[1][4]])[0], dtype=np.float32).tolist()
    # requests in flight together may reach the upstream in either order
    assert sorted((len(r.body["input"]) for r in upstream.requests), reverse=True) == [8, 8, 1]
    assert not upstream.problems



def test_requests_stay_within_the_apis_token_limits_with_big_chunks_and_a_big_batch():
    """2,048 inputs a request by count, but chunks of 4,096 tokens: requests (ingestion's batcher's and the
    blocking client's) are filled by the chunks' token counts to at most 300,000 in all (the scripted upstream answers a 400 past it, as OpenAI does);
    an input over 8,192 tokens fails naming that limit without a request."""
    from asstctl.server.retrieval.embeddings import MAX_REQUEST_TOKENS, EmbeddingsError

    chunks = list(chunk_stream([PROSE * 21_000], 4096, 0, limit=10**7))
    assert len(chunks) >= 80 and sum(n for _, n in chunks) > MAX_REQUEST_TOKENS
    with ScriptedUpstream(key=None, embed=lambda texts: [[1.0, 0.0]] * len(texts)) as upstream:
        batcher = EmbeddingBatcher(EmbeddingsConfig(model="m", base_url=upstream.base_url, batch_size=2048))

        async def main():
            got = await batcher.embed([t for t, _ in chunks], [n for _, n in chunks])
            with pytest.raises(EmbeddingsError, match="8,192 tokens per input"):
                await batcher.embed(["too long"], [9000])
            await batcher.aclose()
            return got

        got = asyncio.run(main())
        sizes = sorted(len(r.body["input"]) for r in upstream.requests)
        blocking = Embedder(EmbeddingsConfig(model="m", base_url=upstream.base_url, batch_size=2048))
        assert len(blocking.embed([t for t, _ in chunks])) == len(chunks)  # (the tokens counted by the client)
    assert len(got) == len(chunks)
    assert upstream.refusals == 0 and not upstream.problems
    assert len(sizes) == 2 and sum(sizes) == len(chunks), sizes  # two requests, not one 2,048-input one
    assert sorted(len(r.body["input"]) for r in upstream.requests[2:]) == sizes  # the blocking client's too


def test_chunk_text_waiting_for_a_slow_embeddings_upstream_stays_within_the_budget(contract):
    """Files whose chunks wait for their embeddings hold at most ``pending_mb`` of chunk text in all
    (scaled down here to 0.04 MB, under one file's 58 KB: each file passes alone), not ``IN_FLIGHT``
    files' worth: without the budget the 2 workers' files would pile up behind the slow upstream."""

    def slow(texts):
        time.sleep(0.1)
        return [[1.0, 0.0]] * len(texts)

    with ScriptedUpstream(key=None, embed=slow) as upstream:
        embeddings = EmbeddingsConfig(model="scripted-embed", base_url=upstream.base_url)
        limits = dataclasses.replace(LIMITS, max_file_tokens=10**6, embeddings_batch=512, pending_mb=0.04)
        with start_server(":memory:", embeddings=embeddings, ingest=limits) as server:
            sdk = make_client(server, contract, timeout=60)
            ids = [sdk.files.create(file=(f"big{i}.txt", f"Part {i}. ".encode() + PROSE.encode() * 300),
                                    purpose="assistants").id for i in range(4)]
            vs = sdk.vector_stores.create(name="budget")
            batch = sdk.vector_stores.file_batches.create(vector_store_id=vs.id, file_ids=ids)
            assert batch.file_counts.completed == 4, batch.file_counts
            stats = server.state.extra["ingestion"].stats()["chunk_chars"]
            sdk.close()
    one_file = 2 * len(PROSE) * 300  # its chunks overlap by half: each character is held twice
    assert stats["budget"] == int(0.04 * 2**20) and stats["held"] == 0, stats
    assert 0.8 * one_file < stats["peak"] < 1.3 * one_file, (stats, one_file)  # one file at a time
    assert not upstream.problems
