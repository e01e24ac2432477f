"""The upload kind: the files specs name (code_interpreter files, vector store files) against this
project's uploads, matched by content (sha256) through their names (asstctl.reconcile.knowledge).

Planning: ``uploads`` lists every needed file no upload holds yet; once every other kind has planned
(``settle``), ``file_deletions`` lists this project's uploads nothing uses any more: no kept store holds
it and no kept assistant (this project's or a foreign one) names it in ``tool_resources``. These
deletions are part of every apply: files are content, not declared objects.

Applying: uploads first (each file read again and checked against the planned sha256: a file edited since
planning is an error; sent once, with the SDK's own retries only: a duplicate a lost response may leave is
deleted by the next apply, as unused); deletions last, except uploads a failed step left in use.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from asstctl.errors import AsstctlError
from asstctl.reconcile.kinds.base import PlanContext, concurrently, deletion, guarded
from asstctl.reconcile.knowledge import (ATTR_PATH, KnowledgeRemote, code_ids, desired_files, read_knowledge, ref_name,
                                         remote_object, upload_name)
from asstctl.reconcile.model import CREATE, DELETE, UPDATE, VECTOR_STORE, Action, FileDeletion, Outcome, Plan, Upload
from asstctl.reconcile.remote import RemoteState

UPLOAD = "upload"


class Uploads:
    object = UPLOAD

    def plan(self, ctx: PlanContext, plan: Plan) -> None:
        if ctx.knowledge is None or ctx.destroy:
            return
        desired = {store.key: store for store in ctx.stores}
        files = desired_files(ctx.specs, desired.values())
        plan.uploads = [upload(ref, local, plan.project) for ref, local in files.items() if ref not in plan.refs]

    def settle(self, ctx: PlanContext, plan: Plan) -> None:
        if ctx.knowledge is not None:
            plan.file_deletions = unused_uploads(plan, ctx.remote, ctx.knowledge)

    def apply_changes(self, run: Any) -> list[Outcome]:
        return concurrently(lambda item: guarded(run, item.path, UPLOAD, None, lambda: _upload(run, item)), run.plan.uploads,
                            run.parallelism)

    def apply_deletions(self, run: Any) -> list[Outcome]:
        return concurrently(lambda item: delete_upload(run, item), run.plan.file_deletions, run.parallelism)


# --- planning --------------------------------------------------------------------------------------------

def upload(ref: str, local: Any, project: str) -> Upload:
    return Upload(ref=ref, path=local.label, source=str(local.path.resolve()), sha256=local.sha256, bytes=local.size,
                  filename=upload_name(project, local))


def unused_uploads(plan: Plan, remote: RemoteState, knowledge: KnowledgeRemote) -> list[FileDeletion]:
    """This project's uploads that nothing remaining after this plan uses."""
    used = {file_id for action in plan.actions for file_id in kept_ids(action, plan, remote, knowledge)}
    used |= {file_id for obj in remote.foreign for file_id in code_ids(obj)}
    paths = {item["id"]: item["attributes"][ATTR_PATH] for items in knowledge.store_files.values() for item in items
             if ATTR_PATH in (item.get("attributes") or {})}
    deletions = [FileDeletion(item["id"], item["filename"], paths.get(item["id"], ref_name(ref)))
                 for ref, items in knowledge.uploads.items() for item in items if item["id"] not in used]
    # a store file is named by its path; a code_interpreter file by its name as uploaded (``ref_name``)
    replaced = {item.path for item in plan.uploads} | {ref_name(item.ref) for item in plan.uploads}
    for deletion_ in deletions:
        if deletion_.path in replaced:
            deletion_.reason = "replaced by its new content"
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


# --- applying --------------------------------------------------------------------------------------------

def _upload(run: Any, item: Upload) -> Outcome:
    path = Path(run.root) / item.path if run.root is not None else Path(item.source)
    data = path.read_bytes()
    if hashlib.sha256(data).hexdigest() != item.sha256:
        raise AsstctlError(f"{item.path} changed since the plan was made; run `asstctl plan` again")
    new_id, note = run.backend.upload(item.filename, data, lambda: _existing_upload(run, item.ref))
    with run.lock:
        run.refs[item.ref] = new_id
    return Outcome(item.path, UPLOAD, True, new_id, note=note)


def _existing_upload(run: Any, ref: str) -> dict[str, Any] | None:
    uploads = read_knowledge(run.backend, run.plan.project).uploads.get(ref)
    return uploads[0] if uploads else None


def delete_upload(run: Any, item: FileDeletion) -> Outcome:
    label = f"file {item.path}"
    if item.file_id in run.kept:
        return Outcome(label, DELETE, True, item.file_id, note="kept: a step that replaces it failed")
    return guarded(run, label, DELETE, item.file_id,
                   lambda: deletion(label, item.file_id, run.backend.delete_upload(item.file_id)))
