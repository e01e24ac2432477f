"""Upstream faults: retries with backoff honouring Retry-After, clear errors naming the fix, a key that
never leaks, cancellation that closes the upstream request."""

from __future__ import annotations

import asyncio
import logging
import socket
import sys
import time

import h11
import pytest

from asstctl.errors import ConfigError
from asstctl.server.engine.base import EngineError, TextDelta
from asstctl.server.engine.config import UpstreamConfig
from asstctl.server.engine import http
from asstctl.server.engine.http import Timeouts
from asstctl.server.engine.limits import Limits
from asstctl.server.engine.upstream import RetryPolicy, UpstreamEngine
from tests.engine.conftest import KEY_ENV, chat_request, collect, make_engine, text_of
from tests.upstream import Failure, Text


def failure_of(engine, request=None) -> EngineError:
    with pytest.raises(EngineError) as caught:
        collect(engine, request or chat_request())
    return caught.value


def test_429_is_retried_after_the_retry_after_the_upstream_asked_for(keyed, caplog):
    keyed.queue(Failure.rate_limit(retry_after="1"), Text("made it"))
    with caplog.at_level(logging.WARNING, logger="asstctl.server.engine"):
        events = collect(make_engine(keyed), chat_request())
    assert text_of(events) == "made it"
    first, second = keyed.requests
    assert second.at - first.at >= 0.95
    assert f"upstream 127.0.0.1:{keyed.port} answered 429; retry 1 of 3 in 1.00 s" in caplog.text


def test_retry_after_is_capped_and_5xx_is_retried_too(keyed, caplog):
    keyed.queue(Failure.rate_limit(retry_after="3600"), Failure(500), Failure(503, retry_after_ms="20"), Text("ok"))
    with caplog.at_level(logging.WARNING, logger="asstctl.server.engine"):
        events = collect(make_engine(keyed, retry=RetryPolicy(retries=3, backoff=0.01, max_wait=0.05)),
                         chat_request())
    assert text_of(events) == "ok" and len(keyed.requests) == 4
    assert "answered 429; retry 1 of 3 in 0.05 s" in caplog.text  # an hour asked, the cap waited
    assert "answered 500; retry 2 of 3 in 0.02 s" in caplog.text  # backoff 0.01 * 2**1
    assert "answered 503; retry 3 of 3 in 0.02 s" in caplog.text  # retry-after-ms


def test_rate_limit_after_the_retries_is_rate_limit_exceeded_naming_the_upstream(keyed):
    keyed.queue(*[Failure.rate_limit(retry_after="0")] * 4)
    error = failure_of(make_engine(keyed))
    assert error.code == "rate_limit_exceeded"
    assert f"the upstream 127.0.0.1:{keyed.port} is rate limiting requests (429 after 4 attempts)" in error.message
    assert len(keyed.requests) == 4


def test_server_errors_after_the_retries_are_server_error(keyed):
    keyed.queue(*[Failure(502, "Bad gateway")] * 3)
    error = failure_of(make_engine(keyed, retry=RetryPolicy(retries=2, backoff=0.01)))
    assert error.code == "server_error"
    assert error.message == f"the upstream 127.0.0.1:{keyed.port} failed (502 after 3 attempts): Bad gateway"


def test_401_names_the_key_variable_and_never_the_key(monkeypatch, upstream, caplog):
    wrong = "sk-wrong-key-4242424242424242"
    monkeypatch.setenv(KEY_ENV, wrong)
    with caplog.at_level(logging.DEBUG):
        error = failure_of(make_engine(upstream))
    assert error.code == "server_error"
    assert f"${KEY_ENV}" in error.message and "refused the key (401)" in error.message
    assert wrong not in str(error) and upstream.key not in str(error)
    assert wrong not in caplog.text and upstream.key not in caplog.text
    assert len(upstream.requests) == 1  # 401 is not retried


