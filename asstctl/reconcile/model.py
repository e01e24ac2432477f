"""The reconciler's plain data: a plan (actions, uploads, file deletions) and an apply's outcomes.

A plan is JSON round-trip data (``to_dict``/``from_dict``, ``format_version`` 1: docs/plan-format.md);
no decisions and no rendering here (decisions: asstctl.reconcile.plan and kinds; rendering: report).
Imports only asstctl.errors and asstctl.reconcile.diff.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from asstctl.errors import PlanError
from asstctl.reconcile.diff import FieldChange

FORMAT_VERSION = 1
CREATE, UPDATE, DELETE, NOOP = "create", "update", "delete", "no-op"
ASSISTANT, VECTOR_STORE = "assistant", "vector_store"
APPLY_MODE, DESTROY_MODE = "apply", "destroy"


@dataclass
class FileOp:
    """One file-level change under a vector store or an assistant: ``+`` attach, ``-`` detach, ``~`` swap."""

    op: str
    path: str
    ref: str | None = None  # the upload to attach (+, ~)
    file_id: str | None = None  # the file to detach (-, ~)
    reason: str | None = None
    attributes: dict[str, Any] | None = None
    chunking_strategy: dict[str, Any] | None = None


@dataclass
class Upload:
    ref: str
    path: str  # relative to the project root
    source: str  # where it was read when planning
    sha256: str
    bytes: int
    filename: str


@dataclass
class FileDeletion:
    file_id: str
    filename: str
    path: str  # the file's name as uploaded (its original path is not recorded on the file object)
    reason: str = "no longer used"


@dataclass
class Action:
    kind: str
    key: str
    remote_id: str | None = None
    fingerprint: str | None = None  # of the remote object this action was planned against
    changes: list[FieldChange] = field(default_factory=list)
    instructions_diff: str | None = None
    drift: bool = False
    reason: str | None = None
    blocked: bool = False
    body: dict[str, Any] | None = None  # the full request body of a create/update
    source: str | None = None  # the spec file
    object: str = ASSISTANT  # or VECTOR_STORE
    files: list[Any] = field(default_factory=list)  # FileOp: file-level changes
    duplicate: bool = False  # a further object with the key of another (the oldest is the managed one)

    @property
    def executable(self) -> bool:
        return self.kind in (CREATE, UPDATE, DELETE) and not self.blocked

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["changes"] = [change.to_dict() for change in self.changes]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Action":
        changes = [FieldChange.from_dict(change) for change in data.get("changes") or []]
        return cls(**{**known_fields(cls, data), "changes": changes, "files": from_dicts(FileOp, data.get("files"))})


@dataclass
class Plan:
    project: str
    target: str
    mode: str = APPLY_MODE
    prune: bool = False
    actions: list[Action] = field(default_factory=list)
    remote_fingerprint: str = ""
    foreign: int = 0
    format_version: int = FORMAT_VERSION
    uploads: list[Any] = field(default_factory=list)  # Upload
    file_deletions: list[Any] = field(default_factory=list)  # FileDeletion
    refs: dict[str, str] = field(default_factory=dict)  # knowledge reference -> id known when planning

    def counts(self) -> dict[str, int]:
        counts = {CREATE: 0, UPDATE: 0, DELETE: 0, NOOP: 0, "blocked": 0}
        for action in self.actions:
            counts["blocked" if action.blocked else action.kind] += 1
        return counts

    def has_changes(self) -> bool:
        return any(action.executable for action in self.actions) or bool(self.uploads or self.file_deletions)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["actions"] = [action.to_dict() for action in self.actions]
        return {"format_version": self.format_version, **data}

    def to_json(self) -> str:
        """The plan file's text (it holds request bodies and ids, never a key)."""
        return json.dumps(self.to_dict(), indent=2, ensure_ascii=False, sort_keys=False) + "\n"

    @classmethod
    def from_dict(cls, data: Any) -> "Plan":
        if not isinstance(data, dict) or data.get("format_version") != FORMAT_VERSION:
            version = data.get("format_version") if isinstance(data, dict) else None
            raise PlanError(f"unsupported plan format_version {version!r} (this asstctl reads {FORMAT_VERSION})",
                            hint="Create the plan again with `asstctl plan --out FILE`.")
        try:
            actions = [Action.from_dict(action) for action in data["actions"]]
            files = {"uploads": from_dicts(Upload, data.get("uploads")),
                     "file_deletions": from_dicts(FileDeletion, data.get("file_deletions"))}
            return cls(**{**known_fields(cls, data), "actions": actions, **files})
        except (KeyError, TypeError) as error:
            raise PlanError(f"the plan file is damaged ({error})", hint="Create it again with `asstctl plan --out FILE`.")


def known_fields(cls: type, data: dict[str, Any]) -> dict[str, Any]:
    """``data`` without keys a newer asstctl may have added within the same format version."""
    names = {f.name for f in fields(cls)}
    return {key: value for key, value in data.items() if key in names}


def from_dicts(cls: type, items: list[dict[str, Any]] | None) -> list[Any]:
    return [cls(**known_fields(cls, item)) for item in items or []]


# --- what an apply did -------------------------------------------------------------------------------------

@dataclass
class Outcome:
    key: str
    kind: str
    ok: bool
    remote_id: str | None = None
    error: str | None = None
    note: str | None = None


@dataclass
class ApplyResult:
    outcomes: list[Outcome] = field(default_factory=list)

    @property
    def failed(self) -> list[Outcome]:
        return [outcome for outcome in self.outcomes if not outcome.ok]

    def count(self, kind: str) -> int:
        return sum(1 for outcome in self.outcomes if outcome.ok and outcome.kind == kind)
