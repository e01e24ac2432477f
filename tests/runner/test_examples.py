"""The shipped examples: apply them to the embedded server, then their conversations pass offline."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from click.testing import CliRunner

from asstctl.cli import cli

REPO = Path(__file__).resolve().parents[2]


def test_shipped_example_conversations_pass_offline(tmp_path, monkeypatch):
    root = tmp_path / "examples"
    shutil.copytree(REPO / "assistants", root / "assistants")
    for name in ("asstctl.yaml", "engine-rules.yaml"):
        shutil.copy(REPO / name, root / name)
    monkeypatch.chdir(root)
    runner = CliRunner()
    env = {"OPENAI_BASE_URL": None}

    applied = runner.invoke(cli, ["apply", "--yes"], env=env)
    assert applied.exit_code == 0, applied.output
    result = runner.invoke(cli, ["test", "--output", "json", "--parallel", "2"], env=env)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    names = {(c["assistant"], c["name"]) for c in report["conversations"]}
    assert {a for a, _ in names} == {"math-tutor", "support-bot", "weather-bot"}
    assert len(names) == 9
    assert all(c["passed"] for c in report["conversations"])
