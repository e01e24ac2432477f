"""Valid specs → AssistantSpec: API-shaped fields, files read in, short forms expanded, targets merged."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from asstctl.errors import SpecError
from asstctl.spec.project import load_project
from asstctl.spec.loader import load_specs, validate_project
from tests.spec.conftest import write

ROOT = Path(__file__).resolve().parents[2]


def specs_of(project: Path, text: str, target: str | None = None) -> dict:
    write(project, {"a.yaml": text})
    [spec] = load_specs(load_project(), target)
    return spec.fields


def test_the_shipped_examples_are_valid(monkeypatch):
    monkeypatch.chdir(ROOT)
    project = load_project()
    assert project.name == "asstctl-examples"
    assert validate_project(project) == []
    specs = {spec.key: spec for spec in load_specs(project)}
    assert set(specs) == {"math-tutor", "support-bot", "weather-bot"}
    assert specs["math-tutor"].fields == {
        "name": "Math Tutor",
        "model": "gpt-4o",
        "instructions": "You are a personal math tutor. Write and run code to answer math questions.",
        "tools": [{"type": "code_interpreter"}],
    }
    assert specs["math-tutor"].path == Path("assistants/math-tutor.yaml")


def test_the_weather_bot_reads_its_files_and_uses_the_api_form(monkeypatch):
    monkeypatch.chdir(ROOT)
    [weather] = [spec for spec in load_specs(load_project()) if spec.key == "weather-bot"]
    fields = weather.fields
    assert fields["instructions"] == (ROOT / "assistants/prompts/weather-bot.md").read_text()
    parameters = json.loads((ROOT / "assistants/schemas/get_weather.json").read_text())
    assert fields["tools"][0] == {"type": "function", "function": {
        "name": "get_weather", "description": "The current weather in a city.", "strict": True, "parameters": parameters}}
    assert fields["tools"][1]["type"] == "function" and fields["tools"][1]["function"]["name"] == "get_forecast"
    assert fields["model"] == "gpt-4o" and "targets" not in fields and "instructions_file" not in fields
    [staged] = [spec for spec in load_specs(load_project(), "staging") if spec.key == "weather-bot"]
    assert staged.fields == {**fields, "model": "gpt-4o-mini"}


def test_unset_fields_are_absent(project):
    assert specs_of(project, "model: gpt-4o\n") == {"model": "gpt-4o"}
    assert specs_of(project, "model: gpt-4o\nname: null\ntemperature: ~\n") == {"model": "gpt-4o"}


def test_tool_forms(project):
    write(project, {"schemas/p.yaml": "type: object\nproperties: {q: {type: string}}\n"})
    fields = specs_of(project, """\
model: gpt-4o
tools:
  - code_interpreter
  - file_search
  - {type: code_interpreter}
  - file_search: {max_num_results: 5, ranking_options: {ranker: auto, score_threshold: 0.5}}
  - {type: file_search}
  - function: {name: a, parameters_file: schemas/p.yaml, strict: null}
  - {type: function, function: {name: b, description: B, parameters: {type: object, properties: {}}, strict: false}}
""")
    assert fields["tools"] == [
        {"type": "code_interpreter"},
        {"type": "file_search"},
        {"type": "code_interpreter"},
        {"type": "file_search", "file_search": {"max_num_results": 5,
                                                "ranking_options": {"ranker": "auto", "score_threshold": 0.5}}},
        {"type": "file_search"},
        {"type": "function", "function": {"name": "a", "parameters": {"type": "object",
                                                                      "properties": {"q": {"type": "string"}}}}},
        {"type": "function", "function": {"name": "b", "description": "B", "parameters": {"type": "object", "properties": {}},
                                          "strict": False}},
    ]


@pytest.mark.parametrize("value, expected", [
    ("auto", "auto"),
    ("text", {"type": "text"}),
    ("json_object", {"type": "json_object"}),
    ("{type: text}", {"type": "text"}),
    ("{type: json_schema, json_schema: {name: r, schema: {type: object}, strict: true}}",
     {"type": "json_schema", "json_schema": {"name": "r", "schema": {"type": "object"}, "strict": True}}),
    ("{type: json_schema, json_schema: {name: r, description: d, schema_file: schemas/r.json}}",
     {"type": "json_schema", "json_schema": {"name": "r", "description": "d", "schema": {"type": "array"}}}),
])
def test_response_formats(project, value, expected):
    write(project, {"schemas/r.json": '{"type": "array"}'})
    assert specs_of(project, f"model: gpt-4o\nresponse_format: {value}\n")["response_format"] == expected


def test_other_fields_pass_through(project):
    fields = specs_of(project, """\
