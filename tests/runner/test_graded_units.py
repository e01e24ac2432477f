"""The pure parts of the model-graded expectations: reading a grader's verdict, cosine similarity,
prices, the code and citation checks, and the conversation format of the new keys (no server)."""

from __future__ import annotations

import pytest

from asstctl.testing.expectations import TurnOutcome, check
from asstctl.testing.grading import GradingError, Verdict, checked_verdict, cosine, cost, parse_verdict, price_of
from asstctl.testing.conversations import load_conversations, validate_conversations
from asstctl.spec.project import load_project
from tests.runner.conftest import write_conversations


@pytest.mark.parametrize("answer, passed, reason", [
    ('{"pass": true, "reason": "It is polite."}', True, "It is polite."),
    ('```json\n{"pass": false, "reason": "Rude."}\n```', False, "Rude."),
    ('Here is my verdict: {"passed": "fail", "explanation": "Off topic"} Thanks.', False, "Off topic"),
    ('{"verdict": "PASS", "reason": "ok"}', True, "ok"),
    ("PASS: it answers the question", True, "it answers the question"),
    ("fail - it talks about rain", False, "it talks about rain"),
])
def test_a_verdict_is_read_from_json_or_a_leading_word(answer, passed, reason):
    verdict = parse_verdict(answer)
    assert (verdict.passed, verdict.reason) == (passed, reason)


def test_an_answer_the_server_did_not_hold_to_the_schema_is_validated_against_it():
    assert checked_verdict('{"pass": false, "reason": " Wrong city. "}') == Verdict(False, "Wrong city.")
    with pytest.raises(GradingError, match="does not match the verdict schema"):
        checked_verdict('{"pass": "yes", "reason": "ok"}')
    with pytest.raises(GradingError, match="does not match the verdict schema"):
        checked_verdict('{"pass": true, "reason": "ok", "score": 3}')


@pytest.mark.parametrize("answer", ["", "I am not sure.", '{"reason": "no pass key"}', '{"pass": "maybe"}'])
def test_anything_else_is_no_verdict(answer):
    with pytest.raises(GradingError, match="not a verdict"):
        parse_verdict(answer)


def test_cosine():
    assert cosine([1, 0], [1, 0]) == pytest.approx(1.0)
    assert cosine([1, 0], [0, 2]) == pytest.approx(0.0)
    assert cosine([1, 1], [1, 0]) == pytest.approx(0.7071, abs=1e-4)
    assert cosine([0, 0], [1, 0]) == 0.0
    with pytest.raises(GradingError, match="different sizes"):
        cosine([1, 0], [1, 0, 0])


def test_prices_are_per_million_tokens_by_name_then_pattern():
    prices = {"gpt-4o": {"prompt": 2.5, "completion": 10}, "gpt-4*": {"prompt": 1, "completion": 1},
              "text-embedding-*": {"prompt": 0.02}}
    assert price_of(prices, "gpt-4o")["prompt"] == 2.5 and price_of(prices, "gpt-4.1")["prompt"] == 1
    used = {"gpt-4o": {"prompt_tokens": 1_000_000, "completion_tokens": 100_000},
            "text-embedding-3-small": {"prompt_tokens": 500_000, "completion_tokens": 0},
            "llama3": {"prompt_tokens": 7, "completion_tokens": 7}}
    assert cost(prices, used) == (pytest.approx(2.5 + 1.0 + 0.01), ["llama3"])
    assert cost({}, used) == (None, [])
    assert cost({"x": {"prompt": 1}}, {"llama3": used["llama3"]}) == (None, ["llama3"])


CODE = [{"input": "print(6 * 7)", "logs": "42\n"}]


@pytest.mark.parametrize("expect, code, reasons", [
    ({"code_ran": True}, CODE, []),
    ({"code_ran": True}, [], ["no code_interpreter call ran"]),
    ({"code_ran": False}, [], []),
    ({"code_ran": False}, CODE, ['code ran: "print(6 * 7)"']),
    ({"code_output_contains": "42"}, CODE, []),
    ({"code_output_contains": ["42", "43"]}, CODE, ['"43" not in the code output; code output: "42"']),
    ({"code_output_contains": "42"}, [], ['"42" not in the code output; no code_interpreter call ran']),
])
def test_code_expectations(expect, code, reasons):
    assert [f.reason for f in check(expect, TurnOutcome(reply="x", code=code))] == reasons


def test_without_a_grader_model_graded_expectations_fail_and_say_what_to_set():
    reasons = [f.reason for f in check({"rubric": "Polite", "similar": "hi"}, TurnOutcome(reply="x"))]
    assert reasons == ["not graded: no grader (set test.grader.model and engine.upstream in asstctl.yaml)",
                       "not compared: no embeddings model (set engine.embeddings.model and engine.upstream in asstctl.yaml)"]


UPLOAD = "asstctl--shop--{sha}--returns.md"


@pytest.mark.parametrize("expect, cited, shas, holds", [
    ({"file_cited": "returns.md"}, [UPLOAD.format(sha="a" * 16)], {}, True),
    ({"file_cited": "knowledge/returns.md"}, [UPLOAD.format(sha="a" * 16)], {"knowledge/returns.md": "a" * 16}, True),
    # the same name with other content: an older version of the file, not the one in the checkout
    ({"file_cited": "knowledge/returns.md"}, [UPLOAD.format(sha="b" * 16)], {"knowledge/returns.md": "a" * 16}, False),
    ({"file_cited": "shipping.md"}, [UPLOAD.format(sha="a" * 16)], {}, False),
    ({"file_cited": "notes.txt"}, ["notes.txt"], {}, True),  # an attachment keeps its own name
    ({"file_cited": True}, [], {}, False),
])
def test_file_cited_matches_the_knowledge_file(expect, cited, shas, holds):
    assert (check(expect, TurnOutcome(reply="x", cited=cited, cited_shas=shas)) == []) == holds


def test_the_format_of_the_new_expectations(project):
    (project / "assistants" / "knowledge").mkdir()
    (project / "assistants" / "knowledge" / "returns.md").write_text("30 days")
    write_conversations(project, "weather-bot", """
        conversations:
          - name: all
            turns:
              - user: hi
                expect:
                  rubric: [Polite, Short]
                  similar: {text: hello, threshold: 0.5}
                  code_ran: true
                  code_output_contains: ["42"]
                  file_cited: [knowledge/returns.md, returns.md]
    """)
    project_ = load_project(project)
    assert validate_conversations(project_) == []
    turn = load_conversations(project_)[0].turns[0]
    assert list(turn.cited_shas) == ["knowledge/returns.md"] and len(turn.cited_shas["knowledge/returns.md"]) == 16
    write_conversations(project, "weather-bot", """
        conversations:
          - name: bad
            turns:
              - user: hi
                expect: {rubric: "", similar: {text: hi, threshold: 2}, code_ran: "yes", file_cited: knowledge/gone.md}
    """)
    problems = "\n".join(validate_conversations(load_project(project)))
    assert "expect.rubric" in problems and "expect.similar" in problems and "expect.code_ran" in problems
    write_conversations(project, "weather-bot", """
        conversations:
          - name: bad
            turns: [{user: hi, expect: {file_cited: knowledge/gone.md}}]
    """)
    problems = "\n".join(validate_conversations(load_project(project)))
    assert "file_cited `knowledge/gone.md` is not a file next to this test file" in problems
