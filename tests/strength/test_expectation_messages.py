"""The exact messages `asstctl test` prints for failed expectations, and the thresholds behind them:
the grader's verdicts (`rubric:`), embeddings similarity (`similar:`), code_interpreter output, tool
calls, citations and JSON schema paths. Users read these lines in the test output, and mutation
testing showed nothing else pins them (docs/testing.md).

`rubric:` and `similar:` reach the real grader (asstctl.testing.grading.Grader) over loopback; the
model behind it is the scripted upstream (the one stand-in), whose grader reads the prompt it gets and
whose embeddings are fixed vectors, so every score is known by hand."""

from __future__ import annotations

import json
import re

import pytest

from asstctl.server.engine.config import UpstreamConfig
from asstctl.testing.expectations import TurnOutcome, check
from asstctl.testing.grading import Grader, Spend
from tests.upstream import ScriptedUpstream, Text

GRADER_USAGE = (50, 5)
# Embeddings by text (anything else points elsewhere): cosines are exact fractions of small integers.
VECTORS = {"north": [1.0, 0.0, 0.0], "a 4-3 bearing": [4.0, 3.0, 0.0], "a 3-4 bearing": [3.0, 4.0, 0.0]}
ELSEWHERE = [0.0, 0.0, 1.0]


def tagged(prompt: str, tag: str) -> str:
    return re.search(rf"<{tag}>\n(.*?)\n</{tag}>", prompt, re.S).group(1)


def grade(body) -> Text:
    """The grader: a criterion `mentions X` passes when the reply holds X; its reason names what it was
    given. `be unsure` is no verdict at all, `be silent` fails without a reason."""
    prompt = body["messages"][-1]["content"]
    question, reply, criterion = tagged(prompt, "question"), tagged(prompt, "reply"), tagged(prompt, "criterion")
    if criterion == "be unsure":
        return Text("I am not sure.", usage=GRADER_USAGE)
    if criterion == "be silent":
        return Text(json.dumps({"pass": False, "reason": ""}), usage=GRADER_USAGE)
    wanted = criterion.removeprefix("mentions ")
    verdict = {"pass": wanted in reply, "reason": f"asked {question!r}, the reply lacks {wanted!r}"}
    return Text(json.dumps(verdict), usage=GRADER_USAGE)


@pytest.fixture(scope="module")
def upstream():
    with ScriptedUpstream(key=None) as running:
        running.default = grade
        running.embed = lambda texts: [VECTORS.get(text, ELSEWHERE) for text in texts]
        yield running
    assert not running.problems, "the scripted upstream saw schema violations:\n" + "\n".join(running.problems)


@pytest.fixture
def grader(upstream):
    config = UpstreamConfig(url=upstream.base_url, api_key_env="ASSTCTL_STRENGTH_NO_SUCH_KEY")
    made = Grader(config, "judge", "embed")
    yield made
    made.close()


def reasons(expect, outcome: TurnOutcome) -> list[str]:
    return [failure.reason for failure in check(expect, outcome)]


def graded(grader, reply: str, question: str = "Which way is the harbour?") -> TurnOutcome:
    return TurnOutcome(reply=reply, question=question, grader=grader, spend=Spend())


# -- rubric ----------------------------------------------------------------------------------
def test_a_rubric_the_reply_meets_passes_and_the_grader_tokens_are_counted(grader):
    outcome = graded(grader, "Go north along the quay.")
    assert reasons({"rubric": ["mentions north", "mentions quay"]}, outcome) == []
    assert outcome.spend.by_model == {"judge": {"prompt_tokens": 100, "completion_tokens": 10}}


def test_a_failed_rubric_gives_the_graders_reason_and_the_reply(grader):
    outcome = graded(grader, "Go north along the quay.")
    assert reasons({"rubric": ["mentions north", "mentions south"]}, outcome) == [
        "the grader says: asked 'Which way is the harbour?', the reply lacks 'south'; "
        'reply "Go north along the quay."']


