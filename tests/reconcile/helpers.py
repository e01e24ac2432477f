"""Helpers for the reconciler tests: specs built directly, and plan+apply round trips."""

from __future__ import annotations

from pathlib import Path

from asstctl.reconcile.apply import apply_plan
from asstctl.reconcile.plan import build_destroy_plan, build_plan
from asstctl.reconcile.remote import read_remote
from asstctl.spec.model import AssistantSpec

PROJECT = "demo"


def spec(key: str, prevent_destroy: bool = False, **fields) -> AssistantSpec:
    fields.setdefault("model", "gpt-4o")
    return AssistantSpec(key=key, path=Path(f"assistants/{key}.yaml"), fields=fields, prevent_destroy=prevent_destroy)


def make_plan(client, specs, prune=False, project=PROJECT):
    return build_plan(specs, read_remote(client, project), project=project, target="test", prune=prune)


def destroy_plan(client, specs, project=PROJECT):
    return build_destroy_plan(specs, read_remote(client, project), project=project, target="test")


def converge(client, specs, prune=False, project=PROJECT, **options):
    """Plan and apply; returns the apply result."""
    return apply_plan(make_plan(client, specs, prune, project), client, **options)


def kinds(plan) -> dict[str, str]:
    """key -> action kind ("delete!" for a blocked deletion); duplicate extras are suffixed with their id."""
    out = {}
    for action in plan.actions:
        name = action.key if action.key not in out else f"{action.key}#{action.remote_id}"
        out[name] = action.kind + ("!" if action.blocked else "")
    return out


def foreign(client, name="hand-made", **metadata):
    """An assistant asstctl does not manage (or another project's, via metadata tags)."""
    return client.beta.assistants.create(model="gpt-4o", name=name, metadata=metadata or None)
