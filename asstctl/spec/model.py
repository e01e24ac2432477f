"""The in-memory result of loading specs: what the reconciler consumes.

This is the contract between the spec loader (``asstctl.spec``) and the
reconcile pipeline (normalize → diff → plan → apply). Keep it plain data.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class LocalFile:
    """One file of the knowledge a spec declares, read and hashed when the spec was loaded.

    ``label`` is how plans, attributes and messages name it: the path relative to the project
    root (POSIX separators). ``path`` is where it is read from at apply time.
    """

    label: str
    path: Path
    sha256: str
    size: int


@dataclass(frozen=True)
class VectorStoreSpec:
    """One desired vector store: declared in ``vector_stores/<key>.yaml`` or inline in an
    assistant's ``file_search.vector_store`` (then its key is the assistant's key).

    ``fields`` holds ``name``, ``metadata`` (user keys), ``expires_after`` when set;
    ``chunking_strategy`` applies to every file attached (``None``: the API's ``auto``).
    """

    key: str
    path: Path
    fields: dict[str, Any]
    files: tuple[LocalFile, ...] = ()
    chunking_strategy: dict[str, Any] | None = None
    prevent_destroy: bool = False
    positions: dict[str, tuple[int, int]] = field(default_factory=dict, compare=False, hash=False)


@dataclass(frozen=True)
class AssistantSpec:
    """One desired assistant, resolved for one target.

    ``fields`` is shaped like the body of ``POST /v1/assistants``: ``model`` and any of
    ``name``, ``description``, ``instructions`` (``instructions_file`` already read),
    ``tools`` (function ``parameters`` files already inlined), ``temperature``,
    ``top_p``, ``response_format`` (schema files inlined), ``reasoning_effort``,
    ``metadata`` (the user's own keys only; ownership tags are added by the reconciler).
    Fields the spec does not set are absent. Per-target overrides are already merged.

    Knowledge: ``code_files`` are the ``code_interpreter`` tool's files, ``vector_store`` the key
    of the ``file_search`` tool's vector store (``inline_store`` when declared in this spec). The
    reconciler derives ``tool_resources`` from them (see asstctl/reconcile/knowledge.py).
    """

    key: str
    path: Path
    fields: dict[str, Any]
    prevent_destroy: bool = False
    # Where each top-level field came from, for messages: field -> (line, col), 1-based.
    positions: dict[str, tuple[int, int]] = field(default_factory=dict, compare=False, hash=False)
    code_files: tuple[LocalFile, ...] = ()
    vector_store: str | None = None
    inline_store: VectorStoreSpec | None = None
