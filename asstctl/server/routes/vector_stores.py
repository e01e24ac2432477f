"""Routes: vector stores, their files, file batches, file content and search.

Store: ``vector_store`` (parent ""), ``vector_store_file`` (id = file id, parent = store id),
``file_batch`` (parent = store id; its member file ids kept in the private ``_file_ids``).

Ingestion runs off the loop (``asstctl.server.ingestion``): attaching a file commits it
``in_progress``, then worker processes extract and chunk it (per ``chunking_strategy``) and it is
indexed. The attach, store-create and batch-create responses wait up to ``INGEST_WAIT`` seconds
for it (so small files come back ``completed`` and the SDK's ``*_and_poll`` helpers finish on their
first poll), without holding up any other request; ``file_counts`` and ``usage_bytes`` stay exact.
A file that cannot be read, or hits a limit, ends ``failed`` with ``last_error``
(``unsupported_file`` / ``invalid_file``, the message naming the limit; ``server_error`` when the
embeddings upstream fails). The ``file_search`` tool waits for its stores' files the same way. **Injected failure**, only
where a test switches it on (``Faults.ingest_fail_marker``): a file whose bytes contain the marker
ends ``failed`` with ``last_error = {"code": "invalid_file", ...}``.

Search (``POST /vector_stores/{id}/search``): ``asstctl.server.routes.vector_store_search``.
"""

from __future__ import annotations

from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.routing import Route

from asstctl.server import references
from asstctl.server import validation as v
from asstctl.server.app import state_of
from asstctl.server.errors import APIError, invalid, missing_parameter, not_found
from asstctl.server.http import deleted, json_body, list_envelope, list_params, new_id, now, ok, require
from asstctl.server.ingestion import WAIT as INGEST_WAIT, Ingestion, new_token

FILE_STATUSES = ("in_progress", "completed", "failed", "cancelled")
STORE_FIELDS = ("file_ids", "name", "description", "expires_after", "chunking_strategy", "metadata")


def public(obj: dict[str, Any]) -> dict[str, Any]:
    """The object without private (``_``-prefixed) bookkeeping keys."""
    return {k: val for k, val in obj.items() if not k.startswith("_")}


def empty_counts() -> dict[str, int]:
    return {"in_progress": 0, "completed": 0, "failed": 0, "cancelled": 0, "total": 0}


# --------------------------------------------------------------------------- validation


def check_expires_after(value: Any, param: str, nullable: bool = False) -> None:
    if not v.check_type(value, param, "object", nullable):
        return
    v.check_fields(value, ("anchor", "days"), ("anchor", "days"), param)
    v.check_enum(value["anchor"], v.path(param, "anchor"), ("last_active_at",))
    v.check_number(value["days"], v.path(param, "days"), 1, 365, nullable=False, integer=True)


def check_store_create(body: dict[str, Any], param_prefix: str = "") -> None:
    v.check_fields(body, STORE_FIELDS, (), param_prefix)
    v.check_optional(
        body,
        {
            "file_ids": lambda val, p: v.check_string_array(val, p, 500),
            "name": lambda val, p: v.check_string(val, p),
            "description": lambda val, p: v.check_string(val, p),
            "expires_after": check_expires_after,
            "chunking_strategy": v.check_chunking_strategy,
            "metadata": v.check_metadata,
        },
        param_prefix,
    )


# --------------------------------------------------------------------------- vector stores


def require_store(state, vs_id: str) -> dict[str, Any]:
    return require(state, "vector_store", vs_id)


def _expiry(store: dict[str, Any]) -> None:
    after = store.get("expires_after")
    anchor = store.get("last_active_at") or store["created_at"]
    store["expires_at"] = anchor + after["days"] * 86400 if after else None


