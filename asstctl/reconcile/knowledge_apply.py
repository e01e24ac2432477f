"""Applying knowledge (asstctl.knowledge): uploads → vector stores and their files → waiting for ingestion,
before the assistants; then, after them, vector store deletions and the uploads nothing uses any more.

* an upload is read again and checked against the planned sha256 (a file edited since planning is an
  error: plan again); it is sent once (the SDK's own retries only: a duplicate upload a lost response
  may leave is deleted by the next apply, as unused);
* attaching sets the file's ``attributes`` (project, sha256, path) and the store's chunking strategy; a
  swap (``~``) attaches the new upload before it detaches the old one;
* a step that fails keeps what it would have replaced: an old upload whose successor failed is not deleted;
* ingestion is polled until every attached file is ``completed`` (or ``failed``/``cancelled``: reported by
  its path with the API's ``last_error.message``) or ``ingestion_timeout`` seconds passed.
"""

from __future__ import annotations

import hashlib
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Iterable

from asstctl.reconcile.apply import Outcome, create_verified, deleted, describe
from asstctl.progress import progress_bar
from asstctl.errors import AsstctlError
from asstctl.reconcile.knowledge import PURPOSE, is_ref, read_knowledge, store_ref
from asstctl.reconcile.plan import CREATE, DELETE, UPDATE, VECTOR_STORE, Action, Plan
from asstctl.reconcile.remote import transient_retries

INGESTION_TIMEOUT = 300.0
POLL_INTERVAL = 0.5
UPLOAD, ATTACH, DETACH, INGEST = "upload", "attach", "detach", "ingest"


def store_label(key: str) -> str:
    return f"vector store {key}"


