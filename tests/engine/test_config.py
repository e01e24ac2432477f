"""Configuring the upstream engine: `asstctl serve` flags and the `engine:` section of asstctl.yaml.
Mistakes are one clear error at start-up; a key is never taken on, or echoed to, the command line."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from asstctl.cli import cli
from asstctl.errors import ConfigError
from asstctl.spec.project import parse_project
from asstctl.server.engine.config import from_flags

PROJECT = """project: demo
engine:
  upstream: https://example.openai.azure.com/
  api_key_env: MY_AZURE_KEY
  model_map: {"gpt-4o-mini*": "mini", "gpt-4*": "big"}
  azure: {api_version: "2024-10-21", deployments: {big: prod-big}}
  context_windows: {"big": 128000}
"""


def project_with(tmp_path, text: str):
    (tmp_path / "asstctl.yaml").write_text(text)
    return parse_project(tmp_path)


def test_the_engine_section_of_asstctl_yaml(tmp_path):
    engine = project_with(tmp_path, PROJECT).engine
    assert engine.url == "https://example.openai.azure.com" and engine.host == "example.openai.azure.com"
    assert engine.key_env == "MY_AZURE_KEY" and engine.is_azure and engine.azure_api_version == "2024-10-21"
    assert [engine.upstream_model(m) for m in ("gpt-4o-mini", "gpt-4o", "o3")] == ["mini", "big", "o3"]
    assert engine.deployment("big") == "prod-big" and engine.deployment("mini") == "mini"
    assert engine.context_window("big") == 128000 and engine.context_window("mini") is None


def test_without_an_upstream_the_offline_engine_stays(tmp_path):
    assert project_with(tmp_path, "project: demo\n").engine is None
    assert project_with(tmp_path, "project: demo\nengine: {model_map: {a: b}}\n").engine is None


@pytest.mark.parametrize("section, problem", [
    ("engine: [upstream]", "asstctl.yaml:2:1: `engine` must be a mapping (got a list)"),
    ("engine: {upstream: http://x/v1, model: a}", "unknown field `model` (did you mean `model_map`?)"),
    ("engine: {upstream: localhost:11434}", "engine.upstream: `localhost:11434` is not an http(s) URL"),
    ("engine: {upstream: 'http://u:p@h/v1'}", "the upstream URL must not carry credentials"),
    ("engine: {upstream: http://h/v1, model_map: [a, b]}", "`engine.model_map` must be a mapping (got a list)"),
    ("engine: {upstream: http://h/v1, azure: {deployments: {}}}", "engine.azure: expected a mapping with `api_version`"),
    ("engine: {upstream: http://h/v1, context_windows: {a: big}}", "`engine.context_windows.a` must be a whole number"),
    ("engine: {upstream: http://h/v1, api_key_env: sk-proj-abcdef}", "expected the name of an environment variable"),
    ("engine: {upstream: http://h/v1, dialect: lamma}", "engine.dialect: unknown dialect `lamma` (known: openai, azure, "),
    ("engine: {upstream: http://h/v1, limits: {turn_seconds: 0}}", "`engine.limits.turn_seconds` must be at least 0.1 (got 0)"),
    ("engine: {upstream: http://h/v1, limits: {idle: 5}}", "unknown field `idle` (known fields: idle_seconds, turn_seconds, reply_chars)"),
])
def test_a_bad_engine_section_is_one_clear_error(tmp_path, section, problem):
    with pytest.raises(ConfigError) as caught:
        project_with(tmp_path, f"project: demo\n{section}\n")
    assert problem in str(caught.value)
    assert "abcdef" not in str(caught.value) and "u:p" not in str(caught.value)


def test_dialect_and_limits_of_the_engine_section(tmp_path):
    engine = project_with(tmp_path, "project: demo\nengine: {upstream: http://h/v1, dialect: llama.cpp, "
                                    "limits: {idle_seconds: 30, turn_seconds: 900, reply_chars: 5000}}\n").engine
    assert engine.dialect == "llama.cpp"
    assert (engine.limits.idle_seconds, engine.limits.turn_seconds, engine.limits.reply_chars) == (30, 900, 5000)
    assert from_flags("http://127.0.0.1:9/v1", None, [], dialect="vllm").dialect == "vllm"


def test_model_map_flags_keep_their_order():
    config = from_flags("http://127.0.0.1:8080/v1/", None, ["gpt-4o=a", "gpt-4*=b", " * = c "])
    assert config.model_map == [("gpt-4o", "a"), ("gpt-4*", "b"), ("*", "c")]
    assert config.url == "http://127.0.0.1:8080/v1" and config.key_env == "OPENAI_API_KEY"


@pytest.mark.parametrize("args, message", [
    (["--model-map", "gpt-4*=x"], "Error: --model-map needs --upstream URL"),
    (["--upstream-key-env", "K"], "Error: --upstream-key-env needs --upstream URL"),
    (["--upstream", "http://127.0.0.1:9/v1", "--model-map", "gpt-4"],
     "Error: --model-map `gpt-4`: expected PATTERN=MODEL"),
    (["--upstream", "ftp://example.com"], "Error: --upstream: `ftp://example.com` is not an http(s) URL"),
    (["--upstream", "http://127.0.0.1:9/v1", "--upstream-dialect", "gpt"],
     "Error: --upstream-dialect: unknown dialect `gpt` (known: openai, azure, llama.cpp, vllm"),
    (["--upstream-dialect", "vllm"], "Error: --upstream-dialect needs --upstream URL"),
    (["--upstream", "https://api.example.com/v1", "--upstream-key-env", "sk-live-0123456789"],
     "Error: --upstream-key-env: expected the name of an environment variable (letters, digits, _), not a key"),
])
def test_serve_flag_mistakes_are_one_clear_error(args, message):
    result = CliRunner().invoke(cli, ["serve", "--db", ":memory:", *args])
    assert result.exit_code in (1, 2)
    assert message in result.output
    assert "Traceback" not in result.output and "0123456789" not in result.output


def test_serve_refuses_a_remote_upstream_whose_key_variable_is_unset(monkeypatch):
    monkeypatch.delenv("NO_SUCH_KEY_VAR", raising=False)
    result = CliRunner().invoke(cli, ["serve", "--db", ":memory:", "--upstream", "https://api.example.com/v1",
                                      "--upstream-key-env", "NO_SUCH_KEY_VAR"])
    assert result.exit_code == 1
    assert result.output.startswith("Error: the upstream api.example.com needs a key and $NO_SUCH_KEY_VAR is not set")
    assert "export NO_SUCH_KEY_VAR=" in result.output


def test_serve_uses_the_projects_engine_section(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MY_AZURE_KEY", raising=False)
    (tmp_path / "asstctl.yaml").write_text(PROJECT)
    result = CliRunner().invoke(cli, ["serve", "--db", ":memory:"])
    assert result.exit_code == 1
    assert "Error: the upstream example.openai.azure.com needs a key and $MY_AZURE_KEY is not set" in result.output


def test_context_windows_of_the_engine_section_reach_the_executor(tmp_path, keyed, monkeypatch):
    from asstctl.server.embedded import start_server
    from tests.engine.conftest import KEY_ENV

    engine = project_with(tmp_path, f"project: demo\nengine:\n  upstream: {keyed.base_url}\n  api_key_env: {KEY_ENV}\n"
                                    '  context_windows: {"gpt-4*": 4096}\n').engine
    with start_server(":memory:", upstream=engine) as server:
        assert server.state.config.context_windows == {"gpt-4*": 4096}
        assert server.state.engine.name == "upstream"
