"""One sandboxed Python session: a long-lived REPL process, driven over framed pipes (asyncio)."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import shutil
import signal
import struct
from dataclasses import dataclass, field

from asstctl.server.sandbox.command import SandboxConfig, SandboxUnavailable, command

log = logging.getLogger("asstctl.server.sandbox")
START_SECONDS = 15.0  # bwrap + Python start-up; far above the ~100 ms it takes
PUT_SECONDS = 30.0
MAX_IMAGES = 10  # figures returned per call (the REPL's limit too)
GRACE_SECONDS = 5.0  # after the wall time, how long an interrupted cell has to stop


@dataclass
class CellResult:
    """What one call produced. ``failure`` names a broken limit that ended the session."""

    logs: str = ""
    error: bool = False  # the code raised (or a limit ended it)
    truncated: int = 0  # bytes of output dropped beyond ``output_bytes``
    images: list[bytes] = field(default_factory=list)  # PNGs of matplotlib figures
    files: list[tuple[str, bytes]] = field(default_factory=list)  # files new or changed in /mnt/data
    skipped: list[str] = field(default_factory=list)  # changed files too big (or too many) to return
    failure: str | None = None  # "timeout" | "crashed": the session was ended (its state is lost)


class Session:
    """A REPL in a sandbox. ``run`` and ``put`` are serialised by the caller (SessionPool)."""

    def __init__(self, config: SandboxConfig):
        self.config = config
        self.process: asyncio.subprocess.Process | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.stderr_tail = b""
        self.data_dir: str | None = None  # unsafe mode only: the stand-in for /mnt/data
        self.files: set[str] = set()  # file ids already copied in
        self.lock = asyncio.Lock()
        self.last_used = 0.0
        self.expiry: asyncio.TimerHandle | None = None
        # files (base64) + images + logs of one answer, with room to spare
        self.max_frame = (2 * int(config.file_mb) + 2 * MAX_IMAGES + 16) * 1024 * 1024

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.returncode is None

    async def start(self) -> None:
        argv, env, self.data_dir = command(self.config)
        if self.config.unsafe:
            log.warning("code_interpreter: running code WITHOUT a sandbox (--unsafe-code-interpreter)")
        self.loop = asyncio.get_running_loop()
        self.process = await asyncio.create_subprocess_exec(
            *argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, env=env, start_new_session=True, cwd="/",
        )
        self._stderr_task = asyncio.ensure_future(self._drain_stderr())
        try:
            hello = await asyncio.wait_for(self._read(), START_SECONDS)
        except (asyncio.TimeoutError, EOFError, asyncio.IncompleteReadError, ValueError):
            hello = None
        if not hello or not hello.get("ready"):
            await self.close()
            await asyncio.sleep(0)
            detail = self.stderr_tail.decode("utf-8", "replace").strip().splitlines()[-3:]
            raise SandboxUnavailable(
                "code_interpreter could not start its sandbox"
                + (f" ({' '.join(detail)})" if detail else "")
                + ". Check that bubblewrap works here (`bwrap --unshare-all --ro-bind / / true`)."
            )

    async def put(self, name: str, data: bytes) -> str | None:
        """Copy a file into /mnt/data; None when it did not fit (the reason is logged)."""
        await self._send({"op": "put", "path": name, "data": base64.b64encode(data).decode()})
        answer = await asyncio.wait_for(self._read(), PUT_SECONDS)
        if not answer.get("ok"):
            log.warning("code_interpreter: could not copy %s into /mnt/data: %s", name, answer.get("error"))
            return None
        return str(answer["path"])

    async def run(self, code: str) -> CellResult:
        await self._send({"op": "exec", "code": code})
        reading = asyncio.ensure_future(self._read())
        try:
            try:
                return _result(await asyncio.wait_for(asyncio.shield(reading), self.config.wall_seconds))
            except asyncio.TimeoutError:
                pass
            except (EOFError, asyncio.IncompleteReadError, ValueError, ConnectionError):
                return await self._crashed()
            # Over the wall time: interrupt the cell (KeyboardInterrupt); the session survives if it answers.
            self._interrupt()
            try:
                result = _result(await asyncio.wait_for(reading, GRACE_SECONDS))
            except (asyncio.TimeoutError, EOFError, asyncio.IncompleteReadError, ValueError, ConnectionError):
                await self.close()
                return CellResult(
                    logs=f"Execution stopped: it ran longer than the wall-time limit of {self.config.wall_seconds:g} s "
                         "and did not stop when interrupted. The session was restarted; variables and files from "
                         "earlier calls are gone.",
                    error=True, failure="timeout")
            result.error = True
            result.logs += f"\n[Execution interrupted: it ran longer than the wall-time limit of {self.config.wall_seconds:g} s.]"
            return result
        except BaseException:  # cancelled mid-cell: the session's state is unknown, end it
            if not reading.done():
                reading.cancel()
                self.kill()
            raise

    async def _crashed(self) -> CellResult:
        ended = await self._ended()
        return CellResult(
            logs=f"Execution stopped: the sandboxed process ended ({ended}), e.g. by exceeding a limit. "
                 "The session was restarted; variables and files from earlier calls are gone.",
            error=True, failure="crashed")

    def _interrupt(self) -> None:
        """SIGINT to the REPL (the first process below bwrap), seen from the host's pid namespace."""
        pid = _repl_pid(self.process.pid) if self.alive else None
        if pid is not None:
            try:
                os.kill(pid, signal.SIGINT)
            except (ProcessLookupError, PermissionError):
                pass

    async def _ended(self) -> str:
        await self.close()
        code = self.process.returncode if self.process else None
        return f"exit status {code}" if code is not None and code >= 0 else f"signal {-(code or 0)}"

    async def _send(self, message: dict) -> None:
        if not self.alive or self.process.stdin is None:
            raise ConnectionError("the sandbox is not running")
        body = json.dumps(message).encode()
        self.process.stdin.write(struct.pack(">I", len(body)) + body)
        try:
            await self.process.stdin.drain()
        except (BrokenPipeError, ConnectionResetError) as error:
            raise ConnectionError(str(error)) from error

    async def _read(self) -> dict:
        assert self.process is not None and self.process.stdout is not None
        head = await self.process.stdout.readexactly(4)
        (size,) = struct.unpack(">I", head)
        if size > self.max_frame:  # the REPL never sends this much: the cell wrote to the protocol pipe
            raise ValueError(f"a frame of {size} bytes")
        answer = json.loads(await self.process.stdout.readexactly(size))
        if not isinstance(answer, dict):
            raise ValueError("a frame that is not an object")
        return answer

    async def _drain_stderr(self) -> None:
        stream = self.process.stderr if self.process else None
        while stream is not None:
            chunk = await stream.read(4096)
            if not chunk:
                return
            self.stderr_tail = (self.stderr_tail + chunk)[-4096:]

    def kill(self) -> None:
        """End the sandbox now (its pid namespace goes with it); safe from any loop or thread."""
        if self.expiry is not None:
            self.expiry.cancel()
        if self.alive:
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        if self.data_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)
            self.data_dir = None

    async def close(self) -> None:
        self.kill()
        if self.process is not None:
            try:
                await asyncio.wait_for(self.process.wait(), 5)
            except asyncio.TimeoutError:
                log.warning("code_interpreter: sandbox process %s did not exit", self.process.pid)


def _result(answer: dict) -> CellResult:
    """The REPL's answer to an exec; ValueError if it is not one (the cell may have written garbage)."""
    try:
        return CellResult(
            logs=str(answer["logs"]), error=bool(answer["error"]), truncated=int(answer["truncated"]),
            images=[base64.b64decode(image) for image in answer["images"]],
            files=[(str(f["path"]), base64.b64decode(f["data"])) for f in answer["files"]],
            skipped=[str(path) for path in answer["skipped"]],
        )
    except (KeyError, TypeError, AttributeError, ValueError) as error:
        raise ValueError(f"not an answer of the REPL: {error}") from error


def _repl_pid(root: int) -> int | None:
    """Breadth-first below ``root``: the first process that is not bwrap (the REPL itself if unsandboxed)."""
    queue = [root]
    while queue:
        pid = queue.pop(0)
        try:
            with open(f"/proc/{pid}/comm") as comm:
                if comm.read().strip() != "bwrap":
                    return pid
            with open(f"/proc/{pid}/task/{pid}/children") as children:
                queue += [int(child) for child in children.read().split()]
        except (OSError, ValueError):
            continue
    return None
