"""Routes: files (multipart upload, retrieve, list, delete, content). No OpenAI-Beta header.

Store: kind ``file`` (parent ""), bytes in the store's blobs under the file id, streamed in
and out (``asstctl.server.uploads``; at most ``ServerConfig.max_upload_bytes`` per file).
Uploads are ``processed`` at once. Deleting a file removes it from every vector store.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import ClientDisconnect, Request
from starlette.responses import StreamingResponse
from starlette.routing import Route

from asstctl.server import validation as v
from asstctl.server.app import state_of, stored, threaded
from asstctl.server.errors import APIError, invalid, missing_parameter
from asstctl.server.http import deleted, list_envelope, list_params, new_id, now, ok
from asstctl.server.routes import vector_stores
from asstctl.server.uploads import Upload, receive_upload

PURPOSES = ("assistants", "batch", "fine-tune", "vision", "user_data", "evals")
FORM_FIELDS = ("file", "purpose", "expires_after[anchor]", "expires_after[seconds]")


def _check_form(form: Upload) -> None:
    for key in ("file", "purpose"):
        if key not in form.fields and (key != "file" or form.filename is None):
            raise missing_parameter(key)
    if "file" in form.fields:
        raise invalid("file", "Invalid type for 'file': expected a file, but got a string instead.", "invalid_type")
    v.check_enum(form.fields["purpose"], "purpose", PURPOSES)


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
    file_id, created = new_id("file"), now()
    expires: list[int | None] = []

    def check(form: Upload) -> None:
        _check_form(form)
        expires.append(_expires_at(form.fields, created))

    try:
        form = await receive_upload(
            request, state.store, file_id, limit=state.config.max_upload_bytes, allowed=FORM_FIELDS, check=check
        )
    except ClientDisconnect:
        raise APIError(400, "The client closed the connection before the upload was complete.")
    file: dict[str, Any] = {
        "id": file_id,
        "object": "file",
        "bytes": form.size,
        "created_at": created,
        "filename": form.filename,
        "purpose": form.fields["purpose"],
        "status": "processed",
    }
    if expires[0] is not None:
        file["expires_at"] = expires[0]
    try:
        await state.store.call(state.store.insert, "file", file)
    except BaseException:
        state.store.delete_blob(file_id)
        raise
    return ok(file)


@threaded  # up to 10,000 files (all of them with a purpose)
def list_files(state, request: Request):
    params = list_params(request, max_limit=10_000, default_limit=10_000)
    params["before"] = None  # /files has no `before`
    purpose = request.query_params.get("purpose")
    where = (lambda f: f["purpose"] == purpose) if purpose else None
    items, has_more = state.store.page("file", "", **params, where=where)
    return ok(list_envelope(items, has_more))


@stored
def retrieve(state, request: Request):
    return ok(vector_stores.require_file(state, request.path_params["file_id"]))


@threaded  # the file leaves every store it is in, its chunks removed
def delete(state, request: Request):
    file_id = request.path_params["file_id"]
    with state.store.transaction():
        vector_stores.require_file(state, file_id)
        vector_stores.detach_file_everywhere(state, file_id)
        state.store.delete("file", file_id)
        state.store.delete_blob(file_id)
    return deleted(file_id, "file")


@stored
def content(state, request: Request):
    """The bytes stream from a synchronous iterator: Starlette reads it on its threads, not the loop."""
    file_id = request.path_params["file_id"]
    vector_stores.require_file(state, file_id)
    size = state.store.blob_size(file_id) or 0
    chunks = state.store.read_blob(file_id) or iter(())
    return StreamingResponse(chunks, media_type="application/octet-stream", headers={"content-length": str(size)})


routes = [
    Route("/v1/files", upload, methods=["POST"]),
    Route("/v1/files", list_files, methods=["GET"]),
    Route("/v1/files/{file_id}", retrieve, methods=["GET"]),
    Route("/v1/files/{file_id}", delete, methods=["DELETE"]),
    Route("/v1/files/{file_id}/content", content, methods=["GET"]),
]
