"""A kernel-enforced backstop for the sandboxes' total memory: one memory cgroup for all sessions
(its limit: ``--code-max-total-memory-mb`` + ``--code-max-total-disk-mb``), one child per session.

The watchdog (``limits.py``) polls four times a second and enforces memory and disk separately; a
burst between two of its looks is stopped here, by the kernel's OOM killer. The pages the sandbox
writes to its tmpfs (``/tmp``, ``/mnt/data``, ``/dev/shm``) are charged to its memory cgroup, so the
kernel's limit is the memory cap plus the disk cap (a backstop: the watchdog acts earlier).

Made on first use, under the server's own cgroup only (never at the root, never outside it), the first
that works of (``--code-cgroup auto``; ``v2``, ``v1`` or ``none`` choose one, or the watchdog alone):

- **cgroup v2** when the server's own v2 cgroup is writable, is not the root, offers the ``memory``
  controller (its ``cgroup.controllers``) and holds only the server's processes (the server and its
  descendants). v2 enables a controller for child cgroups only in a cgroup without processes (the
  no-internal-processes rule), so, as systemd and container runtimes do, the server's processes move into
  a leaf child (``<own>/asstctl-server``), ``+memory`` is enabled in ``<own>/cgroup.subtree_control``,
  and the sandboxes' parent ``<own>/asstctl-sandbox-*`` gets ``memory.max`` (and ``memory.swap.max`` 0)
  and ``+memory`` for its per-session children (``memory.events`` counts their OOM kills). In ``auto``,
  a systemd unit's cgroup (``*.service``, ``*.scope``) is used only when delegated to it (systemd's
  ``trusted.delegate`` / ``user.delegate`` attribute: ``Delegate=yes``); ``--code-cgroup v2`` skips that
  check. When the pool closes, its cgroups go and the server's processes move back (the cgroup as found);
- **cgroup v1** when the memory hierarchy is mounted and our memory cgroup is writable (root);
- otherwise none: the watchdog alone. One log line says which, and why not the others.

Each session's process enters its child cgroup before bubblewrap runs (``enter``), so every process
of the sandbox is in it; the child is removed when the session ends, the parent when the pool closes.
The file formats are parsed by small pure functions (``own_cgroups``, ``mounts``, ``oom_kills``, ``pids``).
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import signal
import time
from dataclasses import dataclass
from typing import Any

from asstctl.server.sandbox.procs import descendants

log = logging.getLogger("asstctl.server.sandbox")
PREFIX = "asstctl-sandbox-"
LEAF = "asstctl-server"  # cgroup v2: the leaf child the server's processes move into
ENTER = 'echo $$ > "$0" && exec "$@"'  # /bin/sh: join the cgroup (its cgroup.procs is $0), then become the sandbox


def own_cgroups(text: str) -> dict[str, str]:
    """/proc/self/cgroup → {controller: path}; the v2 (unified) line's key is ``""``."""
    found: dict[str, str] = {}
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        for controller in parts[1].split(",") if parts[1] else [""]:
            found[controller] = parts[2]
    return found


@dataclass
class Mount:
    root: str  # the path of the hierarchy shown at ``point``
    point: str
    fstype: str
    options: set[str]  # super options: a v1 hierarchy's controllers


def mounts(text: str) -> list[Mount]:
    """/proc/self/mountinfo → its cgroup and cgroup2 mounts."""
    found = []
    for line in text.splitlines():
        head, _, tail = line.partition(" - ")
        fields, rest = head.split(), tail.split()
        if len(fields) >= 5 and len(rest) >= 3 and rest[0] in ("cgroup", "cgroup2"):
            found.append(Mount(unescape(fields[3]), unescape(fields[4]), rest[0], set(rest[2].split(","))))
    return found


def unescape(field: str) -> str:
    """mountinfo's octal escapes (``\\040`` for a space)."""
    return field.encode().decode("unicode_escape") if "\\" in field else field


def directory(mount: Mount, path: str) -> str | None:
    """Where cgroup ``path`` is in the file system, if this mount shows it."""
    root = mount.root.rstrip("/")
    if path != mount.root and not path.startswith(root + "/"):
        return None
    return mount.point.rstrip("/") + path[len(root):]