def test_unknown_model_names_the_model_and_the_model_map_fix(keyed):
    keyed.models = {"llama3.1:8b"}
    error = failure_of(make_engine(keyed), chat_request(model="gpt-4o"))
    assert "has no model `gpt-4o`" in error.message
    assert "--model-map 'gpt-4o=MODEL'" in error.message and "engine.model_map" in error.message
    mapped = failure_of(make_engine(keyed, model_map=[("gpt-4*", "llama3")]), chat_request(model="gpt-4o"))
    assert "has no model `llama3` (the run's model `gpt-4o`, mapped)" in mapped.message
    events = collect(make_engine(keyed, model_map=[("gpt-4*", "llama3.1:8b")]), chat_request(model="gpt-4o"))
    assert text_of(events) == "You said: Hello"


def test_a_base_url_without_the_api_path_says_so(keyed):
    error = failure_of(make_engine(keyed, url=keyed.root_url))
    assert "has no chat completions endpoint at /chat/completions (404)" in error.message
    assert "check the --upstream URL" in error.message


def test_an_error_the_upstream_echoes_is_scrubbed_of_the_key(keyed):
    keyed.queue(Failure(400, f"Bad request from key {keyed.key}", "invalid_request_error", "bad"))
    error = failure_of(make_engine(keyed))
    assert keyed.key not in error.message and "[redacted]" in error.message


def test_an_unreachable_upstream_is_retried_then_named(monkeypatch):
    monkeypatch.setenv(KEY_ENV, "k")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nothing listens once it is closed
    engine = UpstreamEngine(UpstreamConfig(url=f"http://127.0.0.1:{port}/v1", api_key_env=KEY_ENV),
                            retry=RetryPolicy(retries=2, backoff=0.01))
    error = failure_of(engine)
    assert error.code == "server_error"
    assert error.message.startswith(f"cannot reach the upstream 127.0.0.1:{port} (")
    assert "after 3 attempts: is it running?" in error.message


def test_a_silent_upstream_times_out(keyed):
    keyed.queue(Text("too late", first_delay=3))
    error = failure_of(make_engine(keyed, timeouts=Timeouts(read=0.3)))
    assert error.code == "server_error" and "did not answer within 0.3 s" in error.message
    assert len(keyed.wait_for_requests(1)) == 1  # (on a loaded machine the upstream may record it after the timeout)


def test_a_stream_cut_mid_answer_fails_without_a_retry(keyed):
    keyed.queue(Text("half an ans", cut=True), Text("never sent"))
    error = failure_of(make_engine(keyed))
    assert "ended the stream before the answer was finished" in error.message
    assert len(keyed.requests) == 1  # deltas were already yielded: a retry would duplicate text


def test_cancelling_the_consumer_closes_the_upstream_request(keyed):
    keyed.queue(Text("one two three", deltas=["one", " two", " three"], delay=30))
    engine = make_engine(keyed)
    first = asyncio.Event()

    async def consume():
        async for event in engine.stream(chat_request()):
            if isinstance(event, TextDelta):
                first.set()

    async def main():
        task = asyncio.create_task(consume())
        await first.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await engine.aclose()

    asyncio.run(main())
    assert keyed.disconnected.wait(5), "the upstream stream stayed open after the cancel"
    assert keyed.completed == 0


