"""The vector store kind: declared stores (asstctl.spec) against this project's stores and their files.

Planning:

* a store declared in a spec: ``create``, or ``update`` when its settings (name, metadata, expires_after)
  or its files changed (``+``/``-``/``~`` entries matched by path, compared by sha256 and chunking);
* a store of this project no spec declares: kept (``no-op``) unless ``--prune``; under destroy, deleted;
  duplicates (several stores with one key) keep the oldest and are deleted only with ``--prune`` (or destroy);
  a store of a ``prevent_destroy`` spec (or used by a ``prevent_destroy`` assistant) is never deleted (``blocked``).

Applying (after the uploads, before the assistants): every store's settings and files, then the wait for
ingestion; deletions after the assistants'. Attaching sets the file's ``attributes`` (project, sha256, path)
and the store's chunking strategy; a swap (``~``) attaches the new upload before it detaches the old one;
a step that fails keeps what it would have replaced (``run.kept``). Ingestion is polled until every attached
file is ``completed`` (or ``failed``/``cancelled``: reported by its path with the API's ``last_error.message``)
or ``ingestion_timeout`` seconds passed.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

from asstctl.errors import AsstctlError
from asstctl.ownership import SPEC_HASH, spec_hash, split_hash_tag, tags
from asstctl.progress import progress_bar
from asstctl.reconcile.diff import FieldChange, field_changes
from asstctl.reconcile.kinds.base import PlanContext, concurrently, deletion, guarded
from asstctl.reconcile.knowledge import (ATTR_PATH, ATTR_PROJECT, ATTR_SHA, KnowledgeRemote, chunking, file_attributes,
                                         file_ref, read_knowledge, store_content, store_fingerprint, store_ref)
from asstctl.reconcile.model import CREATE, DELETE, DESTROY_MODE, NOOP, UPDATE, VECTOR_STORE, Action, FileOp, Outcome, Plan

INGESTION_TIMEOUT = 300.0
POLL_INTERVAL = 0.5
ATTACH, DETACH, INGEST = "attach", "detach", "ingest"


def store_label(key: str) -> str:
    return f"vector store {key}"


class VectorStores:
    object = VECTOR_STORE

    def plan(self, ctx: PlanContext, plan: Plan) -> None:
        if ctx.knowledge is None:
            return
        desired = {} if ctx.destroy else {store.key: store for store in ctx.stores}
        protected = protected_stores(ctx.specs, ctx.stores)
        plan.actions += store_actions(desired, ctx.knowledge, plan, protected)

    def settle(self, ctx: PlanContext, plan: Plan) -> None:
        pass

    def apply_changes(self, run: Any) -> list[Outcome]:
        """Every store's settings and files, then the wait for ingestion."""
        synced = concurrently(lambda action: sync_store(run, action), stores(run.plan, deleting=False), run.parallelism)
        return [outcome for outcomes in synced for outcome in outcomes] + wait(run)

    def apply_deletions(self, run: Any) -> list[Outcome]:
        return concurrently(lambda action: delete_store(run, action), stores(run.plan, deleting=True), run.parallelism)


# --- planning --------------------------------------------------------------------------------------------

def protected_stores(specs: list[Any], stores: list[Any]) -> dict[str, str]:
    """key -> why a store must not be deleted."""
    out = {store.key: "blocked by prevent_destroy" for store in stores if store.prevent_destroy}
    out.update({spec.vector_store: f"blocked: used by {spec.key}, which sets prevent_destroy"
                for spec in specs if spec.prevent_destroy and spec.vector_store})
    return out


def store_actions(desired: dict[str, Any], knowledge: KnowledgeRemote, plan: Plan, protected: dict[str, str]) -> list[Action]:
    managed = knowledge.stores.managed
    actions = [store_action(store, managed.get(key), knowledge, plan.project) for key, store in desired.items()]
    for key, obj in managed.items():
        if key not in desired:
            actions.append(orphan_store(obj, key, plan, knowledge, protected.get(key)))
    actions += [duplicate_store(obj, key, plan, knowledge, protected.get(key))
                for key, objs in knowledge.stores.duplicates.items() for obj in objs]
    return actions


def duplicate_store(obj: dict[str, Any], key: str, plan: Plan, knowledge: KnowledgeRemote, blocked: str | None) -> Action:
    """A further store with a key: deleted under destroy or --prune (the oldest is kept), else kept and reported."""
    if plan.mode == DESTROY_MODE or plan.prune:
        reason = "destroy" if plan.mode == DESTROY_MODE else "--prune: the oldest vector store with this key is kept"
        action = delete_store_action(obj, key, reason, knowledge, blocked)
    else:
        action = Action(NOOP, key, obj["id"], fingerprint(obj, knowledge), object=VECTOR_STORE,
                        reason="another vector store with this key is managed; kept: `asstctl apply --prune` deletes it")
    action.duplicate = True
    return action