def create_vector_store(state, body: dict[str, Any], param_prefix: str = "") -> dict[str, Any]:
    """Validate and create a store (attaching ``file_ids``); returns the stored object."""
    check_store_create(body, param_prefix)
    created = now()
    store = {
        "id": new_id("vector_store"),
        "object": "vector_store",
        "created_at": created,
        "name": body.get("name") or "",
        "usage_bytes": 0,
        "file_counts": empty_counts(),
        "status": "completed",
        "last_active_at": created,
        "metadata": body.get("metadata") or {},
    }
    if body.get("expires_after"):
        store["expires_after"] = body["expires_after"]
    _expiry(store)
    with state.store.transaction():
        state.store.insert("vector_store", store)
        for file_id in body.get("file_ids") or []:
            attach_file(state, store["id"], file_id, body.get("chunking_strategy"), None)
        return require_store(state, store["id"])


def resolve_helper(state, tool_resources: dict[str, Any] | None) -> dict[str, Any] | None:
    """Turn ``file_search.vector_stores`` (create helper) into a new store's id in ``vector_store_ids``."""
    helper = ((tool_resources or {}).get("file_search") or {}).get("vector_stores")
    if not helper:
        return tool_resources
    param = "tool_resources.file_search.vector_stores[0]"
    store = create_vector_store(state, helper[0], param)
    file_search = {"vector_store_ids": [store["id"]]}
    return {**tool_resources, "file_search": file_search}


def check_resources_exist(state, tool_resources: dict[str, Any] | None) -> None:
    """Every referenced vector store and code-interpreter file must exist (404 otherwise)."""
    resources = tool_resources or {}
    for vs_id in (resources.get("file_search") or {}).get("vector_store_ids") or []:
        require_store(state, vs_id)
    for file_id in (resources.get("code_interpreter") or {}).get("file_ids") or []:
        require_file(state, file_id)


def count_change(state, vs_id: str, before: dict[str, Any] | None, after: dict[str, Any] | None) -> dict[str, Any] | None:
    """Move the store's ``file_counts``, ``usage_bytes`` and ``status`` from a file's ``before`` to
    its ``after`` (either None: the file was not / is no longer in the store). Constant time: the
    counts are kept, never recounted; callers change the file and its counts in one transaction
    (write transactions are serialized, so concurrent attaches add up)."""
    return counts_changed(state, vs_id, [(before, after)])


def counts_changed(state, vs_id: str, changes: list[tuple[dict | None, dict | None]]) -> dict[str, Any] | None:
    """``count_change`` for many files' ``(before, after)`` at once: one write of the store."""

    def change(store: dict[str, Any]) -> None:
        counts = store["file_counts"]
        for before, after in changes:
            for item, sign in ((before, -1), (after, 1)):
                if item is not None:
                    counts[item["status"]] += sign
                    counts["total"] += sign
                    store["usage_bytes"] += sign * item["usage_bytes"]
        if store["status"] != "expired":
            store["status"] = "in_progress" if counts["in_progress"] else "completed"

    return state.store.update("vector_store", vs_id, change)


def touch(state, vs_id: str) -> dict[str, Any]:
    """Mark the store active now (moves ``expires_at`` with an ``expires_after`` policy)."""

    def change(store: dict[str, Any]) -> None:
        store["last_active_at"] = now()
        _expiry(store)

    return state.store.update("vector_store", vs_id, change)


def modify_store(state, vs_id: str, body: dict[str, Any]) -> dict[str, Any]:
    v.check_fields(body, ("name", "expires_after", "metadata"))
    v.check_optional(
        body,
        {
            "name": lambda val, p: v.check_string(val, p, nullable=True),
            "expires_after": lambda val, p: check_expires_after(val, p, nullable=True),
            "metadata": v.check_metadata,
        },
    )

    def change(store: dict[str, Any]) -> None:
        if "name" in body:
            store["name"] = body["name"] or ""
        if "expires_after" in body:
            store.pop("expires_after", None)
            if body["expires_after"]:
                store["expires_after"] = body["expires_after"]
            _expiry(store)
        if "metadata" in body:
            store["metadata"] = body["metadata"] or {}

    store = state.store.update("vector_store", vs_id, change)
    if store is None:
        raise not_found("vector_store", vs_id)
    return store


def delete_store(state, vs_id: str) -> None:
    with state.store.transaction():
        require_store(state, vs_id)
        from asstctl.server.retrieval import retriever_of

        retriever_of(state).remove_store(vs_id)
        state.store.delete_children(vs_id)
        state.store.delete("vector_store", vs_id)
        references.drop_vector_store(state.store, vs_id)


