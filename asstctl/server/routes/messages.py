"""Routes: messages of a thread (create / retrieve / modify metadata / delete / list).

``create_message(state, thread_id, body, ...)`` is a plain function the run engine also uses
to store assistant messages. Store: kind ``message``, parent = thread id.
"""

from __future__ import annotations

from typing import Any

from starlette.routing import Route

from asstctl.server import validation as v
from asstctl.server.app import stored, stored_with_body
from asstctl.server.errors import APIError
from asstctl.server.http import deleted, list_envelope, list_params, new_id, now, ok, require
from asstctl.server.routes import lookup, vector_stores


def create_message(
    state,
    thread_id: str,
    body: dict[str, Any],
    *,
    run_id: str | None = None,
    assistant_id: str | None = None,
    role: str | None = None,
    status: str = "completed",
) -> dict[str, Any]:
    """Store a message built from an already validated CreateMessageRequest-like ``body``.

    ``body["content"]`` may be a string, request content parts, or ``[]`` (an in-progress
    assistant message). ``role`` overrides ``body["role"]``. The caller checks the thread exists.
    Attachments for ``file_search`` go into the thread's vector store (made on first use).
    """
    created = now()
    message = {
        "id": new_id("message"),
        "object": "thread.message",
        "created_at": created,
        "thread_id": thread_id,
        "status": status,
        "incomplete_details": None,
        "completed_at": created if status == "completed" else None,
        "incomplete_at": None,
        "role": role or body.get("role", "user"),
        "content": v.message_content(body.get("content", [])),
        "assistant_id": assistant_id,
        "run_id": run_id,
        "attachments": body.get("attachments") or [],
        "metadata": body.get("metadata") or {},
    }
    searched = vector_stores.file_search_attachments(message["attachments"])
    with state.store.transaction():
        for file_id in dict.fromkeys(a["file_id"] for a in message["attachments"] if a["file_id"] not in searched):
            vector_stores.require_file(state, file_id)  # e.g. code_interpreter's: a file of this project (else 404)
        vector_stores.attach_to_thread_store(state, thread_id, searched)
        return state.store.insert("message", message, thread_id)


def require_message(state, thread_id: str, message_id: str) -> dict[str, Any]:
    lookup.require_thread(state, thread_id)
    return require(state, "message", message_id, thread_id)


def add_user_message(state, thread_id: str, body: dict[str, Any]) -> dict[str, Any]:
    """``POST /threads/{id}/messages``: refused while a run on the thread is active."""
    lookup.require_thread(state, thread_id)
    v.check_message_create(body)
    with state.store.transaction():
        run = lookup.active_run(state, thread_id)
        if run is not None:
            raise APIError(400, f"Can't add messages to {thread_id} while a run {run['id']} is active.")
        return create_message(state, thread_id, body)


@stored_with_body
def create(state, request, body):
    return ok(add_user_message(state, request.path_params["thread_id"], body))


@stored
def retrieve(state, request):
    params = request.path_params
    return ok(require_message(state, params["thread_id"], params["message_id"]))


@stored_with_body
def modify(state, request, body):
    params = request.path_params
    v.check_fields(body, ("metadata",))
    v.check_optional(body, {"metadata": v.check_metadata})
    message = require_message(state, params["thread_id"], params["message_id"])
    if "metadata" in body:
        message["metadata"] = body["metadata"] or {}
        state.store.put("message", message, params["thread_id"])
    return ok(message)


@stored
def delete(state, request):
    params = request.path_params
    require_message(state, params["thread_id"], params["message_id"])
    state.store.delete("message", params["message_id"], params["thread_id"])
    return deleted(params["message_id"], "thread.message.deleted")


@stored
def list_messages(state, request):
    thread_id = request.path_params["thread_id"]
    lookup.require_thread(state, thread_id)
    run_id = request.query_params.get("run_id")
    where = (lambda m: m.get("run_id") == run_id) if run_id else None
    items, has_more = state.store.page("message", thread_id, **list_params(request), where=where)
    return ok(list_envelope(items, has_more))


routes = [
    Route("/v1/threads/{thread_id}/messages", create, methods=["POST"]),
    Route("/v1/threads/{thread_id}/messages", list_messages, methods=["GET"]),
    Route("/v1/threads/{thread_id}/messages/{message_id}", retrieve, methods=["GET"]),
    Route("/v1/threads/{thread_id}/messages/{message_id}", modify, methods=["POST"]),
    Route("/v1/threads/{thread_id}/messages/{message_id}", delete, methods=["DELETE"]),
]
