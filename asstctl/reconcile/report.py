"""Rendering plans and apply results: text (terraform-like) and JSON. No decisions here.

Text output holds no ids or timestamps (stable for golden files); colours only when the caller
asks (the CLI decides with ``asstctl.cli.output.use_color``: a terminal, never with ``NO_COLOR``).
"""

from __future__ import annotations

import json
from typing import Any

from asstctl.reconcile.diff import ADDED, REMOVED, FieldChange
from asstctl.reconcile.model import CREATE, DELETE, DESTROY_MODE, NOOP, UPDATE, VECTOR_STORE, Action, ApplyResult, Outcome, Plan

SYMBOLS = {CREATE: "+", UPDATE: "~", DELETE: "-", NOOP: "="}
COLORS = {"+": "32", "~": "33", "-": "31", "=": "2", "!": "35"}
PAST = {CREATE: "created", UPDATE: "updated", DELETE: "deleted"}
# Knowledge outcomes (asstctl.reconcile.kinds): not counted in the totals' created/updated/deleted.
STEP_SYMBOLS = {"upload": "+", "attach": "+", "detach": "-", "ingest": "!"}
STEP_PAST = {"upload": "uploaded", "attach": "attached", "detach": "detached", "ingest": "ingested"}


def paint(text: str, symbol: str, color: bool) -> str:
    return f"\033[{COLORS[symbol]}m{text}\033[0m" if color and symbol in COLORS else text


def value(data: Any) -> str:
    return json.dumps(data, ensure_ascii=False, sort_keys=True)


def render_json(plan: Plan) -> str:
    return plan.to_json()


def render_text(plan: Plan, color: bool = False) -> str:
    lines = [header(plan), ""]
    for action in plan.actions:
        lines += render_action(action, color)
    lines += [paint(f"- delete file {item.path}  ({item.reason})", "-", color) for item in plan.file_deletions]
    lines += ["", summary(plan)] if plan.actions or plan.file_deletions else [summary(plan)]
    return "\n".join(lines) + "\n"


def header(plan: Plan) -> str:
    what = "destroy plan" if plan.mode == DESTROY_MODE else "plan"
    foreign = f"{plan.foreign} foreign assistant{'s' if plan.foreign != 1 else ''} left alone"
    return f"asstctl {what} for project {plan.project} on {plan.target} ({foreign})"


def render_action(action: Action, color: bool) -> list[str]:
    symbol = "!" if action.blocked else SYMBOLS[action.kind]
    word = "keep" if action.blocked else action.kind
    notes = [note for note in (action.reason, "drift: changed outside asstctl" if action.drift else None) if note]
    what = f"vector store {action.key}" if action.object == VECTOR_STORE else action.key
    what = f"duplicate {what}" if action.duplicate else what
    title = f"{symbol} {word} {what}" + (f"  ({'; '.join(notes)})" if notes else "")
    lines = [paint(title, symbol, color)]
    for change in action.changes:
        if not (action.files and change.path.startswith("tool_resources.code_interpreter")):  # shown as files
            lines += render_change(change, action, color)
    return lines + [render_file(op, color) for op in action.files]


def render_file(op: Any, color: bool) -> str:
    """``+ file docs/faq.md``, ``- file docs/old.md``, ``~ file docs/a.md (content changed)``."""
    return paint(f"    {op.op} file {op.path}" + (f" ({op.reason})" if op.reason else ""), op.op, color)


def render_change(change: FieldChange, action: Action, color: bool) -> list[str]:
    if change.path == "instructions" and action.instructions_diff:
        return ["    instructions:"] + [paint_diff_line(line, color) for line in action.instructions_diff.splitlines()]
    if action.kind == CREATE or change.kind == ADDED:
        return [paint(f"    + {change.path}: {value(change.new)}", "+", color)]
    if change.kind == REMOVED:
        return [paint(f"    - {change.path}: {value(change.old)}", "-", color)]
    return [paint(f"    ~ {change.path}: {value(change.old)} → {value(change.new)}", "~", color)]


def paint_diff_line(line: str, color: bool) -> str:
    symbol = line[:1] if line[:1] in "+-" and line[:3] not in ("+++", "---") else ""
    return paint(f"        {line}", symbol, color)


def summary(plan: Plan) -> str:
    counts = plan.counts()
    text = f"Plan: {counts[CREATE]} to create, {counts[UPDATE]} to update, {counts[DELETE]} to delete."
    if counts["blocked"]:
        text += f" {counts['blocked']} deletion{'s' if counts['blocked'] != 1 else ''} blocked by prevent_destroy."
    if plan.uploads or plan.file_deletions:
        text += f" Files: {len(plan.uploads)} to upload, {len(plan.file_deletions)} to delete."
    kept = sum(1 for action in plan.actions if action.duplicate and action.kind == NOOP)
    if kept:
        text += f" {kept} duplicate{'s' if kept != 1 else ''} kept (`asstctl apply --prune` deletes {'them' if kept != 1 else 'it'})."
    return text if plan.has_changes() or counts["blocked"] else text + " No changes."


def render_result(result: ApplyResult, color: bool = False, mode: str = "apply") -> str:
    """What was done, one line per outcome, and a last line with the totals ("Destroy complete: ..." for destroy)."""
    lines = [render_outcome(outcome, color) for outcome in result.outcomes]
    if mode == DESTROY_MODE:
        word, totals = "Destroy", f"{result.count(DELETE)} deleted"
    else:
        word, totals = "Apply", ", ".join(f"{result.count(kind)} {word}" for kind, word in PAST.items())
        totals += f", {result.count('upload')} uploaded" if result.count("upload") else ""
    lines.append(f"{word} {'failed' if result.failed else 'complete'}: {totals}, {len(result.failed)} failed.")
    return "\n".join(lines) + "\n"


def render_outcome(outcome: Outcome, color: bool) -> str:
    if not outcome.ok:
        return paint(f"! {outcome.key}: {outcome.kind} failed: {outcome.error}", "!", color)
    note = f" ({outcome.note})" if outcome.note else ""
    symbol = SYMBOLS.get(outcome.kind) or STEP_SYMBOLS[outcome.kind]
    past = PAST.get(outcome.kind) or STEP_PAST[outcome.kind]
    return paint(f"{symbol} {outcome.key}: {past} {outcome.remote_id}{note}", symbol, color)


def outcome_object(outcome: Outcome) -> tuple[str, str]:
    """(object type, key or path) of an outcome: assistant, vector_store or file."""
    if outcome.kind in STEP_PAST or outcome.key.startswith("file "):
        return "file", outcome.key.removeprefix("file ")
    if outcome.key.startswith("vector store "):
        return VECTOR_STORE, outcome.key.removeprefix("vector store ")
    return "assistant", outcome.key


def render_report(plan: Plan, result: ApplyResult | None) -> str:
    """``apply``/``destroy --output json``: what the plan held and what was done, in the order it ran."""
    outcomes = result.outcomes if result is not None else []
    done = [{"object": outcome_object(o)[0], "key": outcome_object(o)[1], "action": o.kind, "ok": o.ok, "id": o.remote_id,
             "error": o.error, "note": o.note} for o in outcomes]
    totals = {word: result.count(kind) if result else 0 for kind, word in {**PAST, "upload": "uploaded"}.items()}
    totals["failed"] = len(result.failed) if result else 0
    status = "no-changes" if result is None else "failed" if result.failed else "applied"
    data = {"format_version": 1, "kind": "apply-report", "project": plan.project, "target": plan.target,
            "mode": plan.mode, "status": status, "planned": plan.counts(), "totals": totals, "outcomes": done}
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"
