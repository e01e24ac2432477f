"""``asstctl.yaml``: the project file at the root of a checkout.

    project: support-bots          # required
    specs: assistants              # where assistant specs live (default: assistants/)
    vector_stores: vector_stores   # shared vector stores, one per file (default: vector_stores/)
    engine_rules: engine-rules.yaml  # offline engine steering for the embedded server (optional)
    engine:                        # optional: a real model for the embedded server (docs/engine.md)
      upstream: http://localhost:11434/v1
      api_key_env: OLLAMA_API_KEY
      model_map: {"gpt-4*": "llama3.1:8b"}
    targets:
      staging:
        base_url: https://example.openai.azure.com
        api_key_env: AZURE_OPENAI_API_KEY
        azure: {api_version: "2024-05-01-preview"}
      local:
        embedded: true             # the default: asstctl's own server, data under .asstctl/
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from asstctl.errors import ConfigError

PROJECT_FILE = "asstctl.yaml"
STATE_DIR = ".asstctl"


@dataclass
class TargetConfig:
    name: str
    embedded: bool = False
    base_url: str | None = None
    api_key_env: str | None = None
    organization: str | None = None
    project: str | None = None  # the OpenAI project id header, not asstctl's project
    azure_api_version: str | None = None
    db: str | None = None  # embedded only: database path relative to the project root


@dataclass
class Project:
    root: Path
    name: str
    specs_dir: Path
    targets: dict[str, TargetConfig] = field(default_factory=dict)
    engine_rules: Path | None = None
    raw: dict[str, Any] = field(default_factory=dict)
    vector_stores_dir: Path | None = None  # None: <root>/vector_stores
    engine: Any = None  # server.engine.config.UpstreamConfig from `engine:`; None = the offline engine

    @property
    def state_dir(self) -> Path:
        return self.root / STATE_DIR


def find_root(start: Path | None = None) -> Path | None:
    """The nearest directory at or above ``start`` that holds asstctl.yaml."""
    here = (start or Path.cwd()).resolve()
    for directory in (here, *here.parents):
        if (directory / PROJECT_FILE).is_file():
            return directory
    return None


def load_project(start: Path | None = None) -> Project:
    root = find_root(start)
    if root is None:
        raise ConfigError(
            f"no {PROJECT_FILE} found in {Path(start or Path.cwd()).resolve()} or any parent directory",
            hint="Run `asstctl init` to create a project here.",
        )
    return parse_project(root)


def parse_project(root: Path) -> Project:
    path = root / PROJECT_FILE
    data = _read(path)
    name = data.get("project")
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(f"{path}:1:1: `project` is required: a name for this project, e.g. `project: support-bots`")
    targets = {n: _target(path, n, t) for n, t in _mapping(path, data, "targets").items()}
    from asstctl.server.engine.config import from_project_section

    engine = from_project_section(path, data.get("engine"))
    rules = data.get("engine_rules")
    rules_path = root / rules if rules else (root / "engine-rules.yaml")
    return Project(
        root=root,
        name=name.strip(),
        specs_dir=root / str(data.get("specs") or "assistants"),
        targets=targets,
        engine_rules=rules_path if rules_path.is_file() else None,
        raw=data,
        vector_stores_dir=root / str(data.get("vector_stores") or "vector_stores"),
        engine=engine,
    )


def _read(path: Path) -> dict[str, Any]:
    """asstctl.yaml as a mapping; bad YAML, encodings and duplicate keys are one ConfigError."""
    from asstctl.errors import SpecError
    from asstctl.spec.yamlpos import load_yaml

    try:
        data = load_yaml(path).data
    except SpecError as error:
        raise ConfigError("\n".join(error.problems)) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}:1:1: expected a mapping with at least `project: NAME`")
    return data


def _mapping(path: Path, data: dict[str, Any], name: str) -> dict[str, Any]:
    value = data.get(name) or {}
    if not isinstance(value, dict):
        raise ConfigError(f"{path}: `{name}` must be a mapping of names to settings")
    return value


def _target(path: Path, name: str, data: Any) -> TargetConfig:
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: target `{name}` must be a mapping (base_url, api_key_env, ...)")
    azure = data.get("azure") or {}
    return TargetConfig(
        name=name,
        embedded=bool(data.get("embedded", not data.get("base_url"))),
        base_url=data.get("base_url"),
        api_key_env=data.get("api_key_env"),
        organization=data.get("organization"),
        project=data.get("openai_project"),
        azure_api_version=azure.get("api_version") if isinstance(azure, dict) else None,
        db=data.get("db"),
    )
