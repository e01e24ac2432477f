"""Field-level differences between two normalized assistants (deepdiff underneath).

A change is plain data: ``path`` (``tools["function:lookup"].function.description``),
``old``/``new`` (JSON values; ``None`` with ``kind`` added/removed when a side is absent).
"""

from __future__ import annotations

import difflib
import re
from dataclasses import asdict, dataclass
from typing import Any

CHANGED, ADDED, REMOVED = "changed", "added", "removed"
_PLAIN_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass
class FieldChange:
    path: str
    old: Any = None
    new: Any = None
    kind: str = CHANGED

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "FieldChange":
        return cls(data["path"], data.get("old"), data.get("new"), data.get("kind", CHANGED))


def field_changes(old: dict[str, Any], new: dict[str, Any]) -> list[FieldChange]:
    """What changes when ``old`` becomes ``new`` (both normalized), sorted by path."""
    from deepdiff import DeepDiff

    tree = DeepDiff(old, new, view="tree")
    changes = [split for levels in tree.values() for level in levels for split in _split(_change(level))]
    return sorted(changes, key=lambda change: change.path)


def _split(change: FieldChange) -> list[FieldChange]:
    """deepdiff reports ``{}`` → ``{...}`` as one change: show one change per key instead."""
    if change.kind != CHANGED or not (isinstance(change.old, dict) and isinstance(change.new, dict)):
        return [change]
    if change.old and change.new:
        return [change]
    if change.new:
        return [FieldChange(_join(change.path, key), None, item, ADDED) for key, item in change.new.items()]
    return [FieldChange(_join(change.path, key), item, None, REMOVED) for key, item in change.old.items()]


def _join(path: str, key: Any) -> str:
    suffix = render_path([key])
    return f"{path}{suffix}" if suffix.startswith("[") else f"{path}.{suffix}"


def _change(level) -> FieldChange:
    from deepdiff.helper import notpresent

    path = render_path(level.path(output_format="list"))
    if level.t1 is notpresent:
        return FieldChange(path, None, level.t2, ADDED)
    if level.t2 is notpresent:
        return FieldChange(path, level.t1, None, REMOVED)
    return FieldChange(path, level.t1, level.t2, CHANGED)


def render_path(parts: list[Any]) -> str:
    text = ""
    for part in parts:
        if isinstance(part, str) and _PLAIN_KEY.match(part):
            text += f".{part}" if text else part
        else:
            text += f'["{part}"]' if isinstance(part, str) else f"[{part}]"
    return text


def text_diff(old: str | None, new: str | None, label: str) -> str:
    """A unified diff of two texts (instructions), ``""`` when they are equal."""
    lines = difflib.unified_diff(
        (old or "").splitlines(),
        (new or "").splitlines(),
        fromfile=f"{label} (remote)",
        tofile=f"{label} (spec)",
        lineterm="",
    )
    return "\n".join(lines)
