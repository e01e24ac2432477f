"""Ingestion at scale and hostile files, through `asstctl serve` over HTTP (issue 22).

- **Attach cost vs store size**: ``ingest_files`` files of ~1.5 KB attached one by one to one store;
  the mean attach time of the last 1,000 against the first 1,000 (target: at most 1.5x).
- **Responsiveness during it**: a ``GET /v1/models`` every 100 ms the whole time (target: p99 < 100 ms).
- **Hostile files** (the issue's: 20 MB of tiny HTML elements, a DOCX of 1.5 M paragraphs, 3 MB of
  nested HTML, 19 MB of JSON with 10^6 keys, 64 MB of text; ``hostile_scale`` shrinks them), one at a
  time: the server process's peak RSS (target < 1 GB) and its RSS after them against its baseline
  (target: within 100 MB). The worker processes, which hold a file while it is read, are reported
  beside it (each is capped by ``--ingest-memory-mb``).
"""

from __future__ import annotations

import io
import json
import statistics
import tempfile
import threading
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

from benchmarks.common import Row, Size, verdict

PROSE = ("Orders over fifty euros ship free within the EU; parcels to Norway and Switzerland pay customs "
         "on delivery. Refunds reach the original card within five business days of the return scan. ")


def ingestion_rows(size: Size) -> list[Row]:
    return scale_rows(size) + [hostile_row(size)]


def _serve(tmp: str, *args: str):
    from tests.serve_process import ServeProcess

    return ServeProcess(Path(tmp), "--db", str(Path(tmp) / "bench.sqlite3"), *args)


def _client(server):
    import openai

    return openai.OpenAI(base_url=server.base_url, api_key=server.api_key, max_retries=2, timeout=600)


@contextmanager
def _server(running):
    """``running`` (a test's ``ServeProcess``, shared by both parts), or a server of our own."""
    if running is not None:
        yield running
        return
    with tempfile.TemporaryDirectory() as tmp, _serve(tmp) as server:
        yield server


