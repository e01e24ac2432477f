"""Bounds on what an upstream sends back, shared by every upstream engine (Chat Completions, Responses).

- :data:`ERROR_BODY_CAP`: an error body is read up to 64 KiB (``http.Response.read(cap)``), the rest
  dropped with the connection.
- :class:`Limits`: the idle timeout between chunks, the whole-turn limit and the cap on one reply's
  size (text plus tool-call arguments), from ``engine.limits`` / :class:`~config.UpstreamConfig`.
- :func:`clean_text`: lone surrogates (a ``\\ud800`` escape in a JSON delta) become U+FFFD, so no
  store or encoder ever chokes on a reply.
- :func:`scrub`: the key (and any ``Authorization`` / ``api-key`` header the upstream echoes) out of
  a text; :func:`error_detail` scrubs the whole error body *before* it is cut to ``DETAIL_CHARS``.
  Where a text was already cut (the body at ``ERROR_BODY_CAP``, an in-stream error at its own cap:
  :func:`scrub_cut`), a tail that is the key's start (``HOLD`` or more characters) is redacted too,
  as :meth:`KeyScrubber.flush` would: whitespace collapsed later must not bring a fragment into view.
- :class:`KeyScrubber`: the same over a stream of deltas, a key split across deltas of any size
  included (a tail that may be the key's start is held until the next delta, or the stream's end,
  failed or not: then shown, or redacted when it is ``HOLD`` or more characters).
- :class:`EscapeDecoder`: tool-call arguments' ``\\u`` escapes of ASCII characters written plainly (the
  same JSON), so a key sent escaped is scrubbed too.
- :class:`ReplyGuard`: all of it on one reply's events, tool-call ids and names included (cleaned,
  scrubbed, ids made unique in the reply, counted against ``reply_chars``, each at most ``ID_CHARS`` / ``NAME_CHARS``, at most
  ``CALLS`` calls a reply).
- :func:`coalesce`: many text deltas (or fragments of one call's arguments) that arrived in one read
  become one (a flood of tiny deltas costs one event, not thousands), a few stay as the upstream sent them.

Imports only the standard library and ``base`` of this package.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, replace
from typing import Any

from asstctl.server.engine.base import EngineError, EngineEvent, TextDelta, ToolCallDelta

ERROR_BODY_CAP = 64 * 1024  # bytes of an error body read; the rest is discarded
MAX_LINE = 4 * 1024 * 1024  # one server-sent-events line at most (a longer one fails the turn)
DETAIL_CHARS = 500  # of the upstream's own error message kept in last_error
COALESCE_OVER = 8  # more text deltas than this in one read are merged into one
REDACTED = "[redacted]"
ID_CHARS = 256  # of one tool-call id (OpenAI's are about 30)
NAME_CHARS = 256  # of one tool-call name (OpenAI's function names are at most 64)
CALLS = 128  # tool calls in one reply (OpenAI allows 128 tools in a request)
HOLD = 3  # a text cut short whose tail is this many characters of the key's start has the tail redacted

_SURROGATE = re.compile("[\ud800-\udfff]")
_HEADER_ECHO = re.compile(r"(?i)\b(authorization|api-key|x-api-key)(\"?\s*[:=]\s*\"?)(bearer\s+)?[^\s\"',;}]+")


@dataclass(frozen=True)
class Limits:
    idle_seconds: float = 120.0  # longest silence between two chunks (a local model's first token can be slow)
    turn_seconds: float = 600.0  # one model call from request to its last chunk
    reply_chars: int = 1_000_000  # text plus tool-call arguments of one reply; beyond it ends `incomplete`


def clean_text(text: str) -> str:
    """``text`` with lone surrogates replaced by U+FFFD (valid UTF-8 whatever the upstream sent)."""
    return _SURROGATE.sub("\ufffd", text) if _SURROGATE.search(text) else text


def scrub(text: str, key: str | None) -> str:
    """``text`` without the key and without the value of an echoed auth header."""
    if key and len(key) >= 4:
        text = text.replace(key, REDACTED)
    return _HEADER_ECHO.sub(lambda m: f"{m.group(1)}{m.group(2)}{m.group(3) or ''}{REDACTED}", text)


def redact_tail(text: str, key: str | None) -> str:
    """``text`` (cut short somewhere) without a tail that is the key's first ``HOLD`` or more characters."""
    start = key_tail(text, key) if key and len(key) >= 4 else -1
    return text[:start] + REDACTED if start >= 0 else text


def key_tail(text: str, key: str, least: int = HOLD) -> int:
    """Where the earliest tail of ``text`` that is the key's first ``least`` or more characters starts (-1: none)."""
    start = text.find(key[:least], max(0, len(text) - len(key) + 1))
    while start >= 0:
        if key.startswith(text[start:]):
            return start
        start = text.find(key[:least], start + 1)
    return -1


def scrub_cut(text: str, key: str | None, chars: int) -> str:
    """``text`` scrubbed, then cut to ``chars`` characters, the key's start at the cut redacted."""
    text = scrub(text, key)
    return redact_tail(text[:chars], key) if len(text) > chars else text