model: gpt-4o
description: d
temperature: 0
top_p: 0.5
reasoning_effort: low
metadata: {team: a, "x.y": "1"}
tool_resources: {code_interpreter: {file_ids: [file-1]}, file_search: {vector_store_ids: [vs_1]}}
""")
    assert fields == {"model": "gpt-4o", "description": "d", "temperature": 0, "top_p": 0.5, "reasoning_effort": "low",
                      "metadata": {"team": "a", "x.y": "1"},
                      "tool_resources": {"code_interpreter": {"file_ids": ["file-1"]},
                                         "file_search": {"vector_store_ids": ["vs_1"]}}}


def test_key_prevent_destroy_and_positions(project):
    write(project, {"a.yaml": "# comment\nkey: tutor\nmodel: gpt-4o\nprevent_destroy: true\n"})
    [spec] = load_specs(load_project())
    assert (spec.key, spec.prevent_destroy, spec.path) == ("tutor", True, Path("assistants/a.yaml"))
    assert spec.fields == {"model": "gpt-4o"}
    assert spec.positions["model"] == (3, 1) and spec.positions["key"] == (2, 1)


def test_target_overrides(project):
    write(project, {"prompts/staging.md": "Staging instructions.\n"})
    text = """\
model: gpt-4o
name: Tutor
instructions: Base instructions.
temperature: 0.2
metadata: {team: a}
targets:
  staging:
    model: gpt-4o-mini
    name: null
    instructions_file: prompts/staging.md
    metadata: {team: b}
"""
    assert specs_of(project, text) == {"model": "gpt-4o", "name": "Tutor", "instructions": "Base instructions.",
                                       "temperature": 0.2, "metadata": {"team": "a"}}
    staged = specs_of(project, text, "staging")
    assert staged == {"model": "gpt-4o-mini", "instructions": "Staging instructions.\n", "temperature": 0.2,
                      "metadata": {"team": "b"}}
    assert specs_of(project, text, "embedded") == specs_of(project, text)  # no overrides for it: the base
    write(project, {"a.yaml": text})
    [spec] = load_specs(load_project(), "staging")
    assert spec.positions["model"] == (8, 5) and spec.positions["instructions"] == (10, 5)


def test_variables(project, monkeypatch):
    monkeypatch.setenv("ASSTCTL_TEST_MODEL", "gpt-4o-mini")
    monkeypatch.setenv("ASSTCTL_TEST_TEAM", "blue")
    fields = specs_of(project, "model: ${ASSTCTL_TEST_MODEL}\ninstructions: Team ${ASSTCTL_TEST_TEAM}, "
                               "cost $${PRICE} and $5 {x}\nmetadata: {team: '${ASSTCTL_TEST_TEAM}'}\n")
    assert fields == {"model": "gpt-4o-mini", "instructions": "Team blue, cost ${PRICE} and $5 {x}",
                      "metadata": {"team": "blue"}}


def test_skipped_files(project):
    write(project, {"a.test.yaml": "conversations: []\n", "_draft.yaml": "- not a spec\n", ".hidden.yaml": "\x00",
                    "notes.md": "# notes", "b.yml": "model: gpt-4o\n"})
    assert [spec.key for spec in load_specs(load_project())] == ["b"]


def test_merge_keys_and_anchors(project):
    fields = specs_of(project, """\
model: gpt-4o
tools:
  - &weather {function: {name: a, parameters: &params {type: object, properties: {}}}}
  - function: {name: b, parameters: *params}
""")
    assert fields["tools"][1]["function"]["parameters"] == {"type": "object", "properties": {}}


def test_no_specs_directory_is_an_error_not_zero_specs(tmp_path, monkeypatch):
    """Zero specs would make `apply --prune` delete every assistant of the project."""
    (tmp_path / "asstctl.yaml").write_text("project: empty\n")
    monkeypatch.chdir(tmp_path)
    assert validate_project(load_project()) == [
        "asstctl.yaml:1:1: the specs folder assistants does not exist; create it (`mkdir`) or point `specs:` "
        "in asstctl.yaml at your specs"]
    with pytest.raises(SpecError):
        load_specs(load_project())
    (tmp_path / "asstctl.yaml").write_text("project: empty\nspecs: bots\n")
    assert validate_project(load_project())[0].startswith("asstctl.yaml:2:1: the specs folder bots does not exist")
    (tmp_path / "bots").mkdir()
    assert validate_project(load_project()) == [] and load_specs(load_project()) == []


def test_dates_stay_text(project):
    fields = specs_of(project, "model: gpt-4o\nmetadata: {released: 2024-05-01}\ntools:\n"
                               "  - function: {name: f, parameters: {type: object, properties: {}, examples: [2024-05-01]}}\n")
    assert fields["metadata"] == {"released": "2024-05-01"}
    assert fields["tools"][0]["function"]["parameters"]["examples"] == ["2024-05-01"]
