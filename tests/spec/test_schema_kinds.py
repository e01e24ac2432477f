"""`asstctl schema --kind ...`: every file kind has a draft 2020-12 schema the shipped examples meet."""

import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from jsonschema import Draft202012Validator

from asstctl.cli import cli

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = {
    "assistant": sorted(p for p in (ROOT / "assistants").glob("*.yaml") if not p.name.endswith(".test.yaml")),
    "conversation": sorted((ROOT / "assistants").glob("*.test.yaml")),
    "project": [ROOT / "asstctl.yaml"],
}


@pytest.mark.parametrize("kind", ["assistant", "vector-store", "conversation", "project"])
def test_each_kind_prints_a_valid_schema(kind):
    result = CliRunner().invoke(cli, ["schema", "--kind", kind])
    assert result.exit_code == 0, result.output
    Draft202012Validator.check_schema(json.loads(result.output))


@pytest.mark.parametrize("kind", sorted(EXAMPLES))
def test_shipped_examples_meet_their_schema(kind):
    schema = json.loads(CliRunner().invoke(cli, ["schema", "--kind", kind]).output)
    assert EXAMPLES[kind]
    for path in EXAMPLES[kind]:
        errors = list(Draft202012Validator(schema).iter_errors(yaml.safe_load(path.read_text())))
        assert not errors, f"{path}: {errors[0].message}"


def test_a_vector_store_spec_is_checked():
    schema = json.loads(CliRunner().invoke(cli, ["schema", "--kind", "vector-store"]).output)
    assert list(Draft202012Validator(schema).iter_errors({"files": ["docs/*.md"]})) == []
    assert list(Draft202012Validator(schema).iter_errors({"files": ["docs/*.md"], "colour": "red"}))