def oom_kills(text: str) -> int:
    """The ``oom_kill N`` count of v1's memory.oom_control (the format of v2's memory.events too; 0 if absent)."""
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        if key == "oom_kill" and value.strip().isdigit():
            return int(value)
    return 0


def pids(text: str) -> list[int]:
    """cgroup.procs → its process ids."""
    return [int(word) for word in text.split() if word.isdigit()]


def systemd_unit(path: str) -> bool:
    """Whether cgroup ``path`` is a systemd unit's own (a service's or a scope's)."""
    return path.rstrip("/").rpartition("/")[2].endswith((".service", ".scope"))


def delegated(place: str) -> bool:
    """Whether systemd delegated this cgroup (``Delegate=yes`` sets this attribute, systemd 251 and later)."""
    for name in ("trusted.delegate", "user.delegate"):
        try:
            if os.getxattr(place, name).strip() == b"1":
                return True
        except OSError:
            continue
    return False


def limit_bytes(config: Any) -> int:
    """Memory cap + disk cap (tmpfs pages are charged as memory); with no disk cap, every session's tmpfs."""
    disk = config.max_total_disk_mb or config.max_sessions * (2 * config.data_mb + config.shm_mb)
    return (int(config.max_total_memory_mb) + int(disk)) * 1024 * 1024


def enter(argv: list[str], child: "Child | None") -> list[str]:
    """``argv`` started inside ``child`` (it and every process it starts)."""
    return argv if child is None else ["/bin/sh", "-c", ENTER, child.procs, *argv]


def _read(path: str) -> str:
    with open(path) as handle:
        return handle.read()


def _write(path: str, text: str) -> None:
    with open(path, "w") as handle:
        handle.write(text)


class Child:
    """One session's cgroup."""

    def __init__(self, path: str, message: str, events: str = "memory.oom_control"):
        self.path, self.message = path, message
        self.procs = os.path.join(path, "cgroup.procs")
        self.events = os.path.join(path, events)  # v2: memory.events

    def oom_kills(self) -> int:
        try:
            return oom_kills(_read(self.events))
        except OSError:
            return 0

    def killed(self) -> str | None:
        """Why the session ended, if the kernel's OOM killer ended a process of it."""
        return self.message if self.oom_kills() else None

    def remove(self) -> bool:
        """Remove the cgroup if it is empty; else SIGKILL what is left in it (its session has ended: a
        sandbox's processes die after its first) and say False."""
        try:
            os.rmdir(self.path)
            return True
        except FileNotFoundError:
            return True
        except OSError:
            try:
                for pid in _read(self.procs).split():
                    os.kill(int(pid), signal.SIGKILL)
            except (OSError, ValueError):
                pass
            return False

    async def removed(self, seconds: float = 2.0) -> bool:
        """``remove`` until it succeeds (at most ``seconds``), off the event loop's way."""
        for _ in range(int(seconds / 0.01)):
            if self.remove():
                return True
            await asyncio.sleep(0.01)
        log.warning("code_interpreter: could not remove the session's cgroup %s", self.path)
        return False


