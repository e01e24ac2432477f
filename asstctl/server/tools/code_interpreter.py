"""code_interpreter: the model's Python runs in the thread's sandbox session (asstctl.server.sandbox).

The files of the assistant's and the thread's ``tool_resources.code_interpreter.file_ids`` and of
the thread's message attachments for code_interpreter are copied into ``/mnt/data`` (once per
session). Matplotlib figures come back as PNG files and files the code writes to ``/mnt/data`` as
files, both of purpose ``assistants_output``. The store is read and written off the event loop
(``store.call``): before the call, the files the session lacks are read into spools; after it, its
outputs are stored within the quotas.
"""

from __future__ import annotations

import functools
import logging
import os
import secrets
import tempfile
from dataclasses import replace
from typing import Any, Iterable, Iterator

from asstctl.server.http import new_id, now
from asstctl.server.sandbox import (
    CellResult,
    InputFile,
    SandboxConfig,
    SandboxUnavailable,
    SessionPool,
    SessionsBusy,
    safe_name,
)
from asstctl.server.tools.base import ToolContext, ToolError, ToolOutcome

log = logging.getLogger("asstctl.server.tools")
NAME = "python"
SPOOL_MEMORY = 1 << 20  # an input file read for a session is kept in memory up to this, then on disk
SPOOL_CHUNK = 1 << 20
QUOTA_KIND = "code_interpreter_output"  # {"id": "run:<id>" | "thread:<id>", "bytes"}, a child of the thread
DESCRIPTION = (
    "Run Python code in a stateful sandbox (variables persist between calls of this conversation). "
    "Files the user provided are in /mnt/data; save files there to give them to the user and refer to "
    "them as sandbox:/mnt/data/<name>. Matplotlib figures are shown to the user as images. "
    "Print what you need to see. No internet access. numpy, pandas, matplotlib and sympy are available "
    "when installed on the server."
)


