"""Shared pieces of the reliability tests: a project on disk, the CLI in-process, snapshots of a server."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from click.testing import CliRunner

from asstctl.ownership import tags
from asstctl.reconcile.remote import list_assistants

PROJECT = "reliable"


def write_project(root: Path, specs: dict[str, dict[str, Any]], name: str = PROJECT) -> Path:
    """asstctl.yaml and one assistants/<key>.yaml per spec (any previous spec files removed)."""
    (root / "assistants").mkdir(parents=True, exist_ok=True)
    (root / "asstctl.yaml").write_text(f"project: {name}\n")
    for old in (root / "assistants").glob("*.yaml"):
        old.unlink()
    for key, fields in specs.items():
        (root / "assistants" / f"{key}.yaml").write_text(yaml.safe_dump(fields, sort_keys=False))
    return root


def numbered_specs(n: int, version: int = 1) -> dict[str, dict[str, Any]]:
    return {f"bot-{i:03d}": {"model": "gpt-4o", "name": f"Bot {i}", "instructions": f"Bot {i}, v{version}.",
                             "temperature": 0.5} for i in range(n)}


def cli(root: Path, base_url: str, api_key: str, *args: str):
    """``asstctl -C root ARGS --base-url URL`` in-process, the key in $OPENAI_API_KEY."""
    env = {"OPENAI_API_KEY": api_key, "OPENAI_BASE_URL": None, "NO_COLOR": "1", "ASSTCTL_DEBUG": None}
    from asstctl.cli import cli as group

    return CliRunner().invoke(group, ["-C", str(root), *args, "--base-url", base_url], env=env)


def sdk(base_url: str, api_key: str, **options: Any):
    from asstctl.backends.targets import make_client

    options.setdefault("max_retries", 0)
    return make_client(base_url, api_key, **options)


def snapshot(client) -> dict[str, dict[str, Any]]:
    """id -> every assistant on the server, exactly as listed."""
    return {obj["id"]: obj for obj in list_assistants(client)[0]}


def seed_foreign(client, keys: list[str]) -> dict[str, dict[str, Any]]:
    """Objects that are not this project's: hand-made, another project's (same keys), half-tagged."""
    made = [client.beta.assistants.create(model="gpt-4o", name="hand-made")]
    made += [client.beta.assistants.create(model="gpt-4o", name=f"other {key}", metadata=tags("other", key, "0" * 16))
             for key in keys]
    made.append(client.beta.assistants.create(model="gpt-4o", metadata={"asstctl.managed-by": "asstctl"}))
    made.append(client.beta.assistants.create(model="gpt-4o", metadata={"asstctl.project": PROJECT,
                                                                       "asstctl.key": keys[0]}))
    ids = {obj.id for obj in made}
    return {id: obj for id, obj in snapshot(client).items() if id in ids}


def owned_by_key(objects: dict[str, dict[str, Any]], project: str = PROJECT) -> dict[str, list[dict[str, Any]]]:
    from asstctl.ownership import is_owned, owner

    found: dict[str, list[dict[str, Any]]] = {}
    for obj in objects.values():
        if is_owned(obj, project):
            found.setdefault(owner(obj)[1], []).append(obj)
    return found


def assert_matches_specs(objects: dict[str, dict[str, Any]], specs: dict[str, dict[str, Any]]) -> None:
    """Exactly one object per spec key, none for other keys, each with the spec's fields."""
    owned = owned_by_key(objects)
    assert sorted(owned) == sorted(specs), "keys differ"
    duplicates = {key: len(objs) for key, objs in owned.items() if len(objs) > 1}
    assert not duplicates, f"duplicates: {duplicates}"
    for key, fields in specs.items():
        obj = owned[key][0]
        wrong = {name: (obj.get(name), value) for name, value in fields.items() if obj.get(name) != value}
        assert not wrong, f"{key}: {wrong}"


def assert_untouched(foreign: dict[str, dict[str, Any]], objects: dict[str, dict[str, Any]]) -> None:
    changed = [id for id, obj in foreign.items() if objects.get(id) != obj]
    assert not changed, f"foreign objects changed or deleted: {changed}"
