"""The offline engine's rules file, checked before anything runs: every bad rule as
``engine-rules.yaml:LINE:COL: rule N: problem`` (rules numbered from 1, as people count them).

The engine (asstctl.server.engine.offline.load_rules) is the judge of what a rule may hold; this module
only finds where each problem is: every rule is loaded on its own, and the rule (or its key that the
message names) is located with asstctl.spec.yamlpos. ``validate`` reports these problems, and the embedded
target refuses to start with them (a configuration error: ``asstctl test`` exits 2). May import
asstctl.spec (project, loader, yamlpos) and, lazily, asstctl.server.engine.offline.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path
from typing import Any

from asstctl.errors import SpecError

_PREFIX = re.compile(r"^offline engine rules file .*?: (?:rule \d+: )?")


def rules_path(project) -> tuple[Path | None, str | None]:
    """(the rules file to check, a problem when asstctl.yaml names one that does not exist)."""
    from asstctl.spec.loader import setting_where, shown

    configured = (getattr(project, "raw", None) or {}).get("engine_rules")
    if configured and project.engine_rules is None:
        path = Path(project.root) / configured
        return None, f"{setting_where(project, 'engine_rules')}: the engine rules file {shown(path)} does not exist"
    return project.engine_rules, None


def rules_problems(project) -> list[str]:
    """Every problem of the project's engine rules file (none when it has none)."""
    path, missing = rules_path(project)
    if missing:
        return [missing]
    return file_problems(path) if path is not None else []


def file_problems(path: Path) -> list[str]:
    from asstctl.server.engine.offline import RulesError, load_rules
    from asstctl.spec.loader import shown
    from asstctl.spec.yamlpos import load_yaml

    try:
        doc = load_yaml(path, shown(path))
    except SpecError as error:
        return error.problems
    try:
        load_rules(str(path))
        return []
    except RulesError as error:
        whole = error.message
    rules = doc.data.get("rules") if isinstance(doc.data, dict) else None
    if not isinstance(rules, list) or set(doc.data) != {"rules"}:
        return [f"{doc.where()}: {_clean(whole, path)}"]
    problems = [problem for index, raw in enumerate(rules) if (problem := _rule_problem(doc, index, raw, path))]
    return problems or [f"{doc.where()}: {_clean(whole, path)}"]


def _rule_problem(doc, index: int, raw: Any, path: Path) -> str | None:
    """The problem of rule ``index`` alone (loaded from a scratch file), placed at the key it names."""
    import yaml

    from asstctl.server.engine.offline import RulesError, load_rules

    handle, scratch = tempfile.mkstemp(suffix=".yaml", prefix="asstctl-rule-")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            yaml.safe_dump({"rules": [raw]}, stream, allow_unicode=True)
        load_rules(scratch)
        return None
    except RulesError as error:
        message = _clean(error.message, path).replace(scratch, str(path))
    finally:
        os.unlink(scratch)
    at: tuple = ("rules", index)
    found = {match.start(): key for key in (raw if isinstance(raw, dict) else {})
             if (match := re.search(rf"\b{re.escape(str(key))}\b", message))}
    if found:
        at += (found[min(found)],)  # the key the message names first
    return f"{doc.where(at)}: rule {index + 1}: {message}"


def _clean(message: str, path: Path) -> str:
    return _PREFIX.sub("", message.splitlines()[0] if message else "invalid")


def check_rules(project) -> None:
    """Raise a ConfigError listing every problem of the project's rules file (before a server starts)."""
    from asstctl.errors import ConfigError

    problems = rules_problems(project)
    if problems:
        raise ConfigError("\n".join(problems) + f"\n{len(problems)} problem{'s' if len(problems) != 1 else ''} found",
                          hint="Fix the engine rules file; its format is described in docs/engine.md.")