class CodeInterpreterTool:
    type = "code_interpreter"

    def __init__(self, state: Any):
        self.state = state
        config = getattr(state.config, "sandbox", None)
        self.config: SandboxConfig = config if isinstance(config, SandboxConfig) else SandboxConfig()
        self.pool = SessionPool(self.config)
        self.plain_pool: SessionPool | None = None  # the project's own rule code when bwrap is missing
        state.extra.setdefault("shutdown", []).append(self.aclose)  # run on the server's loop
        if self.config.unsafe:
            log.warning("code_interpreter: --unsafe-code-interpreter is on: model code runs WITHOUT a sandbox, "
                        "with this server's user and files. Never use it with untrusted input.")

    def definition(self, tool: dict[str, Any]) -> dict[str, Any]:
        parameters = {"type": "object", "properties": {"code": {"type": "string", "description": "Python code to run."}},
                      "required": ["code"], "additionalProperties": False}
        return {"type": "function", "function": {"name": NAME, "description": DESCRIPTION, "parameters": parameters}}

    async def run(self, ctx: ToolContext, arguments: dict[str, Any]) -> ToolOutcome:
        code = arguments.get("code")
        if not isinstance(code, str):
            return self._outcome(ctx, "", [], "Error: call python with {\"code\": \"<Python source>\"}.")
        ctx.progress({"code_interpreter": {"input": code}})
        pool, key, store = self._pool(ctx), ctx.thread.get("id") or ctx.run["thread_id"], self.state.store
        files = await store.call(self._staged, ctx, _present(pool, key))  # the store's reads, off the loop
        try:
            result = await pool.run(key, code, files)
        except SandboxUnavailable as error:
            raise ToolError(str(error), code="server_error") from error
        except SessionsBusy as error:
            raise ToolError(str(error), code="rate_limit_exceeded") from error
        finally:
            for file in files:
                file.spool.close()
        images, written = await store.call(self._kept, ctx, result)  # the outputs stored, off the loop
        outputs = _outputs(result, images)
        ctx.progress({"code_interpreter": {"outputs": [{"index": i, **o} for i, o in enumerate(outputs)]}})
        return self._outcome(ctx, code, outputs, _model_text(result, images, written), images, written)

    def _outcome(self, ctx, code, outputs, text, images=(), written=()) -> ToolOutcome:
        call = {"id": ctx.call_id, "type": "code_interpreter",
                "code_interpreter": {"input": code, "outputs": outputs}}
        return ToolOutcome(call=call, output=text, image_file_ids=list(images), written_files=list(written))

    def _pool(self, ctx: ToolContext) -> SessionPool:
        """The sandbox; without bwrap, the project's own offline ``code:`` rule runs as a plain subprocess."""
        if self.config.unsafe or not ctx.code_from_rules or self.config.bwrap_path() is not None:
            return self.pool
        if self.plain_pool is None:
            log.warning("code_interpreter: bwrap is not installed: the project's own offline `code:` rules run as "
                        "a plain subprocess (its own limits, no sandbox: docs/engine.md); code from a model never does.")
            self.plain_pool = SessionPool(replace(self.config, unsafe=True))
        return self.plain_pool

    async def aclose(self) -> None:
        for pool in (self.pool, self.plain_pool):
            if pool is not None:
                await pool.aclose()

    def _quota(self, ctx: ToolContext) -> "_Quota":
        """What the run and the thread have stored so far (kept in the store: every replica and restart
        counts the same bytes)."""
        thread_id = ctx.thread.get("id") or ctx.run.get("thread_id") or ""
        limits = {f"run:{ctx.run.get('id')}": self.config.run_output_mb, f"thread:{thread_id}": self.config.thread_output_mb}
        store = self.state.store
        stored = {key: int((store.get(QUOTA_KIND, key, thread_id) or {}).get("bytes") or 0) for key in limits}
        return _Quota(stored, limits, thread_id)

    def _kept(self, ctx: ToolContext, result: CellResult) -> tuple[list[str], list[tuple[str, str]]]:
        """(image file ids, [(path, file id)]): what the call produced, stored within the quotas (those
        refused go to ``result.skipped``). On a store thread."""
        quota = self._quota(ctx)
        images = [self._store(f"image-{secrets.token_hex(4)}.png", data) for data in quota(result.images, "an image")]
        kept = quota(result.files, None)
        written = [(path, self._store(_shown_path(path), data)) for path, data in kept]
        quota.save(self.state.store)
        result.skipped += quota.refused
        return images, written

    def _staged(self, ctx: ToolContext, present: set[str]) -> list["_Staged"]:
        """The files the run's code may read (on a store thread): each one the thread's session lacks
        (``present``: the versions it has) read from the store into a spool (memory up to ``SPOOL_MEMORY``,
        then a temporary file), so the sandbox copies it in without a store read on the loop."""
        store, names, files = self.state.store, {}, []
        limit = int(self.config.file_mb) * 1024 * 1024
        for file_id in _file_ids(ctx, store):
            if file_id in names:
                continue
            file = store.get("file", file_id)
            if file is None:
                continue
            size = store.blob_size(file_id)
            name = safe_name(os.path.basename(file.get("filename") or ""), file_id)
            if name in names.values():
                name = safe_name(f"{file_id}-{name}", file_id)
            names[file_id] = name
            if size is None:  # named in the call's logs
                files.append(_Staged(key=f"{file_id}:missing", name=name, size=0, chunks=lambda: (),
                                     problem=f"the stored bytes of {file_id} are missing"))
                continue
            staged = _Staged(key=f"{file_id}:{size}:{file.get('created_at')}", name=name, size=size, chunks=lambda: ())
            if staged.key not in present and size <= limit:
                staged.fill(store.read_blob(file_id) or ())
            else:  # the session has it (or it is over the limit: refused unread); read on the loop only if
                # the session ended between this look and the call (a new one is given every file)
                staged.chunks = lambda file_id=file_id: store.read_blob(file_id) or ()
            files.append(staged)
        return files
    def _store(self, filename: str, data: bytes) -> str:
        """A new file of purpose ``assistants_output``; returns its id. Its object and its bytes are written
        in one transaction: neither without the other."""
        file = {"id": new_id("file"), "object": "file", "bytes": len(data),
                "created_at": now(), "filename": filename, "purpose": "assistants_output",
                "status": "processed"}
        store = self.state.store
        with store.transaction():
            store.write_blob(file["id"], [data])
            store.insert("file", file)
        return file["id"]


