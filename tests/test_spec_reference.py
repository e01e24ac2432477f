"""docs/spec-reference.md is generated from the spec JSON Schema and must stay in sync with it."""

from pathlib import Path

from asstctl.spec.reference import render_reference
from asstctl.spec.schema import spec_schema

DOC = Path(__file__).resolve().parents[1] / "docs" / "spec-reference.md"


def test_spec_reference_is_current():
    assert DOC.read_text(encoding="utf-8") == render_reference(spec_schema()), (
        "docs/spec-reference.md is stale: run python -m asstctl.spec.reference > docs/spec-reference.md"
    )


def test_every_top_level_field_is_documented():
    text = render_reference(spec_schema())
    for field in spec_schema()["properties"]:
        if field != "$schema":
            assert f"| `{field}` |" in text


def test_reference_rows_are_unique():
    rows = [line.split("|")[1] for line in render_reference(spec_schema()).splitlines() if line.startswith("| `")]
    assert len(rows) == len(set(rows))
