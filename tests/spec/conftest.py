"""A throw-away project (cwd = its root, so messages show `assistants/<file>`), and helpers to fill it."""

from __future__ import annotations

from pathlib import Path

import pytest

from asstctl.spec.project import load_project
from asstctl.spec.loader import validate_project


@pytest.fixture
def project(tmp_path, monkeypatch) -> Path:
    root = tmp_path / "project"
    (root / "assistants").mkdir(parents=True)
    (root / "asstctl.yaml").write_text("project: demo\ntargets:\n  staging: {base_url: 'http://127.0.0.1:9/v1'}\n")
    monkeypatch.chdir(root)
    return root


def write(root: Path, files: dict[str, str | bytes]) -> None:
    """Write ``files`` (paths relative to assistants/) into the project."""
    for name, content in files.items():
        path = root / "assistants" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))


def problems(root: Path, files: dict[str, str | bytes]) -> list[str]:
    write(root, files)
    return validate_project(load_project(root))
