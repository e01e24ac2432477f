"""The ingestion worker pool: extraction and chunking in separate processes, never on the server's loop.

A :class:`WorkerPool` keeps up to ``workers`` processes (forked from a forkserver, started when first
needed). Each job (a file's bytes or the path of a temporary copy, its name and chunk sizes) goes to
one idle worker, which streams the text out of it (``extract.extract_pieces``), chunks it
(``chunking.chunk_stream``, at most 5,000,000 tokens) and sends back the chunks. Limits, each ending
the job with an error that names it:

- memory: the worker's resident size is watched every 50 ms and past ``memory_mb`` it is killed; its
  data segment is capped too (``RLIMIT_DATA``, ``memory_mb`` above what it held when it started), so
  a faster surge ends in a ``MemoryError`` it reports;
- time: ``file_seconds`` per file, then the worker is killed;
- a worker that grew by more than ``recycle_mb`` since it started is replaced after its job, so the
  memory a large file took returns to the system.

``submit`` queues a job under a key (the file's vector store) and answers a future: the pool's
dispatchers (one a worker) take waiting jobs round-robin across keys (the key with the fewest jobs
running, then the one served longest ago), so one store's slow files never hold another store's file
for more than one file's slot. ``run`` blocks its (worker) thread, never a loop; ``close`` ends every worker at once and makes
waiting and later calls raise :class:`PoolClosed`. Small plain files (:func:`small`: at most
``SMALL`` bytes of text, Markdown, HTML, JSON or source, whose work is bounded by their size) are not
worth a process round trip: the caller runs :func:`run_job` on them in a thread.

Workers fork from multiprocessing's forkserver (this module preloaded): as with any multiprocessing
user, a Python script that starts the server (``start_server``) must keep its own work under
``if __name__ == "__main__":``, since the forkserver imports the main script once (``python -m``
entry points and console scripts are not affected).
"""

from __future__ import annotations

import io
import multiprocessing
import os
import queue
import resource
import signal
import threading
import time
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass
from itertools import count
from typing import Any

from asstctl.server.retrieval import chunking
from asstctl.server.retrieval.extract import ExtractError, extension, extract_pieces

POLL = 0.05  # seconds between checks of a busy worker
STARTUP = 60.0  # seconds a new worker may take to be ready
PAGE = os.sysconf("SC_PAGE_SIZE")
TEXT_LIMIT_CHARS = 64 << 20  # a file's whole text (the file content endpoint)
SMALL = 32 << 10  # plain files up to this size are done in a thread of the server
CONTAINERS = frozenset({".pdf", ".docx", ".pptx"})  # compressed: a small file can expand without bound


@dataclass
class IngestLimits:
    workers: int = 2  # worker processes (``--ingest-workers``)
    memory_mb: int = 512  # per worker (``--ingest-memory-mb``)
    file_seconds: float = 300.0  # per file (``--ingest-timeout``)
    recycle_mb: int = 64  # a worker that grew by more than this since it started is replaced after its job
    max_file_tokens: int = chunking.MAX_FILE_TOKENS  # extracted text past this fails the file
    embeddings_batch: int | None = None  # inputs per /embeddings request (None: the EmbeddingsConfig's)
    pending_mb: float = 256  # chunk text held by files waiting for their embeddings, in all (ingestion_budget)


class PoolClosed(Exception):
    """The server is stopping: the job was not done (the file stays ``in_progress``)."""


# --------------------------------------------------------------------------- the worker's side


def small(job: dict[str, Any]) -> bool:
    """A job cheap and bounded enough for a thread: a small file in memory that is not a container."""
    data = job.get("data")
    return data is not None and len(data) <= SMALL and extension(job["filename"]) not in CONTAINERS


def run_job(job: dict[str, Any]) -> tuple:
    """``("ok", chunks | text)`` or ``("error", code, message)`` for one file."""
    filename = job["filename"]
    source = open(job["path"], "rb") if job.get("path") else io.BytesIO(job["data"])
    try:
        with source:
            pieces = extract_pieces(filename, source)
            if job.get("mode") == "text":
                return "ok", _joined(pieces, job.get("max_chars", TEXT_LIMIT_CHARS))
            max_tokens, overlap = job.get("sizes") or chunking.AUTO
            limit = job.get("max_tokens", chunking.MAX_FILE_TOKENS)
            return "ok", list(chunking.chunk_stream(pieces, max_tokens, overlap, limit))
    except ExtractError as exc:
        return "error", exc.code, exc.message
    except chunking.TokenLimit as exc:
        return "error", "invalid_file", f"The file {filename!r} could not be indexed: {exc}."


