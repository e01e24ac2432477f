"""The planner: what apply will do, as plain data (asstctl.reconcile.model).

``build_plan(specs, remote, ...)`` compares desired specs with the remote state, kind by kind in dependency
order (asstctl.reconcile.kinds: uploads → vector stores → assistants); each kind normalizes both sides, diffs
them and adds its entries. Foreign objects never appear in a plan. Every action that touches an existing
object records its id and the fingerprint of the object the plan was computed from; the plan records the
fingerprint of the whole remote state it read.

Without ``knowledge`` (the remote stores and uploads, asstctl.reconcile.knowledge) only assistants are
planned; with it, vector stores are actions too (``object: vector_store``, their file-level changes in
``files``), the plan lists the ``uploads`` and the ``file_deletions``, and assistants' ``tool_resources``
are compared as references.

``plan_for`` is the CLI's entry point: load the specs, read the remote, plan (``keys``: a selection).
Imports spec (loading), model, remote, knowledge, kinds and selection; never apply, report or the SDK.
"""

from __future__ import annotations

import json
from typing import Any, Callable, Iterable

from asstctl.backends import backend_for
from asstctl.errors import PlanError
from asstctl.outfile import writing
from asstctl.reconcile.kinds import KINDS, PlanContext
from asstctl.reconcile.knowledge import knowledge_view, read_knowledge
from asstctl.reconcile.model import APPLY_MODE, DESTROY_MODE, Plan
from asstctl.reconcile.remote import RemoteState, read_remote, state_fingerprint


def build_plan(specs: Iterable[Any], remote: RemoteState, *, project: str, target: str, prune: bool = False,
               stores: Iterable[Any] = (), knowledge: Any = None) -> Plan:
    """The plan for ``specs``; with ``knowledge`` (asstctl.reconcile.knowledge.read_knowledge) also for ``stores`` and files."""
    return planned(specs, remote, project=project, target=target, mode=APPLY_MODE, prune=prune, stores=stores,
                   knowledge=knowledge)


def build_destroy_plan(specs: Iterable[Any], remote: RemoteState, *, project: str, target: str,
                       stores: Iterable[Any] = (), knowledge: Any = None) -> Plan:
    """``delete`` for everything this project manages (``prevent_destroy`` ones blocked)."""
    return planned(specs, remote, project=project, target=target, mode=DESTROY_MODE, prune=False, stores=stores,
                   knowledge=knowledge)


def planned(specs: Iterable[Any], remote: RemoteState, *, project: str, target: str, mode: str, prune: bool,
            stores: Iterable[Any], knowledge: Any) -> Plan:
    """Every kind's entries, in dependency order; then what depends on all of them (``settle``), in reverse."""
    specs, names = knowledge_view(specs, knowledge)
    ctx = PlanContext(project, mode, prune, specs, list(stores), remote, knowledge, names)
    fingerprints = {**remote.fingerprints(), **(knowledge.fingerprints() if knowledge is not None else {})}
    plan = Plan(project, target, mode=mode, prune=prune, remote_fingerprint=state_fingerprint(fingerprints),
                foreign=len(remote.foreign), refs=knowledge.refs() if knowledge is not None else {})
    for kind in KINDS:
        kind.plan(ctx, plan)
    for kind in reversed(KINDS):
        kind.settle(ctx, plan)
    return plan


def plan_for(project: Any, target: Any, *, prune: bool = False, destroy: bool = False,
             keys: Iterable[str] = (), warn: Callable[[str], None] | None = None) -> Plan:
    """Load the project's specs for ``target``, read the remote and plan (the CLI's entry point);
    ``keys``: only those assistants and their knowledge (asstctl.reconcile.selection); ``warn``: told
    about models the target does not list, and about shared vector stores a target without any (an Agents API
    target: its backend's ``ignored_stores``) leaves out of the plan."""
    from asstctl.reconcile.selection import check_keys, select
    from asstctl.spec.loader import load_project_specs

    specs, stores = load_project_specs(project, target.name)  # asstctl.yaml's or a built-in name (base-url, env, embedded)
    backend = backend_for(target.client)
    ignored = getattr(backend, "ignored_stores", None)  # a target without vector stores (agents)
    if stores and ignored is not None:
        if warn is not None:
            warn(ignored(stores))
        stores = []
    remote = read_remote(target.client, project.name)
    keys = list(dict.fromkeys(keys))
    check_keys(keys, specs, remote)
    if warn is not None and not destroy and specs:
        listing = getattr(backend, "list_models", None)  # a backend without one: no check
        for warning in unlisted_models(specs, (listing() if listing else None) or [], target.label):
            warn(warning)
    knowledge = None
    if needs_knowledge(specs, stores, remote, prune or destroy):
        knowledge = read_knowledge(target.client, project.name)
    options = dict(project=project.name, target=target.label, stores=stores, knowledge=knowledge)
    if destroy:
        plan = build_destroy_plan(specs, remote, **options)
    else:
        plan = build_plan(specs, remote, prune=prune, **options)
    return select(plan, keys, specs, remote, knowledge) if keys else plan


def unlisted_models(specs: list[Any], models: list[str], label: str) -> list[str]:
    """``path:line:col: ...`` for every spec whose ``model`` is not among ``models`` (what the target lists:
    GET /models), with a did-you-mean; nothing when the target lists no models."""
    import difflib

    if not models:
        return []
    known = set(models)
    found = []
    for spec in specs:
        model = spec.fields.get("model")
        if model and model not in known:
            close = difflib.get_close_matches(model, models, n=1, cutoff=0.6)
            hint = f"did you mean `{close[0]}`?" if close else "GET /models lists the ones it has"
            line, col = spec.positions.get("model", (1, 1))
            found.append(f"{spec.path}:{line}:{col}: model `{model}` is not one {label} lists ({hint})")
    return found


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
    with writing(path) as target:
        target.write_text(plan.to_json(), encoding="utf-8")


def load_plan(path: str) -> Plan:
    try:
        with open(path, encoding="utf-8") as stream:
            data = json.load(stream)
    except (OSError, ValueError) as error:
        raise PlanError(f"{path}: not a readable plan file ({error})",
                        hint="Create one with `asstctl plan --out FILE`.") from None
    return Plan.from_dict(data)
