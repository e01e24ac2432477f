"""Sessions by key (a thread id): started on first use, ended when idle or when too many are live.

A session that is starting or busy (a call holds or waits for it) is never evicted: beyond
``max_sessions`` the least recently used idle one ends, and when none is idle a new call waits
(up to the wall time) for one, then fails saying so. A watchdog (``limits.py``) enforces the
limits across sessions: total memory, total disk, CPU time per call as a hard limit.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from typing import Iterable

from asstctl.server.aio import within
from asstctl.server.sandbox.command import SandboxConfig, SandboxUnavailable
from asstctl.server.sandbox.limits import Watchdog, hints
from asstctl.server.sandbox.session import CellResult, InputFile, ReplFailed, Session, log

MAX_NOTES = 1000  # threads whose session was evicted, remembered (the oldest forgotten first) to say so once


class SessionsBusy(Exception):
    """Every session is starting or busy and no new one may start."""


class SessionPool:
    """At most ``config.max_sessions`` live sessions; each ends after ``config.idle_seconds`` unused."""

    def __init__(self, config: SandboxConfig | None = None):
        self.config = config or SandboxConfig()
        self.sessions: OrderedDict[str, Session] = OrderedDict()  # least recently used first
        self.started = 0  # sessions started so far (cold starts)
        self.watchdog = Watchdog(self)
        self._freed: asyncio.Condition | None = None
        self.evicted: OrderedDict[str, str] = OrderedDict()  # key -> why its session was evicted (told once)

    async def run(self, key: str, code: str, files: Iterable[InputFile] = ()) -> CellResult:
        """Run ``code`` in the session of ``key``; ``files`` go to /mnt/data, each version once per session."""
        for _ in range(3):
            session = await self._session(key)
            try:
                async with session.lock:
                    if not session.alive or session.ended_by:  # ended while this call waited for it: start another
                        continue
                    session.calls += 1
                    try:
                        notes = [f"{name} ({why})" for name, why in await self._copy(session, files)]
                    except (asyncio.TimeoutError, EOFError, asyncio.IncompleteReadError, ValueError, ConnectionError,
                            ReplFailed) as error:  # the REPL broke while files were copied in
                        result = await session.crashed(error)
                        self._forget(key, session)
                        return result
                    session.in_call, session.call_cpu = True, None
                    try:
                        result = await session.run(code)
                    finally:
                        session.in_call = False
                    hint = hints(result.logs, self.config)
                    if hint:
                        result.logs += ("" if result.logs.endswith("\n") else "\n") + hint
                    if notes:
                        result.logs += f"\n[not copied into /mnt/data: {'; '.join(notes)}]"
                    if session.note:
                        result.logs = (f"[The thread's previous session was ended: {session.note}; its variables "
                                       f"and files are gone.]\n{result.logs}")
                        session.note = None
                    self._touch(key, session)
            finally:
                session.users -= 1
                await self._notify()
            if result.failure:
                self._forget(key, session)
            return result
        raise SandboxUnavailable("code_interpreter: the sandbox session ended three times before the call could run")

    async def _copy(self, session: Session, files: Iterable[InputFile]) -> list[tuple[str, str]]:
        """Copy the files not yet in this session; (name, why) of those that could not be."""
        failed = []
        limit = int(self.config.file_mb) * 1024 * 1024
        for file in files:
            if file.key in session.files:
                continue
            if file.problem:
                failed.append((file.name, file.problem))
                continue
            if file.size > limit:
                failed.append((file.name, f"{file.size / 1048576:.1f} MB, over the sandbox's file limit of "
                                          f"{self.config.file_mb} MB"))
                continue
            problem = await session.put(file)
            if problem is None:
                session.files.add(file.key)
            else:
                failed.append((file.name, problem))
        return failed

    async def _session(self, key: str) -> Session:
        """The live session of ``key`` (started if need be), counted as used until ``run`` ends."""
        session = self.sessions.get(key)
        if session is not None and session.loop not in (None, asyncio.get_running_loop()):
            session.kill()
            self._forget(key, session)
            session = None
        if session is not None and session.starting:  # another call is starting it: wait for that
            session.users += 1
            try:
                while session.starting:
                    await self._wait()
            finally:
                session.users -= 1
            return await self._session(key)
        if session is not None and session.alive and not session.ended_by:
            self.sessions.move_to_end(key)
            session.users += 1
            return session
        ended = self.evicted.pop(key, None)
        if session is not None:  # ended while idle (by the watchdog, or on its own)
            code = (session.process.returncode if session.process is not None else None) or 0
            # (a signal reaches us as -N from the process itself, or as 128 + N from bubblewrap, whose child it killed)
            how = f"signal {-code}" if code < 0 else f"signal {code - 128}" if code > 128 else f"exit status {code}"
            ended = session.ended_by or ended or f"its process ended while it was idle ({how})"
            session.kill()
            self._forget(key, session)
        await self._make_room()
        session = Session(self.config, self.watchdog.kernel)
        session.note = ended
        session.users = 1
        self.sessions[key] = session
        try:
            await session.start()
        except BaseException:
            session.users -= 1
            self._forget(key, session)
            raise
        finally:
            session.starting = False
            await self._notify()
        self.started += 1
        self._touch(key, session)
        self.watchdog.ensure()
        return session

    async def _make_room(self) -> None:
        waited = 0.0
        while len(self.sessions) >= max(1, self.config.max_sessions):
            idle = [k for k, s in self.sessions.items() if not s.busy]
            if idle:
                key = idle[0]
                log.info("code_interpreter: ending the least recently used idle session (%s)", key)
                session = self.sessions.pop(key)
                session.ended_by = (f"it was the least recently used idle session and --code-max-sessions "
                                    f"{self.config.max_sessions} was reached")
                self._remember(key, session.ended_by)
                await session.close()
                continue
            if waited >= self.config.wall_seconds:
                raise SessionsBusy(
                    f"code_interpreter: all {len(self.sessions)} sandbox sessions (--code-max-sessions "
                    f"{self.config.max_sessions}) are starting or busy and none became free within "
                    f"{self.config.wall_seconds:g} s; try again later or raise --code-max-sessions.")
            started = time.monotonic()
            await self._wait(1.0)
            waited += time.monotonic() - started

    async def _wait(self, timeout: float = 1.0) -> None:
        if self._freed is None:
            self._freed = asyncio.Condition()
        async with self._freed:
            try:
                await within(self._freed.wait(), timeout)
            except asyncio.TimeoutError:
                pass

    async def _notify(self) -> None:
        if self._freed is not None:
            async with self._freed:
                self._freed.notify_all()

    def _touch(self, key: str, session: Session) -> None:
        session.last_used = time.monotonic()
        if session.expiry is not None:
            session.expiry.cancel()
        loop = asyncio.get_running_loop()
        session.expiry = loop.call_later(self.config.idle_seconds, self._expire, key, session)

    def _expire(self, key: str, session: Session) -> None:
        if session.busy:
            return self._touch(key, session)
        self._forget(key, session)
        session.ended_by = (f"it was unused for {self.config.idle_seconds / 60:g} minutes "
                            f"(--code-idle-minutes {self.config.idle_seconds / 60:g})")
        self._remember(key, session.ended_by)
        session.kill()
        asyncio.ensure_future(session.close())

    def _remember(self, key: str, why: str) -> None:
        """Why the session of ``key`` was ended (its thread's next call says so, once)."""
        self.evicted[key] = why
        while len(self.evicted) > MAX_NOTES:
            self.evicted.popitem(last=False)

    def _forget(self, key: str, session: Session) -> None:
        if self.sessions.get(key) is session:
            del self.sessions[key]

    async def end(self, key: str) -> None:
        self.evicted.pop(key, None)
        session = self.sessions.pop(key, None)
        if session is not None:
            await session.close()

    async def aclose(self) -> None:
        """End every session and wait for its process (on the loop the sessions run on)."""
        self.watchdog.stop()
        while self.sessions:
            _, session = self.sessions.popitem()
            await session.close()
        self.watchdog.kernel.close()

    def close_all(self) -> None:
        """End every session now (server shutdown); callable from any thread."""
        while self.sessions:
            _, session = self.sessions.popitem()
            session.kill()
        self.watchdog.kernel.close()
