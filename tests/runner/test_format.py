"""Conversation files: JSON Schema validation with path:line:col, semantic checks, defaults."""

from __future__ import annotations

import re

from asstctl.testing.conversations import load_conversations, validate_conversations
from asstctl.spec.project import load_project
from tests.runner.conftest import asstctl_test, write_conversations


def problems_of(project_root, text: str, key: str = "weather-bot") -> list[str]:
    write_conversations(project_root, key, text)
    return validate_conversations(load_project(project_root))


def test_valid_files_have_no_problems_and_specs_are_not_conversations(project):
    (project / "assistants" / "weather-bot.yaml").write_text("model: gpt-4o\n")  # a spec, not a test file
    assert problems_of(project, """
        conversations:
          - name: everything
            mocks: {get_weather: {result: {t: 1}}}
            turns:
              - user: hi
                instructions: Be brief.
                additional_instructions: Really.
                model: gpt-4o-mini
                tools: [{type: code_interpreter}]
                temperature: 0.2
                mocks:
                  a: {template: "{city}"}
                  b: {python: "package.module:function"}
                expect:
                  contains: [a, b]
                  icontains: a
                  not_contains: c
                  regex: "^h"
                  equals: 4
                  json: {schema: {type: object}}
                  tool_called: [get_weather, {name: b, arguments: {x: 1}}]
                  no_tool_called: [c]
                  max_latency_ms: 100
                  max_tokens: 10
              - user: again
                expect: {json: true, no_tool_called: true}
    """) == []


def test_schema_problems_carry_file_line_and_column(project):
    problems = problems_of(project, """
        conversations:
          - name: typo
            turns:
              - user: hi
                expect: {contanis: hello}
              - expect: {contains: x}
    """)
    assert len(problems) == 2, problems
    assert all(re.match(r"assistants/weather-bot\.test\.yaml:\d+:\d+: ", p) for p in problems), problems
    assert any("contanis" in p and ":6:" in p for p in problems), problems
    assert any("'user' is a required property" in p and ":7:" in p for p in problems), problems


def test_bad_mocks_and_overrides_are_rejected(project):
    problems = problems_of(project, """
        conversations:
          - name: bad
            mocks: {get_weather: {result: 1, template: "x"}}
            turns:
              - user: hi
                temperature: 9
                mocks: {x: {python: "not a dotted path"}}
    """)
    assert len(problems) == 3, problems


def test_semantic_problems(project):
    problems = problems_of(project, """
        conversations:
          - name: same
            turns: [{user: hi, attachments: [missing.pdf]}]
          - name: same
            turns: [{user: hi, expect: {regex: "(unclosed"}}]
    """)
    assert len(problems) == 3, problems
    assert any("a second conversation named `same`" in p and ":5:" in p for p in problems), problems
    assert any("missing.pdf does not exist" in p and ":4:" in p for p in problems), problems
    assert any("invalid regular expression '(unclosed'" in p for p in problems), problems


def test_not_yaml_is_a_problem_not_a_traceback(project):
    problems = problems_of(project, "conversations: [unclosed\n")
    assert len(problems) == 1 and "weather-bot.test.yaml:" in problems[0], problems


def test_assistant_key_defaults_to_the_file_stem(project):
    write_conversations(project, "weather-bot", "conversations: [{name: a, turns: [{user: hi}]}]\n")
    write_conversations(project, "other", "assistant: math-tutor\nconversations: [{name: b, turns: [{user: hi}]}]\n")
    found = load_conversations(load_project(project))
    assert sorted(c.id for c in found) == ["math-tutor/b", "weather-bot/a"]


def test_asstctl_test_reports_invalid_files_with_exit_2(project, target):
    write_conversations(project, "weather-bot", "conversations: [{name: a, turns: [{user: 3}]}]\n")
    result = asstctl_test(target)
    assert result.exit_code == 2, result.output
    assert "weather-bot.test.yaml:1:" in result.stderr
    assert "1 problem found" in result.stderr
    assert "Traceback" not in result.output


def test_no_conversation_files_is_exit_2(project, target):
    result = asstctl_test(target)
    assert result.exit_code == 2
    assert "no conversations to run" in result.stderr


def test_outside_a_project_is_exit_2(tmp_path, monkeypatch, target):
    monkeypatch.chdir(tmp_path)
    result = asstctl_test(target)
    assert result.exit_code == 2
    assert "no asstctl.yaml found" in result.stderr