@pytest.mark.parametrize("version", [(3, 10), (3, 11)])
def test_a_cancel_that_arrives_with_data_is_never_dropped_on_either_python_path(version, monkeypatch):
    """Every upstream read and write waits through ``http.read_wait``'s choice for the running Python;
    both choices run here whatever the Python (the pre-3.11 one would otherwise never run). The bytes
    and the cancel reach the loop in one iteration, while waiting for the head and for the body, and
    at every step of the wait: ``asyncio.wait_for`` would hand back the bytes and drop the cancel
    (the cancelled run reads on)."""
    if version >= (3, 11) and sys.version_info < (3, 11):
        pytest.skip("asyncio.timeout (the 3.11+ path) is not in this Python")
    monkeypatch.setattr(http, "_within", http.read_wait(version))
    head = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"

    async def trial(in_body: bool, steps: int) -> str:
        reader = asyncio.StreamReader()
        connection = http.Connection(reader, writer=None)
        connection.h11.send(h11.Request(method="POST", target="/", headers=[("host", "up"), ("content-length", "0")]))
        connection.h11.send(h11.EndOfMessage())
        if in_body:
            reader.feed_data(head)
            assert isinstance(await http.next_event(connection, 5), h11.Response)
        read = asyncio.ensure_future(http.next_event(connection, 5))
        for _ in range(steps):
            await asyncio.sleep(0)
        reader.feed_data(b"5\r\nhello\r\n" if in_body else head)
        read.cancel()
        try:
            await read
        except asyncio.CancelledError:
            return "cancelled"
        return "dropped"

    async def main():
        return [await trial(in_body, steps) for in_body in (False, True) for steps in range(5)]

    assert asyncio.run(main()) == ["cancelled"] * 10


def test_leaving_the_stream_early_closes_the_upstream_request(keyed):
    keyed.queue(Text("one two three", deltas=["one", " two", " three"], delay=30))
    engine = make_engine(keyed)

    async def main():
        stream = engine.stream(chat_request())
        async for event in stream:
            if isinstance(event, TextDelta):
                break
        await stream.aclose()
        await engine.aclose()

    asyncio.run(main())
    assert keyed.disconnected.wait(5)


def test_a_remote_upstream_without_its_key_is_a_startup_error(monkeypatch):
    monkeypatch.delenv(KEY_ENV, raising=False)
    with pytest.raises(ConfigError) as caught:
        UpstreamEngine(UpstreamConfig(url="https://api.example.com/v1", api_key_env=KEY_ENV))
    assert f"the upstream api.example.com needs a key and ${KEY_ENV} is not set" in str(caught.value)
    monkeypatch.setenv(KEY_ENV, "  ")
    with pytest.raises(ConfigError, match=r"is blank"):
        UpstreamEngine(UpstreamConfig(url="https://api.example.com/v1", api_key_env=KEY_ENV))
    monkeypatch.setenv(KEY_ENV, "sk-secret-5150")
    assert repr(UpstreamEngine(UpstreamConfig(url="https://api.example.com/v1", api_key_env=KEY_ENV))) \
        == "UpstreamEngine(api.example.com)"


def test_an_upstream_silent_mid_answer_times_out(keyed):
    keyed.queue(Text("one two", deltas=["one", " two"], delay=3))
    error = failure_of(make_engine(keyed, timeouts=Timeouts(read=0.3)))
    assert "went silent for 0.3 s mid-answer" in error.message


def test_the_whole_turn_limit_ends_a_slow_trickle(keyed):
    keyed.queue(Text("one two three four", deltas=["one", " two", " three", " four"], delay=0.2))
    error = failure_of(make_engine(keyed, limits=Limits(idle_seconds=5, turn_seconds=0.3)))
    assert error.message == f"the upstream 127.0.0.1:{keyed.port} took longer than the whole-turn limit of 0.3 s " \
                            "(engine.limits.turn_seconds)"


