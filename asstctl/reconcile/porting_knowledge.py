"""Export of knowledge: an assistant's vector store and code files written as declarations, not pinned ids.

A remote assistant lists its resources by id (``tool_resources``). When an id is one of this project's
vector stores, the spec gets the declaration back: ``file_search: {vector_store: kb}`` for a shared store
(``vector_stores/kb.yaml``), or the store inline (its files, from the paths asstctl recorded on them) when
it has the assistant's key. Code files become ``code_interpreter: {files: [...]}`` when every one is an
upload of this project whose content is found in the project (same name, size and sha256). Anything else
stays pinned by id, as before. A later ``plan`` compares through the same id → reference names as the
reconciler (``names``), so it is a no-op and not "changed outside asstctl".
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from asstctl.spec.knowledge import local_file

MAX_SEARCH_ENTRIES = 20_000  # how far export looks in the project for a code file's content


@dataclass
class Declarations:
    """What export needs to turn ids back into declarations, for one project."""

    root: Path
    shared: set[str]  # keys of vector_stores/<key>.yaml files
    stores: dict[str, tuple[str, dict[str, Any], list[dict[str, Any]]]] = field(default_factory=dict)  # id -> key, obj, files
    uploads: dict[str, dict[str, Any]] = field(default_factory=dict)  # id -> this project's upload
    names: dict[str, str] = field(default_factory=dict)  # id -> knowledge reference (as the reconciler names them)


def needs_knowledge(objs: list[dict[str, Any]]) -> bool:
    return any(ids for obj in objs for part in (obj.get("tool_resources") or {}).values() if isinstance(part, dict)
               for ids in part.values())


def declarations(project, client, objs: list[dict[str, Any]]) -> Declarations | None:
    """The project's stores and uploads, read only when an exported assistant has resources."""
    from asstctl.reconcile.knowledge import knowledge_view, read_knowledge
    from asstctl.spec.loader import key_of, read_spec, store_files

    if not needs_knowledge(objs):
        return None
    knowledge = read_knowledge(client, project.name)
    shared = set()
    for path in store_files(project):
        doc = read_spec(path, schema="vector_store")[0]
        shared.add(key_of(doc) if doc is not None and isinstance(doc.data, dict) else path.name.split(".")[0])
    found = Declarations(Path(project.root), shared, names=knowledge_view([], knowledge)[1] or {})
    for key, obj in knowledge.stores.managed.items():
        found.stores[obj["id"]] = (key, obj, knowledge.store_files.get(obj["id"], []))
    for uploads in knowledge.uploads.values():
        found.uploads.update({upload["id"]: upload for upload in uploads})
    return found


def declare(fields: dict[str, Any], key: str, spec_dir: Path, known: Declarations | None) -> dict[str, Any]:
    """The spec fields of :func:`asstctl.reconcile.porting.spec_fields` with knowledge ids turned into declarations."""
    resources = dict(fields.get("tool_resources") or {})
    if known is None or not resources:
        return fields
    tools = list(fields.get("tools") or [])
    store = _store_declaration(resources.get("file_search") or {}, key, spec_dir, known)
    if store is not None and _set_option(tools, "file_search", "vector_store", store):
        resources.pop("file_search")
    files = _code_declaration(resources.get("code_interpreter") or {}, spec_dir, known)
    if files is not None and _set_option(tools, "code_interpreter", "files", files):
        resources.pop("code_interpreter")
    out = {**fields, "tools": tools, "tool_resources": resources}
    if not resources:
        out.pop("tool_resources")
    return out


def _set_option(tools: list[Any], kind: str, option: str, value: Any) -> bool:
    """Put ``option: value`` into the (short-form) ``kind`` tool of ``tools``; False when there is none."""
    for index, tool in enumerate(tools):
        if tool == kind:
            tools[index] = {kind: {option: value}}
            return True
        if isinstance(tool, dict) and kind in tool and set(tool) == {kind}:
            tools[index] = {kind: {option: value, **(tool[kind] or {})}}
            return True
    return False


def _store_declaration(part: dict[str, Any], key: str, spec_dir: Path, known: Declarations) -> Any:
    ids = part.get("vector_store_ids") or []
    if len(ids) != 1 or ids[0] not in known.stores:
        return None
    store_key, obj, files = known.stores[ids[0]]
    if store_key != key or store_key in known.shared:
        return store_key
    return _inline_store(obj, files, key, spec_dir, known)


def _inline_store(obj: dict[str, Any], files: list[dict[str, Any]], key: str, spec_dir: Path,
                  known: Declarations) -> dict[str, Any] | None:
    from asstctl.reconcile.knowledge import ATTR_PATH, AUTO_CHUNKING
    from asstctl.ownership import user_metadata

    paths = sorted((item.get("attributes") or {}).get(ATTR_PATH) for item in files)
    if not paths or not all(paths):
        return None
    store: dict[str, Any] = {"files": [_relative(known.root / path, spec_dir) for path in paths]}
    if obj.get("name") and obj["name"] != key:
        store["name"] = obj["name"]
    strategies = {repr(item.get("chunking_strategy")) for item in files}
    strategy = files[0].get("chunking_strategy")
    if len(strategies) == 1 and strategy and strategy != AUTO_CHUNKING and strategy.get("type") == "static":
        store["chunking_strategy"] = {"type": "static", "static": dict(strategy["static"])}
    expires = obj.get("expires_after")
    if expires:
        store["expires_after"] = {"days": expires["days"]}
    if user_metadata(obj.get("metadata")):
        store["metadata"] = user_metadata(obj.get("metadata"))
    return store


def _code_declaration(part: dict[str, Any], spec_dir: Path, known: Declarations) -> list[str] | None:
    ids = part.get("file_ids") or []
    uploads = [known.uploads.get(file_id) for file_id in ids]
    if not ids or not all(uploads):
        return None
    wanted = {}
    for upload in uploads:
        ref = known.names.get(upload["id"]) or ""
        name, _, sha = ref.removeprefix("file:").rpartition("#")
        wanted[(name, upload.get("bytes"), sha)] = upload["id"]
    found = _find_files(known.root, wanted)
    if len(found) != len(wanted):
        return None
    return [_relative(found[key], spec_dir) for key in wanted]


def _find_files(root: Path, wanted: dict[tuple[str, int, str], str]) -> dict[tuple, Path]:
    """Files below ``root`` (hidden folders and .asstctl skipped) with a wanted (name, size, sha256 prefix)."""
    names = {name for name, _, _ in wanted}
    found: dict[tuple, Path] = {}
    seen = 0
    for directory, folders, files in os.walk(root):
        folders[:] = sorted(folder for folder in folders if not folder.startswith("."))
        seen += len(folders) + len(files)
        if seen > MAX_SEARCH_ENTRIES:
            break
        for name in sorted(set(files) & names):
            path = Path(directory) / name
            if not path.is_file():
                continue
            key = (name, path.stat().st_size, local_file(path).sha256[:16])
            if key in wanted:
                found.setdefault(key, path)
    return found


def _relative(path: Path, spec_dir: Path) -> str:
    return Path(os.path.relpath(path, spec_dir)).as_posix()
