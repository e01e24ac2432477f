"""What a session's processes use, read from /proc on the host: memory, CPU time, tmpfs bytes and inodes.

Blocking reads of procfs (small files): callers on the event loop run these in a worker thread.
"""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")
WRITABLE = ("tmp", "mnt/data", "dev/shm")  # the sandbox's size-capped tmpfs, below its root
# What one file or directory costs the kernel (inode, dentry: ~820 bytes measured), whatever its size: tmpfs'
# size cap counts none of it, so empty files are counted this much of disk (300,000 of them: ~300 MB).
INODE_BYTES = 1024


def sysctl(name: str, default: int) -> int:
    try:
        with open(f"/proc/sys/{name}") as handle:
            return int(handle.read().split()[-1])
    except (OSError, ValueError, IndexError):
        return default


# What the kernel may hold in buffers no RSS shows, counted as memory for each socket or pipe a session's
# processes hold: a socket's send buffer (SO_SNDBUF may raise it to twice net.core.wmem_max; 120 socketpairs
# filled at the default size queued 26 MB while the RSS was 14 MB), a pipe's 16 pages (F_SETPIPE_SZ may grow
# it: the kernel bounds that per uid, fs.pipe-user-pages-soft).
SOCKET_BYTES = 2 * sysctl("net/core/wmem_max", 212992)
PIPE_BYTES = 16 * PAGE


@dataclass
class Usage:
    memory: int = 0  # bytes resident in the session's processes (memfds and SysV shm are refused: seccomp),
    # plus SOCKET_BYTES per socket and PIPE_BYTES per pipe they hold
    buffers: int = 0  # of which sockets' and pipes'
    disk: int = 0  # bytes used in its writable tmpfs, plus INODE_BYTES per file or directory in them
    inodes: int = 0  # files and directories in its writable tmpfs
    cpu: float = 0.0  # CPU seconds of its processes, living and ended
    tasks: int = 0  # its processes and their threads (as RLIMIT_NPROC counts them)


def children(pid: int) -> list[int]:
    found: list[int] = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as handle:
                found += [int(child) for child in handle.read().split()]
    except (OSError, ValueError):
        pass
    return found


def descendants(root: int, limit: int = 4096) -> list[int]:
    """``root`` and every process below it (breadth-first, at most ``limit``)."""
    found, queue = [], [root]
    while queue and len(found) < limit:
        pid = queue.pop(0)
        found.append(pid)
        queue += children(pid)
    return found


def state(pid: int) -> str:
    """The process's state letter (``R``, ``S``, ``T``, ``Z``, ...), ``X`` if it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rpartition(")")[2].split()[0]
    except (OSError, IndexError):
        return "X"


def end_tree(root: int, rounds: int = 200) -> int:
    """End ``root`` and every process below it, however many: each look stops (SIGSTOP) the new ones, so none
    forks any more, and what an ending process leaves behind comes back to a stopped subreaper (the unsafe
    mode's REPL) or parent, seen by the next look; when a look finds none new and all are stopped, SIGKILL
    to all. Returns how many were ended."""
    stopped: set[int] = set()
    for _ in range(rounds):
        found = [pid for pid in descendants(root) if pid not in stopped]
        for pid in found:
            try:
                os.kill(pid, signal.SIGSTOP)
            except OSError:
                pass
        stopped.update(found)
        if not found and all(state(pid) in "TtZX" for pid in stopped):
            break
        if not found:
            time.sleep(0.001)
    for pid in stopped:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    return len(stopped)


def repl_pid(root: int) -> int | None:
    """Breadth-first below ``root``: the first process that is not bwrap (the REPL's supervisor)."""
    for pid in descendants(root, 64):
        try:
            with open(f"/proc/{pid}/comm") as comm:
                if comm.read().strip() != "bwrap":
                    return pid
        except OSError:
            continue
    return None


def usage(root: int, data_dir: str | None = None) -> Usage:
    """What the sandbox started as process ``root`` uses now (``data_dir``: the unsafe mode's directory)."""
    result = Usage()
    pids = descendants(root)
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as handle:
                fields = handle.read().rpartition(")")[2].split()
            with open(f"/proc/{pid}/statm") as handle:
                result.memory += int(handle.read().split()[1]) * PAGE
        except (OSError, ValueError, IndexError):
            continue
        result.cpu += sum(int(value) for value in fields[11:15]) / CLOCK_TICKS  # utime stime cutime cstime
        result.tasks += int(fields[17])  # num_threads
    if data_dir:
        result.buffers = buffers(pids)
        result.memory += result.buffers
        result.disk, result.inodes = directory_bytes(data_dir)
        result.disk += result.inodes * INODE_BYTES
        return result
    # pids[1]: bwrap's init in the sandbox's namespaces, alive as long as the session
    result.buffers = sockets(pids[1]) * SOCKET_BYTES if len(pids) > 1 else 0
    result.memory += result.buffers
    for place in [f"/proc/{pid}/root/{place}" for place in WRITABLE for pid in pids[1:2]]:
        try:
            stats = os.statvfs(place)
        except OSError:
            continue
        result.disk += (stats.f_blocks - stats.f_bfree) * stats.f_frsize
        result.inodes += stats.f_files - stats.f_ffree
    result.disk += result.inodes * INODE_BYTES
    return result


def sockets(pid: int) -> int:
    """The sockets of the network namespace of ``pid`` (a sandbox's own: readable whatever the server's uid,
    and counting those only in flight too, passed over a socket and closed by their process)."""
    count = 0
    for kind in ("unix", "tcp", "tcp6", "udp", "udp6", "raw", "raw6"):
        try:
            with open(f"/proc/{pid}/net/{kind}") as handle:
                count += max(0, sum(1 for _ in handle) - 1)  # the first line names the columns
        except OSError:
            continue
    return count


def buffers(pids: list[int]) -> int:
    """Without a sandbox (no network namespace of its own): SOCKET_BYTES per socket and PIPE_BYTES per pipe
    the processes ``pids`` hold (each counted once; of the processes whose fds the server may read)."""
    held: set[str] = set()
    for pid in pids:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if link.startswith(("socket:", "pipe:")):
                held.add(link)
    return sum(SOCKET_BYTES if link.startswith("socket:") else PIPE_BYTES for link in held)


def directory_bytes(path: str, limit: int = 10_000) -> tuple[int, int]:
    """(bytes of the files below ``path``, files and directories there): the first ``limit`` entries."""
    total, seen = 0, 0
    for root, dirs, files in os.walk(path):
        seen += len(dirs)
        if seen > limit:  # a tree of directories alone is bounded too
            return total, seen
        for name in files:
            seen += 1
            if seen > limit:
                return total, seen
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                continue
    return total, seen