def test_every_criterion_is_graded_even_after_one_that_got_no_verdict(grader):
    outcome = graded(grader, "Go north.", question="Where?")
    assert reasons({"rubric": ["be unsure", "mentions south", "be silent"]}, outcome) == [
        'not graded: the grader\'s answer is not a verdict: "I am not sure."',
        "the grader says: asked 'Where?', the reply lacks 'south'; reply \"Go north.\"",
        'the grader says: (no reason given); reply "Go north."']
    assert outcome.spend.by_model["judge"] == {"prompt_tokens": 150, "completion_tokens": 15}


# -- similar ---------------------------------------------------------------------------------
@pytest.mark.parametrize("expect, failed", [
    ({"similar": "a 4-3 bearing"}, []),  # 4/5: exactly the default threshold 0.8 holds
    ({"similar": {"text": "a 4-3 bearing"}}, []),  # the same default in the mapping form
    ({"similar": "a 3-4 bearing"}, ['similarity 0.600 < 0.8; reply "north"']),  # 3/5
    ({"similar": {"text": "a 3-4 bearing", "threshold": 0.6}}, []),  # exactly the threshold holds
    ({"similar": {"text": "a 3-4 bearing", "threshold": 0.61}}, ['similarity 0.600 < 0.61; reply "north"']),
    ({"similar": {"text": "a 4-3 bearing", "threshold": 0.85}}, ['similarity 0.800 < 0.85; reply "north"']),
    ({"similar": "elsewhere"}, ['similarity 0.000 < 0.8; reply "north"']),
])
def test_similarity_against_its_threshold(grader, expect, failed):
    assert reasons(expect, graded(grader, "north")) == failed


def test_similarity_embeds_the_reply_and_the_text_and_counts_the_tokens(grader, upstream):
    outcome = graded(grader, "north")
    before = len(upstream.requests)
    assert reasons({"similar": {"text": "a 4-3 bearing", "threshold": 0.9}}, outcome) == [
        'similarity 0.800 < 0.9; reply "north"']
    [request] = upstream.requests[before:]
    assert (request.path, request.body["input"]) == ("/v1/embeddings", ["north", "a 4-3 bearing"])
    assert outcome.spend.by_model == {"embed": {"prompt_tokens": 4, "completion_tokens": 0}}


# -- code_interpreter ------------------------------------------------------------------------
def test_code_output_of_several_calls_is_read_one_call_per_line():
    code = [{"input": "print(1)", "logs": "Total: 5"}, {"input": "print(2)", "logs": "Done"}]
    outcome = TurnOutcome(reply="x", code=code)
    assert reasons({"code_output_contains": "5\nDone"}, outcome) == []
    assert reasons({"code_output_contains": "missing"}, outcome) == [
        '"missing" not in the code output; code output: "Total: 5 Done"']


def test_code_that_printed_nothing_says_so():
    outcome = TurnOutcome(reply="x", code=[{"input": "x = 1", "logs": ""}])
    assert reasons({"code_output_contains": "1"}, outcome) == ['"1" not in the code output; code output: "(none)"']


# -- tool calls, citations, JSON -------------------------------------------------------------
def test_all_calls_of_a_turn_are_listed():
    calls = [{"name": "lookup", "arguments": {"city": "Bern"}}, {"name": "book", "arguments": {"n": 2}}]
    outcome = TurnOutcome(reply="ok", tool_calls=calls)
    assert reasons({"no_tool_called": True}, outcome) == ['called: lookup({"city": "Bern"}); book({"n": 2})']
    assert reasons({"no_tool_called": True}, TurnOutcome(reply="ok")) == []


def test_a_cited_file_is_matched_by_its_name_at_any_depth():
    outcome = TurnOutcome(reply="x", cited=["asstctl--kb--0123456789abcdef--returns.md"])
    assert reasons({"file_cited": "docs/knowledge/returns.md"}, outcome) == []
    assert reasons({"file_cited": "docs/knowledge/faq.md"}, outcome) == [
        '"docs/knowledge/faq.md" was not cited; cited: returns.md']  # the file's own name, not the upload's


def test_a_schema_problem_deep_in_the_reply_names_its_whole_path():
    schema = {"type": "object", "properties": {"items": {"type": "array", "items": {"type": "integer"}}}}
    assert reasons({"json": {"schema": schema}}, TurnOutcome(reply='{"items": [1, "two"]}')) == [
        "reply JSON at ['items'][1]: 'two' is not of type 'integer'"]
