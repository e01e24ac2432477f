"""The quick check that spares `validate` the jsonschema import agrees with jsonschema: on the repository's own
specs, asstctl.yaml and conversation files, and on every variant of them with one value made wrong, one field
dropped or one unknown field added, it never says "fits" of what jsonschema rejects, nor "does not fit" of what
jsonschema accepts."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path

import yaml
from jsonschema import Draft202012Validator

from asstctl.spec.quickvalid import fits

REPOSITORY = Path(__file__).resolve().parents[2]
WRONG = [5, 2.5, -1, "", "x" * 300, True, None, [], {}, ["a"], {"a": 1}, "gpt-4o"]


def variants(value, depth: int = 0):
    """``value`` with one change: a value replaced by each of WRONG, a key dropped, an unknown key added."""
    yield value
    if isinstance(value, dict):
        yield {**value, "unknown_field": 1}
        for key in value:
            yield {k: v for k, v in value.items() if k != key}
            for changed in (WRONG if depth > 2 else [*WRONG, *variants(value[key], depth + 1)]):
                yield {**value, key: changed}
    elif isinstance(value, list) and value:
        for changed in WRONG[:4] + ([] if depth > 2 else list(variants(value[0], depth + 1))):
            yield [changed, *value[1:]]


def corpus():
    from asstctl.spec.project_schema import shared_project_schema
    from asstctl.spec.schema import shared_schema
    from asstctl.testing.conversations import SCHEMA

    for path in sorted((REPOSITORY / "assistants").glob("*.yaml")):
        data = yaml.safe_load(path.read_text())
        yield data, SCHEMA if path.name.endswith(".test.yaml") else shared_schema("assistant")
    yield yaml.safe_load((REPOSITORY / "asstctl.yaml").read_text()), shared_project_schema()
    yield {"name": "docs", "files": ["knowledge/*.md"], "expires_after": {"anchor": "last_active_at", "days": 7}}, \
        shared_schema("vector_store")


def test_the_quick_check_agrees_with_jsonschema():
    answers = {True: 0, False: 0, None: 0}
    for document, schema in corpus():
        validator = Draft202012Validator(schema)
        for variant in variants(copy.deepcopy(document)):
            answer = fits(variant, schema)
            answers[answer] += 1
            if answer is not None:
                assert answer == validator.is_valid(variant), (answer, variant)
    assert answers[True] > 20 and answers[False] > 200, answers  # it does answer, both ways


def test_validate_of_a_valid_project_does_not_import_jsonschema(tmp_path):
    """A third of `validate`'s start-up; an invalid project still gets jsonschema's errors (tests above)."""
    (tmp_path / "assistants").mkdir()
    (tmp_path / "asstctl.yaml").write_text("project: p\n")
    (tmp_path / "assistants" / "a.yaml").write_text(
        "model: gpt-4o\ntools:\n  - function: {name: f, strict: true, parameters: {type: object, properties: "
        "{q: {type: string}}, required: [q], additionalProperties: false}}\n")
    code = "import sys; from asstctl.cli import cli; cli(['validate'], standalone_mode=False); " \
           "print('jsonschema' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                          env={**__import__("os").environ, "PYTHONPATH": str(REPOSITORY)})
    assert done.stdout.splitlines()[-1] == "False", done.stdout + done.stderr
    assert "1 spec valid" in done.stdout or "1 specs valid" in done.stdout, done.stdout