# --------------------------------------------------------------------------- files in stores


def require_file(state, file_id: str) -> dict[str, Any]:
    return require(state, "file", file_id)


def ingestion_of(state) -> Ingestion:
    return state.extra["ingestion"]


def setup(state) -> None:
    """The ingestion pool, started and stopped with the server (unfinished files resume on start)."""
    ingestion = Ingestion(state, lambda item, status, error: finish_ingest(state, item, status, error))
    state.extra["ingestion"] = ingestion
    state.extra.setdefault("startup", []).append(ingestion.startup)
    state.extra.setdefault("shutdown", []).append(ingestion.shutdown)
    state.extra.setdefault("stopping", []).append(ingestion.stopping)


def finish_ingest(state, item: dict[str, Any], status: str, error: dict[str, str] | None) -> None:
    """Record a file's ingestion outcome (inside the transaction that indexed it) and the store's counts."""
    file = state.store.get("file", item["id"])
    before = dict(item)
    item.update(status=status, last_error=error, usage_bytes=file["bytes"] if file and status == "completed" else 0)
    state.store.put("vector_store_file", item, item["vector_store_id"])
    count_change(state, item["vector_store_id"], before, item)


def attach_file(
    state,
    vs_id: str,
    file_id: str,
    chunking: dict[str, Any] | None,
    attributes: dict[str, Any] | None,
    *,
    batch_id: str | None = None,
) -> dict[str, Any]:
    """Add (or re-add) a file to a store ``in_progress``; its ingestion starts once this commits."""
    return attach_files(state, vs_id, [(file_id, chunking, attributes)], batch_id=batch_id)[0]


def attach_files(state, vs_id: str, entries: list[tuple[str, dict | None, dict | None]], *,
                 batch_id: str | None = None) -> list[dict[str, Any]]:
    """``attach_file`` for many ``(file id, chunking, attributes)`` in one transaction: the files and the
    store's present records read by id in one query per 500, the new records queued, the store's counts
    written once (PostgreSQL: a 2,000-file batch is a few round trips, not four per file)."""
    ids = [file_id for file_id, _, _ in entries]
    files = state.store.get_many("file", "", ids)
    for file_id in ids:
        if file_id not in files:
            require_file(state, file_id)  # the API's 404 (or a file of another parent)
    items = []
    with state.store.transaction():
        present = state.store.get_many("vector_store_file", vs_id, ids)
        changes = []
        for file_id, chunking, attributes in entries:
            item = {
                "id": file_id,
                "object": "vector_store.file",
                "usage_bytes": 0,
                "created_at": now(),
                "vector_store_id": vs_id,
                "status": "in_progress",
                "last_error": None,
                "chunking_strategy": v.resolve_chunking(chunking),
                "attributes": attributes or {},
                "_ingest": new_token(),
            }
            if batch_id:
                item["_batch_id"] = batch_id
            before = present.get(file_id)
            if before is not None:  # re-added (or twice in this batch): the record starts over
                state.store.delete("vector_store_file", file_id, vs_id)
            state.store.insert("vector_store_file", item, vs_id)
            present[file_id] = item
            changes.append((before, item))
            items.append(item)
            state.store.after_commit(lambda f=file_id, c=chunking, t=item["_ingest"]: ingestion_of(state).submit(vs_id, f, c, t))
        counts_changed(state, vs_id, changes)
    return items


THREAD_STORE_EXPIRY = {"anchor": "last_active_at", "days": 7}


def file_search_attachments(attachments: list[dict[str, Any]] | None) -> list[str]:
    """File ids of message attachments that name the ``file_search`` tool (in order, no repeats)."""
    ids = []
    for item in attachments or []:
        if any(tool.get("type") == "file_search" for tool in item.get("tools") or []) and item["file_id"] not in ids:
            ids.append(item["file_id"])
    return ids


