"""A hostile Responses API upstream behind a real ``asstctl serve`` (``engine.api: responses``): every
fault of docs/engine.md "Faults" ends the run as it does on Chat Completions. The tests are
tests/engine/test_hostile.py's (imported: they run again here, on this module's fixtures), each with
the server's peak memory and a concurrent ping's latency asserted (``bounded``, imported too).

The upstream is tests/engine/hostile.py's, its stream behaviours spoken as ``ResponseStreamEvent``s
(each kind's first event validated against the official schema; ``problems``); its error answers
(huge, endless, echoing the key, a validation 500) are the same on every path. Everything stays
bounded in bytes and seconds, on loopback only. The flood (20,000 deltas of 100 characters) found
the Responses reader adding each delta to a string: 22 s, the event loop blocked, the run failed at
the whole-turn limit.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest

from tests.conftest import make_client
from tests.engine.hostile import (ARGUMENT_PIECES, BAD, DRIP_SECONDS, ERROR_CHARS, MAX_SECONDS, PIECE, HostileUpstream, has_outputs,
                                  key_of, padded_key)
from tests.engine.test_hostile import (  # noqa: F401 - run here again, on this module's fixtures
    KEY, bounded, run_on, serve_on, test_a_data_line_that_never_ends_fails_the_run_naming_the_line_limit,
    test_a_flood_of_tiny_deltas_keeps_other_requests_fast, test_a_flood_of_argument_fragments_is_coalesced,
    test_a_key_across_a_cap_behind_whitespace_never_reaches_last_error, test_a_reply_over_the_size_cap_ends_incomplete,
    test_a_slow_drip_of_separate_deltas_completes_and_keeps_other_requests_fast,
    test_a_stream_without_finish_reason_is_a_failed_turn_retried_once_when_nothing_was_shown,
    test_a_validation_error_is_not_retried_and_last_error_keeps_its_details, test_an_echoed_key_is_scrubbed_from_the_stream_and_the_message,
    test_a_tail_held_as_the_keys_start_is_released_when_the_stream_ends_or_fails,
    test_a_body_that_goes_on_after_the_answer_ended_is_closed_and_the_run_completes,
    test_a_json_answer_instead_of_an_event_stream_is_used_or_its_error_shown,
    test_an_echoed_key_near_the_cut_never_reaches_last_error, test_an_endless_stream_ends_at_the_whole_turn_limit,
    test_cancel_reaches_cancelled_within_a_second_every_time, test_huge_and_endless_error_bodies_are_read_to_a_cap,
    test_invalid_utf8_in_a_stream_is_replaced,
    test_huge_call_ids_and_too_many_calls_fail_the_run_naming_the_limit,
    test_lone_surrogates_are_replaced_and_the_thread_stays_usable, test_tool_call_ids_and_names_are_cleaned_and_scrubbed, test_silence_mid_answer_ends_at_the_idle_timeout,
    test_usage_counted_locally_never_exceeds_the_cap)
from tests.responses_upstream import event_problems, response_object

class Events:
    """The events of one streamed Response (``data:`` lines), numbered in order."""

    def __init__(self, upstream: "HostileResponses", body: dict[str, Any]):
        self.upstream, self.number = upstream, 0
        self.response = response_object("resp_hostile", body)
        self.where = {"item_id": "msg_hostile", "output_index": 0}

    def event(self, kind: str, **fields: Any) -> str:
        event = {"type": kind, "sequence_number": self.number, **fields}
        self.number += 1
        if kind not in self.upstream.checked:  # each kind once: a flood is 20,000 deltas
            self.upstream.checked.add(kind)
            self.upstream.problems += [f"{kind}: {p}" for p in event_problems(event)]
        return f"event: {kind}\ndata: {json.dumps(event)}\n\n"

    def opening(self) -> str:
        item = {"type": "message", "id": "msg_hostile", "role": "assistant", "status": "in_progress", "content": []}
        return (self.event("response.created", response=self.response)
                + self.event("response.in_progress", response=self.response)
                + self.event("response.output_item.added", output_index=0, item=item)
                + self.event("response.content_part.added", content_index=0,
                             part={"type": "output_text", "text": "", "annotations": [], "logprobs": []}, **self.where))

    def delta(self, text: str) -> str:
        return self.event("response.output_text.delta", content_index=0, delta=text, logprobs=[], **self.where)

    def closing(self, text: str, incomplete: str | None = None, usage: bool = True) -> str:
        part = {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
        item = {"type": "message", "id": "msg_hostile", "role": "assistant", "status": "completed", "content": [part]}
        final = {**self.response, "output": [item]}
        if usage:
            final["usage"] = {"input_tokens": 5, "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
                              "output_tokens": 7, "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 12}
        out = (self.event("response.output_text.done", content_index=0, text=text, logprobs=[], **self.where)
               + self.event("response.content_part.done", content_index=0, part=part, **self.where)
               + self.event("response.output_item.done", output_index=0, item=item))
        if incomplete is not None:
            return out + self.event("response.incomplete", response={
                **final, "status": "incomplete", "incomplete_details": {"reason": incomplete}})
        return out + self.event("response.completed", response={**final, "status": "completed",
                                                                 "completed_at": int(time.time())})


class HostileResponses(HostileUpstream):
    """The hostile upstream's stream behaviours on ``POST /v1/responses``."""

    def __init__(self) -> None:
        self.problems: list[str] = []
        self.checked: set[str] = set()
        super().__init__()

    def _events(self) -> Events:
        return Events(self, self.bodies[-1])  # the request being answered (recorded just before)

    async def _stream(self, writer, *texts: str) -> bool:
        """A 200 event stream of ``texts``, then its end (no terminal event unless one is in ``texts``)."""
        self._head(writer, 200, "content-type: text/event-stream\r\ntransfer-encoding: chunked\r\n")
        for text in texts:
            await self._chunk(writer, text)
        writer.write(b"0\r\n\r\n")
        await writer.drain()
        return True

    async def _whole(self, writer, *pieces: str) -> bool:
        events = self._events()
        return await self._stream(writer, events.opening() + "".join(events.delta(p) for p in pieces)
                                  + events.closing("".join(pieces)))

    async def _forever(self, writer, name: str, started: float, piece: str, pause: float) -> bool:
        events = self._events()
        self._head(writer, 200, "content-type: text/event-stream\r\ntransfer-encoding: chunked\r\n")
        await self._chunk(writer, events.opening())
        return await self._endless(writer, name, started, events.delta(piece), pause)

    async def _surrogate(self, writer, headers, started) -> bool:
        return await self._whole(writer, "bad \ud800 and \udfff", " end")

    async def _invalid_utf8(self, writer, headers, started) -> bool:
        events = self._events()
        self._head(writer, 200, "content-type: text/event-stream\r\ntransfer-encoding: chunked\r\n")
        await self._raw(writer, events.opening() + events.delta(f"bad {BAD} end")
                        + events.closing("bad \ufffd\ufffd and \ufffd end"))
        return True

    async def _endless_stream(self, writer, headers, started) -> bool:
        return await self._forever(writer, "endless-stream", started, "more ", 0.05)

    async def _slow_tokens(self, writer, headers, started) -> bool:
        return await self._forever(writer, "slow-tokens", started, "tok ", 0.01)

    async def _oversize(self, writer, headers, started) -> bool:
        return await self._forever(writer, "oversize", started, "y" * 65536, 0)

    async def _silent(self, writer, headers, started) -> bool:
        events = self._events()
        self._head(writer, 200, "content-type: text/event-stream\r\ntransfer-encoding: chunked\r\n")
        await self._chunk(writer, events.opening() + events.delta("Hello"))
        await asyncio.sleep(MAX_SECONDS)
        return False

    async def _flood(self, writer, headers, started) -> bool:
        """2 MB of text in 100-character deltas, as fast as the client reads."""
        events = self._events()
        self._head(writer, 200, "content-type: text/event-stream\r\ntransfer-encoding: chunked\r\n")
        await self._chunk(writer, events.opening())
        for _ in range(200):
            await self._chunk(writer, "".join(events.delta(PIECE) for _ in range(100)))
        await self._chunk(writer, events.closing(PIECE * 20_000))
        writer.write(b"0\r\n\r\n")
        await writer.drain()
        return True

    async def _echo_key(self, writer, headers, started) -> bool:
        auth = headers.get("authorization", "")
        half = len(auth) // 2 + 3
        return await self._whole(writer, "You sent " + auth[:half], auth[half:] + " to me.")

    async def _json_answer(self, writer, headers, started) -> bool:
        """A 200 that ignores ``stream: true``: the completed ``Response`` as JSON."""
        events = self._events()
        part = {"type": "output_text", "text": "plain json answer", "annotations": [], "logprobs": []}
        item = {"type": "message", "id": "msg_hostile", "role": "assistant", "status": "completed", "content": [part]}
        usage = {"input_tokens": 5, "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0}, "output_tokens": 3,
                 "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 8}
        return self._json(writer, 200, {**events.response, "status": "completed", "completed_at": int(time.time()),
                                        "output": [item], "usage": usage}, "Response")

    async def _arguments_flood(self, writer, headers, started) -> bool:
        events = self._events()
        item = {"type": "function_call", "id": "fc_flood", "call_id": "call_flood", "name": "get_weather",
                "arguments": "", "status": "in_progress"}
        where = {"item_id": "fc_flood", "output_index": 0}
        out = [events.event("response.created", response=events.response),
               events.event("response.output_item.added", output_index=0, item=item)]
        out += [events.event("response.function_call_arguments.delta", delta=piece, **where)
                for piece in ['{"city": "'] + ["z"] * ARGUMENT_PIECES + ['"}']]
        arguments = '{"city": "' + "z" * ARGUMENT_PIECES + '"}'
        done = {**item, "arguments": arguments, "status": "completed"}
        out += [events.event("response.output_item.done", output_index=0, item=done),
                events.event("response.completed", response={**events.response, "output": [done], "status": "completed",
                                                             "completed_at": int(time.time())})]
        return await self._stream(writer, *("".join(out[n:n + 200]) for n in range(0, len(out), 200)))

    async def _echo_key_end(self, writer, headers, started) -> bool:
        return await self._whole(writer, "You sent " + key_of(headers)[:-1])

    async def _open_after_end(self, writer, headers, started) -> bool:
        events = self._events()
        self._head(writer, 200, "content-type: text/event-stream\r\ntransfer-encoding: chunked\r\n")
        await self._chunk(writer, events.opening() + events.delta("All done.") + events.closing("All done."))
        return await self._endless(writer, "open-after-end", started, ": keep-alive\n\n", 0.1)

    async def _tail_dropped(self, writer, headers, started) -> bool:
        events = self._events()
        self._head(writer, 200, "content-type: text/event-stream\r\ntransfer-encoding: chunked\r\n")
        await self._chunk(writer, events.opening() + events.delta("Here are things"))
        return False

    async def _done_no_finish(self, writer, headers, started) -> bool:
        events = self._events()
        return await self._stream(writer, events.opening() + events.delta("partial an"))

    async def _done_empty_once(self, writer, headers, started) -> bool:
        if self.seen["done-empty-once"] % 2:  # each run's first request: nothing, then its retry: the answer
            events = self._events()
            return await self._stream(writer, events.event("response.created", response=events.response))
        return await self._whole(writer, "Second time lucky.")

    async def _drip(self, writer, headers, started) -> bool:
        events = self._events()
        self._head(writer, 200, "content-type: text/event-stream\r\ntransfer-encoding: chunked\r\n")
        await self._chunk(writer, events.opening())
        self.dripped = 0
        while time.monotonic() - started < DRIP_SECONDS:
            await self._chunk(writer, events.delta(PIECE))
            self.dripped += 1
            await asyncio.sleep(0.002)
        await self._chunk(writer, events.closing(PIECE * self.dripped))
        writer.write(b"0\r\n\r\n")
        await writer.drain()
        return True

    async def _padded_key_stream_error(self, writer, headers, started) -> bool:
        events = self._events()
        return await self._stream(writer, events.opening() + events.event(
            "error", code=None, message=padded_key(headers, ERROR_CHARS), param=None))

    async def _calls(self, writer, calls: list[tuple[str, str]]) -> bool:
        """``function_call`` items (call_id, name), or "done." once the request carries their outputs."""
        if has_outputs(self.bodies[-1]):
            return await self._whole(writer, "done.")
        events, items, out = self._events(), [], []
        out.append(events.event("response.created", response=events.response))
        for n, (call_id, name) in enumerate(calls):
            item = {"type": "function_call", "id": f"fc_{n}", "call_id": call_id, "name": name, "arguments": "",
                    "status": "in_progress"}
            out.append(events.event("response.output_item.added", output_index=n, item=item))
            out.append(events.event("response.function_call_arguments.done", item_id=f"fc_{n}", output_index=n,
                                    name=name, arguments="{}"))
            items.append({**item, "arguments": "{}", "status": "completed"})
            out.append(events.event("response.output_item.done", output_index=n, item=items[-1]))
        out.append(events.event("response.completed", response={**events.response, "output": items, "status": "completed",
                                                                 "completed_at": int(time.time())}))
        return await self._stream(writer, "".join(out))

    async def _no_usage(self, writer, headers, started) -> bool:
        events = self._events()
        words = [f"word{i} " for i in range(600)]
        return await self._stream(writer, events.opening() + "".join(events.delta(w) for w in words)
                                  + events.closing("".join(words), incomplete="max_output_tokens", usage=False))


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    with HostileResponses() as upstream:
        with serve_on(upstream, tmp_path_factory.mktemp("hostile-responses"), api="responses") as server:
            yield server, upstream
            assert server.stop() == 0
            assert KEY[:6] not in server.stderr() + server.stdout()
        assert not upstream.problems, upstream.problems
        assert all(body.get("store") is False and "input" in body for body in upstream.bodies)


@pytest.fixture
def sdk(hostile, contract):
    client = make_client(hostile[0], contract, timeout=30)
    yield client
    client.close()


def test_only_a_stream_that_showed_nothing_is_sent_again(hostile, sdk):
    seen = hostile[1].seen
    before = seen["done-no-finish"], seen["done-empty-once"]
    assert run_on(sdk, "done-no-finish").status == "failed"
    assert run_on(sdk, "done-empty-once").status == "completed"
    assert (seen["done-no-finish"], seen["done-empty-once"]) == (before[0] + 1, before[1] + 2)


def test_done_events_relay_only_what_the_deltas_did_not():
    """A server whose deltas stop short: the ``.done`` events' rest is relayed once; one that does not
    continue what was relayed adds nothing."""
    from asstctl.server.engine.responses import ResponseParser

    def feed(parser, kind, **fields):
        return parser.feed("data: " + json.dumps({"type": kind, "sequence_number": 0, **fields}))

    parser, text = ResponseParser(), {"item_id": "m", "output_index": 0, "content_index": 0, "logprobs": []}
    call = {"type": "function_call", "id": "fc_1", "call_id": "call_1", "name": "f", "arguments": ""}
    out = feed(parser, "response.output_text.delta", delta="Hel", **text)
    out += feed(parser, "response.output_text.done", text="Hello.", **text)
    out += feed(parser, "response.output_text.done", text="Hello.", **text)
    out += feed(parser, "response.output_item.added", output_index=1, item=call)
    out += feed(parser, "response.function_call_arguments.delta", item_id="fc_1", output_index=1, delta='{"a"')
    out += feed(parser, "response.function_call_arguments.done", item_id="fc_1", output_index=1, name="f",
                arguments='{"a": 1}')
    out += feed(parser, "response.output_item.done", output_index=1, item={**call, "arguments": '{"a": 1}'})
    out += feed(parser, "response.output_text.done", text="Goodbye.", **text)
    assert [getattr(e, "text", None) or e.arguments for e in out] == ["Hel", "lo.", "", '{"a"', ": 1}"]


def test_output_only_in_the_final_event_and_a_call_id_sent_twice():
    """A server that streams no output events reads as its ``response.completed``'s output (the answer was
    empty); of two calls with one call_id, the first keeps its item id (the second's replaced it, so the next
    request paired the reasoning with the wrong item)."""
    from asstctl.server.engine.responses import ResponseParser

    def events(parser, *kinds):
        out = []
        for kind, fields in kinds:
            out += parser.feed("data: " + json.dumps({"type": kind, "sequence_number": 0, **fields}))
        return out

    call = {"type": "function_call", "call_id": "call_A", "name": "f", "arguments": "{}", "status": "completed"}
    message = {"type": "message", "id": "m", "role": "assistant", "status": "completed",
               "content": [{"type": "output_text", "text": "Only at the end.", "annotations": []}]}
    parser = ResponseParser()
    out = events(parser, ("response.created", {"response": {"status": "in_progress", "output": []}}),
                 ("response.completed", {"response": {"status": "completed", "output": [message, {**call, "id": "fc_0"}]}}))
    assert [getattr(e, "text", None) or (e.id, e.name, e.arguments) for e in out] == [
        "Only at the end.", ("call_A", "f", "{}")]
    assert parser.finish_reason == "tool_calls"
    parser = ResponseParser()
    events(parser, *[("response.output_item.done", {"output_index": n, "item": {**call, "id": f"fc_{n}"}}) for n in (0, 1)])
    assert parser.round.item_ids == {"call_A": "fc_0"}
