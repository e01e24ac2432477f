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
import posixpath
from dataclasses import dataclass, field
from typing import Callable, Iterable

from asstctl.server.aio import within
from asstctl.server.sandbox.cgroups import Child, KernelLimit, enter
from asstctl.server.sandbox.command import SandboxConfig, SandboxUnavailable, command, python_binary
from asstctl.server.sandbox.procs import descendants, end_tree, repl_pid
from asstctl.server.uploads import BIDI_CONTROLS

log = logging.getLogger("asstctl.server.sandbox")
PUT_SECONDS = 30.0
MAX_IMAGES = 10  # figures returned per call (the REPL's limit too)
MAX_IMAGE_BYTES = 4 * 1024 * 1024  # one figure's PNG (the REPL's limit too)
MAX_FILES = 20  # files returned per call (the REPL's limit too)
MAX_SKIPPED = 200  # files named as not returned, per call


class ReplFailed(Exception):
    """The REPL reported that it cannot go on (its cell process ended or misbehaved)."""


@dataclass
class InputFile:
    """A file for /mnt/data: ``key`` names its version (copied once per session), ``chunks`` streams it;
    ``problem``: why it cannot be copied (named in the call's logs)."""

    key: str
    name: str
    size: int
    chunks: Callable[[], Iterable[bytes]]
    problem: str | None = None


@dataclass
class CellResult:
    """What one call produced. ``failure`` names a broken limit that ended the session."""

    logs: str = ""
    error: bool = False  # the code raised (or a limit ended it)
    truncated: int = 0  # bytes of output dropped beyond ``output_bytes``
    images: list[bytes] = field(default_factory=list)  # PNGs of matplotlib figures
    files: list[tuple[str, bytes]] = field(default_factory=list)  # files new or changed in /mnt/data
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, why) of changed files not returned
    failure: str | None = None  # "timeout" | "crashed": the session was ended (its state is lost)


def safe_name(name: str, fallback: str) -> str:
    """A plain file name for /mnt/data: NUL, control characters (C0, DEL, C1), bidirectional controls and
    ``/`` become ``_``, text that is not UTF-8 is replaced, at most 200 bytes, its extension (up to 15
    bytes) kept when it is cut; ``fallback`` for an empty name, ``.`` or ``..``."""
    text = "".join("_" if ord(c) < 32 or 127 <= ord(c) <= 159 or c in BIDI_CONTROLS or c == "/" else c for c in name)
    text = text.encode("utf-8", "replace").decode("utf-8")
    stem, dot, extension = text.rpartition(".")
    if not stem or len(extension.encode()) > 15:
        stem, dot, extension = text, "", ""
    room = 200 - len((dot + extension).encode())
    text = stem.encode()[:room].decode("utf-8", "ignore") + dot + extension  # a character cut in two goes
    return fallback if text.strip() in ("", ".", "..") else text


