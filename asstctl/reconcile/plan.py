"""The plan: what apply will do, as plain data (JSON round-trip: ``to_dict``/``from_dict``).

``build_plan(specs, remote, ...)`` compares desired specs with the remote state:

* a spec without a remote object → ``create``;
* a spec whose object differs (normalized content, or hidden fields via the spec-hash tag) → ``update``
  with field-level changes and a unified diff of the instructions; ``drift`` when the remote object
  no longer hashes to its spec-hash tag (it was changed outside asstctl);
* otherwise ``no-op``;
* an object of this project without a spec → ``delete`` with ``prune`` (else a reported no-op);
* further objects with the same key (duplicates: ``duplicate`` set) → ``delete`` with ``prune``, keeping the
  oldest (else a reported no-op saying how to remove them);
* ``build_destroy_plan`` → ``delete`` for everything this project manages.

A deletion of an object whose spec sets ``prevent_destroy`` is ``blocked``: reported, never executed
(and an error under destroy). Foreign objects never appear in a plan. Every action that touches an
existing object records its id and the fingerprint of the object the plan was computed from.

With ``knowledge`` (the remote stores and uploads, asstctl.knowledge), vector stores are actions too
(``object: vector_store``, their file-level changes in ``files``), the plan lists the ``uploads`` and
the ``file_deletions`` (this project's uploads nothing uses any more), and assistants' ``tool_resources``
are compared as references (asstctl.knowledge_plan).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any, Iterable

from asstctl.reconcile import normalize
from asstctl.reconcile.diff import REMOVED, FieldChange, field_changes, text_diff
from asstctl.reconcile.knowledge import symbolic
from asstctl.errors import PlanError
from asstctl.ownership import SPEC_HASH, hash_tag, hidden_hash, spec_hash, split_hash_tag, tags, user_metadata
from asstctl.reconcile.remote import RemoteState, fingerprint, state_fingerprint

FORMAT_VERSION = 1
CREATE, UPDATE, DELETE, NOOP = "create", "update", "delete", "no-op"
ASSISTANT, VECTOR_STORE = "assistant", "vector_store"
APPLY_MODE, DESTROY_MODE = "apply", "destroy"
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


@dataclass
class Action:
    kind: str
    key: str
    remote_id: str | None = None
    fingerprint: str | None = None  # of the remote object this action was planned against
    changes: list[FieldChange] = field(default_factory=list)
    instructions_diff: str | None = None
    drift: bool = False
    reason: str | None = None
    blocked: bool = False
    body: dict[str, Any] | None = None  # the full request body of a create/update
    source: str | None = None  # the spec file
    object: str = ASSISTANT  # or VECTOR_STORE
    files: list[Any] = field(default_factory=list)  # knowledge.FileOp: file-level changes
    duplicate: bool = False  # a further object with the key of another (the oldest is the managed one)

    @property
    def executable(self) -> bool:
        return self.kind in (CREATE, UPDATE, DELETE) and not self.blocked

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["changes"] = [change.to_dict() for change in self.changes]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Action":
        from asstctl.reconcile.knowledge import FileOp, from_dicts

        changes = [FieldChange.from_dict(change) for change in data.get("changes") or []]
        return cls(**{**known_fields(cls, data), "changes": changes, "files": from_dicts(FileOp, data.get("files"))})


@dataclass
class Plan:
    project: str
    target: str
    mode: str = APPLY_MODE
    prune: bool = False
    actions: list[Action] = field(default_factory=list)
    remote_fingerprint: str = ""
    foreign: int = 0
    format_version: int = FORMAT_VERSION
    uploads: list[Any] = field(default_factory=list)  # knowledge.Upload
    file_deletions: list[Any] = field(default_factory=list)  # knowledge.FileDeletion
    refs: dict[str, str] = field(default_factory=dict)  # knowledge reference -> id known when planning

    def counts(self) -> dict[str, int]:
        counts = {CREATE: 0, UPDATE: 0, DELETE: 0, NOOP: 0, "blocked": 0}
        for action in self.actions:
            counts["blocked" if action.blocked else action.kind] += 1
        return counts

    def has_changes(self) -> bool:
        return any(action.executable for action in self.actions) or bool(self.uploads or self.file_deletions)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["actions"] = [action.to_dict() for action in self.actions]
        return {"format_version": self.format_version, **data}

    @classmethod
    def from_dict(cls, data: Any) -> "Plan":
        if not isinstance(data, dict) or data.get("format_version") != FORMAT_VERSION:
            version = data.get("format_version") if isinstance(data, dict) else None
            raise PlanError(f"unsupported plan format_version {version!r} (this asstctl reads {FORMAT_VERSION})",
                            hint="Create the plan again with `asstctl plan --out FILE`.")
        try:
            from asstctl.reconcile.knowledge import FileDeletion, Upload, from_dicts

            actions = [Action.from_dict(action) for action in data["actions"]]
            files = {"uploads": from_dicts(Upload, data.get("uploads")),
                     "file_deletions": from_dicts(FileDeletion, data.get("file_deletions"))}
            return cls(**{**known_fields(cls, data), "actions": actions, **files})
        except (KeyError, TypeError) as error:
            raise PlanError(f"the plan file is damaged ({error})", hint="Create it again with `asstctl plan --out FILE`.")


def known_fields(cls: type, data: dict[str, Any]) -> dict[str, Any]:
    """``data`` without keys a newer asstctl may have added within the same format version."""
    names = {f.name for f in fields(cls)}
    return {key: value for key, value in data.items() if key in names}


def build_plan(specs: Iterable[Any], remote: RemoteState, *, project: str, target: str, prune: bool = False,
               stores: Iterable[Any] = (), knowledge: Any = None) -> Plan:
    """The plan for ``specs``; with ``knowledge`` (asstctl.knowledge.read_knowledge) also for ``stores`` and files."""
    from asstctl.reconcile.knowledge_plan import add_knowledge, knowledge_view

    specs, names = knowledge_view(specs, knowledge, project)
    by_key = {spec.key: spec for spec in specs}
    actions = [spec_action(spec, remote.managed.get(key), project, names) for key, spec in by_key.items()]
    actions += [orphan_action(obj, key, prune) for key, obj in remote.managed.items() if key not in by_key]
    actions += duplicate_actions(remote, by_key, DELETE if prune else NOOP)
    plan = new_plan(actions, remote, project=project, target=target, mode=APPLY_MODE, prune=prune)
    return add_knowledge(plan, specs, list(stores), remote, knowledge) if knowledge is not None else plan


def build_destroy_plan(specs: Iterable[Any], remote: RemoteState, *, project: str, target: str,
                       stores: Iterable[Any] = (), knowledge: Any = None) -> Plan:
    from asstctl.reconcile.knowledge_plan import add_knowledge

    by_key = {spec.key: spec for spec in specs}
    actions = [delete_action(obj, key, "destroy", by_key.get(key)) for key, obj in remote.managed.items()]
    actions += duplicate_actions(remote, by_key, DESTROY_MODE)
    plan = new_plan(actions, remote, project=project, target=target, mode=DESTROY_MODE, prune=False)
    return add_knowledge(plan, list(by_key.values()), list(stores), remote, knowledge) if knowledge is not None else plan


def new_plan(actions: list[Action], remote: RemoteState, **options: Any) -> Plan:
    order = {DELETE: 0, CREATE: 1, UPDATE: 1, NOOP: 1}
    actions.sort(key=lambda action: (action.object != VECTOR_STORE, action.key, order[action.kind], action.reason or "",
                                     action.remote_id or ""))
    fingerprints = remote.fingerprints()
    return Plan(actions=actions, remote_fingerprint=state_fingerprint(fingerprints), foreign=len(remote.foreign), **options)


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
    remote_content = normalize.content(obj)
    changes = field_changes(remote_content, desired_content(spec))
    changes += hidden_changes(spec, obj)
    recorded, _ = split_hash_tag(obj.get("metadata"))
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


def plan_for(project: Any, target: Any, *, prune: bool = False, destroy: bool = False,
             keys: Iterable[str] = ()) -> Plan:
    """Load the project's specs for ``target``, read the remote and plan (the CLI's entry point);
    ``keys``: only those assistants and their knowledge (asstctl.selection)."""
    from asstctl.reconcile.knowledge import read_knowledge
    from asstctl.reconcile.remote import read_remote
    from asstctl.reconcile.selection import check_keys, select
    from asstctl.spec.loader import load_project_specs

    specs, stores = load_project_specs(project, target.name if target.name in project.targets else None)
    remote = read_remote(target.client, project.name)
    keys = list(dict.fromkeys(keys))
    check_keys(keys, specs, remote)
    knowledge = None
    if needs_knowledge(specs, stores, remote, prune or destroy):
        knowledge = read_knowledge(target.client, project.name)
    options = dict(project=project.name, target=target.label, stores=stores, knowledge=knowledge)
    if destroy:
        plan = build_destroy_plan(specs, remote, **options)
    else:
        plan = build_plan(specs, remote, prune=prune, **options)
    return select(plan, keys, specs, remote, knowledge) if keys else plan


def needs_knowledge(specs: list[Any], stores: list[Any], remote: RemoteState, deleting: bool) -> bool:
    """Whether files and vector stores must be read: only when a spec declares knowledge, a managed
    assistant still uses some, or deletions may free some — so a plain plan of knowledge-free
    assistants costs exactly ceil(N/100) list requests."""
    if deleting or stores or any(spec.code_files or spec.vector_store for spec in specs):
        return True
    return any(_resource_ids(obj.get("tool_resources")) for obj in remote.owned())


def _resource_ids(resources: dict[str, Any] | None) -> bool:
    return any(ids for part in (resources or {}).values() if isinstance(part, dict) for ids in part.values())


def save_plan(plan: Plan, path: str) -> None:
    """Write the plan as JSON (it holds request bodies and ids, never a key)."""
    from asstctl.outfile import writing
    from asstctl.reconcile.report import render_json

    with writing(path) as target:
        target.write_text(render_json(plan), encoding="utf-8")


def load_plan(path: str) -> Plan:
    import json

    try:
        with open(path, encoding="utf-8") as stream:
            data = json.load(stream)
    except (OSError, ValueError) as error:
        raise PlanError(f"{path}: not a readable plan file ({error})",
                        hint="Create one with `asstctl plan --out FILE`.") from None
    return Plan.from_dict(data)
