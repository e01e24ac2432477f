"""The in-memory result of loading specs: what the reconciler consumes.

This is the contract between the spec loader (``asstctl.spec``) and the
reconcile pipeline (normalize → diff → plan → apply). Keep it plain data.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class AssistantSpec:
    """One desired assistant, resolved for one target.

    ``fields`` is shaped like the body of ``POST /v1/assistants``: ``model`` and any of
    ``name``, ``description``, ``instructions`` (``instructions_file`` already read),
    ``tools`` (function ``parameters`` files already inlined), ``temperature``,
    ``top_p``, ``response_format`` (schema files inlined), ``reasoning_effort``,
    ``metadata`` (the user's own keys only; ownership tags are added by the reconciler).
    Fields the spec does not set are absent. Per-target overrides are already merged.
    """

    key: str
    path: Path
    fields: dict[str, Any]
    prevent_destroy: bool = False
    # Where each top-level field came from, for messages: field -> (line, col), 1-based.
    positions: dict[str, tuple[int, int]] = field(default_factory=dict, compare=False, hash=False)
