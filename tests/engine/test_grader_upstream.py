"""The grader of ``rubric:`` (asstctl/testing/grading.py) against scripted upstreams: a server that
refuses ``json_schema`` the way llama-cpp-python does (a 500 validation error) is asked once, not once
per SDK retry, before the grader falls back to ``json_object``; other server errors are still retried."""

from __future__ import annotations

from asstctl.server.engine.config import UpstreamConfig
from asstctl.testing.grading import Grader, Spend
from tests.engine.replicas import llama_cpp
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
