"""Ownership without a state file: the metadata tags asstctl puts on what it manages.

An object is asstctl's to change only when it carries ``asstctl.managed-by`` =
``asstctl`` *and* ``asstctl.project`` = this project's name. Everything else is
foreign and is never updated or deleted.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any, Mapping

PREFIX = "asstctl."
MANAGED_BY = "asstctl.managed-by"
PROJECT = "asstctl.project"
KEY = "asstctl.key"
SPEC_HASH = "asstctl.spec-hash"
LOCK = "asstctl.lock"  # a project lock object (asstctl.lock), never a managed or foreign object
MANAGER = "asstctl"
RESERVED_KEYS = (MANAGED_BY, PROJECT, KEY, SPEC_HASH)
METADATA_LIMIT = 16
USER_METADATA_LIMIT = METADATA_LIMIT - len(RESERVED_KEYS)
# the filename of a knowledge file asstctl uploaded: asstctl--<project>--<sha256[:16]>--<the file's own name>
UPLOAD_NAME = re.compile(r"^asstctl--(?P<project>.+)--(?P<sha>[0-9a-f]{16})--(?P<name>.+)$", re.S)


def own_filename(filename: str) -> str:
    """The name a file is shown by: an asstctl upload's own name (``warranty.md``), any other file's as is."""
    match = UPLOAD_NAME.match(filename or "")
    return match["name"] if match else filename


def tags(project: str, key: str, spec_hash: str) -> dict[str, str]:
    return {MANAGED_BY: MANAGER, PROJECT: project, KEY: key, SPEC_HASH: spec_hash}


def is_reserved(metadata_key: str) -> bool:
    return metadata_key.startswith(PREFIX)


def user_metadata(metadata: Mapping[str, str] | None) -> dict[str, str]:
    """The metadata without asstctl's own tags."""
    return {k: v for k, v in (metadata or {}).items() if not is_reserved(k)}


def owner(obj: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """(project, key) if asstctl manages this object, else (None, None)."""
    metadata = obj.get("metadata") or {}
    if metadata.get(MANAGED_BY) != MANAGER:
        return None, None
    return metadata.get(PROJECT), metadata.get(KEY)


def is_lock(obj: Mapping[str, Any]) -> bool:
    return bool((obj.get("metadata") or {}).get(LOCK))


def is_owned(obj: Mapping[str, Any], project: str) -> bool:
    found_project, key = owner(obj)
    return found_project == project and bool(key)


def spec_hash(fields: Mapping[str, Any]) -> str:
    """A stable hash of the normalized desired fields (without tags): detects drift."""
    canonical = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


# The spec-hash tag is "<content>" or "<content>.<hidden>": ``content`` hashes the normalized fields a
# server returns (so a remote object that no longer hashes to it was changed outside asstctl: drift);
# ``hidden`` hashes the desired fields a server does not return (``reasoning_effort``), present only
# when one of them is set, so their changes are detected from the tag alone.
def hash_tag(content: Mapping[str, Any], hidden: Mapping[str, Any]) -> str:
    hidden_part = hidden_hash(hidden)
    return f"{spec_hash(content)}.{hidden_part}" if hidden_part else spec_hash(content)


def hidden_hash(hidden: Mapping[str, Any]) -> str:
    """The hash of the set hidden fields, ``""`` when none is set."""
    present = {k: v for k, v in hidden.items() if v is not None}
    return spec_hash(present) if present else ""


def split_hash_tag(metadata: Mapping[str, str] | None) -> tuple[str | None, str]:
    """(content hash, hidden hash) recorded on an object; (None, "") without a tag."""
    value = (metadata or {}).get(SPEC_HASH)
    if not value:
        return None, ""
    content, _, hidden = value.partition(".")
    return content, hidden
