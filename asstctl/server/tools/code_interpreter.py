"""code_interpreter: the model's Python runs in the thread's sandbox session (asstctl.server.sandbox).

The files of the assistant's and the thread's ``tool_resources.code_interpreter.file_ids`` and of
the thread's message attachments for code_interpreter are copied into ``/mnt/data`` (once per
session). Matplotlib figures come back as PNG files and files the code writes to ``/mnt/data`` as
files, both of purpose ``assistants_output``.
"""

from __future__ import annotations

import logging
import os
import secrets
from typing import Any, Iterable

from asstctl.server.http import new_id, now
from asstctl.server.sandbox import CellResult, SandboxConfig, SandboxUnavailable, SessionPool
from asstctl.server.tools.base import ToolContext, ToolError, ToolOutcome

log = logging.getLogger("asstctl.server.tools")
NAME = "python"
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
        state.extra.setdefault("shutdown", []).append(self.pool.aclose)  # run on the server's loop
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
        try:
            result = await self.pool.run(ctx.thread.get("id") or ctx.run["thread_id"], code, self._files(ctx))
        except SandboxUnavailable as error:
            raise ToolError(str(error), code="server_error") from error
        images = [self._store(f"image-{secrets.token_hex(4)}.png", data) for data in result.images]
        written = [(path, self._store(_shown_path(path), data)) for path, data in result.files]
        outputs = _outputs(result, images)
        ctx.progress({"code_interpreter": {"outputs": [{"index": i, **o} for i, o in enumerate(outputs)]}})
        return self._outcome(ctx, code, outputs, _model_text(result, images, written), images, written)

    def _outcome(self, ctx, code, outputs, text, images=(), written=()) -> ToolOutcome:
        call = {"id": ctx.call_id, "type": "code_interpreter",
                "code_interpreter": {"input": code, "outputs": outputs}}
        return ToolOutcome(call=call, output=text, image_file_ids=list(images), written_files=list(written))

    def _files(self, ctx: ToolContext) -> Iterable[tuple[str, str, bytes]]:
        """(file id, name in /mnt/data, bytes) of every file the run's code may read."""
        store, names = self.state.store, {}
        for file_id in _file_ids(ctx, store):
            if file_id in names:
                continue
            file = store.get("file", file_id)
            chunks = store.read_blob(file_id) if file else None
            data = b"".join(chunks) if chunks is not None else None
            if file is None or data is None:
                continue
            name = os.path.basename(file.get("filename") or file_id) or file_id
            if name in names.values():
                name = f"{file_id}-{name}"
            names[file_id] = name
            yield file_id, name, data

    def _store(self, filename: str, data: bytes) -> str:
        """A new file of purpose ``assistants_output``; returns its id."""
        file = {"id": new_id("file"), "object": "file", "bytes": len(data),
                "created_at": now(), "filename": filename, "purpose": "assistants_output",
                "status": "processed"}
        store = self.state.store
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


def _shown_path(path: str) -> str:
    return path if path.startswith("/mnt/data/") else "/mnt/data/" + os.path.basename(path)


def _outputs(result: CellResult, images: list[str]) -> list[dict[str, Any]]:
    outputs: list[dict[str, Any]] = []
    logs = result.logs
    if result.truncated:
        logs += f"\n[output truncated: {result.truncated} more bytes]"
    if logs:
        outputs.append({"type": "logs", "logs": logs})
    outputs += [{"type": "image", "image": {"file_id": file_id}} for file_id in images]
    return outputs


def _model_text(result: CellResult, images: list[str], written: list[tuple[str, str]]) -> str:
    """What the model reads back: the logs, then what else the call produced."""
    parts = [result.logs or ("" if result.error else "(no output)")]
    if result.truncated:
        parts.append(f"[output truncated: {result.truncated} more bytes were not kept]")
    if images:
        parts.append(f"[{len(images)} image(s) shown to the user]")
    for path, _ in written:
        parts.append(f"[file saved: sandbox:{_shown_path(path)}]")
    for path in result.skipped:
        parts.append(f"[file too big to return: {path}]")
    return "\n".join(part for part in parts if part)
