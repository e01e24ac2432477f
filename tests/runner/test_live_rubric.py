"""Opt-in: one `rubric:` conversation on a real upstream, the reply and the verdict both from real models.

Skipped like tests/engine/test_live_upstream.py unless ``ASSTCTL_LIVE_UPSTREAM`` and the key's variable
are set (same variables); the grader is ``ASSTCTL_LIVE_GRADER_MODEL`` (default gpt-4o-mini, mapped by
``ASSTCTL_LIVE_MODEL_MAP`` like every model).

    ASSTCTL_LIVE_UPSTREAM=https://api.openai.com/v1 OPENAI_API_KEY=sk-... pytest tests/runner/test_live_rubric.py
"""

from __future__ import annotations

import json
import os

import pytest
import yaml
from click.testing import CliRunner

from asstctl.cli import cli
from tests.engine.test_live_upstream import KEY_ENV, engine_section, pytestmark  # noqa: F401 (the skip)

SPEC = "name: Math Tutor\nmodel: gpt-4o\ninstructions: You are a math tutor. Explain each step briefly.\n"
CONVERSATION = """conversations:
  - name: explains a linear equation
    turns:
      - user: Solve 3x + 11 = 14 and explain the steps.
        expect:
          rubric: "States that x = 1 and explains how it got there"
"""


@pytest.mark.timeout(600)
def test_a_rubric_conversation_on_a_real_model(tmp_path, monkeypatch):
    (tmp_path / "assistants").mkdir()
    (tmp_path / "assistants" / "math-tutor.yaml").write_text(SPEC)
    (tmp_path / "assistants" / "math-tutor.test.yaml").write_text(CONVERSATION)
    grader = os.environ.get("ASSTCTL_LIVE_GRADER_MODEL", "gpt-4o-mini")
    project = {"project": "live-rubric", "engine": engine_section(), "test": {"grader": {"model": grader}}}
    (tmp_path / "asstctl.yaml").write_text(yaml.safe_dump(project))
    monkeypatch.chdir(tmp_path)
    runner, env = CliRunner(), {"OPENAI_BASE_URL": None}
    applied = runner.invoke(cli, ["apply", "--yes"], env=env)
    assert applied.exit_code == 0, applied.output
    result = runner.invoke(cli, ["test", "--output", "json", "--timeout", "120"], env=env)
    report = json.loads(result.stdout)
    conversation = report["conversations"][0]
    assert conversation["passed"], json.dumps(conversation, indent=2)[:4000]
    assert grader in conversation["tokens_by_model"]  # the grader was asked, and its tokens counted
    assert conversation["usage"]["completion_tokens"] > 0 and conversation["latency_ms"] > 0
    assert os.environ[KEY_ENV] not in result.output
