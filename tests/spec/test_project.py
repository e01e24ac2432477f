"""asstctl.yaml problems are one clear error too (the same YAML loader as the specs)."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from asstctl.cli import cli


@pytest.mark.parametrize("content, message", [
    (b"project: a\nproject: b\n", "asstctl.yaml:2:1: duplicate key `project` (first on line 1); remove one of them"),
    (b"project: [a\n", "asstctl.yaml:2:1: malformed YAML: did not find expected ',' or ']' (while parsing a flow "
                       "sequence started at line 1, column 10); a `[` is not closed, or an item inside it needs quotes"),
    (b"project: caf\xe9\n", "asstctl.yaml:1:13: not UTF-8 text (byte 0xe9); save the file as UTF-8"),
    (b"- project\n", "asstctl.yaml:1:1: expected a mapping with at least `project: NAME`"),
    (b"project: a\ntargets: [staging]\n", "asstctl.yaml:2:1: `targets` must be a mapping (got a list)"),
    (b"", "asstctl.yaml:1:1: `project` is required: a name for this project, e.g. `project: support-bots`"),
])
def test_a_bad_project_file_is_one_error(tmp_path, monkeypatch, content, message):
    (tmp_path / "asstctl.yaml").write_bytes(content)
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["validate"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.output.splitlines()[0] == f"Error: {message}", result.output  # the whole line, fix included


def _errors(tmp_path, monkeypatch, content: str) -> list[str]:
    (tmp_path / "asstctl.yaml").write_text(content)
    (tmp_path / "assistants").mkdir(exist_ok=True)
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["validate"])
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    return [line.removeprefix("Error: ") for line in result.output.splitlines()
            if "asstctl.yaml:" in line]


def test_misspelled_keys_are_named_with_a_suggestion(tmp_path, monkeypatch):
    assert _errors(tmp_path, monkeypatch, "projcet: bots\nspecz: assistants\ntargets:\n  stg: {base_ur: 'http://x/v1'}\n") == [
        "asstctl.yaml:1:1: `project` is required: a name for this project, e.g. `project: support-bots`",
        "asstctl.yaml:1:1: unknown field `projcet` (did you mean `project`?)",
        "asstctl.yaml:2:1: unknown field `specz` (did you mean `specs`?)",
        "asstctl.yaml:4:9: unknown field `base_ur` (did you mean `base_url`?)",
    ]


@pytest.mark.parametrize("content, message", [
    ("project: ' '\n", "asstctl.yaml:1:1: `project` must not be blank"),
    ("project: a\ntargets: {stg: {base_url: '127.0.0.1:8321'}}\n",
     "asstctl.yaml:2:17: `targets.stg.base_url` must start with http:// or https:// (e.g. http://127.0.0.1:8321/v1)"),
    ("project: a\nallow_paths: ../shared\n", "asstctl.yaml:2:1: `allow_paths` must be a list (got \"../shared\")"),
    ("project: a\nengine: {max_model_calls: 0}\n", "asstctl.yaml:2:10: `engine.max_model_calls` must be at least 1"),
    ("project: a\ntest: {prices: {gpt-4o: {prompt: 2.5, completon: 10}}}\n",
     "asstctl.yaml:2:39: unknown field `completon` (did you mean `completion`?)"),
    ("project: a\ntargets:\n  ag:\n    api: agents\n    embedded: true\n",
     "asstctl.yaml:5:5: target `ag`: the embedded server serves the Assistants API, not the Agents API"),
])
def test_bad_values_are_errors_with_positions(tmp_path, monkeypatch, content, message):
    [error] = _errors(tmp_path, monkeypatch, content)
    assert error.startswith(message), error


def test_paths_are_relative_to_the_current_directory_also_from_a_subdirectory_of_the_project(tmp_path, monkeypatch):
    from asstctl.spec.files import shown

    root = tmp_path / "project"
    (root / "assistants" / "sub").mkdir(parents=True)
    (root / "assistants" / "a.yaml").write_text("model: gpt-4o\ntemperature: 3\n")
    (root / "asstctl.yaml").write_text("project: a\n")
    monkeypatch.chdir(root / "assistants" / "sub")
    result = CliRunner().invoke(cli, ["validate"])
    assert result.exit_code == 1
    assert result.output.startswith("../a.yaml:2:1: `temperature` must be between 0 and 2 (got 3)\n"), result.output
    (root / "asstctl.yaml").write_text("project: a\nspecz: x\n")
    monkeypatch.chdir(root / "assistants")
    result = CliRunner().invoke(cli, ["validate"])
    assert result.exit_code == 1
    assert result.output.startswith("Error: ../asstctl.yaml:2:1: unknown field `specz`"), result.output
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")  # outside the project: where it is
    assert shown(root / "asstctl.yaml") == str(root / "asstctl.yaml")


def test_the_sections_other_features_use_are_accepted(tmp_path, monkeypatch):
    from asstctl.spec.project import load_project

    (tmp_path / "asstctl.yaml").write_text("""\
project: full
specs: assistants
vector_stores: vector_stores
engine_rules: engine-rules.yaml
allow_paths: [../shared]
targets:
  azure: {base_url: 'https://x.openai.azure.com', api_key_env: AZ, azure: {api_version: '2024-05-01-preview'}}
  local: {embedded: true, db: .asstctl/other.sqlite3}
engine:
  upstream: https://api.openai.com/v1
  api_key_env: UPSTREAM_KEY
  model_map: {'gpt-4o*': gpt-4o-mini}
  azure: {api_version: '2024-05-01-preview', deployments: {gpt-4o: my-deployment}}
  embeddings: {model: text-embedding-3-small}
  context_windows: {'gpt-4o*': 128000}
  max_model_calls: 12
test:
  grader: {model: gpt-4o-mini}
  prices: {gpt-4o: {prompt: 2.5, completion: 10}}
""")
    (tmp_path / "assistants").mkdir()
    (tmp_path / "engine-rules.yaml").write_text("rules: []\n")
    project = load_project(tmp_path)
    assert project.allow_paths == ("../shared",) and project.targets["azure"].azure_api_version
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["validate"])
    assert result.exit_code == 0, result.output


def test_schema_kind_project_prints_the_schema_asstctl_yaml_is_checked_with():
    import json

    from asstctl.spec.project_schema import project_schema

    result = CliRunner().invoke(cli, ["schema", "--kind", "project"])
    assert result.exit_code == 0 and json.loads(result.output) == project_schema()
    assert {"project", "targets", "engine", "test", "allow_paths"} <= set(project_schema()["properties"])


def test_the_project_file_fields_are_documented():
    from pathlib import Path

    from asstctl.spec.project_schema import project_schema

    text = (Path(__file__).resolve().parents[2] / "docs" / "spec-format.md").read_text(encoding="utf-8")
    section = text.split("## The project file (asstctl.yaml)", 1)[1].split("\n## ", 1)[0]
    for field in project_schema()["properties"]:
        if field != "$schema":
            assert f"| `{field}` |" in section, field
