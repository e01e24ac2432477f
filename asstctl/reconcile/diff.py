"""Field-level differences between two normalized assistants (a small JSON diff of our own: no dependency,
so a no-op plan does not pay for a diff library's imports).

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
    """What changes when ``old`` becomes ``new`` (both normalized), sorted by path.

    Mappings are compared key by key (an added or removed key is one change each), lists index by
    index (items beyond the shorter list are added or removed), anything else by type and value
    (``1`` → ``1.0`` is a change, as the API would store it differently)."""
    changes: list[FieldChange] = []
    _walk(old, new, [], changes)
    return sorted(changes, key=lambda change: change.path)


def _walk(old: Any, new: Any, path: list[Any], out: list[FieldChange]) -> None:
    if isinstance(old, dict) and isinstance(new, dict):
        for key in old:
            if key in new:
                _walk(old[key], new[key], [*path, key], out)
            else:
                out.append(FieldChange(render_path([*path, key]), old[key], None, REMOVED))
        out.extend(FieldChange(render_path([*path, key]), None, new[key], ADDED) for key in new if key not in old)
    elif isinstance(old, (list, tuple)) and isinstance(new, (list, tuple)):
        for index in range(min(len(old), len(new))):
            _walk(old[index], new[index], [*path, index], out)
        out.extend(FieldChange(render_path([*path, index]), item, None, REMOVED) for index, item in
                   enumerate(old[len(new):], len(new)))
        out.extend(FieldChange(render_path([*path, index]), None, item, ADDED) for index, item in
                   enumerate(new[len(old):], len(old)))
    elif type(old) is not type(new) or old != new:
        out.append(FieldChange(render_path(path), old, new, CHANGED))


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
