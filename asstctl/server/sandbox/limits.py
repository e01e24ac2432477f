"""The watchdog of a session pool: limits that no single sandbox can enforce on itself.

- **CPU time, hard.** The REPL sets a soft RLIMIT_CPU per call (the cell gets an exception), which
  the cell could raise again; the watchdog ends a session whose processes used more than
  ``cpu_seconds`` + ``CPU_GRACE`` in the running call (counted from its first look at the call, at
  most ``watch_seconds`` (0.25) after the call began). Between calls a session may use ``IDLE_CPU`` seconds in all
  (code left running after its call, e.g. a thread that raised its own soft limit); beyond, it is
  ended and the thread's next call says why.
- **Total memory** (``--code-max-total-memory-mb``) and **total disk** (``--code-max-total-disk-mb``,
  the bytes in every session's size-capped tmpfs, plus ``INODE_BYTES`` (1 KiB) per file or directory in
  them): when the sessions together use more, the largest session is ended and its call fails saying why.
  Memory is the resident memory plus what sockets may queue (``procs.SOCKET_BYTES`` each), which no RSS shows.
- **Without a sandbox** (the plain subprocess: a directory, no tmpfs, no RLIMIT_NPROC): a session with
  more than ``data_mb`` in its directory (its stand-in for /mnt/data and its ``TMPDIR``; the first 10,000
  entries looked at), or more than ``max_processes`` processes and threads, is ended.
- **Files per session** (``max_inodes``, 100,000): tmpfs' size cap counts bytes, not inodes, and an empty
  file costs the kernel ~1 KiB of memory; bubblewrap cannot set tmpfs' ``nr_inodes``, so a session with
  more files and directories in its tmpfs than that is ended (read from the same ``statvfs``).

It measures from /proc every ``watch_seconds`` (0.25) seconds (in a worker thread: the event loop never blocks)
while sessions live, wherever the server runs (no cgroup it may create, an unprivileged container).
Where the server may create memory cgroups (v2 or v1: ``cgroups.py`` says when), the kernel enforces the
total memory too (the backstop for bursts between two looks); the watchdog ends a session whose cgroup
saw the kernel's OOM killer.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from asstctl.server.sandbox.cgroups import KernelLimit
from asstctl.server.sandbox.procs import Usage, usage

log = logging.getLogger("asstctl.server.sandbox")
CPU_GRACE = 1.0  # seconds over the soft limit before the hard one ends the session
IDLE_CPU = 1.0  # CPU seconds a session may use between calls, in all


# What the kernel or Python says when a call meets a limit, and the limit it met (a line of the call's logs)
HINTS = (
    (("MemoryError", "Cannot allocate memory"),
     "a process may use at most {memory_mb} MB of address space (--code-memory-mb)"),
    (("Resource temporarily unavailable", "can't start new thread"),
     "a session may run at most {max_processes} processes and threads (--code-max-processes)"),
    (("File too large",), "a file may be at most {file_mb} MB (--code-file-mb)"),
    (("No space left on device",),
     "/mnt/data and /tmp hold at most {data_mb} MB each (--code-data-mb), /dev/shm {shm_mb} MB (--code-shm-mb)"),
    (("Too many open files",), "a process may have at most 256 open files (fixed)"),
)


def hints(logs: str, config: Any) -> str:
    """One line naming each limit whose error is in ``logs`` ("" if none)."""
    met = [hint.format(**vars(config)) for marks, hint in HINTS if any(mark in logs for mark in marks)]
    return f"[sandbox limits: {'; '.join(met)}]" if met else ""


def measure(session: Any) -> Usage:
    if not session.alive:
        return Usage()
    return usage(session.process.pid, session.data_dir)


class Watchdog:
    def __init__(self, pool: Any):
        self.pool = pool
        self.task: asyncio.Task | None = None
        self.ended = 0  # sessions ended by a global limit or the hard CPU limit
        self.kernel = KernelLimit(pool.config)  # the sessions' memory cgroup, made with the first session

    def ensure(self) -> None:
        """Run while sessions live (started again by the next session after it stops)."""
        if self.task is None or self.task.done():
            self.task = asyncio.ensure_future(self._loop())

    def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()

    async def _loop(self) -> None:
        while self.pool.sessions:
            await asyncio.sleep(self.pool.config.watch_seconds)
            try:
                await self.check()
            except Exception:  # a bug here must not stop the watchdog's next checks
                log.exception("code_interpreter: the sandbox watchdog failed")

    async def check(self) -> None:
        config = self.pool.config
        sessions = [s for s in list(self.pool.sessions.values()) if s.alive and not s.starting]
        if not sessions:
            return
        usages, killed = await asyncio.to_thread(lambda: ([measure(s) for s in sessions], [
            s.cgroup.killed() if s.cgroup is not None else None for s in sessions]))
        for session, reason in zip(sessions, killed):
            if reason:  # the kernel ended a process of it: end the rest (an idle session's call would not)
                self.end(session, reason)
        for session, used in zip(sessions, usages):
            seen, session.seen = session.seen, (used.cpu, session.calls, not session.busy)
            if not session.busy:  # idle now, and at the last look with no call since: all of it was idle
                if seen is not None and seen[2] and seen[1] == session.calls:
                    session.idle_cpu += used.cpu - seen[0]
                if session.idle_cpu > IDLE_CPU:
                    self.end(session, f"it used {session.idle_cpu:.1f} s of CPU time between calls, over the "
                                      f"allowance of {IDLE_CPU:g} s (code left running after its call ended)")
            if session.data_dir and used.disk > config.data_mb * 1048576:  # no sandbox: no tmpfs caps it
                self.end(session, f"it had {over(used.disk, config.data_mb)} of files in its directory (1 KiB per file "
                                  f"counted), over the limit of {config.data_mb} MB (--code-data-mb)")
            if session.data_dir and used.tasks > config.max_processes:  # no sandbox: no RLIMIT_NPROC
                self.end(session, f"it ran {used.tasks} processes and threads, over the limit of "
                                  f"{config.max_processes} per session (--code-max-processes)")
            if used.inodes > config.max_inodes:
                self.end(session, f"it had {used.inodes} files and directories in /tmp, /mnt/data and /dev/shm, "
                                  f"over the limit of {config.max_inodes} per session (--code-max-inodes; each holds "
                                  "kernel memory that no size limit counts)")
            if not session.in_call:
                continue
            if session.call_cpu is None:  # the call's baseline (it began at most one interval ago)
                session.call_cpu = used.cpu
            elif used.cpu - session.call_cpu > config.cpu_seconds + CPU_GRACE:
                self.end(session, f"it used more than the CPU-time limit of {config.cpu_seconds:g} s per call "
                                  "(--code-cpu-seconds; a hard limit: the cell went on past the soft one)")
        for kind, cap_mb, flag in (("memory", config.max_total_memory_mb, "--code-max-total-memory-mb"),
                                   ("disk", config.max_total_disk_mb, "--code-max-total-disk-mb")):
            live = [(getattr(u, kind), s, u) for s, u in zip(sessions, usages) if s.ended_by is None]
            if not cap_mb or sum(size for size, _, _ in live) <= cap_mb * 1024 * 1024 or not live:
                continue
            size, largest, used = max(live, key=lambda entry: entry[0])
            total = sum(size for size, _, _ in live)
            what = "memory" if kind == "memory" else "disk space (/mnt/data, /tmp, /dev/shm; 1 KiB per file)"
            held = f", {used.buffers / 1048576:.0f} MB of it the most its sockets' and pipes' buffers may hold" \
                if kind == "memory" and used.buffers >= 1048576 else ""
            self.end(largest, f"all code_interpreter sessions together used {over(total, cap_mb)} of {what}, "
                              f"over the server's limit of {cap_mb} MB ({flag}), and this session was the largest "
                              f"({size / 1048576:.0f} MB{held})")

    def end(self, session: Any, reason: str) -> None:
        if session.ended_by is not None:
            return
        log.warning("code_interpreter: ending a session: %s", reason)
        session.ended_by = reason
        self.ended += 1
        session.kill()


def over(size: int, limit_mb: float) -> str:
    """``size`` bytes, over a limit of ``limit_mb`` MB, in MB with the decimals it takes to read as over it
    (600.01 MB, not 600 MB), or in bytes beside the limit's when no three decimals do."""
    for decimals in range(4):
        text = f"{size / 1048576:.{decimals}f}"
        if float(text) > limit_mb:
            return f"{text} MB"
    return f"{size} bytes (the limit: {int(limit_mb * 1048576)} bytes)"
