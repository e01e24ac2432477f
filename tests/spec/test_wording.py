"""Messages that say what to do: a dedented `function:`, an empty conversation file, a spec given to
`asstctl test` (each one line at its position, never raw jsonschema text)."""

from __future__ import annotations

from click.testing import CliRunner

from asstctl.cli import cli
from tests.spec.conftest import problems, write


def test_a_dedented_function_says_to_indent_it_under_tools(project):
    found = problems(project, {"bot.yaml": "model: gpt-4o\ntools:\n  - type: function\nfunction:\n  name: f\n"
                                           "parameters: {type: object}\n"})
    assert found == [
        "assistants/bot.yaml:4:1: `function` belongs to a tool, not to the assistant: indent it under its item in "
        "`tools:`, level with `type`: `tools: [{type: function, function: {name: ..., parameters: ...}}]`",
        "assistants/bot.yaml:6:1: `parameters` belongs to a function tool: indent it under `function:` in `tools:`",
    ]
    assert not any("instructions" in problem for problem in found)


def test_an_empty_conversation_file_says_what_it_needs(project):
    write(project, {"bot.yaml": "model: gpt-4o\n", "bot.test.yaml": "", "list.test.yaml": "- hi\n"})
    result = CliRunner().invoke(cli, ["validate"])
    assert result.exit_code == 1
    assert result.stdout.splitlines()[0] == (
        "assistants/bot.test.yaml:1:1: the file is empty; a conversation file needs `conversations:`, a list of "
        "conversations, each with a `name` and `turns` (see docs/conversations.md)")
    assert "assistants/list.test.yaml:1:1: the file holds a list; a conversation file needs" in result.stdout
    assert "got null" not in result.stdout


def test_a_spec_given_to_test_is_a_clear_error(project):
    write(project, {"bot.yaml": "model: gpt-4o\n", "bot.test.yaml": "conversations:\n  - name: a\n    turns: [{user: hi}]\n"})
    result = CliRunner().invoke(cli, ["test", "assistants/bot.yaml"])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert result.output.startswith(
        "Error: assistants/bot.yaml:1:1: this is an assistant spec, not a conversation file: `asstctl test` runs "
        "the conversations of bot.test.yaml next to it"), result.output
    assert "required property" not in result.output and "unknown field" not in result.output


def test_a_conversation_file_without_conversations_says_what_they_are(project):
    write(project, {"bot.yaml": "model: gpt-4o\n", "bot.test.yaml": "assistant: bot\n"})
    result = CliRunner().invoke(cli, ["validate"])
    assert result.stdout.splitlines() == ["assistants/bot.test.yaml:1:1: `conversations` is required: a list of "
                                          "conversations, each with a `name` and `turns`"]
