"""Ingestion of vector store files, off the server's loop.

Attaching a file commits it ``in_progress`` and hands it here (after the commit). Each file is a
task on the loop that only waits: its bytes are read from the store in a thread (small files in
memory, larger ones copied to a temporary file), extracted and chunked by the worker pool
(``asstctl.server.retrieval.pool``: processes with memory and time limits; files of at most 32 KB
that are not PDF/DOCX/PPTX in a thread instead, their work being bounded by their size), embedded by the
:class:`EmbeddingBatcher` (requests full of chunks from many files, backing off on 429), and
indexed in one transaction with the file's final status (a thread again). At most ``IN_FLIGHT``
files are past the queue at a time, holding at most ``IngestLimits.pending_mb`` of chunk text in all
(``asstctl.server.ingestion_budget``: a file larger than that passes alone), so memory stays bounded
however large a batch is and however slow the embeddings upstream.

A request that attaches files (a message's attachments, a thread or assistant creating its store)
answers once they are ingested, for ``WAIT`` seconds at most (:func:`gate`, around every request):
what the API's users saw when ingestion ran inside the request, without holding the loop.

A file re-attached or detached meanwhile is recognised by its ``_ingest`` token and its result
dropped. On stop, the pool's workers are ended and unfinished files stay ``in_progress``; the next
start resumes them (:meth:`Ingestion.resume`), so no file is left stuck. On PostgreSQL, where
several replicas share the database, leases say which replica is ingesting which file
(``asstctl.server.ingest_lease``): a replica resumes only the files no live replica holds, at its
start and every quarter of a lease after.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import logging
import os
import secrets
import tempfile
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, Callable

from asstctl.server.errors import APIError
from asstctl.server.ingestion_budget import Budget, chars, estimate
from asstctl.server.retrieval import chunking
from asstctl.server.retrieval.pool import TEXT_LIMIT_CHARS, IngestLimits, PoolClosed, WorkerPool, run_job, small

if TYPE_CHECKING:
    from asstctl.server.retrieval.embeddings import EmbeddingBatcher

log = logging.getLogger("asstctl.server")
IN_FLIGHT = 256  # files being extracted, embedded or indexed at once
STARTS_PER_TURN = 64  # files whose tasks start in one turn of the event loop (a 2,000-file batch stalled it ~200 ms)
READ_BACK = 32 << 20  # bytes of a file without extractable text its content endpoint shows at most
INLINE = 1 << 20  # files up to this size go to a worker in memory; larger ones through a temporary file


WAIT = 30.0  # seconds a response waits for the files its request attached
PENDING: ContextVar[list[str] | None] = ContextVar("asstctl_pending_ingestion", default=None)


async def gate(state, app, scope, receive, send) -> None:
    """Run a request; its response starts once the files it attached are ingested (``WAIT`` s at most)."""
    pending: list[str] = []
    reset = PENDING.set(pending)

    async def held(message) -> None:
        ingestion = state.extra.get("ingestion")
        if message["type"] == "http.response.start" and pending and ingestion is not None:
            await ingestion.settled(tokens=list(pending), timeout=WAIT)
        await send(message)

    try:
        await app(scope, receive, held)
    finally:
        PENDING.reset(reset)


def new_token() -> str:
    return secrets.token_hex(8)


class Ingestion:
    """The server's ingestion: ``state.extra["ingestion"]``.

    ``finish(item, status, last_error)`` records a file's outcome (called inside the transaction
    that indexes it). A file whose bytes hold ``Faults.ingest_fail_marker`` fails: a test hook, off
    unless a test switches it on (read per file, so a running server's test may switch it)."""

    def __init__(self, state, finish: Callable[[dict, str, dict | None], None]):
        self.state = state
        self.limits: IngestLimits = getattr(state.config, "ingest", None) or IngestLimits()
        self.finish = finish
        self.pool = WorkerPool(self.limits)
        self.threads = ThreadPoolExecutor(max_workers=4, thread_name_prefix="asstctl-ingest-io")  # store, blobs
        # commits, one at a time: write transactions are serialized anyway, and commits waiting for the write
        # lock in the I/O threads held back the reads of the files behind them (PostgreSQL: 4x slower than SQLite)
        self.committer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="asstctl-ingest-commit")
        self.runners = ThreadPoolExecutor(max_workers=self.limits.workers, thread_name_prefix="asstctl-ingest")
        self._batcher: tuple[Any, EmbeddingBatcher | None] = (None, None)
        self.loop: asyncio.AbstractEventLoop | None = None
        self.tasks: dict[str, tuple[str, asyncio.Task]] = {}  # token -> (store id, task)
        self.queued: collections.deque[tuple] = collections.deque()  # submitted, task not started yet
        self._draining = False
        self._slots: asyncio.Semaphore | None = None
        self.budget: Budget | None = None  # chunk text held (characters), made on the loop
        self.holding = self.holding_peak = 0  # characters of chunk text held right now / at most
        self.counts = {"completed": 0, "failed": 0, "taken_over": 0}
        self.text_chars = TEXT_LIMIT_CHARS  # the longest text the file content endpoint gives back whole
        self.leases = None  # PostgreSQL: ``ingest_lease.Leases``
        self._leasing: asyncio.Task | None = None
        self._committing: dict[int, Callable[[], None]] = {}  # commits in flight: how to cut each short
        self._stopped: asyncio.Event | None = None  # set on stop: a request waiting for its files answers

    def marker(self) -> bytes | None:
        faults = getattr(self.state.config, "faults", None)
        return getattr(faults, "ingest_fail_marker", None)

    # ------------------------------------------------------------------ lifecycle

    async def startup(self) -> None:
        self.loop = asyncio.get_running_loop()
        self._slots = asyncio.Semaphore(IN_FLIGHT)
        self._stopped = asyncio.Event()
        self.budget = Budget(int(self.limits.pending_mb * (1 << 20)))
        if getattr(self.state.store, "backend", None) == "postgres":
            self._leasing = self.loop.create_task(self._lease_loop(), name="asstctl-ingest-leases")
        else:
            self.loop.create_task(self.resume(), name="asstctl-ingest-resume")

    async def _lease_loop(self) -> None:
        """PostgreSQL: renew the leases of the files being ingested here and take over abandoned ones."""
        from asstctl.server.ingest_lease import Leases
        from asstctl.server.replicas import lease_seconds

        lease = lease_seconds()
        try:
            self.leases = await self._thread(Leases, self.state.store, lease)
        except Exception as exc:  # the store went away (a stop right after start)
            log.warning("ingestion leases unavailable (%s): files left in progress resume at the next start",
                        type(exc).__name__)
            return
        while not self.pool.closed:
            try:
                mine = [*self.tasks, *self._queued_tokens()]
                await self._thread(self.leases.renew, mine)
                found = await self._thread(self.leases.abandoned, set(mine))
            except Exception as exc:  # the database is unreachable for now: try again at the next round
                log.warning("ingestion leases: %s", type(exc).__name__)
                found = []
            for vs_id, item in found:
                if not self.pool.closed:
                    self.submit(vs_id, item["id"], item.get("chunking_strategy"), item.get("_ingest") or "")
                    self.counts["taken_over"] += 1
            if found:
                log.info("resuming the ingestion of %d file(s) left in progress by a stopped replica", len(found))
            await asyncio.sleep(lease / 4)

    async def resume(self) -> None:
        """Files a previous server left ``in_progress`` (it stopped mid-ingestion): ingest them again."""
        try:
            found = await self._thread(self._unfinished)
        except Exception:  # the store went away (a stop right after start)
            return
        for vs_id, item in found:
            self.submit(vs_id, item["id"], item.get("chunking_strategy"), item.get("_ingest") or "")
        if found:
            log.info("resuming the ingestion of %d file(s) left in progress", len(found))

    def _unfinished(self) -> list[tuple[str, dict]]:
        from asstctl.server.ingest_lease import pending

        return pending(self.state.store)  # through the index of pending files, not every file of every store

    def stopping(self) -> None:
        """A stop was asked: end the workers now (their files stay ``in_progress``), start nothing new, cut
        the commits in flight short (they roll back: the next start resumes their files) and let the
        requests waiting for files answer with what stands."""
        self.pool.close()
        if self._stopped is not None:
            self._stopped.set()
        if self._committing:
            threading.Thread(target=self._cut_commits, name="asstctl-ingest-stop", daemon=True).start()

    def _cut_commits(self, patience: float = 8.0) -> None:
        """Cancel the statements of the commits in flight until none is left (a commit between two
        statements when cancelled meets the next cancel; one starting after the stop refuses itself)."""
        deadline = time.monotonic() + patience
        while self._committing and time.monotonic() < deadline:
            for cancel in list(self._committing.values()):
                try:
                    cancel()
                except Exception:  # noqa: BLE001 - the connection is gone already: nothing to cut
                    pass
            time.sleep(0.05)

    async def shutdown(self) -> None:
        """End the workers and every task; unfinished files stay ``in_progress`` for the next start."""
        self.pool.close()
        if self._leasing is not None:
            self._leasing.cancel()
        if self.leases is not None:
            try:  # at most 2 s: with the database down, a stop would wait for the pool's connection timeout
                await asyncio.wait_for(self._thread(self.leases.drop), 2.0)
            except Exception:  # noqa: BLE001 - the store is closing or gone: the leases run out instead
                pass
        queued, self.queued = list(self.queued), collections.deque()
        for item in queued:  # never started: they stay in_progress for the next start
            if not item[4].done():
                item[4].set_result(None)
        tasks = [task for _, task in list(self.tasks.values())]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=2.0)
        if self._batcher[1] is not None:
            await self._batcher[1].aclose()
        self.threads.shutdown(wait=False, cancel_futures=True)
        self.committer.shutdown(wait=False, cancel_futures=True)
        self.runners.shutdown(wait=False, cancel_futures=True)

    @property
    def batcher(self) -> EmbeddingBatcher | None:
        """The batcher of ``state.config.embeddings`` (None without), made when first needed."""
        from asstctl.server.retrieval.embeddings import EmbeddingBatcher

        embeddings = getattr(self.state.config, "embeddings", None)
        if self._batcher[0] is not embeddings:
            if embeddings is not None and self.limits.embeddings_batch:
                embeddings = dataclasses.replace(embeddings, batch_size=self.limits.embeddings_batch)
            self._batcher = (getattr(self.state.config, "embeddings", None),
                             EmbeddingBatcher(embeddings) if embeddings is not None else None)
        return self._batcher[1]

    def stats(self) -> dict[str, Any]:
        return {"in_flight": len(self.tasks) + len(self.queued), **self.counts, "pool": self.pool.stats(),
                "chunk_chars": {"held": self.holding, "peak": self.holding_peak,
                                "budget": self.budget.total if self.budget else None},
                "embedding_requests": self._batcher[1].requests if self._batcher[1] else 0}

    # ------------------------------------------------------------------ submitting and waiting

    def submit(self, vs_id: str, file_id: str, strategy: dict | None, token: str) -> Future:
        """Ingest a file committed ``in_progress`` with ``token`` (from any thread)."""
        done: Future = Future()
        pending = PENDING.get()
        if pending is not None:
            pending.append(token)

        if self.loop is None or self.loop.is_closed():
            done.set_result(None)  # no loop (yet): the next start resumes it
            return done
        self.queued.append((vs_id, file_id, strategy, token, done))
        if _on(self.loop):
            self._drain_soon()
        else:
            self.loop.call_soon_threadsafe(self._drain_soon)
        return done

    def _drain_soon(self) -> None:
        if not self._draining:
            self._draining = True
            self.loop.call_soon(self._drain)

    def _drain(self) -> None:
        """Start the tasks of up to ``STARTS_PER_TURN`` queued files, the rest in the loop's next turns: a
        2,000-file batch's tasks made at once held the loop (and every request) for a few hundred ms."""
        for _ in range(min(STARTS_PER_TURN, len(self.queued))):
            vs_id, file_id, strategy, token, done = self.queued.popleft()
            task = self.loop.create_task(self._ingest(vs_id, file_id, strategy, token))
            self.tasks[token] = (vs_id, task)
            task.add_done_callback(lambda t, token=token, done=done: self._ended(token, t, done))
        self._draining = bool(self.queued)
        if self._draining:
            self.loop.call_soon(self._drain)

    def _queued_tokens(self) -> list[str]:
        return [item[3] for item in list(self.queued)]

    def _ended(self, token: str, task: asyncio.Task, done: Future) -> None:
        if self.tasks.get(token, (None, None))[1] is task:
            del self.tasks[token]
        if not task.cancelled() and task.exception() is not None:
            log.error("ingestion failed unexpectedly", exc_info=task.exception())
        done.set_result(None)

    async def settled(self, vs_ids: list[str] | None = None, tokens: list[str] | None = None,
                      timeout: float = 30.0) -> bool:
        """Wait (at most ``timeout`` s) until the files of these stores / with these tokens are ingested."""
        if self.loop is None or self.loop.is_closed():
            return True
        if not _on(self.loop):  # another loop (a tool run directly): wait on the server's loop
            waiting = asyncio.run_coroutine_threadsafe(self.settled(vs_ids, tokens, timeout), self.loop)
            return await asyncio.wrap_future(waiting)
        # sets: a 2,000-file batch's 2,000 tokens looked up in a list of them held the loop ~100 ms
        stores, mine = set(vs_ids or ()), set(tokens or ())
        await asyncio.sleep(0)  # let submissions from threads start
        while any(item[0] in stores or item[3] in mine for item in list(self.queued)):
            await asyncio.sleep(0)  # ... and the queued ones (a few turns of the loop: STARTS_PER_TURN each)
        pending = [task for token, (vs_id, task) in list(self.tasks.items()) if vs_id in stores or token in mine]
        if not pending:
            return True
        every = asyncio.ensure_future(asyncio.wait(pending))  # (cancelling it leaves the files' tasks alone)
        stop = asyncio.ensure_future(self._stopped.wait())  # a stop ends the wait: the answer is what stands
        try:
            await asyncio.wait([every, stop], timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            every.cancel()
            stop.cancel()
        return all(task.done() for task in pending)

    # ------------------------------------------------------------------ one file

    async def _thread(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(self.threads, fn, *args)

    async def _run(self, job: dict, key: str = "") -> tuple:
        """A job in a thread when it is small (``pool.small``), else on the worker pool, taken round-robin
        per ``key`` (the vector store) so one store's slow files do not hold another's."""
        if small(job):
            return await asyncio.get_running_loop().run_in_executor(self.runners, run_job, job)
        return await asyncio.wrap_future(self.pool.submit(job, key))

    async def _ingest(self, vs_id: str, file_id: str, strategy: dict | None, token: str) -> None:
        async with self._slots:
            held = [0, 0]  # (characters reserved in the budget, characters of chunk text held)
            try:
                await self._ingest_held(vs_id, file_id, strategy, token, held)
            finally:
                self.holding -= held[1]
                await self.budget.give(held[0])

    async def _ingest_held(self, vs_id: str, file_id: str, strategy: dict | None, token: str, held: list) -> None:
        try:
            if self.pool.closed:
                raise PoolClosed("the server is stopping")
            status, error, pieces, vectors = await self._work(vs_id, file_id, strategy, held)
            if self.pool.closed:
                raise PoolClosed("the server is stopping")
        except PoolClosed:
            return  # stopping: the file stays in_progress and the next start resumes it
        except Exception as exc:  # a store or pool failure: the file must not stay in_progress
            if self.pool.closed:
                return  # ... unless the server is stopping under it: the next start resumes it
            log.error("ingesting %s failed: %s", file_id, exc)
            status, error, pieces, vectors = "failed", {"code": "server_error", "message": (
                f"The file {file_id} could not be ingested: {type(exc).__name__}.")}, None, None
        try:
            await asyncio.get_running_loop().run_in_executor(
                self.committer, self._commit, vs_id, file_id, token, status, error, pieces, vectors)
        except Exception:
            if self.pool.closed:
                return  # cut short by the stop: rolled back, the next start resumes the file
            raise
        self.counts[status] += 1

    async def _work(self, vs_id: str, file_id: str, strategy: dict | None, held: list):
        file = await self._thread(self.state.store.get, "file", file_id)
        if file is None:
            return "failed", {"code": "invalid_file", "message": f"The file {file_id} was deleted."}, None, None
        held[0] = await self.budget.take(estimate(int(file.get("bytes") or 0), chunking.sizes(strategy)))
        job = await self._thread(self._job, file, chunking.sizes(strategy))
        if job[0] == "error":
            return "failed", {"code": job[1], "message": job[2]}, None, None
        try:
            result = await self._run(job[1], vs_id)
        finally:
            if job[1].get("path"):
                await self._thread(os.unlink, job[1]["path"])
        if result[0] != "ok":
            return "failed", {"code": result[1], "message": result[2]}, None, None
        from asstctl.server.retrieval.embeddings import EmbeddingsError

        pieces, vectors, batcher = result[1], None, self.batcher
        held[1] = chars(pieces)
        self.holding += held[1]
        self.holding_peak = max(self.holding_peak, self.holding)
        held[0] = await self.budget.resize(held[0], held[1])
        if batcher is not None and pieces:
            try:
                vectors = await batcher.embed([text for text, _ in pieces], [tokens for _, tokens in pieces])
            except EmbeddingsError as exc:
                return "failed", {"code": "server_error", "message": str(exc)}, None, None
        return "completed", None, pieces, (batcher.model, vectors) if vectors is not None else None

    def _job(self, file: dict, sizes: tuple[int, int], check: bool = True) -> tuple:
        """``("job", job)`` for the pool (bytes in memory or a temporary copy), or ``("error", code, message)``."""
        chunks = self.state.store.read_blob(file["id"]) or ()
        job: dict[str, Any] = {"filename": file.get("filename") or "", "sizes": sizes,
                               "max_tokens": self.limits.max_file_tokens}
        held, size, out, tail, marker = [], 0, None, b"", self.marker() if check else None
        try:
            for chunk in chunks:
                if marker and marker in tail + chunk:
                    return "error", "invalid_file", f"The file {file['id']} could not be parsed (injected failure)."
                tail = chunk[-len(marker):] if marker else b""
                size += len(chunk)
                if out is None and size > INLINE:
                    out = tempfile.NamedTemporaryFile(prefix="asstctl-ingest-", delete=False)
                    out.writelines(held)
                    held = []
                if out is None:
                    held.append(chunk)
                else:
                    out.write(chunk)
        except BaseException:
            if out is not None:
                out.close()
                os.unlink(out.name)
            raise
        if out is None:
            job["data"] = b"".join(held)
        else:
            out.close()
            job["path"] = out.name
        return "job", job

    def _commit(self, vs_id: str, file_id: str, token: str, status: str, error, pieces, vectors) -> None:
        from asstctl.server.retrieval import retriever_of

        store, retriever = self.state.store, retriever_of(self.state)
        with store.transaction(), self._cuttable(store):
            # the record, and what ``finish`` reads (the file, the store's counts), with BEGIN (PostgreSQL)
            store.read_ahead([("get", "vector_store_file", file_id, vs_id), ("get", "file", file_id, None),
                              ("get", "vector_store", vs_id, "")])
            item = store.get("vector_store_file", file_id, vs_id)
            if item is None or item["status"] != "in_progress" or (item.get("_ingest") or "") != token:
                return  # detached, re-attached or cancelled meanwhile: this result is stale
            if status == "completed":
                model, vectors = vectors if vectors is not None else (None, None)
                retriever.index(vs_id, file_id, pieces, vectors, model)
            else:
                retriever.remove(vs_id, file_id)
            self.finish(item, status, error)

    @contextlib.contextmanager
    def _cuttable(self, store):
        """Inside a commit's transaction: a stop may cancel its statements (PostgreSQL); after a stop it refuses."""
        cancel = getattr(store, "canceller", lambda: None)()
        key = threading.get_ident()
        if cancel is not None:
            self._committing[key] = cancel
        try:
            if self.pool.closed:
                raise PoolClosed("the server is stopping")
            yield
        finally:
            self._committing.pop(key, None)

    async def text(self, file: dict) -> str:
        """A file's whole extracted text, from a worker (the file content endpoint); its raw UTF-8
        (at most ``READ_BACK`` bytes) when its format has none (``unsupported_file``). Any other failure
        (past ``text_chars`` characters, a worker's memory or time limit, bytes its parser rejects) is a
        400 whose message says which, never the raw bytes in its place."""
        job = await self._thread(self._job, file, chunking.AUTO, False)
        try:
            result = await self._run({**job[1], "mode": "text", "max_chars": self.text_chars})
        finally:
            if job[1].get("path"):
                await self._thread(os.unlink, job[1]["path"])
        if result[0] == "ok":
            return result[1]
        if result[1] != "unsupported_file":
            raise APIError(400, f"The content of file {file['id']} cannot be read back: {result[2]}")
        return (await self._thread(self._head, file["id"])).decode("utf-8", errors="replace")

    def _head(self, file_id: str) -> bytes:
        data = b""
        for chunk in self.state.store.read_blob(file_id) or ():
            data += chunk
            if len(data) >= READ_BACK:
                break
        return data[:READ_BACK]


def _on(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False
