"""Planning knowledge: vector store actions with their file-level changes, uploads, and the deletion of
this project's uploads that nothing uses any more (names and references: asstctl.knowledge).

* a store declared in a spec: ``create``, or ``update`` when its settings (name, metadata, expires_after)
  or its files changed (``+``/``-``/``~`` entries matched by path, compared by sha256 and chunking);
* a store of this project no spec declares: kept (``no-op``) unless ``--prune``; under destroy, deleted;
  duplicates (several stores with one key) keep the oldest and are deleted only with ``--prune`` (or destroy);
  a store of a ``prevent_destroy`` spec (or used by a ``prevent_destroy`` assistant) is never deleted (``blocked``);
* an upload is deleted once nothing that remains after apply uses it: no kept store holds it and no kept
  assistant (this project's or a foreign one) names it in ``tool_resources``. These deletions are part
  of every apply: files are content, not declared objects (a removed file has no spec to prune).
"""

from __future__ import annotations

from typing import Any

from asstctl.reconcile.diff import FieldChange, field_changes
from asstctl.reconcile.knowledge import (ATTR_PATH, FileDeletion, KnowledgeRemote, Upload, code_file_ops, desired_files, ref_name, store_content,
                               store_file_ops, store_fingerprint, store_ref, upload_name, with_resources)
from asstctl.ownership import SPEC_HASH, spec_hash, split_hash_tag, tags
from asstctl.reconcile.plan import CREATE, DELETE, DESTROY_MODE, NOOP, UPDATE, VECTOR_STORE, Action, Plan
from asstctl.reconcile.remote import RemoteState, state_fingerprint


def knowledge_view(specs: Any, knowledge: KnowledgeRemote | None, project: str) -> tuple[list[Any], dict[str, str] | None]:
    """The specs with their derived ``tool_resources``, and remote id -> reference (None without knowledge)."""
    specs = list(specs)
    if knowledge is None:
        return specs, None
    # duplicates of a store keep their ids: an assistant using one is moved to the kept store before it goes
    names = {**knowledge.upload_ids(), **{obj["id"]: store_ref(key) for key, obj in knowledge.stores.managed.items()}}
    return [with_resources(spec) for spec in specs], names


def add_knowledge(plan: Plan, specs: list[Any], stores: list[Any], remote: RemoteState, knowledge: KnowledgeRemote) -> Plan:
    destroy = plan.mode == DESTROY_MODE
    desired = {} if destroy else {store.key: store for store in stores}
    protected = protected_stores(specs, stores)
    plan.actions = store_actions(desired, knowledge, plan, protected) + plan.actions
    plan.refs = knowledge.refs()
    files = {} if destroy else desired_files(specs, desired.values())
    plan.uploads = [upload(ref, local, plan.project) for ref, local in files.items() if ref not in plan.refs]
    names, by_key = knowledge_view([], knowledge, plan.project)[1], {spec.key: spec for spec in specs}
    for action in plan.actions:
        if action.object != VECTOR_STORE and action.key in by_key and action.kind in (CREATE, UPDATE):
            action.files = code_file_ops(by_key[action.key], code_ids(remote_object(remote, action.remote_id), names))
    plan.file_deletions = unused_uploads(plan, remote, knowledge)
    plan.remote_fingerprint = state_fingerprint({**remote.fingerprints(), **knowledge.fingerprints()})
    return plan


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
        action = delete_store(obj, key, reason, knowledge, blocked)
    else:
        files = knowledge.store_files.get(obj["id"], [])
        action = Action(NOOP, key, obj["id"], store_fingerprint(obj, files), object=VECTOR_STORE,
                        reason="another vector store with this key is managed; kept: `asstctl apply --prune` deletes it")
    action.duplicate = True
    return action


