"""`asstctl validate` and `asstctl schema` through click, plus the no-openai import check."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from jsonschema import Draft202012Validator

from asstctl.cli import cli
from asstctl.spec.yamlpos import load_yaml
from tests.spec.conftest import write

ROOT = Path(__file__).resolve().parents[2]


def run(*args: str):
    return CliRunner().invoke(cli, list(args))


def test_validate_the_examples(monkeypatch):
    monkeypatch.chdir(ROOT)
    result = run("validate")
    assert result.exit_code == 0, result.output
    assert result.output == "3 specs valid, 3 conversation files valid\n"


def test_validate_reports_each_problem_on_its_own_line(project):
    write(project, {"a.yaml": "model: gpt-4o\ntemperature: 3\n", "b.yaml": b"\xff\xfe\x00garbage",
                    "c.yaml": "model: gpt-4o\n", "c.test.yaml": "conversations: []\n"})
    result = run("validate")
    assert result.exit_code == 1
    assert result.stdout.splitlines() == [
        "assistants/a.yaml:2:1: `temperature` must be between 0 and 2 (got 3)",
        "assistants/b.yaml:1:1: this is a binary file, not YAML text",
        "assistants/c.test.yaml:1:1: `conversations` has 0 items; it must have at least 1",
    ]
    assert result.stderr == "3 problems found\n" and "Traceback" not in result.output


def test_validate_json(project):
    write(project, {"a.yaml": "model: gpt-4o\nnmae: x\n", "b.yaml": "model: gpt-4o\n"})
    result = run("validate", "--output", "json")
    assert result.exit_code == 1
    assert json.loads(result.stdout) == {"valid": False, "specs": 2, "conversation_files": 0, "problems": [
        {"file": "assistants/a.yaml", "line": 2, "col": 1, "message": "unknown field `nmae` (did you mean `name`?)"}]}
    write(project, {"a.yaml": "model: gpt-4o\n"})
    assert json.loads(run("validate", "--output", "json").stdout)["valid"] is True


def test_validate_outside_a_project(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = run("validate")
    assert result.exit_code == 1 and result.output.startswith("Error: no asstctl.yaml found")


def test_schema_prints_a_valid_draft_2020_12_schema_that_accepts_the_examples():
    result = run("schema")
    assert result.exit_code == 0, result.output
    schema = json.loads(result.stdout)
    Draft202012Validator.check_schema(schema)
    validator = Draft202012Validator(schema)
    for path in (ROOT / "assistants").glob("*.yaml"):
        if not path.name.endswith(".test.yaml"):
            assert list(validator.iter_errors(load_yaml(path).data)) == [], path
    assert not validator.is_valid({"model": "gpt-4o", "instuctions": "x"})


def test_schema_output_file(tmp_path):
    target = tmp_path / ".asstctl" / "spec.schema.json"
    result = run("schema", "--output", str(target))
    assert result.exit_code == 0 and f"wrote {target}" in result.stderr
    assert json.loads(target.read_text())["$schema"] == "https://json-schema.org/draft/2020-12/schema"


@pytest.mark.parametrize("command", ["validate", "schema"])
def test_help_ends_with_an_example(command):
    result = run(command, "--help")
    assert result.exit_code == 0
    description = result.output.split("Options:")[0].rstrip()
    assert "Example:\n" in description and description.splitlines()[-1].strip().startswith("asstctl " + command)


def test_validate_does_not_import_the_sdk():
    code = ("import sys\nfrom asstctl.cli import main\nsys.argv = ['asstctl', 'validate']\n"
            "try:\n    main()\nexcept SystemExit as e:\n    code = e.code\n"
            "print(code, 'openai' in sys.modules, 'starlette' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.splitlines()[-1] == "0 False False", out.stdout + out.stderr
