"""Route: vector store search (``POST /vector_stores/{id}/search``), the retriever's hybrid search
(BM25, plus dense embeddings when configured), the same the ``file_search`` tool runs.

Its cost follows the results, not the store: the index holds only completed files' chunks, and only
the files of the results are read (by primary key), for their attributes and names. ``filters`` are
evaluated in SQL, joined with the chunk ranking (``retrieval.filter_sql``): a filtered search reads
the records of the files it ranks, never the store's file list. A search moves the store's
``last_active_at`` (and so ``expires_at``) when it is a minute old or more: most searches write
nothing, so they never wait for the write lock.
"""

from __future__ import annotations

from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.routing import Route

from asstctl.server import validation as v
from asstctl.server.app import state_of
from asstctl.server.errors import not_found
from asstctl.server.http import json_body, now, ok
from asstctl.server.routes.vector_stores import touch

TOUCH_SECONDS = 60  # how stale ``last_active_at`` may get from searches alone (expiry counts days)


def check_search(body: dict[str, Any]) -> None:
    from asstctl.server.retrieval.filters import check_filter

    v.check_fields(body, ("query", "rewrite_query", "max_num_results", "filters", "ranking_options"), ("query",))
    query = body["query"]
    if not isinstance(query, str):
        v.check_string_array(query, "query", min_items=1)
    v.check_optional(
        body,
        {
            "rewrite_query": v.check_boolean,
            "max_num_results": lambda val, p: v.check_number(val, p, 1, 50, nullable=False, integer=True),
            "filters": check_filter,
            "ranking_options": _check_search_ranking,
        },
    )


def _check_search_ranking(value: Any, param: str) -> None:
    v.check_fields(value, ("ranker", "score_threshold"), (), param)
    if "ranker" in value:
        v.check_enum(value["ranker"], v.path(param, "ranker"), ("none", "auto", "default-2024-11-15"))
    if "score_threshold" in value:
        v.check_number(value["score_threshold"], v.path(param, "score_threshold"), 0, 1, nullable=False)


def search(state, vs_id: str, body: dict[str, Any]) -> dict[str, Any]:
    """``POST /vector_stores/{id}/search``: the retriever's ranking, with filters and threshold.
    Its cost follows the results, not the store: the index holds only completed files' chunks, and
    only the files of the results are read (by primary key), for their attributes and names."""
    from asstctl.server.retrieval import retriever_of
    from asstctl.server.retrieval.search import rewrite

    check_search(body)
    store = state.store.get("vector_store", vs_id, "")
    if store is None:
        raise not_found("vector_store", vs_id)
    if now() - (store.get("last_active_at") or 0) >= TOUCH_SECONDS:  # a search writes at most once a minute
        touch(state, vs_id)
    queries = [body["query"]] if isinstance(body["query"], str) else list(body["query"])
    if body.get("rewrite_query"):
        queries = [rewrite(" ".join(queries))]
    found = retriever_of(state).search(
        [vs_id], queries, max_num_results=body.get("max_num_results", 10),
        score_threshold=(body.get("ranking_options") or {}).get("score_threshold", 0.0),
        filters=body.get("filters"),
    )
    ids = {r.file_id for r in found}
    items, files = state.store.get_many("vector_store_file", vs_id, ids), state.store.get_many("file", "", ids)
    data = [{"file_id": r.file_id, "filename": (files.get(r.file_id) or {}).get("filename", ""), "score": r.score,
             "attributes": items[r.file_id].get("attributes") or {}, "content": [{"type": "text", "text": r.text}]}
            for r in found if r.file_id in items and items[r.file_id]["status"] == "completed"]
    return {"object": "vector_store.search_results.page", "search_query": queries,
            "data": data, "has_more": False, "next_page": None}


async def search_store(request):
    body = await json_body(request)
    return ok(await run_in_threadpool(search, state_of(request), request.path_params["vs_id"], body))


routes = [Route("/v1/vector_stores/{vs_id}/search", search_store, methods=["POST"])]
