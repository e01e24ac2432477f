"""Opt-in: the same cycle on OpenAI's real Agents API (beta). Skipped unless ASSTCTL_LIVE_AGENTS=1 and
OPENAI_API_KEY are set (ASSTCTL_LIVE_AGENTS_URL and ASSTCTL_LIVE_AGENTS_MODEL change the base URL and the
model). It creates one agent tagged with a fresh project name, and destroys it whatever happens. The same cycle runs
in the suite against the scripted Agents API (tests/agents/test_sessions.py), so it is known to work as written."""

from __future__ import annotations

import json
import os
import uuid

import pytest
import yaml
from click.testing import CliRunner

from asstctl.cli import cli




def live(*args: str):
    return CliRunner().invoke(cli, [*args, "--target", "agents"], catch_exceptions=False)


@pytest.mark.skipif(not (os.environ.get("ASSTCTL_LIVE_AGENTS") and os.environ.get("OPENAI_API_KEY")),
                    reason="set ASSTCTL_LIVE_AGENTS=1 and OPENAI_API_KEY to run on OpenAI's Agents API")
def test_plan_apply_test_destroy_on_the_live_agents_api(tmp_path, monkeypatch):
    cycle(tmp_path, monkeypatch)


def cycle(tmp_path, monkeypatch) -> None:
    """apply, a clean re-plan, a conversation with a tool round, destroy: on $ASSTCTL_LIVE_AGENTS_URL."""
    monkeypatch.chdir(tmp_path)
    url = os.environ.get("ASSTCTL_LIVE_AGENTS_URL", "https://api.openai.com/v1")
    (tmp_path / "asstctl.yaml").write_text(yaml.safe_dump({"project": f"asstctl-live-{uuid.uuid4().hex[:8]}",
        "targets": {"agents": {"api": "agents", "base_url": url, "api_key_env": "OPENAI_API_KEY"}}}))
    (tmp_path / "assistants").mkdir()
    (tmp_path / "assistants" / "weather.yaml").write_text(yaml.safe_dump({
        "model": os.environ.get("ASSTCTL_LIVE_AGENTS_MODEL", "gpt-5-mini"), "name": "asstctl live test",
        "instructions": "Always call get_weather for weather questions, then answer with its temperature.",
        "tools": [{"function": {"name": "get_weather", "description": "The current weather in a city.",
                                "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                                               "required": ["city"]}}}]}))
    (tmp_path / "assistants" / "weather.test.yaml").write_text(
        "conversations:\n  - name: weather\n    mocks: {get_weather: {result: {temperature: 17, unit: celsius}}}\n"
        "    turns:\n      - user: What is the weather in Oslo?\n"
        "        expect: {tool_called: get_weather, contains: '17'}\n")
    try:
        applied = live("apply", "--yes")
        assert applied.exit_code == 0, applied.output
        assert live("plan", "--detailed-exitcode").exit_code == 0  # the live server's defaults normalized away
        tested = live("test", "--output", "json", "--timeout", "120")
        assert json.loads(tested.stdout)["passed"], tested.output
    finally:
        destroyed = live("destroy", "--yes")
        assert destroyed.exit_code == 0, destroyed.output
