"""``asstctl.yaml``: the project file at the root of a checkout.

    project: support-bots          # required
    specs: assistants              # where assistant specs live (default: assistants/)
    vector_stores: vector_stores   # shared vector stores, one per file (default: vector_stores/)
    engine_rules: engine-rules.yaml  # offline engine steering for the embedded server (optional)
    allow_paths: [../shared]       # folders outside the project that specs may read files from
    engine:                        # optional: a real model for the embedded server (docs/engine.md)
      upstream: http://localhost:11434/v1
      api_key_env: OLLAMA_API_KEY
      model_map: {"gpt-4*": "llama3.1:8b"}
    targets:
      staging:
        base_url: https://example.openai.azure.com
        api_key_env: AZURE_OPENAI_API_KEY
        azure: {api_version: "2024-05-01-preview"}
      agents:
        api: agents                # OpenAI's beta Agents API (docs/agents.md); default: assistants
        base_url: https://api.openai.com/v1
        api_key_env: OPENAI_API_KEY
      local:
        embedded: true             # the default: asstctl's own server, data under .asstctl/

Validated by a JSON Schema (asstctl.spec.project_schema): a misspelled key is an error.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from asstctl.errors import ConfigError
from asstctl.spec.files import PROJECT_FILE, STATE_DIR, find_root  # noqa: F401 (the project file's names, used from here)

AGENTS_URL = "https://api.openai.com/v1"  # an agents target's default base_url
HINT = "asstctl.yaml's fields are described in docs/spec-format.md (`asstctl schema --kind project` prints its schema)."


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
    api: str = "assistants"  # or "agents": OpenAI's beta Agents API (asstctl.backends.agents)


@dataclass
class Project:
    root: Path
    name: str
    specs_dir: Path
    targets: dict[str, TargetConfig] = field(default_factory=dict)
    engine_rules: Path | None = None
    raw: dict[str, Any] = field(default_factory=dict)
    vector_stores_dir: Path | None = None  # None: <root>/vector_stores
    allow_paths: tuple[str, ...] = ()  # folders outside the root that specs may read files from
    positions: dict[str, tuple[int, int]] = field(default_factory=dict)  # top-level key -> (line, col)
    engine: Any = None  # server.engine.config.UpstreamConfig from `engine:`; None = the offline engine

    @property
    def state_dir(self) -> Path:
        return self.root / STATE_DIR


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
    data, positions = _read(path)
    targets = {n: _target(path, n, t, positions) for n, t in (data.get("targets") or {}).items()}
    positions = {steps[0]: line_col for steps, line_col in positions.items() if len(steps) == 1}
    from asstctl.spec.files import shown

    engine = None
    if data.get("engine") is not None:  # the engine's modules take a while to import; most projects need none
        from asstctl.server.engine.config import from_project_section

        engine = from_project_section(shown(path), data["engine"])
    rules = data.get("engine_rules")
    rules_path = root / rules if rules else (root / "engine-rules.yaml")
    return Project(
        root=root,
        name=data["project"].strip(),
        specs_dir=root / str(data.get("specs") or "assistants"),
        targets=targets,
        engine_rules=rules_path if rules_path.is_file() else None,
        raw=data,
        vector_stores_dir=root / str(data.get("vector_stores") or "vector_stores"),
        allow_paths=tuple(data.get("allow_paths") or ()),
        positions=positions,
        engine=engine,
    )


def _read(path: Path) -> tuple[dict[str, Any], dict[tuple[Any, ...], tuple[int, int]]]:
    """asstctl.yaml as a schema-valid mapping and the positions of its keys; bad YAML, encodings,
    duplicate keys and every schema problem (did-you-mean for misspelled keys) are one ConfigError."""
    from asstctl.errors import SpecError
    from asstctl.spec.files import shown
    from asstctl.spec.project_schema import shared_project_schema
    from asstctl.spec.schema import schema_problems
    from asstctl.spec.yamlpos import load_yaml

    try:
        doc = load_yaml(path, shown(path))
    except SpecError as error:
        raise ConfigError("\n".join(error.problems), hint=HINT) from None
    if doc.data is None:
        doc.data = {}
    if not isinstance(doc.data, dict):
        raise ConfigError(f"{shown(path)}:1:1: expected a mapping with at least `project: NAME`", hint=HINT)
    problems = schema_problems(doc, shared_project_schema())
    if problems:
        raise ConfigError("\n".join(problems), hint=HINT)
    return doc.data, doc.positions


def _target(path: Path, name: str, data: Any, positions: dict[tuple[Any, ...], tuple[int, int]]) -> TargetConfig:
    data = data or {}  # `local:` with nothing under it: the embedded server
    azure = data.get("azure") or {}
    api = data.get("api") or "assistants"
    if api == "agents" and data.get("embedded"):
        from asstctl.spec.files import shown

        line, col = positions.get(("targets", name, "embedded"), (1, 1))
        raise ConfigError(f"{shown(path)}:{line}:{col}: target `{name}`: the embedded server serves the Assistants "
                          "API, not the Agents API",
                          hint="Drop `embedded: true` (an agents target needs `base_url`, default "
                               "https://api.openai.com/v1), or drop `api: agents`.")
    base_url = data.get("base_url") or (AGENTS_URL if api == "agents" else None)
    return TargetConfig(
        name=name,
        api=api,
        embedded=bool(data.get("embedded", not base_url)),
        base_url=base_url,
        api_key_env=data.get("api_key_env"),
        organization=data.get("organization"),
        project=data.get("openai_project"),
        azure_api_version=azure.get("api_version") if isinstance(azure, dict) else None,
        db=data.get("db"),
    )