def scale_rows(size: Size, running=None) -> list[Row]:
    n = size.ingest_files
    k = min(1000, max(1, n // 10))
    with _server(running) as server:
        client = _client(server)
        with ThreadPoolExecutor(4) as pool:
            ids = list(pool.map(lambda i: client.files.create(
                file=(f"doc{i:05d}.md", f"# Note {i}\n{PROSE * 5}".encode()), purpose="assistants").id, range(n)))
        store = client.vector_stores.create(name="scale")
        probes, stop = [], threading.Event()
        prober = threading.Thread(target=_probe, args=(server, probes, stop), daemon=True)
        prober.start()
        times = []
        for file_id in ids:
            started = time.perf_counter()
            item = client.vector_stores.files.create(vector_store_id=store.id, file_id=file_id)
            times.append(time.perf_counter() - started)
            assert item.status == "completed", item.last_error
        stop.set()
        prober.join()
        counts = client.vector_stores.retrieve(store.id).file_counts
        client.close()
    first, last = statistics.mean(times[:k]), statistics.mean(times[-k:])
    slower = last / first
    probes.sort()
    p99 = probes[min(len(probes) - 1, int(0.99 * len(probes)))] if probes else float("inf")
    data = {"files": n, "first_ms": first * 1000, "last_ms": last * 1000, "completed": counts.completed,
            "probes": len(probes), "probe_p50_ms": statistics.median(probes) * 1000 if probes else None,
            "probe_p99_ms": p99 * 1000, "probe_max_ms": max(probes) * 1000 if probes else None}
    return [
        Row(f"ingestion: {n:,} files of ~1.5 KB into one store, attach time of the last {k:,}",
            f"{last * 1000:.1f} ms per file", f"first {k:,}: {first * 1000:.1f} ms per file", f"{slower:.2f}x",
            "<= 1.5x", verdict(size, slower <= 1.5), data),
        Row(f"ingestion: GET /v1/models every 100 ms while {n:,} files are attached, p99",
            f"{p99 * 1000:.1f} ms ({len(probes)} requests, max {data['probe_max_ms']:.0f} ms)", "-", "-", "< 100 ms",
            verdict(size, p99 < 0.1), data),
    ]


def _probe(server, out: list[float], stop: threading.Event) -> None:
    import httpx2 as httpx

    with httpx.Client(base_url=server.base_url, timeout=60) as http:
        while not stop.is_set():
            started = time.perf_counter()
            http.get(server.base_url + "/models")
            out.append(time.perf_counter() - started)
            stop.wait(0.1)


def hostile_files(scale: float) -> dict[str, bytes]:
    def n(count: int) -> int:
        return max(1, int(count * scale))

    ns = 'xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"'
    docx = io.BytesIO()
    with zipfile.ZipFile(docx, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("[Content_Types].xml", '<?xml version="1.0"?><Types/>')
        archive.writestr("word/document.xml", f'<?xml version="1.0"?><w:document {ns}><w:body>'
                         + "<w:p/>" * n(1_500_000) + "<w:p><w:r><w:t>end</w:t></w:r></w:p></w:body></w:document>")
    return {
        "tiny-elements.html": b"<html><body>" + b"<b>x</b>" * n(2_500_000) + b"</body></html>",
        "paragraphs.docx": docx.getvalue(),
        "nested.html": b"<div>" * n(300_000) + b"deep text" + b"</div>" * n(300_000),
        "keys.json": json.dumps({f"k{i}": i for i in range(n(1_000_000))}).encode(),
        "huge.txt": PROSE.encode() * n(340_000),
    }


def hostile_row(size: Size, running=None) -> Row:
    from asstctl.server.retrieval.pool import rss_bytes

    files = hostile_files(size.hostile_scale)
    outcomes, peaks, workers_peak = {}, [], [0]
    settle = 1.0 if size.timed_targets else 0.1  # seconds the RSS is left to settle (not judged when small)
    with _server(running) as server:
        client = _client(server)
        pid = server.proc.pid
        warm = client.files.create(file=("warm.md", PROSE.encode()), purpose="assistants")
        store = client.vector_stores.create(name="hostile", file_ids=[warm.id])
        time.sleep(settle / 2)
        baseline = rss_bytes(pid)
        stop = threading.Event()

        def sample() -> None:
            kids: list[int] = []
            while not stop.is_set():
                peaks.append(rss_bytes(pid))
                if len(peaks) % 10 == 1:
                    kids = _children(pid)  # the forkserver and the workers (they come and go)
                workers_peak[0] = max(workers_peak[0], sum(rss_bytes(c) for c in kids))
                stop.wait(0.02)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        for name, data in files.items():
            file = client.files.create(file=(name, data), purpose="assistants")
            item = client.vector_stores.files.create(vector_store_id=store.id, file_id=file.id)
            while item.status == "in_progress":
                time.sleep(settle / 5)
                item = client.vector_stores.files.retrieve(file.id, vector_store_id=store.id)
            outcomes[name] = item.status if item.status == "completed" else f"failed: {item.last_error.message}"
        time.sleep(settle)
        after = rss_bytes(pid)
        stop.set()
        sampler.join()
        client.close()
    peak = max(peaks + [after])
    mb = 1 << 20
    data = {"baseline_mb": baseline / mb, "peak_mb": peak / mb, "after_mb": after / mb,
            "workers_peak_mb": workers_peak[0] / mb, "sizes_mb": {k: len(v) / mb for k, v in files.items()},
            "outcomes": outcomes}
    met = peak < 1 << 30 and after - baseline < 100 * mb
    return Row(f"ingestion: hostile files one at a time ({', '.join(files)}; scale {size.hostile_scale:g}), server RSS",
               f"peak {peak / mb:.0f} MB, after {after / mb:.0f} MB (workers' peak {workers_peak[0] / mb:.0f} MB)",
               f"baseline {baseline / mb:.0f} MB", f"+{(after - baseline) / mb:.0f} MB",
               "peak < 1 GB, after within 100 MB", verdict(size, met), data)


def _children(pid: int) -> list[int]:
    """Every descendant of ``pid`` (the forkserver and the ingestion workers under it), from /proc."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            parents.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        kids = parents.get(todo.pop(), [])
        found += kids
        todo += kids
    return found
