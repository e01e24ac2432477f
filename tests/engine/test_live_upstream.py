"""Opt-in: the shipped walkthrough conversations against a real upstream model.

Skipped unless ``ASSTCTL_LIVE_UPSTREAM`` (the upstream's base URL, e.g. https://api.openai.com/v1)
and the variable holding its key are set. The key's variable is ``ASSTCTL_LIVE_UPSTREAM_KEY_ENV``
(default ``OPENAI_API_KEY``); ``ASSTCTL_LIVE_MODEL_MAP`` optionally maps models
(``gpt-4*=llama3.1:8b,o3*=qwen3``). Azure OpenAI: also set ``ASSTCTL_LIVE_AZURE_API_VERSION``. The
Responses API instead of Chat Completions: ``ASSTCTL_LIVE_UPSTREAM_API=responses``.

    ASSTCTL_LIVE_UPSTREAM=https://api.openai.com/v1 OPENAI_API_KEY=sk-... pytest tests/engine/test_live_upstream.py

The examples are applied to the embedded server configured by ``engine:`` in asstctl.yaml, and
``asstctl test`` runs the math-tutor walkthrough and the weather-bot conversations on the model.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from asstctl.cli import cli

REPO = Path(__file__).resolve().parents[2]
URL = os.environ.get("ASSTCTL_LIVE_UPSTREAM", "")
KEY_ENV = os.environ.get("ASSTCTL_LIVE_UPSTREAM_KEY_ENV", "OPENAI_API_KEY")

pytestmark = pytest.mark.skipif(
    not URL or not os.environ.get(KEY_ENV),
    reason=f"live upstream test: set ASSTCTL_LIVE_UPSTREAM and ${KEY_ENV} to run it",
)


def engine_section() -> dict:
    section: dict = {"upstream": URL, "api_key_env": KEY_ENV}
    pairs = [p.split("=", 1) for p in os.environ.get("ASSTCTL_LIVE_MODEL_MAP", "").split(",") if "=" in p]
    if pairs:
        section["model_map"] = {pattern.strip(): model.strip() for pattern, model in pairs}
    if os.environ.get("ASSTCTL_LIVE_AZURE_API_VERSION"):
        section["azure"] = {"api_version": os.environ["ASSTCTL_LIVE_AZURE_API_VERSION"]}
    if os.environ.get("ASSTCTL_LIVE_UPSTREAM_API"):
        section["api"] = os.environ["ASSTCTL_LIVE_UPSTREAM_API"]
    return section


@pytest.mark.timeout(900)  # a real model: many turns, each up to --timeout
def test_walkthrough_and_weather_bot_conversations_on_a_real_model(tmp_path, monkeypatch):
    root = tmp_path / "live"
    shutil.copytree(REPO / "assistants", root / "assistants")
    project = yaml.safe_load((REPO / "asstctl.yaml").read_text())
    project["engine"] = engine_section()
    (root / "asstctl.yaml").write_text(yaml.safe_dump(project))  # no engine-rules.yaml: the model answers
    monkeypatch.chdir(root)
    runner, env = CliRunner(), {"OPENAI_BASE_URL": None}
    applied = runner.invoke(cli, ["apply", "--yes"], env=env)
    assert applied.exit_code == 0, applied.output
    result = runner.invoke(cli, ["test", "-k", "math-tutor/solves", "-k", "math-tutor/addresses", "-k", "weather-bot",
                                 "--output", "json", "--timeout", "120"], env=env)
    report = json.loads(result.stdout)
    failed = [c for c in report["conversations"] if not c["passed"]]
    assert report["conversations"] and not failed, json.dumps(failed, indent=2)[:4000]
    assert os.environ[KEY_ENV] not in result.output
