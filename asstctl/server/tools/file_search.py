"""The ``file_search`` built-in tool: the model asks with queries, the server searches the
assistant's and the thread's vector stores and answers with citable results.

Offered to the model as the function ``file_search(queries: [string])`` (``query`` is accepted
too). The step shows ``{"id", "type": "file_search", "file_search": {"ranking_options",
"results"}}``; each result carries ``content`` only when the run asked
``include[]=step_details.tool_calls[*].file_search.results[*].content``. The model reads every
result after its citation marker ``【{message_index}:{result_index}†{filename}】`` and is asked to
cite with those markers; each result is a :class:`Source` the executor turns into a
``file_citation`` annotation when its marker appears in the reply.
"""

from __future__ import annotations

import asyncio
from typing import Any

from asstctl.ownership import own_filename
from asstctl.server.http import now
from asstctl.server.retrieval import retriever_of
from asstctl.server.tools.base import Source, ToolContext, ToolOutcome

INCLUDE_CONTENT = "step_details.tool_calls[*].file_search.results[*].content"
RANKER = "default_2024_08_21"
TOUCH_SECONDS = 60  # a store's last_active_at is written at most once a minute, as by the search endpoint
DESCRIPTION = (
    "Search the files the user and the assistant provided (the knowledge base). Use it whenever the answer "
    "may be in those files. Give one or more short search queries; results come back with citation markers "
    "like 【4:0†guide.md】 that you must copy into your answer right after the facts taken from them."
)


def default_max_results(model: str) -> int:
    """The API's default ``max_num_results``: 5 for gpt-3.5-turbo models, 20 otherwise."""
    return 5 if (model or "").startswith("gpt-3.5") else 20


def store_ids(assistant: dict[str, Any], thread: dict[str, Any]) -> list[str]:
    """The assistant's and the thread's ``tool_resources.file_search.vector_store_ids``, in that order."""
    ids: list[str] = []
    for owner in (assistant, thread):
        resources = ((owner or {}).get("tool_resources") or {}).get("file_search") or {}
        ids.extend(i for i in resources.get("vector_store_ids") or [] if i not in ids)
    return ids


def queries_of(arguments: dict[str, Any]) -> list[str]:
    value = arguments.get("queries", arguments.get("query"))
    items = value if isinstance(value, list) else [value]
    return [q.strip() for q in items if isinstance(q, str) and q.strip()]


class FileSearchTool:
    type = "file_search"

    def __init__(self, state):
        self.state = state

    def definition(self, tool: dict[str, Any]) -> dict[str, Any]:
        parameters = {
            "type": "object",
            "properties": {"queries": {"type": "array", "items": {"type": "string"}, "minItems": 1,
                                       "description": "Search queries, each a few keywords or a question."}},
            "required": ["queries"],
            "additionalProperties": False,
        }
        return {"type": "function", "function": {"name": "file_search", "description": DESCRIPTION, "parameters": parameters}}

    async def run(self, ctx: ToolContext, arguments: dict[str, Any]) -> ToolOutcome:
        options = (ctx.tool or {}).get("file_search") or {}
        threshold = float((options.get("ranking_options") or {}).get("score_threshold", 0.0))
        ranking = {"ranker": RANKER, "score_threshold": threshold}
        queries = queries_of(arguments)
        if not queries:
            call = {"id": ctx.call_id, "type": "file_search", "file_search": {"ranking_options": ranking, "results": []}}
            return ToolOutcome(call, "file_search needs `queries`: a list of search strings, e.g. {\"queries\": [\"refund time\"]}.")
        ids = store_ids(ctx.assistant, ctx.thread)
        if self.state.extra.get("ingestion") is not None:  # files still being ingested: wait for them (bounded)
            await self.state.extra["ingestion"].settled(ids, timeout=60.0)
        limit = options.get("max_num_results") or default_max_results(ctx.run.get("model", ""))
        found, message_index = await asyncio.to_thread(self._searched, ctx, ids, queries, limit, threshold)
        with_content = INCLUDE_CONTENT in (ctx.include or ())
        results, sources, blocks = [], [], []
        for n, (result, filename) in enumerate(found):
            marker = f"【{message_index}:{n}†{own_filename(filename)}】"  # shown to end users: the file's own name
            entry = {"file_id": result.file_id, "file_name": filename, "score": result.score}
            if with_content:
                entry["content"] = [{"type": "text", "text": result.text}]
            results.append(entry)
            sources.append(Source(marker=marker, file_id=result.file_id, filename=filename, quote=result.text))
            blocks.append(f"{marker}\n{result.text}")
        call = {"id": ctx.call_id, "type": "file_search", "file_search": {"ranking_options": ranking, "results": results}}
        return ToolOutcome(call, render_output(queries, ids, blocks), sources)

    def _searched(self, ctx: ToolContext, ids, queries, limit, threshold) -> tuple[list[tuple[Any, str]], int]:
        """``search`` and the thread's message count (the markers' first number), on a worker thread."""
        found = self.search(ids, queries, limit, threshold)
        return found, len(self.state.store.all("message", ctx.thread.get("id", "")))

    def search(self, ids: list[str], queries: list[str], limit: int, threshold: float) -> list[tuple[Any, str]]:
        """[(retrieval Result, filename)] over the completed files of the stores; the stores count as active."""
        stores = self.state.store.get_many("vector_store", "", ids)  # one read; a write only once a minute
        for vs_id, store in stores.items():
            if now() - (store.get("last_active_at") or 0) >= TOUCH_SECONDS:
                self.state.store.update("vector_store", vs_id, _touch)
        found = retriever_of(self.state).search(ids, queries, max_num_results=limit, score_threshold=threshold)
        files = self.state.store.get_many("file", "", [result.file_id for result in found])  # one read
        return [(result, files[result.file_id]["filename"] if result.file_id in files else result.file_id)
                for result in found]


def _touch(store: dict[str, Any]) -> None:
    store["last_active_at"] = now()
    after = store.get("expires_after")
    store["expires_at"] = store["last_active_at"] + after["days"] * 86400 if after else None


def render_output(queries: list[str], ids: list[str], blocks: list[str]) -> str:
    """The text the model reads: each result after its citation marker, and how to cite."""
    asked = "; ".join(queries)
    if not ids:
        return f"file_search for {asked!r}: no vector store is attached to the assistant or the thread, so there is nothing to search."
    if not blocks:
        return f"file_search for {asked!r}: no result. Say that the files do not answer this."
    head = (f"file_search results for {asked!r}. Each result follows its citation marker. Answer from them and put "
            "the marker of each result you use right after the sentence that uses it, exactly as written, e.g. 【4:0†guide.md】.")
    return head + "\n\n" + "\n\n".join(blocks)