def attach_to_thread_store(state, thread_id: str, file_ids: list[str]) -> str | None:
    """Put files into the thread's vector store, creating it on first use (7 days after last activity)."""
    if not file_ids:
        return None
    with state.store.transaction():
        thread = state.store.get("thread", thread_id)
        resources = thread.get("tool_resources") or {}
        ids = (resources.get("file_search") or {}).get("vector_store_ids") or []
        if ids:
            vs_id = ids[0]
        else:
            vs_id = create_vector_store(state, {"expires_after": dict(THREAD_STORE_EXPIRY)})["id"]
            thread["tool_resources"] = {**resources, "file_search": {"vector_store_ids": [vs_id]}}
            state.store.put("thread", thread)
        present = state.store.get_many("vector_store_file", vs_id, file_ids)
        for file_id in file_ids:
            if file_id not in present:
                attach_file(state, vs_id, file_id, None, None)
    return vs_id


def require_store_file(state, vs_id: str, file_id: str) -> dict[str, Any]:
    require_store(state, vs_id)
    return require(state, "vector_store_file", file_id, vs_id)


def detach_file_everywhere(state, file_id: str) -> None:
    """A deleted file leaves every vector store it was in (counts fixed)."""
    with state.store.transaction():
        for vs_id in state.store.parents_of("vector_store_file", file_id):
            detach_file(state, vs_id, file_id)


def detach_file(state, vs_id: str, file_id: str) -> None:
    """Take a file out of a store: its record, its chunks and its share of the counts."""
    from asstctl.server.retrieval import retriever_of

    with state.store.transaction():
        before = state.store.get("vector_store_file", file_id, vs_id)
        if before is not None and state.store.delete("vector_store_file", file_id, vs_id):
            retriever_of(state).remove(vs_id, file_id)
            count_change(state, vs_id, before, None)


def _list_files(request, vs_id: str, where=None):
    state = state_of(request)
    status = request.query_params.get("filter")
    if status is not None:
        v.check_enum(status, "filter", FILE_STATUSES)
    keep = None if status is None and where is None else (  # none: the store pages with LIMIT, no full read
        lambda item: (status is None or item["status"] == status) and (where is None or where(item)))
    items, has_more = state.store.page("vector_store_file", vs_id, **list_params(request), where=keep)
    return ok(list_envelope([public(i) for i in items], has_more))


# --------------------------------------------------------------------------- batches


def check_batch_create(body: dict[str, Any]) -> None:
    v.check_fields(body, ("file_ids", "files", "chunking_strategy", "attributes"))
    if "file_ids" in body and "files" in body:
        raise invalid("files", "Invalid request: provide either 'file_ids' or 'files', not both.")
    if "file_ids" not in body and "files" not in body:
        raise missing_parameter("file_ids")
    v.check_optional(
        body,
        {
            "file_ids": lambda val, p: v.check_string_array(val, p, 2000, 1),
            "files": _check_batch_files,
            "chunking_strategy": v.check_chunking_strategy,
            "attributes": v.check_attributes,
        },
    )


def _check_batch_files(value: Any, param: str) -> None:
    v.check_array(value, param, 2000, 1)
    for i, item in enumerate(value):
        where = v.path(param, i)
        v.check_fields(item, ("file_id", "chunking_strategy", "attributes"), ("file_id",), where)
        v.check_string(item["file_id"], v.path(where, "file_id"))
        v.check_optional(item, {"chunking_strategy": v.check_chunking_strategy, "attributes": v.check_attributes}, where)


def batch_members(state, batch: dict[str, Any]) -> list[dict[str, Any]]:
    """The batch's files as stored now, read by their ids (the cost follows the batch, not the store)."""
    found = state.store.get_many("vector_store_file", batch["vector_store_id"], batch["_file_ids"])
    return [item for item in found.values() if item.get("_batch_id") == batch["id"]]


