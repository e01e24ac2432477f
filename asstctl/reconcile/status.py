"""``asstctl status``: what the project manages on a target, one row per object, from a plan.

States: ``in sync`` (applied, unchanged), ``drift`` (changed outside asstctl), ``pending`` (the spec
changed since it was applied), ``missing`` (a spec never applied), ``duplicate`` (a further object with
the key of a managed one: ``apply --prune`` deletes it), ``no spec`` (managed, but its spec was removed:
``apply --prune`` deletes it). Rendering only; the plan decides (asstctl.reconcile.plan).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from typing import Any

from asstctl.reconcile.model import CREATE, NOOP, UPDATE, VECTOR_STORE, Action, Plan

IN_SYNC, DRIFT, PENDING, MISSING, DUPLICATE, NO_SPEC = "in sync", "drift", "pending", "missing", "duplicate", "no spec"
STATES = (IN_SYNC, DRIFT, PENDING, MISSING, DUPLICATE, NO_SPEC)


@dataclass
class Row:
    object: str
    key: str
    id: str | None
    state: str
    spec: str | None


def state_of(action: Action) -> str:
    if action.duplicate:
        return DUPLICATE
    if action.kind == CREATE:
        return MISSING
    if action.kind == UPDATE:
        return DRIFT if action.drift else PENDING
    if action.kind == NOOP and action.reason:
        return NO_SPEC
    return IN_SYNC


def rows(plan: Plan, root: Any = None) -> list[Row]:
    out = [Row(action.object, action.key, action.remote_id, state_of(action), relative(action.source, root))
           for action in plan.actions]
    return sorted(out, key=lambda row: (row.object != VECTOR_STORE, row.key, row.state != IN_SYNC, row.id or ""))


def relative(path: str | None, root: Any) -> str | None:
    if not path or root is None:
        return path
    try:
        return os.path.relpath(path, root)
    except ValueError:
        return path


def counts(table: list[Row]) -> dict[str, int]:
    return {state: sum(1 for row in table if row.state == state) for state in STATES}


def in_sync(table: list[Row]) -> bool:
    return all(row.state == IN_SYNC for row in table)


def render_json(plan: Plan, table: list[Row], locks: list[Any]) -> str:
    data = {"format_version": 1, "project": plan.project, "target": plan.target,
            "lock": locks[0].to_dict() if locks else None, "in_sync": in_sync(table), "counts": counts(table),
            "objects": [asdict(row) for row in table]}
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


def render_text(plan: Plan, table: list[Row], locks: list[Any]) -> str:
    lock = f"locked by {locks[0].describe()} (lock {locks[0].id})" if locks else "not locked"
    lines = [f"asstctl status of project {plan.project} on {plan.target}: {lock}", ""]
    cells = [("KEY", "OBJECT", "ID", "STATE", "SPEC")]
    cells += [(row.key, row.object.replace("_", " "), row.id or "-", row.state, row.spec or "-") for row in table]
    widths = [max(len(cell[i]) for cell in cells) for i in range(4)]
    lines += ["  ".join(cell.ljust(width) for cell, width in zip(line[:4], widths)) + "  " + line[4] for line in cells]
    total = counts(table)
    summary = ", ".join(f"{count} {state}" for state, count in total.items() if count) or "nothing managed"
    lines += ["", f"{len(table)} object{'s' if len(table) != 1 else ''}: {summary}."]
    if total[DUPLICATE] or total[NO_SPEC]:
        lines.append("`asstctl apply --prune` deletes the duplicates and the objects without a spec.")
    if total[MISSING] or total[PENDING] or total[DRIFT]:
        lines.append("`asstctl plan` shows the changes; `asstctl apply` makes the target match the specs.")
    return "\n".join(lines) + "\n"