def _joined(pieces, max_chars: int) -> str:
    out, size = [], 0
    for piece in pieces:
        size += len(piece)
        if size > max_chars:
            raise ExtractError("invalid_file", f"The file's text is longer than {max_chars:,} characters, the limit "
                                               "for reading it back whole.")
        out.append(piece)
    return "".join(out)


def _serve(conn, memory: int) -> None:
    """A worker: jobs in, results out, until the pipe closes (the server ended) or memory ran out."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group: the server stops us
    _die_with_parent()
    chunking.count_tokens("warm")  # load the tokenizer before the first file's clock starts
    limit = _data_size() + memory
    resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))
    conn.send(("ready",))
    while True:
        try:
            job = conn.recv()
        except (EOFError, OSError):
            return
        try:
            result = run_job(job)
        except MemoryError:
            result = None
        conn.send(result if result is not None else ("memory",))
        if result is None:
            return  # end so the memory goes back; the pool starts another worker


def _data_size() -> int:
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) << 10 for line in f if line.startswith("VmData:"))
    except (OSError, StopIteration, ValueError):
        return 0


def _die_with_parent() -> None:
    try:
        import ctypes

        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except Exception:  # not Linux: the closed pipe ends an idle worker anyway
        pass


# --------------------------------------------------------------------------- the server's side


def rss_bytes(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * PAGE
    except (OSError, ValueError, IndexError):
        return 0


class _Worker:
    def __init__(self):
        self.proc = None
        self.conn = None
        self.base = 0  # resident bytes once started

    def alive(self) -> bool:
        return self.proc is not None and self.proc.is_alive()

    def kill(self) -> None:
        proc, conn = self.proc, self.conn  # the pool's close() may kill it from another thread too
        self.proc = self.conn = None
        if proc is not None:
            try:
                proc.kill()
                proc.join(1)
            except Exception:  # already gone
                pass
        if conn is not None:
            conn.close()


class WorkerPool:
    def __init__(self, limits: IngestLimits | None = None):
        self.limits = limits or IngestLimits()
        self._ctx = multiprocessing.get_context("forkserver")
        self._ctx.set_forkserver_preload(["asstctl.server.retrieval.pool"])
        self._idle: queue.Queue[_Worker] = queue.Queue()
        self._all = [_Worker() for _ in range(max(1, self.limits.workers))]
        for worker in self._all:
            self._idle.put(worker)
        self._lock = threading.Lock()
        self.closed = False
        self.counts = {"jobs": 0, "started": 0, "recycled": 0, "killed": 0}
        self._turns = threading.Condition()
        self._waiting: dict[str, deque] = {}  # key -> (order, job, future) waiting, oldest first
        self._running: dict[str, int] = {}  # key -> its jobs on a worker now
        self._served: dict[str, int] = {}  # key -> the order of its last job taken
        self._order = count()
        self._dispatchers: list[threading.Thread] = []

    def submit(self, job: dict[str, Any], key: str = "") -> Future:
        """Queue ``job`` under ``key`` (its vector store); the future answers what :meth:`run` would."""
        future: Future = Future()
        with self._turns:
            if self.closed:
                raise PoolClosed("the server is stopping")
            self._waiting.setdefault(key, deque()).append((next(self._order), job, future))
            if len(self._dispatchers) < len(self._all):
                thread = threading.Thread(target=self._dispatch, name="asstctl-ingest-turns", daemon=True)
                self._dispatchers.append(thread)
                thread.start()
            self._turns.notify()
        return future

    def _next(self) -> tuple | None:
        """The next job fairly: the key with the fewest jobs running, then the one served longest ago."""
        with self._turns:
            while not self.closed:
                if self._waiting:
                    key = min(self._waiting, key=lambda k: (self._running.get(k, 0), self._served.get(k, -1),
                                                            self._waiting[k][0][0]))
                    order, job, future = self._waiting[key].popleft()
                    if not self._waiting[key]:
                        del self._waiting[key]
                    self._running[key] = self._running.get(key, 0) + 1
                    self._served[key] = order
                    return key, job, future
                self._turns.wait(1.0)
            return None

    def _dispatch(self) -> None:
        while (taken := self._next()) is not None:
            key, job, future = taken
            try:
                if future.set_running_or_notify_cancel():  # not cancelled meanwhile
                    try:
                        future.set_result(self.run(job))
                    except BaseException as exc:  # PoolClosed, a failed start: the caller's to handle
                        future.set_exception(exc)
            finally:
                with self._turns:
                    self._running[key] -= 1
                    if not self._running[key]:
                        del self._running[key]
                        if key not in self._waiting:
                            self._served.pop(key, None)

    def stats(self) -> dict[str, Any]:
        return {"workers": len(self._all), "busy": len(self._all) - self._idle.qsize(), **self.counts,
                "rss_mb": [round(rss_bytes(w.proc.pid) / 2**20, 1) for w in self._all if w.alive()]}

    def run(self, job: dict[str, Any]) -> tuple:
        """One job on an idle worker (waiting for one); the result or an error naming the limit hit."""
        worker = self._take()
        try:
            return self._run_on(worker, job)
        finally:
            self._idle.put(worker)

    def _take(self) -> _Worker:
        while True:
            if self.closed:
                raise PoolClosed("the server is stopping")
            try:
                return self._idle.get(timeout=POLL)
            except queue.Empty:
                continue

    def _start(self, worker: _Worker) -> None:
        mine, theirs = self._ctx.Pipe()
        limit = self.limits.memory_mb << 20
        proc = self._ctx.Process(target=_serve, args=(theirs, limit), name="asstctl-ingest", daemon=True)
        with self._lock:
            if self.closed:
                raise PoolClosed("the server is stopping")
            proc.start()
            worker.proc, worker.conn = proc, mine
        theirs.close()
        self.counts["started"] += 1
        deadline = time.monotonic() + STARTUP
        try:
            while not mine.poll(POLL):
                if self.closed or time.monotonic() > deadline or not proc.is_alive():
                    raise EOFError
            mine.recv()
        except (EOFError, OSError):
            worker.kill()
            if self.closed:
                raise PoolClosed("the server is stopping") from None
            raise RuntimeError(f"an ingestion worker did not start within {STARTUP:g} s") from None
        worker.base = rss_bytes(proc.pid)

    def _run_on(self, worker: _Worker, job: dict[str, Any]) -> tuple:
        if not worker.alive():
            worker.kill()
            self._start(worker)
        self.counts["jobs"] += 1
        limits, name = self.limits, job["filename"]
        proc, conn = worker.proc, worker.conn  # close() may clear the worker's from another thread
        if proc is None or conn is None:
            raise PoolClosed("the server is stopping")
        try:
            conn.send(job)
            deadline = time.monotonic() + limits.file_seconds
            while not conn.poll(POLL):
                if self.closed:
                    raise PoolClosed("the server is stopping")
                if rss_bytes(proc.pid) > limits.memory_mb << 20:
                    return self._failed(worker, name, f"it needed more than {limits.memory_mb} MB of memory, "
                                                      "the limit per ingestion worker (--ingest-memory-mb)")
                if time.monotonic() > deadline:
                    return self._failed(worker, name, f"it took longer than {limits.file_seconds:g} s, the limit "
                                                      "per file (--ingest-timeout)")
                if not proc.is_alive():
                    break
            result = conn.recv()
        except (EOFError, OSError, BrokenPipeError):
            if self.closed:
                raise PoolClosed("the server is stopping") from None
            return self._failed(worker, name, "its ingestion worker ended unexpectedly (most likely it ran out of "
                                              f"memory: the limit is {limits.memory_mb} MB, --ingest-memory-mb)")
        if result == ("memory",):
            return self._failed(worker, name, f"it needed more than {limits.memory_mb} MB of memory, the limit per "
                                              "ingestion worker (--ingest-memory-mb)")
        if rss_bytes(proc.pid) - worker.base > limits.recycle_mb << 20:
            self.counts["recycled"] += 1
            worker.kill()
        return result

    def _failed(self, worker: _Worker, name: str, why: str) -> tuple:
        self.counts["killed"] += 1
        worker.kill()
        if self.closed:
            raise PoolClosed("the server is stopping")
        return "error", "invalid_file", f"The file {name!r} could not be indexed: {why}."

    def close(self) -> None:
        with self._lock:
            self.closed = True
        with self._turns:
            waiting, self._waiting = list(self._waiting.values()), {}
            self._turns.notify_all()
        for _, _, future in (entry for entries in waiting for entry in entries):
            if future.set_running_or_notify_cancel():
                future.set_exception(PoolClosed("the server is stopping"))
        for worker in self._all:
            worker.kill()