def batch_view(state, batch: dict[str, Any], members: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The batch with counts from its member files (``in_progress`` reaches 0 once ingested)."""
    counts = empty_counts()
    for item in members if members is not None else batch_members(state, batch):
        counts[item["status"]] += 1
        counts["total"] += 1
    view = public(batch)
    view["file_counts"] = counts
    if view["status"] == "in_progress" and not counts["in_progress"]:
        view["status"] = "completed"
    return view


def create_batch(state, vs_id: str, body: dict[str, Any]) -> dict[str, Any]:
    check_batch_create(body)
    require_store(state, vs_id)
    entries = body.get("files") or [{"file_id": f} for f in body["file_ids"]]
    batch = {"id": new_id("file_batch"), "object": "vector_store.files_batch", "created_at": now(),
             "vector_store_id": vs_id, "status": "in_progress", "file_counts": empty_counts(),
             "_file_ids": [e["file_id"] for e in entries]}
    with state.store.transaction():
        state.store.insert("file_batch", batch, vs_id)
        attach_files(state, vs_id, [(entry["file_id"], entry.get("chunking_strategy") or body.get("chunking_strategy"),
                                     entry.get("attributes", body.get("attributes"))) for entry in entries],
                     batch_id=batch["id"])
    return batch_view(state, batch)


def require_batch(state, vs_id: str, batch_id: str) -> dict[str, Any]:
    require_store(state, vs_id)
    return require(state, "file_batch", batch_id, vs_id)


def cancel_batch(state, vs_id: str, batch_id: str) -> dict[str, Any]:
    """Checked and done in one transaction: the batch's files not yet ingested end cancelled (their ingestion
    is dropped), the store's counts move once. Its files are read by id: the cost follows the batch."""
    with state.store.transaction():
        batch = require_batch(state, vs_id, batch_id)
        members = batch_members(state, batch)
        view = batch_view(state, batch, members)
        if view["status"] != "in_progress":
            raise APIError(400, f"Cannot cancel a vector store file batch with status '{view['status']}'.")
        changes = [(item, {**item, "status": "cancelled"}) for item in members if item["status"] == "in_progress"]
        for _, cancelled in changes:
            state.store.put("vector_store_file", cancelled, vs_id)
        counts_changed(state, vs_id, changes)
        batch = state.store.update("file_batch", batch_id, lambda b: b.update(status="cancelled"), vs_id)
    after = {item["id"]: item for _, item in changes}
    return batch_view(state, batch, [after.get(item["id"], item) for item in members])


# --------------------------------------------------------------------------- handlers


async def create(request):
    body = await json_body(request)
    state = state_of(request)
    store = await run_in_threadpool(create_vector_store, state, body)
    if store["file_counts"]["in_progress"]:
        await ingestion_of(state).settled([store["id"]], timeout=INGEST_WAIT)
        store = await run_in_threadpool(require_store, state, store["id"])
    return ok(store)


async def list_stores(request):
    items, has_more = await state_of(request).store.call(
        lambda: state_of(request).store.page("vector_store", "", **list_params(request)))
    return ok(list_envelope(items, has_more))


async def retrieve(request):
    return ok(await state_of(request).store.call(require_store, state_of(request), request.path_params["vs_id"]))


async def modify(request):
    body = await json_body(request)
    return ok(await state_of(request).store.call(modify_store, state_of(request), request.path_params["vs_id"], body))


# Work that grows with the data (a store's chunks, a file's chunks, a store's or a batch's files) runs on a
# thread (``run_in_threadpool``), never through ``store.call``: on SQLite that runs inline on the loop
# whenever the store's lock is free (a 10,000-chunk store's delete stalled every request for 0.9 s).
async def delete(request):
    vs_id = request.path_params["vs_id"]
    await run_in_threadpool(delete_store, state_of(request), vs_id)
    return deleted(vs_id, "vector_store.deleted")


async def create_file(request):
    state, vs_id = state_of(request), request.path_params["vs_id"]
    body = await json_body(request)
    v.check_fields(body, ("file_id", "chunking_strategy", "attributes"), ("file_id",))
    v.check_string(body["file_id"], "file_id")
    v.check_optional(body, {"chunking_strategy": v.check_chunking_strategy, "attributes": v.check_attributes})
    await state.store.call(require_store, state, vs_id)
    item = await run_in_threadpool(attach_file, state, vs_id, body["file_id"], body.get("chunking_strategy"),
                                   body.get("attributes"))
    await ingestion_of(state).settled(tokens=[item["_ingest"]], timeout=INGEST_WAIT)
    item = await run_in_threadpool(state.store.get, "vector_store_file", item["id"], vs_id) or item
    return ok(public(item))


