"""The offline engine's file_search behaviour (no rule answered the message).

First turn: when the run offers the built-in ``file_search`` and the user wrote something, call
it with the user's text as the query. After the results: quote the sentence of the best result
that shares the most words with the question, followed by that result's citation marker (so the
executor turns it into a ``file_citation``); with no result, say the files have no answer.
"""

from __future__ import annotations

import json
import re
from typing import Any

from asstctl.server.engine.base import EngineRequest, ToolCall, function_names

NAME = "file_search"
_BLOCK = re.compile(r"(【\d+:\d+†[^】]*】)\n(.*?)(?=\n\n【\d+:\d+†|\Z)", re.DOTALL)
_SENTENCE = re.compile(r"(?<=[.!?])\s+|\n+")
_WORD = re.compile(r"\w+")
_SMALL = frozenset("a an and are as at be by can do does for from have how i in is it me my of on or the to "
                   "what when where which who why will with you your".split())


def search_call(request: EngineRequest, user_text: str | None) -> ToolCall | None:
    """The file_search call to make, when file_search is offered and the user asked something."""
    offered = NAME in function_names(request.offered_tools) and NAME not in function_names(request.tools)
    choice = request.run.get("tool_choice", "auto")
    if not offered or not (user_text or "").strip() or choice == "none":
        return None
    if isinstance(choice, dict) and choice.get("type") == "function":
        return None
    return ToolCall(NAME, json.dumps({"queries": [user_text.strip()]}))


def only_file_search(results: list[dict[str, Any]]) -> bool:
    return bool(results) and all(r["name"] == NAME for r in results)


def answer(request: EngineRequest, results: list[dict[str, Any]], user_text: str | None) -> str:
    """The reply after file_search: the best sentence of the best result, with its marker."""
    blocks = [(m.group(1), m.group(2).strip()) for r in results for m in _BLOCK.finditer(r["output"] or "")]
    if not blocks:
        return f"[offline {request.model}] I found no answer to that in the knowledge base."
    marker, text = blocks[0]
    return f"{best_sentence(text, user_text or '')} {marker}"


def best_sentence(text: str, question: str) -> str:
    """The sentence of ``text`` sharing the most (prefix-matched) words with ``question``."""
    wanted = [w[:5] for w in _WORD.findall(question.lower()) if w not in _SMALL]
    sentences = [s.strip() for s in _SENTENCE.split(text) if s.strip() and not s.strip().startswith("#")]
    if not sentences:
        return text.strip()

    def overlap(sentence: str) -> int:
        lowered = sentence.lower()
        return sum(1 for w in wanted if w in lowered)

    return max(sentences, key=overlap)  # the first of the best (max keeps the earliest)
