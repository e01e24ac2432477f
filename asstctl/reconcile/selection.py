"""Selecting assistants (``asstctl plan KEY...``, like terraform's ``-target``): a plan cut down to the
named assistants and their knowledge, nothing else.

* the assistants' own actions (their duplicates included);
* the vector stores they declare or use now, unless a deletion would take a store another assistant
  still uses (then the store stays);
* the uploads their kept actions need, and the deletion of uploads only they used;
* everything else (other assistants, other stores, other unused uploads) is left out of the plan.

``check_keys`` refuses a key that is neither a spec nor a managed assistant on the target, with a
did-you-mean.
"""

from __future__ import annotations

import difflib
from dataclasses import replace
from typing import Any, Iterable

from asstctl.errors import PlanError
from asstctl.reconcile.kinds.upload import unused_uploads
from asstctl.reconcile.knowledge import code_ids
from asstctl.reconcile.model import ASSISTANT, CREATE, DELETE, NOOP, UPDATE, VECTOR_STORE, Action, Plan
from asstctl.reconcile.remote import RemoteState


def check_keys(keys: Iterable[str], specs: Iterable[Any], remote: RemoteState) -> None:
    known = {spec.key for spec in specs} | set(remote.managed) | set(remote.duplicates)
    for key in keys:
        if key in known:
            continue
        close = difflib.get_close_matches(key, sorted(known), n=1)
        guess = f": did you mean `{close[0]}`?" if close else ""
        listed = ", ".join(sorted(known)[:20]) + (", ..." if len(known) > 20 else "") if known else "there are none"
        raise PlanError(f"unknown assistant `{key}`{guess} (not a spec, nor managed on the target)",
                        hint=f"Known assistants: {listed}.")


def select(plan: Plan, keys: Iterable[str], specs: Iterable[Any], remote: RemoteState, knowledge: Any = None) -> Plan:
    """``plan`` restricted to the assistants ``keys`` and their knowledge."""
    keys = set(keys)
    specs = {spec.key: spec for spec in specs}
    chosen = [action for action in plan.actions if action.object == ASSISTANT and action.key in keys]
    if knowledge is None:
        return replace(plan, actions=chosen)
    ours, theirs = store_users(keys, specs, remote, knowledge)
    stores = [action for action in plan.actions if action.object == VECTOR_STORE and action.key in ours
              and not (action.kind == DELETE and action.key in theirs)]
    kept = stores + chosen
    others = [frozen(action) for action in plan.actions if action not in kept and action.remote_id]
    selected = replace(plan, actions=kept)
    selected.uploads = [item for item in plan.uploads if item.ref in needed_refs(kept)]
    selected.file_deletions = freed(selected, others, remote, knowledge, keys, ours)
    return selected


def store_users(keys: set[str], specs: dict[str, Any], remote: RemoteState, knowledge: Any) -> tuple[set[str], set[str]]:
    """(keys of the stores the selected assistants declare or use, keys of those other assistants use)."""
    key_of = {obj["id"]: key for key, obj in knowledge.stores.managed.items()}
    key_of.update({obj["id"]: key for key, objs in knowledge.stores.duplicates.items() for obj in objs})
    ours, theirs = set(), set()
    for key, spec in specs.items():
        if spec.vector_store:
            (ours if key in keys else theirs).add(spec.vector_store)
    owned = {obj["id"]: key for key, obj in remote.managed.items()}
    owned.update({obj["id"]: key for key, objs in remote.duplicates.items() for obj in objs})
    for obj in [*remote.owned(), *remote.foreign]:
        key = owned.get(obj["id"])
        used = {key_of[item] for item in store_ids(obj) if item in key_of}
        (ours if key in keys else theirs).update(used)
    return ours, theirs


def store_ids(obj: dict[str, Any] | None) -> list[str]:
    return (((obj or {}).get("tool_resources") or {}).get("file_search") or {}).get("vector_store_ids") or []


def frozen(action: Action) -> Action:
    """An action left out of the selection, as the object it leaves unchanged."""
    return replace(action, kind=NOOP, files=[], blocked=False, body=None)


def needed_refs(actions: list[Action]) -> set[str]:
    refs = {op.ref for action in actions if action.object == VECTOR_STORE for op in action.files if op.ref}
    return refs | {ref for action in actions if action.kind in (CREATE, UPDATE) for ref in code_ids(action.body)}


def freed(selected: Plan, others: list[Action], remote: RemoteState, knowledge: Any, keys: set[str],
          ours: set[str]) -> list[Any]:
    """The uploads the selected objects use now and nothing uses once the selection is applied."""
    before = {item for key, obj in remote.managed.items() if key in keys for item in code_ids(obj)}
    before |= {item for key, objs in remote.duplicates.items() if key in keys for obj in objs for item in code_ids(obj)}
    store_objs = [*knowledge.stores.managed.items(),
                  *((key, obj) for key, objs in knowledge.stores.duplicates.items() for obj in objs)]
    before |= {item["id"] for key, obj in store_objs if key in ours for item in knowledge.store_files.get(obj["id"], [])}
    hybrid = replace(selected, actions=selected.actions + others)
    return [item for item in unused_uploads(hybrid, remote, knowledge) if item.file_id in before]
