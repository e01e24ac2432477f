"""The grader of ``rubric:`` (asstctl/testing/grading.py) against scripted upstreams: a server that
refuses ``json_schema`` the way llama-cpp-python does (a 500 validation error) is asked once, not once
per SDK retry, before the grader falls back to ``json_object``; a named ``engine.dialect`` without
``json_schema`` starts at ``json_object``; other server errors are still retried; an error echoing a key
or an ``Authorization`` header reaches the GradingError scrubbed."""

from __future__ import annotations

from asstctl.server.engine.config import UpstreamConfig
import pytest

from asstctl.testing.grading import Grader, GradingError, Spend
from tests.engine.replicas import llama_cpp
from tests.engine.conftest import KEY_ENV
from tests.upstream import Failure, ScriptedUpstream, Text

VERDICT = '{"pass": true, "reason": "It names Paris."}'


def judge(grader: Grader):
    return grader.judge("The reply names the capital of France.", "Capital of France?", "Paris.", Spend())


def test_a_refused_json_schema_is_sent_once_before_the_fallback():
    with ScriptedUpstream(key=None, refuse=llama_cpp) as upstream:
        upstream.queue(Text(VERDICT), Text(VERDICT))
        grader = Grader(UpstreamConfig(url=upstream.base_url), "grader", None)
        try:
            first, second = judge(grader), judge(grader)
        finally:
            grader.close()
    assert first.passed is True and second.passed is True
    formats = [(r.body.get("response_format") or {}).get("type") for r in upstream.requests]
    assert formats == ["json_schema", "json_object", "json_object"]  # refused once, then learned
    assert upstream.refusals == 1 and not upstream.problems, upstream.problems


def test_a_server_error_that_is_not_a_refusal_is_still_retried():
    with ScriptedUpstream(key=None) as upstream:
        upstream.queue(Failure(503), Text(VERDICT))
        grader = Grader(UpstreamConfig(url=upstream.base_url), "grader", None)
        try:
            verdict = judge(grader)
        finally:
            grader.close()
    assert verdict.passed is True and len(upstream.requests) == 2
    assert all(r.body["response_format"]["type"] == "json_schema" for r in upstream.requests)
    assert not upstream.problems, upstream.problems


def test_a_named_dialect_without_json_schema_starts_at_json_object():
    with ScriptedUpstream(key=None, refuse=llama_cpp) as upstream:
        upstream.queue(Text(VERDICT))
        grader = Grader(UpstreamConfig(url=upstream.base_url, dialect="llama.cpp"), "grader", None)
        try:
            verdict = judge(grader)
        finally:
            grader.close()
    assert verdict.passed is True
    assert [r.body["response_format"]["type"] for r in upstream.requests] == ["json_object"]
    assert upstream.refusals == 0 and not upstream.problems, upstream.problems


def test_an_echoed_key_or_authorization_header_is_scrubbed_from_the_grading_error(monkeypatch):
    other = "gsk_live_0a1b2c3d4e5f6a7b8c9d"  # another key, not of the sk- shape
    with ScriptedUpstream() as upstream:
        monkeypatch.setenv(KEY_ENV, upstream.key)
        message = ("q" * 100 + f" Authorization: Bearer {other} is not allowed; key {upstream.key} revoked. "
                   + "z" * 400)
        upstream.queue(Failure(400, message, "invalid_request_error"))
        grader = Grader(UpstreamConfig(url=upstream.base_url, api_key_env=KEY_ENV), "grader", None)
        try:
            with pytest.raises(GradingError) as raised:
                judge(grader)
        finally:
            grader.close()
    text = str(raised.value)
    assert "Authorization: Bearer [redacted] is not allowed" in text and len(text) < 700, text
    for secret in (other, upstream.key):
        assert not any(secret[i:i + 6] in text for i in range(len(secret) - 5)), text