class KernelLimit:
    """The sandboxes' parent cgroup, made on the first session; ``child`` places a session in it."""

    def __init__(self, config: Any, controller: str = "memory"):
        self.config = config
        self.controller = controller  # v2's; tests stand another in where v2 lacks memory (no limit is set then)
        self.path: str | None = None
        self.version = 0  # 2 or 1 once made; 0: none (the watchdog alone)
        self.moved: str | None = None  # v2: the server's cgroup whose processes moved into its leaf
        self.detected = False
        self.children: list[Child] = []
        self.made = 0

    def child(self) -> Child | None:
        if not self.detected:
            self.detected = True
            self._detect()
        if self.path is None:
            return None
        self.children = [c for c in self.children if os.path.isdir(c.path)]  # those not removed by their session
        self.made += 1
        path = os.path.join(self.path, f"s{self.made}")
        try:
            os.mkdir(path)
        except OSError as error:
            log.warning("code_interpreter: could not create the session's cgroup %s (%s); the watchdog alone "
                        "enforces --code-max-total-memory-mb for it", path, error)
            return None
        self.children.append(Child(path, self.message(), "memory.events" if self.version == 2 else "memory.oom_control"))
        return self.children[-1]

    def message(self) -> str:
        config = self.config
        disk = (f"--code-max-total-disk-mb {config.max_total_disk_mb}" if config.max_total_disk_mb
                else "room for every session's tmpfs")
        return (f"all code_interpreter sessions together reached the server's total memory limit of "
                f"{config.max_total_memory_mb} MB (--code-max-total-memory-mb), enforced by the kernel at "
                f"{limit_bytes(config) // 1048576} MB (with {disk}: files in /tmp, /mnt/data and /dev/shm are "
                f"memory), and the kernel ended a process of this session")

    def close(self) -> None:
        """Remove every session's cgroup and the parent (the pool is closing: its sessions are ended)."""
        for child in self.children:
            for _ in range(100):
                if child.remove():
                    break
                time.sleep(0.01)
        self.children = []
        if self.path is not None:
            try:
                os.rmdir(self.path)
            except FileNotFoundError:
                pass
            except OSError as error:
                log.warning("code_interpreter: could not remove the sandboxes' cgroup %s (%s)", self.path, error)
            self.path = None
        if self.moved is not None:
            _join(self.moved, self.controller)
            self.moved = None
        self.detected = False

    def _detect(self) -> None:
        mode = getattr(self.config, "cgroup", "auto")
        if not self.config.max_total_memory_mb or mode == "none":
            why = "--code-max-total-memory-mb 0" if not self.config.max_total_memory_mb else "--code-cgroup none"
            log.info("code_interpreter: total sandbox memory enforced by the watchdog only (%s): no cgroup", why)
            return
        try:
            own, mounted = own_cgroups(_read("/proc/self/cgroup")), mounts(_read("/proc/self/mountinfo"))
        except OSError as error:
            own, mounted = {}, []
            log.debug("code_interpreter: cannot read our cgroups: %s", error)
        limit, problems = limit_bytes(self.config), []
        for version, make in ((2, self._make_v2), (1, self._make_v1)):
            if mode not in ("auto", f"v{version}"):
                continue
            try:
                problem = make(own, mounted, limit) if version == 1 else make(own, mounted, limit, mode == "v2")
            except OSError as error:  # a cgroup file that could not be read
                problem = f"{error.filename}: {error.strerror}"
            if problem is None:
                why = f"; not {'; '.join(problems)}" if problems else ""
                log.info("code_interpreter: total sandbox memory enforced by the kernel (cgroup v%d %s: %d MB, "
                         "--code-max-total-memory-mb + --code-max-total-disk-mb) and by the watchdog%s",
                         version, self.path, limit // 1048576, why)
                return
            problems.append(f"cgroup v{version}: {problem}")
        log.info("code_interpreter: total sandbox memory enforced by the watchdog only, every 0.25 s "
                 "(no memory cgroup the server may create: %s)", "; ".join(problems) or f"--code-cgroup {mode}?")

    def _make_v2(self, own: dict[str, str], mounted: list[Mount], limit: int, forced: bool) -> str | None:
        path, controller = own.get(""), self.controller
        mount = next((m for m in mounted if m.fstype == "cgroup2"), None)
        if path is None or mount is None:
            return "no cgroup2 hierarchy mounted"
        base = directory(mount, path)
        if base is None:
            return "our cgroup is not visible"
        if not os.path.exists(os.path.join(base, "cgroup.type")):  # only the root cgroup lacks it
            return "the server is in the root cgroup (never used)"
        if not os.access(base, os.W_OK):
            return f"{base} is not writable by this user"
        offered = _read(os.path.join(base, "cgroup.controllers")).split()
        if controller not in offered:
            return (f"{base} offers no {controller} controller (cgroup.controllers: "
                    f"{' '.join(offered) or 'none'})")
        if not forced and systemd_unit(path) and not delegated(base):
            return (f"{path} is a systemd unit's cgroup not delegated to the server (Delegate=yes; "
                    f"--code-cgroup v2 uses it anyway)")
        problem = _split(base, controller)
        if problem is not None:
            return problem
        self.moved = base

        def limits(parent: str) -> None:
            _write(os.path.join(parent, "cgroup.subtree_control"), f"+{controller}")  # children: memory.events
            if controller == "memory":
                _write(os.path.join(parent, "memory.max"), str(limit))
                _try_write(os.path.join(parent, "memory.swap.max"), "0")  # and no swap beyond it

        problem = self._make(base, limits, 2)
        if problem is not None:
            _join(base, controller)
            self.moved = None
        return problem

    def _make_v1(self, own: dict[str, str], mounted: list[Mount], limit: int) -> str | None:
        path = own.get("memory")
        mount = next((m for m in mounted if m.fstype == "cgroup" and "memory" in m.options), None)
        if path is None or mount is None:
            return "no memory hierarchy mounted"
        base = directory(mount, path)
        if base is None or path == "/":
            return "the server is in the root cgroup" if path == "/" else "our cgroup is not visible"
        if not os.access(base, os.W_OK):
            return f"{base} is not writable by this user"

        def limits(parent: str) -> None:
            if _read(os.path.join(parent, "memory.use_hierarchy")).strip() != "1":
                _write(os.path.join(parent, "memory.use_hierarchy"), "1")  # children count in the parent
            _write(os.path.join(parent, "memory.limit_in_bytes"), str(limit))
            _try_write(os.path.join(parent, "memory.memsw.limit_in_bytes"), str(limit))  # and no swap beyond it

        return self._make(base, limits, 1)

    def _make(self, base: str, configure: Any, version: int) -> str | None:
        _sweep(base)
        parent = os.path.join(base, f"{PREFIX}{os.getpid()}-{secrets.token_hex(3)}")
        try:
            os.mkdir(parent)
        except OSError as error:
            return f"cannot create a cgroup in {base} ({error.strerror})"
        try:
            configure(parent)
        except OSError as error:
            os.rmdir(parent)
            return f"cannot set the limit of {parent} ({error.strerror})"
        self.path, self.version = parent, version
        return None


def _split(base: str, controller: str) -> str | None:
    """cgroup v2: move the server's processes from ``base`` into its leaf child and enable ``controller``
    for ``base``'s children; refused (nothing changed) if ``base`` holds a process that is not the server's."""
    procs, leaf = os.path.join(base, "cgroup.procs"), os.path.join(base, LEAF)
    present = pids(_read(procs))
    others = sorted(set(present) - set(descendants(os.getpid())))
    if others:
        return (f"{base} holds {len(others)} process(es) that are not the server's (pid {others[0]}): the "
                f"server moves only its own into a leaf cgroup")
    try:
        os.makedirs(leaf, exist_ok=True)
        for _ in range(5):  # a process the server starts meanwhile is in base too: again
            for pid in present:
                try:
                    _write(os.path.join(leaf, "cgroup.procs"), str(pid))
                except ProcessLookupError:
                    pass  # it ended
            present = pids(_read(procs))
            if not present or set(present) - set(descendants(os.getpid())):
                break  # done, or another process joined: refused below
        if present:
            raise OSError(16, "processes remain in it")
        _write(os.path.join(base, "cgroup.subtree_control"), f"+{controller}")
    except OSError as error:
        _join(base, controller)
        return f"cannot move the server into {leaf} and enable {controller} for its children ({error.strerror})"
    return None


def _join(base: str, controller: str) -> None:
    """Undo ``_split``: disable ``controller`` for ``base``'s children, move the leaf's processes back."""
    leaf = os.path.join(base, LEAF)
    try:
        if controller in _read(os.path.join(base, "cgroup.subtree_control")).split():
            _write(os.path.join(base, "cgroup.subtree_control"), f"-{controller}")
        for pid in pids(_read(os.path.join(leaf, "cgroup.procs"))):
            try:
                _write(os.path.join(base, "cgroup.procs"), str(pid))
            except ProcessLookupError:
                pass
        os.rmdir(leaf)
    except FileNotFoundError:
        pass
    except OSError as error:
        log.warning("code_interpreter: could not move the server back from %s (%s)", leaf, error)


def _try_write(path: str, text: str) -> None:
    try:
        _write(path, text)
    except OSError:
        pass  # an optional setting this kernel lacks


def _sweep(base: str) -> None:
    """Remove the empty cgroups left by servers that ended without closing their pool."""
    try:
        names = [n for n in os.listdir(base) if n.startswith(PREFIX)]
    except OSError:
        return
    for name in names:
        pid = name[len(PREFIX):].partition("-")[0]
        if not pid.isdigit() or os.path.exists(f"/proc/{pid}"):
            continue
        parent = os.path.join(base, name)
        try:
            for child in os.listdir(parent):
                if os.path.isdir(os.path.join(parent, child)):
                    os.rmdir(os.path.join(parent, child))
            os.rmdir(parent)
        except OSError:
            continue