def store_action(store: Any, obj: dict[str, Any] | None, knowledge: KnowledgeRemote, project: str) -> Action:
    desired = store_content(store.fields)
    files = knowledge.store_files[obj["id"]] if obj else []
    ops = store_file_ops(store, files, project)
    if obj is None:
        return Action(CREATE, store.key, source=str(store.path), object=VECTOR_STORE, files=ops,
                      changes=field_changes(store_content({}), desired), body=store_body(store, project, create=True))
    changes, drift = store_changes(obj, desired)
    return Action(UPDATE if changes or ops else NOOP, store.key, obj["id"], store_fingerprint(obj, files), changes,
                  drift=drift, source=str(store.path), object=VECTOR_STORE, files=ops,
                  body=store_body(store, project, create=False) if changes else None)


def store_changes(obj: dict[str, Any], desired: dict[str, Any]) -> tuple[list[FieldChange], bool]:
    remote_content = store_content(obj)
    changes = field_changes(remote_content, desired)
    recorded, _ = split_hash_tag(obj.get("metadata"))
    drift = recorded != spec_hash(remote_content)
    if not changes and drift:
        changes = [FieldChange(f"metadata.{SPEC_HASH}", recorded, spec_hash(desired))]
    return changes, drift and bool(changes)


def store_body(store: Any, project: str, create: bool) -> dict[str, Any]:
    """A create/update body: name, expires_after (``None`` removes it on update), user metadata + tags."""
    content = store_content(store.fields)
    body = {"name": content["name"], "metadata": {**content["metadata"], **tags(project, store.key, spec_hash(content))}}
    if content["expires_after"] or not create:
        body["expires_after"] = content["expires_after"]
    return body


def orphan_store(obj: dict[str, Any], key: str, plan: Plan, knowledge: KnowledgeRemote, blocked: str | None) -> Action:
    if plan.mode == DESTROY_MODE:
        return delete_store_action(obj, key, "destroy", knowledge, blocked)
    if plan.prune:
        return delete_store_action(obj, key, "removed from the specs (--prune)", knowledge, None)
    reason = "not in the specs: kept (re-run with --prune to delete it)"
    return Action(NOOP, key, obj["id"], fingerprint(obj, knowledge), reason=reason, object=VECTOR_STORE)


def delete_store_action(obj: dict[str, Any], key: str, reason: str, knowledge: KnowledgeRemote,
                        blocked: str | None) -> Action:
    action = Action(DELETE, key, obj["id"], fingerprint(obj, knowledge), reason=reason, object=VECTOR_STORE)
    if blocked:
        action.blocked, action.reason = True, f"{reason}; {blocked}"
    return action


def fingerprint(obj: dict[str, Any], knowledge: KnowledgeRemote) -> str:
    """A store's fingerprint as read (the files of every store of this project were read with it)."""
    return store_fingerprint(obj, knowledge.store_files[obj["id"]])


def store_file_ops(store: Any, remote_files: list[dict[str, Any]], project: str) -> list[FileOp]:
    """What changes in a store's files: matched by path (attribute), compared by sha256 and chunking."""
    ours = {item["attributes"][ATTR_PATH]: item for item in remote_files if _ours(item, project)}
    ops = [_desired_op(local, ours.pop(local.label, None), store, project) for local in store.files]
    ops += [FileOp("-", path, file_id=item["id"]) for path, item in sorted(ours.items())]
    return [op for op in ops if op is not None]


def _ours(item: dict[str, Any], project: str) -> bool:
    attributes = item.get("attributes") or {}
    return attributes.get(ATTR_PROJECT) == project and bool(attributes.get(ATTR_PATH))


def _desired_op(local: Any, item: dict[str, Any] | None, store: Any, project: str) -> FileOp | None:
    attach = FileOp("+", local.label, file_ref(local), attributes=file_attributes(project, local),
                    chunking_strategy=store.chunking_strategy)
    if item is None:
        return attach
    reason = _swap_reason(local, item, store)
    return replace(attach, op="~", file_id=item["id"], reason=reason) if reason else None


def _swap_reason(local: Any, item: dict[str, Any], store: Any) -> str | None:
    if item["attributes"].get(ATTR_SHA) != local.sha256:
        return "content changed"
    if item.get("status") in ("failed", "cancelled"):
        return f"ingestion {item['status']} before: again"
    if chunking(item.get("chunking_strategy")) != chunking(store.chunking_strategy):
        return "chunking changed"
    return None


