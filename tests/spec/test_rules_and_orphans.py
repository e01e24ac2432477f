"""`asstctl validate` checks the engine rules file (positions, rules numbered from 1) and conversation
files without a spec; `asstctl test` with bad rules is a configuration error (exit 2); the pre-commit
hook runs for engine rules and shared vector stores too."""

from __future__ import annotations

import re
from pathlib import Path

import yaml
from click.testing import CliRunner

from asstctl.cli import cli
from tests.spec.conftest import write

ROOT = Path(__file__).resolve().parents[2]
RULES = """\
rules:
  - match: "^hello"
    reply: Hello!
  - match: "broken (regex"
    reply: never
  - match: fine
    reply: fine
    colour: red
  - match: both
    reply: a
    replies: [b]
"""


def test_validate_reports_every_bad_rule_with_its_line_numbered_from_one(project):
    (project / "engine-rules.yaml").write_text(RULES)
    write(project, {"bot.yaml": "model: gpt-4o\n"})
    result = CliRunner().invoke(cli, ["validate"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    lines = [line for line in result.stdout.splitlines() if line.startswith("engine-rules.yaml")]
    assert [line.split(": rule ")[0] for line in lines] == ["engine-rules.yaml:4:5", "engine-rules.yaml:8:5",
                                                           "engine-rules.yaml:10:5"]
    assert lines[0].startswith("engine-rules.yaml:4:5: rule 2: 'match' is not a valid regular expression")
    assert "rule 3: unknown key(s) colour" in lines[1] and "rule 4: " in lines[2]


def test_validate_reports_a_rules_file_that_is_not_a_list_and_a_configured_file_that_is_missing(project):
    (project / "engine-rules.yaml").write_text("rule:\n  - match: x\n")
    write(project, {"bot.yaml": "model: gpt-4o\n"})
    result = CliRunner().invoke(cli, ["validate"])
    assert result.exit_code == 1
    assert "engine-rules.yaml:1:1: expected a mapping with one key 'rules' holding a list" in result.stdout
    (project / "asstctl.yaml").write_text("project: demo\nengine_rules: steering.yaml\n")
    result = CliRunner().invoke(cli, ["validate"])
    assert result.exit_code == 1
    assert "asstctl.yaml:2:1: the engine rules file steering.yaml does not exist" in result.stdout


def test_test_with_bad_rules_exits_2_before_anything_runs(project):
    (project / "engine-rules.yaml").write_text(RULES)
    write(project, {"bot.yaml": "model: gpt-4o\n",
                    "bot.test.yaml": "conversations:\n  - name: hi\n    turns: [{user: hello}]\n"})
    for args in (["test"], ["plan"]):
        result = CliRunner().invoke(cli, args)
        assert "Traceback" not in result.output and "engine-rules.yaml:4:5: rule 2: " in result.output, result.output
        assert result.exit_code == (2 if args == ["test"] else 1)


def test_a_conversation_file_without_a_spec_is_an_error(project):
    write(project, {"bot.yaml": "model: gpt-4o\n",
                    "bto.test.yaml": "conversations:\n  - name: hi\n    turns: [{user: hello}]\n",
                    "other.test.yaml": "assistant: nobody\nconversations:\n  - name: hi\n    turns: [{user: x}]\n",
                    "mine.test.yaml": "assistant: bot\nconversations:\n  - name: hi\n    turns: [{user: x}]\n"})
    result = CliRunner().invoke(cli, ["validate"])
    assert result.exit_code == 1
    assert result.stdout.splitlines() == [
        "assistants/bto.test.yaml:1:1: these conversations test the assistant `bto`, which has no spec (did you "
        "mean `bot`?); rename the file or set `assistant:` to a spec's key",
        "assistants/other.test.yaml:1:1: these conversations test the assistant `nobody`, which has no spec (write "
        "assistants/nobody.yaml); rename the file or set `assistant:` to a spec's key",
    ]


def test_the_pre_commit_hook_runs_for_rules_and_vector_stores():
    [hook] = yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text(encoding="utf-8"))
    files = re.compile(hook["files"])
    for path in ("engine-rules.yaml", "config/engine-rules.yml", "steering-rules.yaml", "vector_stores/kb.yaml",
                 "assistants/bot.yaml", "asstctl.yaml"):
        assert files.search(path), path
    for path in ("README.md", "rules.md", "other/bot.yaml", "vector_stores/kb.md"):
        assert not files.search(path), path
