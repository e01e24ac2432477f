"""Expectations of a turn, checked against outcomes (pure: no server)."""

from __future__ import annotations

import pytest

from asstctl.testing.expectations import TurnOutcome, check, excerpt, is_subset

CALL = {"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}}


def outcome(reply="It is 21 °C in Paris.", calls=(), latency=10.0, tokens=30):
    return TurnOutcome(reply=reply, tool_calls=list(calls), latency_ms=latency, total_tokens=tokens)


@pytest.mark.parametrize(
    "expect",
    [
        {"contains": "Paris"},
        {"contains": ["21", "Paris"]},
        {"icontains": "PARIS"},
        {"not_contains": "Rome"},
        {"regex": r"\d+ °C"},
        {"equals": "  It is 21 °C in Paris.\n"},
        {"tool_called": "get_weather"},
        {"tool_called": {"name": "get_weather", "arguments": {"city": "Paris"}}},
        {"no_tool_called": "send_email"},
        {"max_latency_ms": 10},
        {"max_tokens": 30},
    ],
)
def test_holding_expectations_pass(expect):
    assert check(expect, outcome(calls=[CALL])) == []


@pytest.mark.parametrize(
    "expect, reason",
    [
        ({"contains": "Rome"}, '"Rome" not in reply "It is 21 °C in Paris."'),
        ({"icontains": "rome"}, '"rome" not in reply (ignoring case)'),
        ({"not_contains": "Paris"}, '"Paris" found in reply'),
        ({"regex": "^Rome"}, "no match for /^Rome/"),
        ({"equals": "4"}, 'reply is "It is 21 °C in Paris."'),
        ({"json": True}, "reply is not JSON"),
        ({"tool_called": {"name": "get_weather", "arguments": {"city": "Rome"}}},
         'called: get_weather({"city": "Paris", "unit": "celsius"})'),
        ({"no_tool_called": True}, "called: get_weather"),
        ({"no_tool_called": ["get_weather"]}, "`get_weather` was called"),
        ({"max_latency_ms": 9}, "took 10 ms"),
        ({"max_tokens": 29}, "used 30 tokens"),
    ],
)
def test_failing_expectations_name_themselves_and_why(expect, reason):
    failures = check(expect, outcome(calls=[CALL]))
    assert len(failures) == 1
    key = next(iter(expect))
    assert failures[0].expectation.startswith(f"{key}: ")
    assert reason in failures[0].reason


def test_every_missing_string_is_a_failure():
    failures = check({"contains": ["Rome", "Paris", "Oslo"]}, outcome())
    assert [f.reason.split()[0] for f in failures] == ['"Rome"', '"Oslo"']


def test_tool_called_without_any_call_says_so():
    [failure] = check({"tool_called": "get_weather"}, outcome())
    assert "no tool was called" in failure.reason


def test_json_reply_in_a_fence_and_against_a_schema():
    reply = '```json\n{"answer": 4, "steps": ["2+2"]}\n```'
    schema = {"type": "object", "required": ["answer"], "properties": {"answer": {"type": "integer"}}}
    assert check({"json": {"schema": schema}}, outcome(reply)) == []
    [failure] = check({"json": {"schema": {**schema, "properties": {"answer": {"type": "string"}}}}}, outcome(reply))
    assert "reply JSON at ['answer']: 4 is not of type 'string'" in failure.reason


def test_subset_matching_is_recursive_and_exact_on_leaves():
    assert is_subset({"a": {"b": 1}}, {"a": {"b": 1, "c": 2}, "d": 3})
    assert not is_subset({"a": {"b": 1}}, {"a": {"b": "1"}})
    assert not is_subset({"a": [1]}, {"a": [1, 2]})
    assert not is_subset({"a": 1}, "not a mapping")


def test_excerpt_is_one_line_and_bounded():
    text = "line one\n" + "x" * 500
    short = excerpt(text, 40)
    assert "\n" not in short and len(short) <= 42 and short.endswith('…"')