def _file_ids(ctx: ToolContext, store: Any) -> list[str]:
    ids: list[str] = []
    for owner in (ctx.assistant, ctx.thread):
        resources = (owner or {}).get("tool_resources") or {}
        ids += (resources.get("code_interpreter") or {}).get("file_ids") or []
    thread_id = ctx.thread.get("id") or ctx.run.get("thread_id")
    for message in store.all("message", thread_id) if thread_id else []:
        for attachment in message.get("attachments") or []:
            if any(t.get("type") == "code_interpreter" for t in attachment.get("tools") or []):
                ids.append(attachment["file_id"])
    return ids


class _Staged(InputFile):
    """An input file whose bytes were read off the loop into a spool (``fill``); ``chunks`` reads them back."""

    def __init__(self, **fields: Any):
        super().__init__(**fields)
        self.spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_MEMORY, prefix="asstctl-input-")

    def fill(self, chunks: Iterable[bytes]) -> None:
        for chunk in chunks:
            self.spool.write(chunk)
        self.chunks = self._spooled

    def _spooled(self) -> Iterator[bytes]:
        self.spool.seek(0)  # from the start each time (a session that ended is given the file again)
        return iter(functools.partial(self.spool.read, SPOOL_CHUNK), b"")


def _present(pool: SessionPool, key: str) -> set[str]:
    """The file versions the thread's live session has already (copied once per session)."""
    session = pool.sessions.get(key)
    return set(session.files) if session is not None and session.alive and not session.ended_by else set()


def _shown_path(path: str) -> str:
    return path if path.startswith("/mnt/data/") else "/mnt/data/" + os.path.basename(path)


def _outputs(result: CellResult, images: list[str]) -> list[dict[str, Any]]:
    outputs: list[dict[str, Any]] = []
    logs = result.logs
    if result.truncated:
        logs += f"\n[output truncated: {result.truncated} more bytes (--code-output-bytes)]"
    if logs:
        outputs.append({"type": "logs", "logs": logs})
    outputs += [{"type": "image", "image": {"file_id": file_id}} for file_id in images]
    return outputs


def _model_text(result: CellResult, images: list[str], written: list[tuple[str, str]]) -> str:
    """What the model reads back: the logs, then what else the call produced."""
    parts = [result.logs or ("" if result.error else "(no output)")]
    if result.truncated:
        parts.append(f"[output truncated: {result.truncated} more bytes were not kept (--code-output-bytes)]")
    if images:
        parts.append(f"[{len(images)} image(s) shown to the user]")
    for path, _ in written:
        parts.append(f"[file saved: sandbox:{_shown_path(path)}]")
    for path, why in result.skipped:
        parts.append(f"[file not returned: {path}: {why}]")
    return "\n".join(part for part in parts if part)


class _Quota:
    """Output files a call may still store under the quotas per run and per thread."""

    def __init__(self, stored: dict[str, int], limits: dict[str, int], thread_id: str):
        self.stored, self.limits, self.refused, self.thread_id = stored, limits, [], thread_id
        self.before = dict(stored)

    def __call__(self, items: list, label: str | None) -> list:
        kept = []
        for item in items:
            data = item if label else item[1]
            over = [key for key, mb in self.limits.items() if self.stored.get(key, 0) + len(data) > mb * 1024 * 1024]
            if over:
                scope = over[0].partition(":")[0]
                mb = self.limits[over[0]]
                self.refused.append((label or item[0], f"the quota of {mb} MB of output files per {scope} is used up "
                                                       f"(--code-{scope}-output-mb)"))
                continue
            for key in self.limits:
                self.stored[key] = self.stored.get(key, 0) + len(data)
            kept.append(item)
        return kept

    def save(self, store: Any) -> None:
        """The counts, as children of the thread (they go with it)."""
        if self.stored != self.before:
            with store.transaction():
                for key, size in self.stored.items():
                    store.save(QUOTA_KIND, {"id": key, "bytes": size}, self.thread_id)