async def list_files(request):
    vs_id = request.path_params["vs_id"]

    def listed():
        require_store(state_of(request), vs_id)
        return _list_files(request, vs_id)

    if "filter" in request.query_params:  # read through the store's files: on a thread, never inline on the loop
        return await run_in_threadpool(listed)
    return await state_of(request).store.call(listed)


async def retrieve_file(request):
    state, params = state_of(request), request.path_params
    return ok(public(await state.store.call(require_store_file, state, params["vs_id"], params["file_id"])))


async def update_file(request):
    state, params = state_of(request), request.path_params
    body = await json_body(request)
    v.check_fields(body, ("attributes",), ("attributes",))
    v.check_attributes(body["attributes"])

    def change():
        item = require_store_file(state, params["vs_id"], params["file_id"])
        item["attributes"] = body["attributes"]
        return state.store.put("vector_store_file", item, params["vs_id"])

    return ok(public(await state.store.call(change)))


async def delete_file(request):
    state, params = state_of(request), request.path_params

    def detach():
        require_store_file(state, params["vs_id"], params["file_id"])
        detach_file(state, params["vs_id"], params["file_id"])

    await run_in_threadpool(detach)  # its chunks removed: on a thread
    return deleted(params["file_id"], "vector_store.file.deleted")


async def file_content(request):
    state, params = state_of(request), request.path_params
    await state.store.call(require_store_file, state, params["vs_id"], params["file_id"])
    text = await ingestion_of(state).text(await state.store.call(require_file, state, params["file_id"]))
    data = [{"type": "text", "text": text}]
    return ok({"object": "vector_store.file_content.page", "data": data, "has_more": False, "next_page": None})


async def create_file_batch(request):
    body = await json_body(request)
    state, vs_id = state_of(request), request.path_params["vs_id"]
    view = await run_in_threadpool(create_batch, state, vs_id, body)
    if view["status"] == "in_progress":
        await ingestion_of(state).settled([vs_id], timeout=INGEST_WAIT)
        view = await run_in_threadpool(lambda: batch_view(state, require_batch(state, vs_id, view["id"])))
    return ok(view)


# A batch's routes read up to 2,000 files (its list: the store's): on a thread, as ``delete`` above.
async def retrieve_batch(request):
    state, params = state_of(request), request.path_params
    return ok(await run_in_threadpool(
        lambda: batch_view(state, require_batch(state, params["vs_id"], params["batch_id"]))))


async def cancel(request):
    params = request.path_params
    return ok(await run_in_threadpool(cancel_batch, state_of(request), params["vs_id"], params["batch_id"]))


async def list_batch_files(request):
    state, params = state_of(request), request.path_params

    def listed():
        batch = require_batch(state, params["vs_id"], params["batch_id"])
        return _list_files(request, params["vs_id"], where=lambda item: item.get("_batch_id") == batch["id"])

    return await run_in_threadpool(listed)


VS = "/v1/vector_stores/{vs_id}"
routes = [
    Route("/v1/vector_stores", create, methods=["POST"]),
    Route("/v1/vector_stores", list_stores, methods=["GET"]),
    Route(VS, retrieve, methods=["GET"]),
    Route(VS, modify, methods=["POST"]),
    Route(VS, delete, methods=["DELETE"]),
    Route(VS + "/files", create_file, methods=["POST"]),
    Route(VS + "/files", list_files, methods=["GET"]),
    Route(VS + "/files/{file_id}", retrieve_file, methods=["GET"]),
    Route(VS + "/files/{file_id}", update_file, methods=["POST"]),
    Route(VS + "/files/{file_id}", delete_file, methods=["DELETE"]),
    Route(VS + "/files/{file_id}/content", file_content, methods=["GET"]),
    Route(VS + "/file_batches", create_file_batch, methods=["POST"]),
    Route(VS + "/file_batches/{batch_id}", retrieve_batch, methods=["GET"]),
    Route(VS + "/file_batches/{batch_id}/cancel", cancel, methods=["POST"]),
    Route(VS + "/file_batches/{batch_id}/files", list_batch_files, methods=["GET"]),
]
