"""The remote state: every assistant on the target, classified by ownership.

    state = read_remote(client, "support-bots")
    state.managed["triage"]        # this project's object for key "triage" (the oldest one)
    state.duplicates["triage"]     # further objects tagged with the same key (newer ones)
    state.foreign                  # unmanaged or another project's: never touched

Reading lists with ``limit=100`` in creation order: exactly ceil(N/100) list requests
(one for an empty account). Objects are plain dicts as the server returned them; the backend (asstctl.backends) does the reading.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from asstctl.backends import backend_for
from asstctl.ownership import is_lock, is_owned, owner, spec_hash


@dataclass
class RemoteState:
    project: str
    managed: dict[str, dict[str, Any]] = field(default_factory=dict)
    duplicates: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    foreign: list[dict[str, Any]] = field(default_factory=list)
    requests: int = 0

    def owned(self) -> list[dict[str, Any]]:
        """Every object of this project, duplicates included."""
        extras = [obj for objs in self.duplicates.values() for obj in objs]
        return [*self.managed.values(), *extras]

    def fingerprints(self) -> dict[str, str]:
        """id -> fingerprint of every object of this project."""
        return {obj["id"]: fingerprint(obj) for obj in self.owned()}

    def find(self, key: str) -> dict[str, Any] | None:
        return self.managed.get(key)


def fingerprint(obj: dict[str, Any]) -> str:
    """A hash of a remote object exactly as read: any change to it changes the fingerprint."""
    return spec_hash(obj)


def state_fingerprint(fingerprints: dict[str, str]) -> str:
    return spec_hash(fingerprints)


def read_remote(client: Any, project_name: str) -> RemoteState:
    """List every assistant of the target (a client or a backend: asstctl.backends) and classify it for ``project_name``."""
    objects, requests = list_assistants(client)
    state = classify(objects, project_name)
    state.requests = requests
    return state


def list_assistants(client: Any) -> tuple[list[dict[str, Any]], int]:
    """All assistants, oldest first, and the number of list requests it took."""
    return backend_for(client).list_assistants()


def classify(objects: list[dict[str, Any]], project_name: str) -> RemoteState:
    """Objects in creation order → managed (first per key), duplicates (later ones), foreign.
    Project lock objects (asstctl.lock) are none of these: they are left out."""
    state = RemoteState(project_name)
    for obj in objects:
        if is_lock(obj):
            continue
        if not is_owned(obj, project_name):
            state.foreign.append(obj)
            continue
        key = owner(obj)[1]
        if key in state.managed:
            state.duplicates.setdefault(key, []).append(obj)
        else:
            state.managed[key] = obj
    return state