class KnowledgeApply:
    """One apply's knowledge steps; ``refs`` grows with the ids of new uploads and stores."""

    def __init__(self, plan: Plan, client: Any, *, parallelism: int = 8, ingestion_timeout: float = INGESTION_TIMEOUT,
                 progress: Callable[..., Any] | None = None, root: Path | str | None = None):
        self.plan, self.client, self.parallelism = plan, client, max(1, parallelism)
        self.timeout, self.progress, self.root = ingestion_timeout, progress, root
        self.refs = dict(plan.refs)
        self.kept: set[str] = set()  # file ids a failed step left in use: never deleted by this apply
        self.pending: list[tuple[str, str, str, Any]] = []  # (store id, file id, path, attached object)
        self.lock = threading.Lock()

    def stores(self, deleting: bool) -> list[Action]:
        return [action for action in self.plan.actions if action.object == VECTOR_STORE and action.executable
                and (action.kind == DELETE) == deleting]

    def map(self, call: Callable[[Any], Any], items: Iterable[Any]) -> list[Any]:
        """``call`` on each item concurrently; the results in the order they finished."""
        done: list[Any] = []

        def one(item: Any) -> None:
            result = call(item)
            with self.lock:
                done.append(result)

        with ThreadPoolExecutor(max_workers=self.parallelism) as pool:
            list(pool.map(one, items))
        return done

    def before_assistants(self) -> list[Any]:
        """Uploads, then every store's settings and files, then the wait for ingestion."""
        outcomes = self.map(self.upload, self.plan.uploads)
        outcomes += [outcome for outcomes_ in self.map(self.sync_store, self.stores(False)) for outcome in outcomes_]
        return outcomes + self.wait()

    def after_assistants(self) -> list[Any]:
        """Store deletions, then the uploads nothing uses any more."""
        outcomes = self.map(self.delete_store, self.stores(True))
        return outcomes + self.map(self.delete_upload, self.plan.file_deletions)

    # --- uploads ----------------------------------------------------------------------------------------

    def upload(self, item: Any) -> Any:
        return guarded(item.path, UPLOAD, None, lambda: self._upload(item))

    def _upload(self, item: Any) -> Any:
        path = Path(self.root) / item.path if self.root is not None else Path(item.source)
        data = path.read_bytes()
        if hashlib.sha256(data).hexdigest() != item.sha256:
            raise AsstctlError(f"{item.path} changed since the plan was made; run `asstctl plan` again")
        files = self.client.with_options(max_retries=0).files
        new_id, note = create_verified(lambda: files.create(file=(item.filename, data), purpose=PURPOSE),
                                       lambda: self._existing_upload(item.ref))
        with self.lock:
            self.refs[item.ref] = new_id
        return Outcome(item.path, UPLOAD, True, new_id, note=note)

    def _existing_upload(self, ref: str) -> dict[str, Any] | None:
        uploads = read_knowledge(self.client, self.plan.project).uploads.get(ref)
        return uploads[0] if uploads else None

    def _existing_store(self, key: str) -> dict[str, Any] | None:
        return read_knowledge(self.client, self.plan.project).stores.managed.get(key)

    # --- stores and their files ------------------------------------------------------------------------

    def sync_store(self, action: Action) -> list[Any]:
        first = guarded(store_label(action.key), action.kind, action.remote_id, lambda: self._store(action))
        if not first.ok:
            self.kept.update(op.file_id for op in action.files if op.file_id)
            return [first]
        return [first] + [self.file_op(first.remote_id, op, action.key) for op in action.files]

    def _store(self, action: Action) -> Any:
        label, stores = store_label(action.key), self.client.vector_stores
        if action.kind == CREATE:
            creator = self.client.with_options(max_retries=0).vector_stores
            new_id, note = create_verified(lambda: creator.create(**action.body),
                                           lambda: self._existing_store(action.key))
            with self.lock:
                self.refs[store_ref(action.key)] = new_id
            return Outcome(label, CREATE, True, new_id, note=note)
        if action.body:
            transient_retries(lambda: stores.update(action.remote_id, **action.body))
        return Outcome(label, UPDATE, True, action.remote_id, note=None if action.body else "files")

    def file_op(self, vs_id: str, op: Any, key: str) -> Any:
        kind = DETACH if op.op == "-" else ATTACH
        outcome = guarded(op.path, kind, op.file_id, lambda: self._file_op(vs_id, op, key))
        if not outcome.ok and op.file_id:
            self.kept.add(op.file_id)
        return outcome

    def _file_op(self, vs_id: str, op: Any, key: str) -> Any:
        if op.op == "-":
            self.detach(vs_id, op.file_id)
            return Outcome(op.path, DETACH, True, op.file_id, note=f"from {store_label(key)}")
        file_id = self.refs.get(op.ref)
        if file_id is None:
            raise AsstctlError("not attached: its upload failed")
        if op.file_id == file_id:  # same upload, attached again (new chunking, failed ingestion)
            self.detach(vs_id, file_id)
        options = {"chunking_strategy": op.chunking_strategy} if op.chunking_strategy else {}
        item = transient_retries(lambda: self.client.vector_stores.files.create(
            vs_id, file_id=file_id, attributes=op.attributes, **options))
        if op.file_id and op.file_id != file_id:
            self.detach(vs_id, op.file_id)
        with self.lock:
            self.pending.append((vs_id, file_id, op.path, item))
        return Outcome(op.path, ATTACH, True, file_id, note=f"to {store_label(key)}")

    def detach(self, vs_id: str, file_id: str) -> None:
        import openai

        try:
            transient_retries(lambda: self.client.vector_stores.files.delete(file_id, vector_store_id=vs_id))
        except openai.NotFoundError:
            pass

    # --- ingestion -------------------------------------------------------------------------------------

    def wait(self) -> list[Any]:
        """Poll attached files until ingested, failed, or the timeout; failures are outcomes named by path."""
        if not self.pending:
            return []
        deadline = time.monotonic() + self.timeout
        waiting, outcomes = list(self.pending), []
        with progress_bar(self.progress, len(waiting), "Waiting for ingestion", minimum=1) as bar:
            while waiting:
                still = [entry for entry in waiting if entry[3].status == "in_progress"]
                outcomes += [ingestion_failure(entry) for entry in waiting if entry[3].status in ("failed", "cancelled")]
                if bar is not None:
                    bar.update(len(waiting) - len(still))
                if not still or time.monotonic() >= deadline:
                    waiting = still
                    break
                time.sleep(POLL_INTERVAL)
                waiting = [self.refresh(entry) for entry in still]
        return outcomes + [timed_out(entry, self.timeout) for entry in waiting]

    def refresh(self, entry: tuple[str, str, str, Any]) -> tuple[str, str, str, Any]:
        vs_id, file_id, path, _ = entry
        item = transient_retries(lambda: self.client.vector_stores.files.retrieve(file_id, vector_store_id=vs_id))
        return vs_id, file_id, path, item

    # --- deletions -------------------------------------------------------------------------------------

    def delete_store(self, action: Action) -> Any:
        return guarded(store_label(action.key), DELETE, action.remote_id,
                       lambda: deleted(store_label(action.key), action.remote_id,
                                       lambda: self.client.vector_stores.delete(action.remote_id)))

    def delete_upload(self, item: Any) -> Any:
        label = f"file {item.path}"
        if item.file_id in self.kept:
            return Outcome(label, DELETE, True, item.file_id, note="kept: a step that replaces it failed")
        return guarded(label, DELETE, item.file_id,
                       lambda: deleted(label, item.file_id, lambda: self.client.files.delete(item.file_id)))

    # --- assistants ------------------------------------------------------------------------------------

    def resolved(self, actions: list[Action]) -> tuple[list[Action], list[Any]]:
        """Assistant actions with references in ``tool_resources`` replaced by ids; failures for the rest."""
        ready, failed = [], []
        for action in actions:
            resources = (action.body or {}).get("tool_resources")
            missing = sorted({item for items in _lists(resources) for item in items if is_ref(item) and item not in self.refs})
            if missing:
                failed.append(Outcome(action.key, action.kind, False, action.remote_id,
                                      f"not applied: {', '.join(missing)} could not be made"))
            else:
                ready.append(self._with_ids(action, resources) if resources else action)
        return ready, failed

    def _with_ids(self, action: Action, resources: dict[str, Any]) -> Action:
        ids = {kind: {name: [self.refs.get(item, item) if is_ref(item) else item for item in items]
                      for name, items in (lists or {}).items()}
               for kind, lists in resources.items()}
        return replace(action, body={**action.body, "tool_resources": ids})


def _lists(resources: dict[str, Any] | None) -> list[list[Any]]:
    return [items for lists in (resources or {}).values() for items in (lists or {}).values() if isinstance(items, list)]


def guarded(key: str, kind: str, remote_id: str | None, call: Callable[[], Any]) -> Any:
    """``call()``'s outcome, or a failed outcome naming ``key`` with the error's first line."""
    import openai

    try:
        return call()
    except (openai.OpenAIError, AsstctlError, OSError) as error:
        return Outcome(key, kind, False, remote_id, describe(error))


def ingestion_failure(entry: tuple[str, str, str, Any]) -> Any:
    _, file_id, path, item = entry
    error = item.last_error
    reason = f"{error.message} ({error.code})" if error is not None else "no reason given"
    return Outcome(path, INGEST, False, file_id, reason if item.status == "failed" else f"{item.status}: {reason}")


def timed_out(entry: tuple[str, str, str, Any], timeout: float) -> Any:
    return Outcome(entry[2], INGEST, False, entry[1],
                   f"ingestion did not finish within {timeout:g} s (still in_progress); raise --ingestion-timeout "
                   "or run `asstctl apply` again later")