class Session:
    """A REPL in a sandbox. ``run`` and ``put`` are serialised by the caller (SessionPool)."""

    def __init__(self, config: SandboxConfig, kernel: KernelLimit | None = None):
        self.config = config
        self.kernel = kernel  # the sandboxes' memory cgroup (cgroups.py), if the server may make one
        self.cgroup: Child | None = None  # this session's, in it
        self.process: asyncio.subprocess.Process | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.stderr_tail = b""
        self.data_dir: str | None = None  # unsafe mode only: the directory of its stand-ins for /mnt/data and /tmp
        self.files: set[str] = set()  # keys (file id and version) of the files already copied in
        self.lock = asyncio.Lock()
        self.users = 0  # calls that hold or wait for this session: never evicted while > 0
        self.starting = True  # never evicted while it starts
        self.last_used = 0.0
        self.expiry: asyncio.TimerHandle | None = None
        self.ended_by: str | None = None  # why the pool or its watchdog ended it (named in the call's result)
        self.in_call = False  # a call is running (the watchdog's hard CPU limit applies)
        self.call_cpu: float | None = None  # CPU seconds of the sandbox when the watchdog first saw the call
        self.calls = 0  # calls begun (the watchdog counts CPU between calls: ``idle_cpu``)
        self.seen: tuple[float, int, bool] | None = None  # the watchdog's last look: (CPU s, calls, idle)
        self.idle_cpu = 0.0
        self.note: str | None = None  # why the thread's previous session was ended while idle
        # files (base64) + images + logs of one answer, with room to spare
        self.max_frame = (2 * int(config.file_mb) + 2 * MAX_IMAGES * MAX_IMAGE_BYTES // (1 << 20) + 16) * 1024 * 1024

    @property
    def busy(self) -> bool:
        return self.starting or self.users > 0 or self.lock.locked()

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.returncode is None

    async def start(self) -> None:
        argv, env, self.data_dir = command(self.config)  # unsafe: the tool and `serve` warned once already
        self.loop = asyncio.get_running_loop()
        self.cgroup = self.kernel.child() if self.kernel is not None else None
        self.process = await asyncio.create_subprocess_exec(
            *enter(argv, self.cgroup), stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, env=env, start_new_session=True, cwd="/",
        )
        self._stderr_task = asyncio.ensure_future(self._drain_stderr())
        timed_out = False
        try:
            hello = await within(self._read(), self.config.start_seconds)
        except asyncio.TimeoutError:
            hello, timed_out = None, True
        except (EOFError, asyncio.IncompleteReadError, ValueError):
            hello = None
        if not hello or not hello.get("ready"):
            killed = self.cgroup.killed() if self.cgroup is not None else None  # read before the cgroup goes
            await self.close()
            await asyncio.sleep(0)
            raise SandboxUnavailable(self._start_failure(killed, timed_out))

    def _start_failure(self, killed: str | None, timed_out: bool) -> str:
        """Why a session did not start: the kernel's memory limit, the start timeout, or else bubblewrap."""
        if killed:
            return f"code_interpreter could not start its sandbox: {killed} while it started"
        if timed_out:
            return (f"code_interpreter could not start its sandbox: it did not start within "
                    f"{self.config.start_seconds:g} s (the server may be overloaded); try again later")
        unreachable = python_unreachable(python_binary())
        if unreachable:
            return f"code_interpreter could not start its sandbox: {unreachable}"
        detail = self.stderr_tail.decode("utf-8", "replace").strip().splitlines()[-3:]
        return ("code_interpreter could not start its sandbox" + (f" ({' '.join(detail)})" if detail else "")
                + ". Check that bubblewrap works here (`bwrap --unshare-all --ro-bind / / true`).")

    async def put(self, file: InputFile) -> str | None:
        """Stream a file into /mnt/data (its bytes never held whole); None, or why it was not copied."""
        await self._send({"op": "put", "name": file.name, "size": int(file.size)})
        sent = 0
        for chunk in file.chunks():
            chunk = chunk[:max(0, file.size - sent)]
            sent += len(chunk)
            await self._write(chunk)
        if sent < file.size:  # the stored bytes were shorter than announced (deleted while read): pad, then empty it
            await self._write(b"\0" * (file.size - sent))
            await within(self._read(), PUT_SECONDS)
            await self._send({"op": "put", "name": file.name, "size": 0})
        answer = await within(self._read(), PUT_SECONDS)
        if answer.get("ok") and sent == file.size:
            return None
        reason = {"space": "no space left in /mnt/data",
                  "size": f"over the sandbox's file limit of {self.config.file_mb} MB",
                  "name": "not a usable file name"}.get(answer.get("reason"), f"could not be written: {answer.get('error')}")
        if sent < file.size:
            reason = "its stored bytes are incomplete"
        log.warning("code_interpreter: could not copy %s into /mnt/data: %s", file.name, reason)
        return reason

    async def run(self, code: str) -> CellResult:
        try:
            await self._send({"op": "exec", "code": code})
        except ConnectionError as error:  # ended just now (e.g. by the watchdog)
            return await self.crashed(error)
        reading = asyncio.ensure_future(self._read())
        try:
            try:
                return await self._answer(await within(asyncio.shield(reading), self.config.wall_seconds))
            except asyncio.TimeoutError:
                pass
            except (EOFError, asyncio.IncompleteReadError, ValueError, ConnectionError, ReplFailed) as error:
                return await self.crashed(error)
            # Over the wall time: interrupt the cell (KeyboardInterrupt); the session survives if it answers.
            self._interrupt()
            try:
                result = await self._answer(await within(reading, self.config.interrupt_grace_seconds))
            except (asyncio.TimeoutError, EOFError, asyncio.IncompleteReadError, ValueError, ConnectionError,
                    ReplFailed) as error:
                if self.ended_by is not None or not isinstance(error, asyncio.TimeoutError):
                    return await self.crashed(error)
                await self.close()
                return CellResult(
                    logs=f"Execution stopped: it ran longer than the wall-time limit of {self.config.wall_seconds:g} s "
                         "(--code-timeout) and did not stop when interrupted. The session was restarted; variables and files from "
                         "earlier calls are gone.",
                    error=True, failure="timeout")
            result.error = True
            result.logs += (f"\n[Execution interrupted: it ran longer than the wall-time limit of "
                            f"{self.config.wall_seconds:g} s (--code-timeout).]")
            return result
        except BaseException:  # cancelled mid-cell: the session's state is unknown, end it
            if not reading.done():
                reading.cancel()
                self.kill()
            raise

    async def _answer(self, answer: dict) -> CellResult:
        files = answer.get("files")
        size = sum(len(str(f.get("data"))) for f in files if isinstance(f, dict)) if isinstance(files, list) else 0
        limit = int(self.config.file_mb) * 1024 * 1024
        killed = self.cgroup.killed() if self.cgroup is not None else None
        if killed:  # the kernel ended a process of the call (the session goes: its state is unknown)
            raise ReplFailed(killed)
        return _result(answer, limit) if size < 1 << 20 else await asyncio.to_thread(_result, answer, limit)

    async def crashed(self, error: BaseException) -> CellResult:
        """End the session after ``error``; the call's result names the real cause."""
        killed = self.cgroup.killed() if self.cgroup is not None else None  # read before the cgroup goes
        ended = await self._ended()
        if killed:
            cause = killed
        elif self.ended_by is not None:
            cause = self.ended_by
        elif isinstance(error, ReplFailed):
            cause = str(error)
        elif isinstance(error, ValueError):
            cause = f"the sandbox sent a malformed answer ({error})"
        elif (failed := repl_error(self.stderr_tail)) and ended.startswith("exit status"):
            cause = f"the sandbox's REPL failed ({ended}: {failed})"
        else:
            cause = f"the sandboxed process ended ({ended}), e.g. by exceeding a limit"
        return CellResult(
            logs=f"Execution stopped: {cause}. The session was restarted; variables and files from earlier "
                 "calls are gone.",
            error=True, failure="crashed")

    def _interrupt(self) -> None:
        """SIGINT to the REPL (the first process below bwrap), seen from the host's pid namespace."""
        pid = repl_pid(self.process.pid) if self.alive else None
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
        body = json.dumps(message).encode()
        await self._write(struct.pack(">I", len(body)) + body)

    async def _write(self, data: bytes) -> None:
        if not self.alive or self.process.stdin is None:
            raise ConnectionError("the sandbox is not running")
        self.process.stdin.write(data)
        try:
            await self.process.stdin.drain()
        except (BrokenPipeError, ConnectionResetError) as error:
            raise ConnectionError(str(error)) from error

    async def _read(self) -> dict:
        assert self.process is not None and self.process.stdout is not None
        head = await self.process.stdout.readexactly(4)
        (size,) = struct.unpack(">I", head)
        if size > self.max_frame:  # the REPL never sends this much
            raise ValueError(f"a frame of {size} bytes, over the limit of {self.max_frame}")
        body = await self.process.stdout.readexactly(size)
        try:  # a big answer is parsed off the event loop
            answer = json.loads(body) if size < 1 << 20 else await asyncio.to_thread(json.loads, body)
        except RecursionError as error:
            raise ValueError("a frame nested too deeply") from error
        if not isinstance(answer, dict):
            raise ValueError("a frame that is not an object")
        if "fatal" in answer:
            raise ReplFailed(str(answer["fatal"])[:300])
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
            if self.data_dir:  # no pid namespace: every process below the REPL, however many, and their orphans
                end_tree(self.process.pid)
            # The REPL's supervisor first: it is the sandbox's pid 1, so its whole pid namespace ends with it
            # (no parent-death signal is relied on: a change of uid clears it).
            for pid in descendants(self.process.pid, 8)[1:]:
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            if self.process.stdin is not None and _running_loop() is self.loop:  # the REPL ends with its requests
                self.process.stdin.close()
        if self.data_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)
            self.data_dir = None

    async def close(self) -> None:
        self.kill()
        if self.process is not None:
            try:
                await within(self.process.wait(), 5)
            except asyncio.TimeoutError:
                log.warning("code_interpreter: sandbox process %s did not exit", self.process.pid)
            await self._release_pipes()
        if self.cgroup is not None:  # after its processes (what is left in it is ended)
            await self.cgroup.removed()

    async def _release_pipes(self) -> None:
        """Stop reading stderr (a killed sandbox's pipe may never reach its end) and close the pipes, so
        nothing of an ended session outlives it (however it ended: a watchdog, a timeout, a crash)."""
        task = getattr(self, "_stderr_task", None)
        if task is not None and not task.done():
            try:
                await within(asyncio.shield(task), 1)
            except (asyncio.TimeoutError, OSError, ValueError):
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        transport = getattr(self.process, "_transport", None)  # asyncio's Process keeps it private
        if transport is not None:
            transport.close()