def test_an_embeddings_error_body_is_read_to_the_cap(monkeypatch):
    """/embeddings (file_search's dense retrieval) answering a 400 with a 200 MB body: the blocking Embedder
    (queries) and the batcher (ingestion) read it to limits.ERROR_BODY_CAP (the upstream sees the hang-up,
    the peak memory stays put) and fail with a short error. (The key echoed by /embeddings, through a
    server: tests/engine/test_embeddings_wiring.py.)"""
    import resource

    from asstctl.server.retrieval.embeddings import EmbeddingBatcher, Embedder, EmbeddingsConfig, EmbeddingsError
    from tests.engine.hostile import HostileUpstream

    async def batched(config):
        batcher = EmbeddingBatcher(config)
        try:
            await batcher.embed(["embed-huge"])
        finally:
            await batcher.aclose()

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with HostileUpstream() as upstream:
        config = EmbeddingsConfig(model="m", base_url=upstream.base_url, api_key_env=KEY_ENV)
        with pytest.raises(EmbeddingsError) as query:
            Embedder(config).embed(["embed-huge"])
        with pytest.raises(EmbeddingsError) as ingestion:
            asyncio.run(batched(config))
        deadline = time.monotonic() + 20  # (the upstream sees a hang-up at its next write: late on a loaded machine)
        while upstream.hung_up["embed-huge"] < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert upstream.hung_up["embed-huge"] == 2 and upstream.seen["embed-huge"] == 2  # never read whole
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak < 100_000  # kB
    for error in (query.value, ingestion.value):
        assert "failed for model 'm': BadRequestError 400: xxx" in str(error) and len(str(error)) < 700, str(error)


def test_a_key_echoed_in_deltas_of_any_size_never_reaches_the_client(keyed):
    """1-, 2- and 3-character deltas of the key, in the text and in a call's arguments (a 3-character
    minimum hold leaked `sk-…` one character at a time); then the key split at every position."""
    from asstctl.server.engine.base import ToolCallDelta
    from asstctl.server.engine.limits import ReplyGuard
    from tests.engine.conftest import calls_of
    from tests.upstream import Call, ToolCalls

    key = keyed.key
    text = f"Your key is {key} ok, sk- and s."
    engine = make_engine(keyed)
    for size in (1, 2, 3):
        keyed.queue(Text(text, deltas=[text[i:i + size] for i in range(0, len(text), size)]),
                    ToolCalls([Call("get_weather", f'{{"city": "{key}"}}')], fragments=len(key) // size + 4))
        assert text_of(collect(engine, chat_request())) == "Your key is [redacted] ok, sk- and s."
        (call,) = calls_of(collect(engine, chat_request())).values()
        assert call["arguments"] == '{"city": "[redacted]"}', call
    for cuts in [(i,) for i in range(len(text))] + [(i, i + 1) for i in range(len(text))]:
        pieces = [text[a:b] for a, b in zip((0, *cuts), (*cuts, len(text)))]
        for delta in (TextDelta, lambda piece: ToolCallDelta(0, None, None, piece)):
            guard = ReplyGuard(key, 10_000)
            shown = [e for piece in pieces for e in guard.events([delta(piece)])] + guard.flush()
            assert "".join(e.text if isinstance(e, TextDelta) else e.arguments for e in shown) == \
                "Your key is [redacted] ok, sk- and s.", cuts


def test_a_key_json_escaped_in_tool_arguments_is_scrubbed_and_other_escapes_keep_their_meaning(keyed):
    """`\\u0073k-...` as the arguments' raw JSON (the client decodes it to the key): scrubbed on the decoded
    text, in 1-character fragments too; an escaped backslash, quote or non-ASCII character means the same."""
    import json

    from tests.engine.conftest import calls_of
    from tests.upstream import Call, ToolCalls

    key = keyed.key
    escaped = "".join(f"\\u{ord(c):04x}" for c in key)
    other = r'"kept": "\\u0073 \" \u00e9 \u0041"'
    engine = make_engine(keyed)
    for arguments in (f'{{"city": "{escaped}", {other}}}', f'{{"city": "{escaped[:36]}{key[6:]}", {other}}}'):
        for fragments in (1, len(arguments)):
            keyed.queue(ToolCalls([Call("get_weather", arguments)], fragments=fragments))
            (call,) = calls_of(collect(engine, chat_request())).values()
            assert json.loads(call["arguments"]) == {"city": "[redacted]", "kept": "\\u0073 \" \u00e9 A"}, call
