"""The assistant kind: specs against the target's assistants (asstctl.reconcile.remote).

Planning (one action per object, plain data in asstctl.reconcile.model):

* a spec without a remote object → ``create``;
* a spec whose object differs (normalized content, or hidden fields via the spec-hash tag) → ``update``
  with field-level changes and a unified diff of the instructions; ``drift`` when the remote object
  no longer hashes to its spec-hash tag (it was changed outside asstctl);
* otherwise ``no-op``;
* an object of this project without a spec → ``delete`` with ``prune`` (else a reported no-op);
* further objects with the same key (duplicates: ``duplicate`` set) → ``delete`` with ``prune``, keeping the
  oldest (else a reported no-op saying how to remove them);
* under destroy → ``delete`` for everything this project manages.

A deletion of an object whose spec sets ``prevent_destroy`` is ``blocked``. With knowledge read, an
assistant's ``tool_resources`` are compared as references and its code_interpreter files listed (``files``).

Applying: creates and updates once every upload and store they name exists (references resolved to ids),
then deletions; up to ``parallelism`` at once, one progress bar over both.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import PurePosixPath
from typing import Any

from asstctl.progress import progress_bar
from asstctl.errors import AsstctlError
from asstctl.backends.base import describe
from asstctl.ownership import SPEC_HASH, hash_tag, hidden_hash, spec_hash, split_hash_tag, tags, user_metadata
from asstctl.reconcile import normalize
from asstctl.reconcile.diff import REMOVED, FieldChange, field_changes, text_diff
from asstctl.reconcile.kinds.base import PlanContext, concurrently, deletion
from asstctl.reconcile.knowledge import FILE_REF, code_ids, file_ref, is_ref, ref_name, remote_object, symbolic
from asstctl.reconcile.model import (ASSISTANT, CREATE, DELETE, DESTROY_MODE, NOOP, UPDATE, Action, FileOp, Outcome,
                                     Plan)
from asstctl.reconcile.remote import RemoteState, fingerprint, read_remote

# Sent on update for fields the spec no longer sets: back to the server's default.
RESETS = {
    "name": None,
    "description": None,
    "instructions": None,
    "temperature": None,
    "top_p": None,
    "response_format": "auto",
    "tools": [],
}
PROGRESS_FROM = 10  # writes: fewer than this finish before a bar is worth drawing
ORDER = {DELETE: 0, CREATE: 1, UPDATE: 1, NOOP: 1}


class Assistants:
    object = ASSISTANT

    def plan(self, ctx: PlanContext, plan: Plan) -> None:
        by_key = {spec.key: spec for spec in ctx.specs}
        actions = destroy_actions(ctx.remote, by_key) if ctx.destroy else apply_actions(ctx, by_key)
        actions.sort(key=lambda a: (a.key, ORDER[a.kind], a.reason or "", a.remote_id or ""))
        if ctx.knowledge is not None:
            for action in actions:
                if action.key in by_key and action.kind in (CREATE, UPDATE):
                    obj = remote_object(ctx.remote, action.remote_id)
                    action.files = code_file_ops(by_key[action.key], code_ids(obj, ctx.names))
        plan.actions += actions

    def settle(self, ctx: PlanContext, plan: Plan) -> None:
        pass

    def apply_changes(self, run: Any) -> list[Outcome]:
        work = [action for action in run.plan.actions if action.executable and action.object == ASSISTANT]
        ready, unresolved = resolved(run, [action for action in work if action.kind != DELETE])
        deletions = [action for action in work if action.kind == DELETE]
        bar = run.stack.enter_context(progress_bar(run.progress, len(ready) + len(deletions), "Applying",
                                                   minimum=PROGRESS_FROM))
        run.state[ASSISTANT] = (deletions, bar)  # one bar over this kind's writes, until its deletions are done
        return unresolved + concurrently(lambda action: run_action(run, action), ready, run.parallelism, bar)

    def apply_deletions(self, run: Any) -> list[Outcome]:
        deletions, bar = run.state[ASSISTANT]
        outcomes = concurrently(lambda action: run_action(run, action), deletions, run.parallelism, bar)
        run.stack.close()  # closes the bar
        return outcomes


# --- planning --------------------------------------------------------------------------------------------

def apply_actions(ctx: PlanContext, by_key: dict[str, Any]) -> list[Action]:
    remote = ctx.remote
    actions = [spec_action(spec, remote.managed.get(key), ctx.project, ctx.names) for key, spec in by_key.items()]
    actions += [orphan_action(obj, key, ctx.prune) for key, obj in remote.managed.items() if key not in by_key]
    return actions + duplicate_actions(remote, by_key, DELETE if ctx.prune else NOOP)


def destroy_actions(remote: RemoteState, by_key: dict[str, Any]) -> list[Action]:
    actions = [delete_action(obj, key, "destroy", by_key.get(key)) for key, obj in remote.managed.items()]
    return actions + duplicate_actions(remote, by_key, DESTROY_MODE)


def spec_action(spec: Any, obj: dict[str, Any] | None, project: str, names: dict[str, str] | None = None) -> Action:
    if obj is None:
        changes = field_changes(normalize.content({}), desired_content(spec)) + hidden_changes(spec, {})
        diff = text_diff(None, spec.fields.get("instructions"), spec.key)
        body = request_body(spec, project)
        return Action(CREATE, spec.key, changes=changes, instructions_diff=diff or None, body=body, source=str(spec.path))
    return existing_action(spec, obj, project, names)


def existing_action(spec: Any, obj: dict[str, Any], project: str, names: dict[str, str] | None = None) -> Action:
    """``names``: remote ids -> knowledge references, to compare ``tool_resources`` (the fingerprint stays the object's)."""
    raw, obj = obj, symbolic(obj, names) if names else obj
    recorded, _ = split_hash_tag(obj.get("metadata"))
    remote_content = normalize.remote_content(obj, spec.fields, recorded)  # server-resolved omissions: no change
    changes = field_changes(remote_content, desired_content(spec))
    changes += hidden_changes(spec, obj)
    drift = recorded != spec_hash(remote_content)
    if not changes and drift:  # content is as desired but the tag is stale: refresh it
        changes = [FieldChange(f"metadata.{SPEC_HASH}", recorded, desired_tag(spec))]
    action = Action(NOOP, spec.key, obj["id"], fingerprint(raw), source=str(spec.path))
    if changes:
        action.kind, action.changes, action.drift = UPDATE, changes, drift
        action.instructions_diff = text_diff(obj.get("instructions"), spec.fields.get("instructions"), spec.key) or None
        action.body = request_body(spec, project, obj)
    return action


def hidden_changes(spec: Any, obj: dict[str, Any]) -> list[FieldChange]:
    """Changes of fields the server does not return, detected through the spec-hash tag."""
    _, recorded = split_hash_tag(obj.get("metadata"))
    desired = normalize.hidden(spec.fields)
    if hidden_hash(desired) == recorded:
        return []
    if not hidden_hash(desired):  # every hidden field was unset in the spec
        return [FieldChange(name, "(not readable)", None, REMOVED) for name in desired]
    return [FieldChange(name, "(not readable)", value) for name, value in desired.items() if value is not None]


def orphan_action(obj: dict[str, Any], key: str, prune: bool) -> Action:
    if prune:
        return delete_action(obj, key, "removed from the specs (--prune)", None)
    reason = "not in the specs: kept (re-run with --prune to delete it)"
    return Action(NOOP, key, obj["id"], fingerprint(obj), reason=reason)


DUPLICATE_REASONS = {
    DELETE: "--prune: the oldest object with this key is kept",
    NOOP: "another object with this key is managed; kept: `asstctl apply --prune` deletes it",
    DESTROY_MODE: "destroy",
}


def duplicate_actions(remote: RemoteState, by_key: dict[str, Any], how: str) -> list[Action]:
    """The further objects with a key: deleted (``DELETE``: --prune; ``DESTROY_MODE``) or kept (``NOOP``)."""
    return [duplicate_action(obj, key, how, by_key.get(key)) for key, objs in remote.duplicates.items() for obj in objs]


def duplicate_action(obj: dict[str, Any], key: str, how: str, spec: Any) -> Action:
    if how == NOOP:
        action = Action(NOOP, key, obj["id"], fingerprint(obj), reason=DUPLICATE_REASONS[NOOP])
    else:
        action = delete_action(obj, key, DUPLICATE_REASONS[how], spec)
    action.duplicate = True
    return action


def delete_action(obj: dict[str, Any], key: str, reason: str, spec: Any) -> Action:
    action = Action(DELETE, key, obj["id"], fingerprint(obj), reason=reason)
    if spec is not None and spec.prevent_destroy:
        action.blocked = True
        action.reason = f"{reason}; blocked by prevent_destroy"
    return action


def desired_content(spec: Any) -> dict[str, Any]:
    return normalize.content(spec.fields)


def desired_tag(spec: Any) -> str:
    return hash_tag(desired_content(spec), normalize.hidden(spec.fields))


def request_body(spec: Any, project: str, obj: dict[str, Any] | None = None) -> dict[str, Any]:
    """The full create/update body: the spec's fields, resets (update), user metadata + tags."""
    body = {name: value for name, value in spec.fields.items() if name != "metadata"}
    if obj is not None:
        body.update(resets(spec, obj))
    body["metadata"] = {**user_metadata(spec.fields.get("metadata")), **tags(project, spec.key, desired_tag(spec))}
    return body


def resets(spec: Any, obj: dict[str, Any]) -> dict[str, Any]:
    """Server defaults for the fields the spec does not set (an update does not unset by omission);
    ``tool_resources`` lists present remotely but not in the spec are sent empty (they override)."""
    out = {name: value for name, value in RESETS.items() if name not in spec.fields}
    remote_resources = normalize.tool_resources(obj.get("tool_resources"))
    desired_resources = spec.fields.get("tool_resources") or {}
    cleared = {name: {key: [] for key in lists} for name, lists in remote_resources.items() if name not in desired_resources}
    if cleared:
        out["tool_resources"] = {**cleared, **desired_resources}
    if split_hash_tag(obj.get("metadata"))[1] and "reasoning_effort" not in spec.fields:
        out["reasoning_effort"] = None
    return out


def code_file_ops(spec: Any, remote_refs: list[str]) -> list[FileOp]:
    """The code_interpreter files of an assistant: desired paths against the remote uploads (by name)."""
    remote = {ref_name(ref): ref for ref in remote_refs if ref.startswith(FILE_REF)}
    ops = []
    for local in spec.code_files:
        old = remote.pop(PurePosixPath(local.label).name, None)
        if old is None:
            ops.append(FileOp("+", local.label, file_ref(local)))
        elif old != file_ref(local):
            ops.append(FileOp("~", local.label, file_ref(local), reason="content changed"))
    return ops + [FileOp("-", name) for name in sorted(remote)]


# --- applying --------------------------------------------------------------------------------------------

def run_action(run: Any, action: Action) -> Outcome:
    try:
        return WRITES[action.kind](run, action)
    except (*run.backend.errors, AsstctlError) as error:
        if action.remote_id and run.plan.file_deletions:
            keep_files_of(run, action.remote_id)
        return Outcome(action.key, action.kind, False, action.remote_id, describe(error))


def keep_files_of(run: Any, remote_id: str) -> None:
    """A failed update or deletion leaves the assistant as it was: the uploads it still names stay
    (``run.kept``); when it cannot be read back either, every planned file deletion is kept."""
    try:
        used = set(code_ids(remote_object(read_remote(run.backend, run.plan.project), remote_id)))
    except (*run.backend.errors, AsstctlError):
        used = {item.file_id for item in run.plan.file_deletions}
    with run.lock:
        run.kept.update(used)


def create(run: Any, action: Action) -> Outcome:
    """Create once; when the outcome is unknown, look for the key before trying again."""
    new_id, note = run.backend.create_assistant(action.body, lambda: read_remote(run.backend, run.plan.project).find(action.key),
                                                run.retry)
    return Outcome(action.key, CREATE, True, new_id, note=note)


def update(run: Any, action: Action) -> Outcome:
    run.backend.update_assistant(action.remote_id, action.body)
    return Outcome(action.key, UPDATE, True, action.remote_id)


def delete(run: Any, action: Action) -> Outcome:
    return deletion(action.key, action.remote_id, run.backend.delete_assistant(action.remote_id))


WRITES = {CREATE: create, UPDATE: update, DELETE: delete}


def resolved(run: Any, actions: list[Action]) -> tuple[list[Action], list[Outcome]]:
    """Assistant actions with references in ``tool_resources`` replaced by ids; failures for the rest."""
    ready, failed = [], []
    for action in actions:
        resources = (action.body or {}).get("tool_resources")
        missing = sorted({item for items in _lists(resources) for item in items if is_ref(item) and item not in run.refs})
        if missing:
            failed.append(Outcome(action.key, action.kind, False, action.remote_id,
                                  f"not applied: {', '.join(missing)} could not be made"))
        else:
            ready.append(_with_ids(run.refs, action, resources) if resources else action)
    return ready, failed


def _with_ids(refs: dict[str, str], action: Action, resources: dict[str, Any]) -> Action:
    ids = {kind: {name: [refs[item] if is_ref(item) else item for item in items]  # every reference is known (resolved)
                  for name, items in (lists or {}).items()}
           for kind, lists in resources.items()}
    return replace(action, body={**action.body, "tool_resources": ids})


def _lists(resources: dict[str, Any] | None) -> list[list[Any]]:
    return [items for lists in (resources or {}).values() for items in (lists or {}).values() if isinstance(items, list)]