def _result(answer: dict, file_bytes: int = 64 << 20) -> CellResult:
    """The REPL's answer to an exec, validated; ValueError if it is not one (the session then ends).
    ``file_bytes``: the most the files of one answer may hold together (``file_mb``)."""
    try:
        files, images, skipped = answer["files"], answer["images"], answer["skipped"]
        if len(files) > MAX_FILES or len(images) > MAX_IMAGES or len(skipped) > 100_000:
            raise ValueError(f"{len(files)} files, {len(images)} images, {len(skipped)} skipped")
        result = CellResult(logs=str(answer["logs"])[:1 << 20], error=bool(answer["error"]),
                            truncated=int(answer["truncated"]))
        for image in images:
            data = base64.b64decode(image, validate=True)
            if len(data) > MAX_IMAGE_BYTES or not data.startswith(b"\x89PNG\r\n\x1a\n"):
                raise ValueError("an image that is not a PNG of at most 4 MB")
            result.images.append(data)
        for entry in files:
            result.files.append((data_path(entry["path"]), base64.b64decode(entry["data"], validate=True)))
        if sum(len(data) for _, data in result.files) > file_bytes:
            raise ValueError(f"files over the limit of {file_bytes} bytes per call")
        for entry in skipped[:MAX_SKIPPED]:
            result.skipped.append((data_path(entry["path"]), str(entry["reason"])[:200]))
        if len(skipped) > MAX_SKIPPED:
            result.skipped.append(("/mnt/data/...", f"{len(skipped) - MAX_SKIPPED} more files not returned"))
        return result
    except (KeyError, TypeError, AttributeError, ValueError) as error:
        raise ValueError(f"not an answer of the REPL: {error}") from error