def error_detail(content: bytes, key: str | None, capped: bool = False) -> tuple[str, str | None]:
    """The upstream's own error message, scrubbed and whitespace collapsed but whole (what a dialect
    is learned from; :func:`cut` it for last_error), and its code, from the usual ``{"error": {...}}``
    envelope, vLLM's ``{"object": "error", ...}``, FastAPI's ``{"detail": ...}``, Google's
    list-wrapped ``[{"error": {...}}]`` (Gemini's OpenAI-compatible endpoint) or plain text. ``capped``:
    the body was cut at ``ERROR_BODY_CAP`` (a key's start at the cut is redacted)."""
    text = clean_text(content.decode("utf-8", "replace"))
    if capped:
        text = redact_tail(scrub(text, key), key)
    try:
        data = json.loads(text or "null")
    except ValueError:
        data = None
    if isinstance(data, list) and data and isinstance(data[0], dict):
        data = data[0]
    message, code = text, None
    if isinstance(data, dict):
        error = data.get("error", data if data.get("object") == "error" or "message" in data else None)
        if isinstance(error, dict):
            found = error.get("message", error.get("detail"))
            message = found if isinstance(found, str) else json.dumps(found) if found is not None else text
            code = error.get("code") if isinstance(error.get("code"), str) else None
        elif isinstance(error, str):
            message = error
        elif "detail" in data:
            detail = data["detail"]
            message = detail if isinstance(detail, str) else json.dumps(detail)
    return " ".join(scrub(message, key).split()) or "no details", code


def cut(message: str) -> str:
    return message[:DETAIL_CHARS - 1] + "…" if len(message) > DETAIL_CHARS else message


def detail_text(message: str, key: str | None) -> str:
    """An upstream's message for last_error: scrubbed first, then whitespace collapsed and cut."""
    return cut(" ".join(scrub(clean_text(message), key).split()) or "no details")


class KeyScrubber:
    """Deltas of one stream, the key redacted even when it is split across deltas.

    Whatever tail of the held and new text is the key's start (of any length: 1-character deltas
    of the key leaked with a 3-character minimum) is held until the next delta shows whether it is
    the key (or :meth:`flush`); a key whose start was already sent has the rest redacted."""

    def __init__(self, key: str | None):
        self.key = key if key and len(key) >= 8 else None
        self.held = ""
        self.sent = ""  # the last len(key) - 1 characters already passed on

    def feed(self, text: str) -> str:
        if self.key is None:
            return text
        key, data = self.key, self.held + text
        self.held = ""
        window, offset = self.sent + data, len(self.sent)
        out, position = [], offset
        found = window.find(key)
        while found >= 0:
            end = found + len(key)
            if end > position:
                out.append(window[position:max(position, found)])
                out.append(REDACTED)
                position = end
            found = window.find(key, end)
        rest = window[position:]
        start = key_tail(rest, key, 1)  # the earliest tail that is the key's start (even 1 character): held back
        if start >= 0:
            self.held, rest = rest[start:], rest[:start]
        out.append(rest)
        result = "".join(out)
        self.sent = (self.sent + result)[-(len(key) - 1):]
        return result

    def flush(self) -> str:
        """What is held at the end of the stream: as it is when shorter than ``HOLD`` characters (an "s"
        ending a sentence), else redacted (a key echoed up to its last character never shows)."""
        held, self.held = self.held, ""
        return REDACTED if len(held) >= HOLD else held


class EscapeDecoder:
    """Tool-call arguments (raw JSON text) with each ``\\uXXXX`` escape of a printable ASCII character
    (but ``"`` and ``\\``) written as the character itself: the same JSON, so that a key sent escaped
    (``\\u0073k-...``, which the client would decode) meets :class:`KeyScrubber` as plain text. An escape
    cut by the end of a delta is held until the next one."""

    def __init__(self) -> None:
        self.held = ""

    def feed(self, text: str) -> str:
        data, self.held = self.held + text, ""
        if "\\" not in data:
            return data
        out, position = [], 0
        for match in _ESCAPE.finditer(data):
            escape = match.group()
            out.append(data[position:match.start()])
            if match.end() == len(data) and (escape == "\\" or (escape[1] == "u" and len(escape) < 6)):
                self.held = escape  # cut short: the rest comes with the next delta
                return "".join(out)
            out.append(_unescaped(escape))
            position = match.end()
        out.append(data[position:])
        return "".join(out)

    def flush(self) -> str:
        held, self.held = self.held, ""
        return held


_ESCAPE = re.compile(r"\\(?:u[0-9a-fA-F]{0,4}|.?)", re.DOTALL)


def _unescaped(escape: str) -> str:
    if len(escape) == 6:
        char = chr(int(escape[2:], 16))
        if " " <= char <= "~" and char not in "\"\\":
            return char
    return escape