def store_action(store: Any, obj: dict[str, Any] | None, knowledge: KnowledgeRemote, project: str) -> Action:
    desired = store_content(store.fields)
    files = knowledge.store_files.get(obj["id"], []) if obj else []
    action = Action(NOOP, store.key, source=str(store.path), object=VECTOR_STORE,
                    files=store_file_ops(store, files, project))
    if obj is None:
        action.kind, action.body = CREATE, store_body(store, project, create=True)
        action.changes = field_changes(store_content({}), desired)
        return action
    action.remote_id, action.fingerprint = obj["id"], store_fingerprint(obj, files)
    action.changes, action.drift = store_changes(obj, desired)
    if action.changes:
        action.body = store_body(store, project, create=False)
    action.kind = UPDATE if action.changes or action.files else NOOP
    return action


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
        return delete_store(obj, key, "destroy", knowledge, blocked)
    if plan.prune:
        return delete_store(obj, key, "removed from the specs (--prune)", knowledge, None)
    reason = "not in the specs: kept (re-run with --prune to delete it)"
    files = knowledge.store_files.get(obj["id"], [])
    return Action(NOOP, key, obj["id"], store_fingerprint(obj, files), reason=reason, object=VECTOR_STORE)


def delete_store(obj: dict[str, Any], key: str, reason: str, knowledge: KnowledgeRemote, blocked: str | None) -> Action:
    fingerprint = store_fingerprint(obj, knowledge.store_files.get(obj["id"], []))
    action = Action(DELETE, key, obj["id"], fingerprint, reason=reason, object=VECTOR_STORE)
    if blocked:
        action.blocked, action.reason = True, f"{reason}; {blocked}"
    return action


def upload(ref: str, local: Any, project: str) -> Upload:
    return Upload(ref=ref, path=local.label, source=str(local.path.resolve()), sha256=local.sha256, bytes=local.size,
                  filename=upload_name(project, local))


def remote_object(remote: RemoteState, remote_id: str | None) -> dict[str, Any] | None:
    return next((obj for obj in remote.owned() if obj["id"] == remote_id), None) if remote_id else None


def code_ids(obj: dict[str, Any] | None, names: dict[str, str] | None = None) -> list[str]:
    """The code_interpreter file ids of an assistant (as references where ``names`` knows them)."""
    ids = (((obj or {}).get("tool_resources") or {}).get("code_interpreter") or {}).get("file_ids") or []
    return [(names or {}).get(item, item) for item in ids]


def unused_uploads(plan: Plan, remote: RemoteState, knowledge: KnowledgeRemote) -> list[FileDeletion]:
    """This project's uploads that nothing remaining after this plan uses."""
    used = {file_id for action in plan.actions for file_id in kept_ids(action, plan, remote, knowledge)}
    used |= {file_id for obj in remote.foreign for file_id in code_ids(obj)}
    paths = {item["id"]: item["attributes"][ATTR_PATH] for items in knowledge.store_files.values() for item in items
             if ATTR_PATH in (item.get("attributes") or {})}
    deletions = [FileDeletion(item["id"], item["filename"], paths.get(item["id"], ref_name(ref)))
                 for ref, items in knowledge.uploads.items() for item in items if item["id"] not in used]
    replaced = {item.path for item in plan.uploads}
    for deletion in deletions:
        if deletion.path in replaced:
            deletion.reason = "replaced by its new content"
    return deletions


def kept_ids(action: Action, plan: Plan, remote: RemoteState, knowledge: KnowledgeRemote) -> set[str]:
    """The file ids ``action``'s object uses once it is carried out."""
    if action.kind == DELETE and not action.blocked:
        return set()
    if action.object == VECTOR_STORE:
        detached = {op.file_id for op in action.files if op.op in ("-", "~")}
        existing = {item["id"] for item in knowledge.store_files.get(action.remote_id, [])} - detached
        return existing | {plan.refs[op.ref] for op in action.files if op.ref in plan.refs}
    if action.kind in (CREATE, UPDATE):
        return {plan.refs.get(item, item) for item in code_ids(action.body)}
    return set(code_ids(remote_object(remote, action.remote_id)))