def python_unreachable(python: str) -> str | None:
    """Why this process's user cannot run the interpreter at ``python`` (its real path: what bubblewrap runs),
    e.g. a pyenv below /root for a server that runs as another user; None if it can."""
    if os.access(python, os.X_OK):
        return None
    where = next((parent for parent in _parents(python) if not os.access(parent, os.X_OK)), python)
    what = "cannot be entered" if where != python else "cannot be run"
    return (f"the server's Python ({python}) is out of reach of its user (uid {os.getuid()}): {where} {what}. "
            "Run the server with a Python that user can reach (e.g. one installed under /usr or /opt rather than a "
            "pyenv below /root), or let the user enter that directory")


def _parents(path: str) -> list[str]:
    """The directories above ``path``, from the root down."""
    parts = path.strip("/").split("/")[:-1]
    return ["/" + "/".join(parts[:end]) for end in range(1, len(parts) + 1)]


def repl_error(tail: bytes) -> str | None:
    """The exception that ended the REPL, from the tail of its stderr (the last line of its traceback, at most
    300 printable characters); None if it did not end with one (a signal, a limit)."""
    text = tail.decode("utf-8", "replace")
    if "Traceback (most recent call last):" not in text:
        return None
    last = [line.strip() for line in text.rpartition("Traceback (most recent call last):")[2].splitlines()
            if line.strip()][-1:]
    clean = "".join(c if c.isprintable() else "?" for c in "".join(last))
    return clean[:300] + ("..." if len(clean) > 300 else "") if clean else None


def data_path(path: object) -> str:
    """A file path of an answer, normalized and confined to /mnt/data (ValueError otherwise)."""
    if not isinstance(path, str) or len(path) > 4096 or any(ord(c) < 32 or c == "\x7f" for c in path):
        raise ValueError("a file path that is not text of at most 4096 printable characters")
    if not path.isascii():
        path.encode("utf-8", "strict")  # UnicodeEncodeError (a ValueError) for a lone surrogate
    normal = posixpath.normpath(path)
    if normal != path or not normal.startswith("/mnt/data/"):
        raise ValueError(f"a file path outside /mnt/data: {path[:100]!r}")
    return normal


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None
