"""Sessions by key (a thread id): started on first use, ended when idle or when too many are live."""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from typing import Iterable

from asstctl.server.sandbox.command import SandboxConfig
from asstctl.server.sandbox.session import CellResult, Session, log


class SessionPool:
    """At most ``config.max_sessions`` live sessions; each ends after ``config.idle_seconds`` unused."""

    def __init__(self, config: SandboxConfig | None = None):
        self.config = config or SandboxConfig()
        self.sessions: OrderedDict[str, Session] = OrderedDict()  # least recently used first
        self.started = 0  # sessions started so far (cold starts)

    async def run(self, key: str, code: str, files: Iterable[tuple[str, str, bytes]] = ()) -> CellResult:
        """Run ``code`` in the session of ``key``; ``files`` are (file id, name, bytes) for /mnt/data,
        each copied once per session."""
        session = await self._session(key)
        async with session.lock:
            if not session.alive:
                session = await self._session(key)
            missing = []
            for file_id, name, data in files:
                if file_id not in session.files:
                    if await session.put(name, data) is None:
                        missing.append(name)
                        continue
                    session.files.add(file_id)
            result = await session.run(code)
            if missing:
                result.logs += f"\n[not copied into /mnt/data (no space left): {', '.join(missing)}]"
            self._touch(key, session)
        if result.failure:
            self._forget(key, session)
        return result

    async def _session(self, key: str) -> Session:
        session = self.sessions.get(key)
        if session is not None and session.alive and session.loop is asyncio.get_running_loop():
            self.sessions.move_to_end(key)
            return session
        if session is not None:
            session.kill()
            self._forget(key, session)
        await self._make_room()
        session = Session(self.config)
        self.sessions[key] = session
        try:
            await session.start()
        except BaseException:
            self._forget(key, session)
            raise
        self.started += 1
        self._touch(key, session)
        return session

    async def _make_room(self) -> None:
        while len(self.sessions) >= max(1, self.config.max_sessions):
            idle = [k for k, s in self.sessions.items() if not s.lock.locked()]
            key = idle[0] if idle else next(iter(self.sessions))
            log.info("code_interpreter: ending the least recently used session (%s)", key)
            session = self.sessions.pop(key)
            await session.close()

    def _touch(self, key: str, session: Session) -> None:
        session.last_used = time.monotonic()
        if session.expiry is not None:
            session.expiry.cancel()
        loop = asyncio.get_running_loop()
        session.expiry = loop.call_later(self.config.idle_seconds, self._expire, key, session)

    def _expire(self, key: str, session: Session) -> None:
        if session.lock.locked():
            return self._touch(key, session)
        self._forget(key, session)
        session.kill()
        asyncio.ensure_future(session.close())

    def _forget(self, key: str, session: Session) -> None:
        if self.sessions.get(key) is session:
            del self.sessions[key]

    async def end(self, key: str) -> None:
        session = self.sessions.pop(key, None)
        if session is not None:
            await session.close()

    async def aclose(self) -> None:
        """End every session and wait for its process (on the loop the sessions run on)."""
        while self.sessions:
            _, session = self.sessions.popitem()
            await session.close()

    def close_all(self) -> None:
        """End every session now (server shutdown); callable from any thread."""
        while self.sessions:
            _, session = self.sessions.popitem()
            session.kill()
