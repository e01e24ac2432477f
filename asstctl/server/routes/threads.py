"""Routes: threads (create / retrieve / modify / delete; ``POST /threads/runs`` lives in runs.py).

Plain functions for other route modules (the run engine uses them):
``create_thread(state, body)``, ``require_thread(state, thread_id)``, ``active_run(state, thread_id)``.
Store: kind ``thread`` (parent ""); its messages (``message``) and runs (``run``) have parent = thread id,
run steps (``step``) parent = run id.
"""

from __future__ import annotations

from typing import Any

from starlette.convertors import StringConvertor, register_url_convertor
from starlette.routing import Route

from asstctl.server import validation as v
from asstctl.server.app import stored, stored_with_body, threaded
from asstctl.server.errors import not_found
from asstctl.server.http import deleted, new_id, now, ok, require
from asstctl.server.routes import messages, vector_stores
from asstctl.server.routes.lookup import ACTIVE_RUN_STATUSES, active_run, require_thread  # noqa: F401 (runs.py uses them from here)

class ThreadIdConvertor(StringConvertor):
    """A thread id segment that is not the literal ``runs`` (``POST /threads/runs`` is create-and-run)."""

    regex = "(?!runs$)[^/]+"


register_url_convertor("thread_id", ThreadIdConvertor())

THREAD_FIELDS = ("messages", "tool_resources", "metadata")


def check_thread_create(body: Any, param_prefix: str = "") -> None:
    """A ``CreateThreadRequest`` (top level, or ``thread`` inside create-thread-and-run)."""
    if param_prefix:
        v.check_type(body, param_prefix, "object")
    v.check_fields(body, THREAD_FIELDS, (), param_prefix)
    v.check_optional(
        body,
        {
            "messages": v.check_messages,
            "tool_resources": lambda value, p: v.check_tool_resources(value, p, helper=True),
            "metadata": v.check_metadata,
        },
        param_prefix,
    )


def create_thread(state, body: dict[str, Any], param_prefix: str = "") -> dict[str, Any]:
    """Validate a CreateThreadRequest, store the thread and its initial messages; returns the thread."""
    check_thread_create(body, param_prefix)
    with state.store.transaction():
        resources = vector_stores.resolve_helper(state, body.get("tool_resources"))
        vector_stores.check_resources_exist(state, resources)
        thread = {
            "id": new_id("thread"),
            "object": "thread",
            "created_at": now(),
            "tool_resources": v.tool_resources_object(resources),
            "metadata": body.get("metadata") or {},
        }
        state.store.insert("thread", thread)
        attached = False
        for message in body.get("messages") or []:
            messages.create_message(state, thread["id"], message)
            attached = attached or bool(vector_stores.file_search_attachments(message.get("attachments") or []))
        # file_search attachments may have given it a vector store (attach_to_thread_store): read it again
        return require_thread(state, thread["id"]) if attached else thread


def modify_thread(state, thread_id: str, body: dict[str, Any]) -> dict[str, Any]:
    v.check_fields(body, ("tool_resources", "metadata"))
    v.check_optional(body, {"tool_resources": v.check_tool_resources, "metadata": v.check_metadata})

    vector_stores.check_resources_exist(state, body.get("tool_resources"))

    def change(thread: dict[str, Any]) -> None:
        if "tool_resources" in body:
            thread["tool_resources"] = v.merge_tool_resources(thread["tool_resources"], body["tool_resources"])
        if "metadata" in body:
            thread["metadata"] = body["metadata"] or {}

    thread = state.store.update("thread", thread_id, change)
    if thread is None:
        raise not_found("thread", thread_id)
    return thread


def delete_thread(state, thread_id: str) -> None:
    """Remove the thread with its messages, runs and their steps."""
    with state.store.transaction():
        require_thread(state, thread_id)
        for run in state.store.all("run", thread_id):
            state.store.delete_children(run["id"])
        state.store.delete_children(thread_id)
        state.store.delete("thread", thread_id)


@stored_with_body
def create(state, request, body):
    return ok(create_thread(state, body))


@stored
def retrieve(state, request):
    return ok(require_thread(state, request.path_params["thread_id"]))


@stored_with_body
def modify(state, request, body):
    return ok(modify_thread(state, request.path_params["thread_id"], body))


@threaded  # the thread's messages and runs: as many as it has
def delete(state, request):
    thread_id = request.path_params["thread_id"]
    delete_thread(state, thread_id)
    return deleted(thread_id, "thread.deleted")


routes = [
    Route("/v1/threads", create, methods=["POST"]),
    Route("/v1/threads/{thread_id}", retrieve, methods=["GET"]),
    Route("/v1/threads/{thread_id:thread_id}", modify, methods=["POST"]),
    Route("/v1/threads/{thread_id}", delete, methods=["DELETE"]),
]
