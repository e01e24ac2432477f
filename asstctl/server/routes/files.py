"""Routes: files (multipart upload, retrieve, list, delete, content). No OpenAI-Beta header.

Store: kind ``file`` (parent ""), bytes in ``blobs`` under the file id. Uploads are
``processed`` at once. Deleting a file removes it from every vector store.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from asstctl.server import validation as v
from asstctl.server.app import state_of
from asstctl.server.errors import APIError, invalid, missing_parameter, unknown_parameter
from asstctl.server.http import deleted, list_envelope, list_params, new_id, now, ok
from asstctl.server.routes import vector_stores

PURPOSES = ("assistants", "batch", "fine-tune", "vision", "user_data", "evals")
FORM_FIELDS = ("file", "purpose", "expires_after[anchor]", "expires_after[seconds]")


async def _form(request: Request):
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise APIError(400, "Invalid request: uploads must be sent as multipart/form-data.", code="invalid_request")
    form = await request.form()
    try:
        _check_form(form)
    except APIError:
        await form.close()
        raise
    return form


def _check_form(form) -> None:
    for key in form:
        if key not in FORM_FIELDS:
            raise unknown_parameter(key)
    for key in ("file", "purpose"):
        if key not in form:
            raise missing_parameter(key)
    if isinstance(form["file"], str):
        raise invalid("file", "Invalid type for 'file': expected a file, but got a string instead.", "invalid_type")
    v.check_enum(form["purpose"], "purpose", PURPOSES)


def _expires_at(form, created: int) -> int | None:
    """``expires_after[anchor]=created_at`` + ``expires_after[seconds]`` (3600–2592000) → ``expires_at``."""
    anchor, seconds = form.get("expires_after[anchor]"), form.get("expires_after[seconds]")
    if anchor is None and seconds is None:
        return None
    if anchor is None or seconds is None:
        raise missing_parameter("expires_after[seconds]" if seconds is None else "expires_after[anchor]")
    v.check_enum(anchor, "expires_after.anchor", ("created_at",))
    try:
        value = int(seconds)
    except ValueError:
        raise invalid(
            "expires_after.seconds",
            f"Invalid type for 'expires_after.seconds': expected an integer, but got '{seconds}' instead.",
            "invalid_type",
        )
    v.check_number(value, "expires_after.seconds", 3600, 2_592_000, nullable=False, integer=True)
    return created + value


async def upload(request: Request):
    state = state_of(request)
    form = await _form(request)
    try:
        created = now()
        expires_at = _expires_at(form, created)
        data = await form["file"].read()
    finally:
        await form.close()
    file: dict[str, Any] = {
        "id": new_id("file"),
        "object": "file",
        "bytes": len(data),
        "created_at": created,
        "filename": form["file"].filename or "upload",
        "purpose": form["purpose"],
        "status": "processed",
    }
    if expires_at is not None:
        file["expires_at"] = expires_at
    with state.store.transaction():
        state.store.put_blob(file["id"], data)
        state.store.insert("file", file)
    return ok(file)


async def list_files(request: Request):
    params = list_params(request, max_limit=10_000, default_limit=10_000)
    params["before"] = None  # /files has no `before`
    purpose = request.query_params.get("purpose")
    where = (lambda f: f["purpose"] == purpose) if purpose else None
    items, has_more = state_of(request).store.page("file", "", **params, where=where)
    return ok(list_envelope(items, has_more))


async def retrieve(request: Request):
    return ok(vector_stores.require_file(state_of(request), request.path_params["file_id"]))


async def delete(request: Request):
    state, file_id = state_of(request), request.path_params["file_id"]
    with state.store.transaction():
        vector_stores.require_file(state, file_id)
        vector_stores.detach_file_everywhere(state, file_id)
        state.store.delete("file", file_id)
        state.store.delete_blob(file_id)
    return deleted(file_id, "file")


async def content(request: Request):
    state, file_id = state_of(request), request.path_params["file_id"]
    vector_stores.require_file(state, file_id)
    return Response(state.store.get_blob(file_id) or b"", media_type="application/octet-stream")


routes = [
    Route("/v1/files", upload, methods=["POST"]),
    Route("/v1/files", list_files, methods=["GET"]),
    Route("/v1/files/{file_id}", retrieve, methods=["GET"]),
    Route("/v1/files/{file_id}", delete, methods=["DELETE"]),
    Route("/v1/files/{file_id}/content", content, methods=["GET"]),
]