class ReplyGuard:
    """One reply's events made safe: text cleaned (:func:`clean_text`), the key scrubbed from text,
    tool-call arguments, ids and names, the size capped (``over`` once ``cap`` characters came, ids
    and names counted; the rest is dropped) and floods coalesced (first, so a flood costs one scrub,
    not thousands). A tool-call id over ``ID_CHARS``, a name over ``NAME_CHARS`` or more than
    ``CALLS`` calls in one reply fail the turn (:class:`EngineError` naming the limit)."""

    def __init__(self, key: str | None, cap: int):
        self.key, self.cap, self.size, self.over = key, cap, 0, False
        self._text = KeyScrubber(key)
        self._arguments: dict[int, KeyScrubber] = {}
        self._ids: dict[int, str] = {}  # each call's id as shown: unique in the reply
        self._escapes: dict[int, EscapeDecoder] = {}  # a key sent \\u-escaped in the arguments' JSON is scrubbed too

    def events(self, events: list[EngineEvent]) -> list[EngineEvent]:
        out: list[EngineEvent] = []
        for event in coalesce(events):
            if self.over:
                break
            if isinstance(event, TextDelta):
                text = self._fit(self._text.feed(clean_text(event.text)))
                if text or not event.text:
                    out.append(TextDelta(text))
            elif isinstance(event, ToolCallDelta):
                scrubber = self._arguments.get(event.index)
                if scrubber is None:
                    if len(self._arguments) >= CALLS:
                        raise EngineError(f"the upstream called more than {CALLS} tools in one reply "
                                          "(limits.CALLS); the reply was dropped", "server_error")
                    scrubber = self._arguments[event.index] = KeyScrubber(self.key)
                    self._escapes[event.index] = EscapeDecoder()
                call_id = self._unique(event.index, self._label(event.id, ID_CHARS, "id", "ID_CHARS"))
                name = self._label(event.name, NAME_CHARS, "name", "NAME_CHARS")
                if self.over:
                    break  # a call whose id or name passes the cap is not shown at all
                arguments = self._fit(scrubber.feed(self._escapes[event.index].feed(clean_text(event.arguments))))
                out.append(replace(event, id=call_id, name=name, arguments=arguments))
            else:
                out.append(event)
        return out

    def _label(self, value: str | None, limit: int, what: str, constant: str) -> str | None:
        """A call's id or name: cleaned, scrubbed, at most ``limit`` characters, counted against the cap."""
        if not value:
            return value
        if len(value) > limit:
            raise EngineError(f"the upstream sent a tool-call {what} longer than {limit} characters "
                              f"(limits.{constant}); the reply was dropped", "server_error")
        value = scrub(clean_text(value), self.key)
        self._fit(value)
        return value

    def _unique(self, index: int, call_id: str | None) -> str | None:
        """The id shown for call ``index``: the upstream's, with ``_2``, ``_3``... when another call of the
        reply has it already (two calls with one id could never both get their outputs submitted); the
        same for every fragment of the call."""
        if not call_id:
            return call_id
        shown = self._ids.get(index)
        if shown is None:
            taken, shown, n = set(self._ids.values()), call_id, 1
            while shown in taken:
                n += 1
                shown = f"{call_id}_{n}"
            self._ids[index] = shown
        return shown

    def flush(self) -> list[EngineEvent]:
        """What the scrubbers held back, at the reply's end."""
        out: list[EngineEvent] = []
        text = self._fit(self._text.flush())
        if text:
            out.append(TextDelta(text))
        for index, scrubber in self._arguments.items():
            held = self._fit(scrubber.feed(self._escapes[index].flush()) + scrubber.flush())
            if held:
                out.append(ToolCallDelta(index=index, arguments=held))
        return out

    def _fit(self, text: str) -> str:
        if self.size + len(text) > self.cap:
            text, self.over = text[:max(0, self.cap - self.size)], True
        self.size += len(text)
        return text


def coalesce(events: list[EngineEvent]) -> list[EngineEvent]:
    """When more than ``COALESCE_OVER`` deltas came at once: consecutive text deltas merged, and each
    fragment of a call's arguments merged into the delta before it of the same call (tool-call argument
    floods: 60,000 one-character fragments were as many step deltas, a streamed run took 68 s).
    Fewer stay as the upstream sent them."""
    if len(events) <= COALESCE_OVER:
        return events
    merged: list[Any] = []
    for event in events:
        last = merged[-1] if merged else None
        if isinstance(event, TextDelta) and isinstance(last, _Text):
            last.parts.append(event.text)
        elif isinstance(event, ToolCallDelta) and isinstance(last, _Call) and last.index == event.index \
                and not event.id and not event.name:
            last.parts.append(event.arguments)
        elif isinstance(event, TextDelta):
            merged.append(_Text([event.text]))
        elif isinstance(event, ToolCallDelta):
            merged.append(_Call(event, [event.arguments]))
        else:
            merged.append(event)
    return [m.event() if isinstance(m, (_Text, _Call)) else m for m in merged]


@dataclass
class _Text:
    parts: list[str]

    def event(self) -> TextDelta:
        return TextDelta("".join(self.parts))


@dataclass
class _Call:
    first: ToolCallDelta
    parts: list[str]

    @property
    def index(self) -> int:
        return self.first.index

    def event(self) -> ToolCallDelta:
        return replace(self.first, arguments="".join(self.parts))