# --- applying --------------------------------------------------------------------------------------------

def stores(plan: Plan, deleting: bool) -> list[Action]:
    return [action for action in plan.actions if action.object == VECTOR_STORE and action.executable
            and (action.kind == DELETE) == deleting]


def sync_store(run: Any, action: Action) -> list[Outcome]:
    first = guarded(run, store_label(action.key), action.kind, action.remote_id, lambda: _store(run, action))
    if not first.ok:
        run.kept.update(op.file_id for op in action.files if op.file_id)
        return [first]
    return [first] + [file_op(run, first.remote_id, op, action.key) for op in action.files]


def _store(run: Any, action: Action) -> Outcome:
    label = store_label(action.key)
    if action.kind == CREATE:
        find = lambda: read_knowledge(run.backend, run.plan.project).stores.managed.get(action.key)  # noqa: E731
        new_id, note = run.backend.create_vector_store(action.body, find)
        with run.lock:
            run.refs[store_ref(action.key)] = new_id
        return Outcome(label, CREATE, True, new_id, note=note)
    if action.body:
        run.backend.update_vector_store(action.remote_id, action.body)
    return Outcome(label, UPDATE, True, action.remote_id, note=None if action.body else "files")


def file_op(run: Any, vs_id: str, op: Any, key: str) -> Outcome:
    kind = DETACH if op.op == "-" else ATTACH
    outcome = guarded(run, op.path, kind, op.file_id, lambda: _file_op(run, vs_id, op, key))
    if not outcome.ok and op.file_id:
        run.kept.add(op.file_id)
    return outcome


def _file_op(run: Any, vs_id: str, op: Any, key: str) -> Outcome:
    if op.op == "-":
        run.backend.detach_file(vs_id, op.file_id)
        return Outcome(op.path, DETACH, True, op.file_id, note=f"from {store_label(key)}")
    file_id = run.refs.get(op.ref)
    if file_id is None:
        raise AsstctlError("not attached: its upload failed")
    if op.file_id == file_id:  # same upload, attached again (new chunking, failed ingestion)
        run.backend.detach_file(vs_id, file_id)
    options = {"chunking_strategy": op.chunking_strategy} if op.chunking_strategy else {}
    item = run.backend.attach_file(vs_id, file_id, op.attributes, options)
    if op.file_id and op.file_id != file_id:
        run.backend.detach_file(vs_id, op.file_id)
    with run.lock:
        run.pending.append((vs_id, file_id, op.path, item))
    return Outcome(op.path, ATTACH, True, file_id, note=f"to {store_label(key)}")


def wait(run: Any) -> list[Outcome]:
    """Poll attached files until ingested, failed, or the timeout; failures are outcomes named by path."""
    if not run.pending:
        return []
    deadline = time.monotonic() + run.timeout
    waiting, outcomes = list(run.pending), []
    with progress_bar(run.progress, len(waiting), "Waiting for ingestion", minimum=1) as bar:
        while waiting:
            still = [entry for entry in waiting if entry[3].status == "in_progress"]
            outcomes += [ingestion_failure(entry) for entry in waiting if entry[3].status in ("failed", "cancelled")]
            if bar is not None:
                bar.update(len(waiting) - len(still))
            if not still or time.monotonic() >= deadline:
                waiting = still
                break
            time.sleep(POLL_INTERVAL)
            waiting = [refresh(run, entry) for entry in still]
    return outcomes + [timed_out(entry, run.timeout) for entry in waiting]


def refresh(run: Any, entry: tuple[str, str, str, Any]) -> tuple[str, str, str, Any]:
    vs_id, file_id, path, _ = entry
    return vs_id, file_id, path, run.backend.store_file(vs_id, file_id)


def ingestion_failure(entry: tuple[str, str, str, Any]) -> Outcome:
    _, file_id, path, item = entry
    error = item.last_error
    reason = f"{error.message} ({error.code})" if error is not None else "no reason given"
    return Outcome(path, INGEST, False, file_id, reason if item.status == "failed" else f"{item.status}: {reason}")


def timed_out(entry: tuple[str, str, str, Any], timeout: float) -> Outcome:
    return Outcome(entry[2], INGEST, False, entry[1],
                   f"ingestion did not finish within {timeout:g} s (still in_progress); raise --ingestion-timeout "
                   "or run `asstctl apply` again later")


def delete_store(run: Any, action: Action) -> Outcome:
    label = store_label(action.key)
    return guarded(run, label, DELETE, action.remote_id,
                   lambda: deletion(label, action.remote_id, run.backend.delete_vector_store(action.remote_id)))
