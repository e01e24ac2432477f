"""Helpers for the knowledge tests: a project on disk (asstctl.yaml, specs, files), plan and apply
through the library as the CLI does (asstctl.reconcile.plan.plan_for), and the server's request counts."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from asstctl.reconcile.apply import apply_plan
from asstctl.reconcile.plan import plan_for
from asstctl.spec.project import parse_project

PROJECT = "kb"


def write(root: Path, files: dict[str, str | bytes]) -> None:
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content if isinstance(content, bytes) else content.encode())


def project(root: Path, files: dict[str, str | bytes], name: str = PROJECT):
    """A project in ``root`` (the working directory of the test) with ``files`` written into it."""
    write(root, {"asstctl.yaml": f"project: {name}\n", **files})
    return parse_project(root)


def plan(client, proj, prune: bool = False, destroy: bool = False):
    target = SimpleNamespace(name="base-url", label="test", client=client)
    return plan_for(proj, target, prune=prune, destroy=destroy)


def converge(client, proj, prune: bool = False, destroy: bool = False, **options):
    """Plan and apply; returns (plan, result)."""
    made = plan(client, proj, prune=prune, destroy=destroy)
    return made, apply_plan(made, client, root=proj.root, **options)


def counts(server) -> tuple[int, int]:
    """(uploads, file deletions) the server received so far."""
    stats = server.state.stats
    return stats["POST /v1/files"], stats["DELETE /v1/files/{id}"]


def store_files(client, vs_id: str) -> dict[str, dict]:
    """asstctl.path -> the vector store file."""
    return {item.attributes["asstctl.path"]: item.to_dict() for item in client.vector_stores.files.list(vs_id)}


def managed_store(client, key: str, name: str = PROJECT):
    found = [s for s in client.vector_stores.list() if (s.metadata or {}).get("asstctl.key") == key
             and s.metadata.get("asstctl.project") == name]
    assert len(found) == 1, found
    return found[0]
