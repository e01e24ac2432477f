"""The command line that starts one sandboxed REPL: bubblewrap's arguments, the REPL's settings.

The sandbox sees: the system directories needed to run Python (read-only), this Python's install
and its site-packages (read-only, at their own paths, and nothing else of the directories around
them), a private ``/tmp``, ``/mnt/data`` and ``/dev/shm`` (size-capped tmpfs), ``/proc`` and a minimal
read-only ``/dev``; the root is read-only whatever user the server runs as. No network (an empty network namespace), its own pid/ipc/uts namespaces, a clean
environment, no capabilities once the REPL has dropped to its session uid.
"""

from __future__ import annotations

import base64
import errno
import json
import os
import platform
import secrets
import shutil
import site
import struct
import sys
import tempfile
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

INSTALL_HINT = (
    "code_interpreter runs code in a bubblewrap sandbox, and `bwrap` is not installed on this server. "
    "Install it (Debian/Ubuntu: `apt-get install bubblewrap`; Fedora: `dnf install bubblewrap`) and "
    "restart `asstctl serve`; for development only, `asstctl serve --unsafe-code-interpreter` runs "
    "code without a sandbox."
)
SYSTEM_LINKS = ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
ETC_FILES = ("ld.so.cache", "ld.so.conf", "ld.so.conf.d", "alternatives", "localtime", "fonts", "mime.types")
UID_RANGE = (1 << 20, 1 << 30)  # per-session uids when the server runs as root (never a real user)
# System calls refused in the sandbox (seccomp): they make memory no RSS, no size-capped tmpfs and so no
# limit sees (System V shared memory and message queues, memfds, secret memory). Per architecture: its
# AUDIT_ARCH and the numbers of shmget, msgget, memfd_create, memfd_secret.
REFUSED_CALLS = {"x86_64": (0xC000003E, (29, 68, 319, 447)), "aarch64": (0xC00000B7, (194, 186, 279, 447))}


@dataclass
class SandboxConfig:
    """Limits of one code_interpreter call and of the sessions (``asstctl serve --code-*`` flags)."""

    wall_seconds: float = 60.0  # wall time of one call: then the cell is interrupted (the session restarts if it goes on)
    interrupt_grace_seconds: float = 5.0  # after the wall time, how long an interrupted cell has to stop
    cpu_seconds: int = 30  # CPU time of one call (the cell gets an exception)
    memory_mb: int = 1024  # address space of each process (RLIMIT_AS)
    max_processes: int = 16  # processes and threads of one session (RLIMIT_NPROC)
    output_bytes: int = 20_000  # logs kept per call; the rest is counted and dropped
    data_mb: int = 256  # size of /mnt/data (and of /tmp)
    shm_mb: int = 64  # size of the private /dev/shm
    max_inodes: int = 100_000  # files and directories in a session's /tmp, /mnt/data and /dev/shm (limits.py)
    file_mb: int = 64  # largest file a call may write (RLIMIT_FSIZE); bigger files are not returned
    idle_seconds: float = 1200.0  # a session unused this long is ended (the API keeps 20 min)
    max_sessions: int = 16  # live sessions; beyond it the least recently used idle one is ended
    max_total_memory_mb: int = 4096  # memory of all sessions together (0: no cap); beyond it the largest ends
    max_total_disk_mb: int = 4096  # tmpfs bytes of all sessions together (0: no cap); beyond it the largest ends
    cgroup: str = "auto"  # the kernel's backstop (cgroups.py): auto (v2, else v1), v2, v1 or none (the watchdog alone)
    watch_seconds: float = 0.25  # how often the watchdog (limits.py) looks at the sessions
    start_seconds: float = 15.0  # a session's start (bwrap + Python): far above the ~100 ms it takes
    run_output_mb: int = 64  # files a run's calls may store (assistants_output)
    thread_output_mb: int = 256  # files a thread's calls may store (counted in the store)
    unsafe: bool = False  # run the REPL WITHOUT a sandbox (development only, logged loudly)
    bwrap: str | None = None  # path of bwrap; default: found on PATH

    def bwrap_path(self) -> str | None:
        if self.bwrap:
            return self.bwrap if os.access(self.bwrap, os.X_OK) else None
        return shutil.which("bwrap")


def repl_source() -> str:
    """The REPL's text: its look at /mnt/data (``repl_files.py``), then the supervisor and worker (``repl.py``)."""
    package = resources.files("asstctl.server.sandbox")
    return package.joinpath("repl_files.py").read_text() + "\n\n" + package.joinpath("repl.py").read_text()


def python_binary() -> str:
    return os.path.realpath(sys.executable)


def python_paths() -> list[str]:
    """Directories the sandbox must see read-only to run this Python and its packages."""
    paths = [os.path.realpath(sys.base_prefix)]
    for entry in [*site.getsitepackages(), *sys.path]:
        if entry.endswith(("site-packages", "dist-packages")) and os.path.isdir(entry):
            paths.append(os.path.realpath(entry))
    kept: list[str] = []
    for path in sorted(set(paths), key=len):
        if path.startswith("/usr/") or path == "/usr":
            continue
        if not any(path == k or path.startswith(k + "/") for k in kept):
            kept.append(path)
    return kept


def site_dirs() -> list[str]:
    """Site directories the REPL adds (with their .pth files): the venv's, if any."""
    return [p for p in python_paths() if p.endswith(("site-packages", "dist-packages"))]


def settings(config: SandboxConfig, uid: int | None, data_dir: str) -> dict:
    limit = lambda mb: int(mb) * 1024 * 1024  # noqa: E731
    rlimits = {
        "RLIMIT_AS": limit(config.memory_mb),
        "RLIMIT_NPROC": int(config.max_processes),
        "RLIMIT_FSIZE": limit(config.file_mb),
        "RLIMIT_CORE": 0,
        "RLIMIT_NOFILE": 256,
    }
    if data_dir != "/mnt/data":  # no sandbox: RLIMIT_NPROC would count every process of the server's uid (the
        del rlimits["RLIMIT_NPROC"]  # watchdog counts the session's own instead: limits.py)
    return {
        "rlimits": rlimits,
        "uid": uid,
        "cpu_seconds": int(config.cpu_seconds),
        "output_bytes": int(config.output_bytes),
        "max_file_bytes": limit(config.file_mb),
        "max_files": 20,
        "max_images": 10,
        "max_image_bytes": 4 * 1024 * 1024,
        "data_dir": data_dir,
        "sandboxed": data_dir == "/mnt/data",  # False: --unsafe-code-interpreter (no pid namespace)
        "site_dirs": site_dirs(),
        "seccomp": base64.b64encode(SECCOMP).decode() if SECCOMP else None,
    }


def seccomp_filter(machine: str | None = None) -> bytes | None:
    """A classic BPF program (``struct sock_filter[]``) that refuses ``REFUSED_CALLS`` with EPERM and kills a
    process calling in through another ABI (i386/x32 on x86_64, arm32 on aarch64); None on other machines."""
    arch, numbers = REFUSED_CALLS.get(machine or platform.machine(), (None, ()))
    if arch is None:
        return None
    load, jeq, jge, ret = 0x20, 0x15, 0x35, 0x06  # BPF_LD|W|ABS, BPF_JMP|JEQ|K, BPF_JMP|JGE|K, BPF_RET|K
    allow, refuse, kill = 0x7FFF0000, 0x00050000 | errno.EPERM, 0x80000000  # SECCOMP_RET_*
    checks = [(jge, 0x40000000)] if arch == 0xC000003E else []  # x32's numbers on x86_64
    checks += [(jeq, number) for number in numbers]
    program = [(load, 0, 0, 4), (jeq, 1, 0, arch), (ret, 0, 0, kill), (load, 0, 0, 0)]  # seccomp_data.arch, .nr
    program += [(code, len(checks) - i, 0, k) for i, (code, k) in enumerate(checks)]  # jump to ``refuse``
    program += [(ret, 0, 0, allow), (ret, 0, 0, refuse)]
    return b"".join(struct.pack("=HBBI", *instruction) for instruction in program)


def environment(home: str, tmp: str = "/tmp") -> dict[str, str]:
    """The whole environment of the sandboxed code: nothing of the server's (``tmp``: its temporary files)."""
    return {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": home,
        "TMPDIR": tmp,
        "LANG": "C.UTF-8",
        "MPLBACKEND": "Agg",
        "MPLCONFIGDIR": f"{tmp}/matplotlib",
        "XDG_CACHE_HOME": f"{tmp}/cache",
        "OPENBLAS_NUM_THREADS": "1",
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONUNBUFFERED": "1",
    }


def new_uid() -> int | None:
    """A fresh unprivileged uid for a session when we are root (RLIMIT_NPROC does not bind root)."""
    return secrets.randbelow(UID_RANGE[1] - UID_RANGE[0]) + UID_RANGE[0] if os.geteuid() == 0 else None


def bwrap_argv(config: SandboxConfig, bwrap: str, uid: int | None) -> list[str]:
    # --as-pid-1: no bwrap reaper in the sandbox (it would keep the server's pipes open where the cell
    # could reach them through /proc/1/fd); the REPL's supervisor is pid 1 and reaps instead.
    argv = [bwrap, "--die-with-parent", "--new-session", "--clearenv", "--as-pid-1"]
    if uid is not None:
        # Root: namespaces without a user namespace; the REPL switches to ``uid`` and so loses these
        # two capabilities (and RLIMIT_NPROC then applies, which it never does to uid 0).
        argv += ["--unshare-ipc", "--unshare-pid", "--unshare-net", "--unshare-uts", "--unshare-cgroup-try",
                 "--cap-drop", "ALL", "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
    else:
        argv += ["--unshare-all", "--unshare-user", "--disable-userns"]
    for name, value in environment("/mnt/data").items():
        argv += ["--setenv", name, value]
    argv += ["--ro-bind", "/usr", "/usr"]
    for path in SYSTEM_LINKS:
        if os.path.islink(path):
            argv += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            argv += ["--ro-bind", path, path]
    argv += ["--perms", "0755", "--dir", "/etc"]
    for name in ETC_FILES:
        if os.path.exists(f"/etc/{name}"):
            argv += ["--ro-bind", f"/etc/{name}", f"/etc/{name}"]
    size = str(int(config.data_mb) * 1024 * 1024)
    # The private /tmp first, then Python: a server installed under /tmp (a venv in a CI checkout
    # there) must stay visible on top of it, not be hidden by it.
    argv += ["--proc", "/proc", "--dev", "/dev", "--perms", "01777", "--size", size, "--tmpfs", "/tmp"]
    made: set[str] = {"/", "/usr", "/etc", "/tmp"}
    for path in python_paths():
        argv += _parents(path, made) + ["--ro-bind", path, path]
    # Whatever user we run as, every writable place is a size-capped tmpfs and the rest is read-only
    # (without it, a non-root server's sandbox root and /dev are writable tmpfs of no size limit).
    argv += ["--perms", "01777", "--size", str(int(config.shm_mb) * 1024 * 1024), "--tmpfs", "/dev/shm",
             "--remount-ro", "/dev",
             "--perms", "0755", "--dir", "/mnt",
             "--perms", "0777", "--size", size, "--tmpfs", "/mnt/data",
             "--remount-ro", "/",
             "--chdir", "/mnt/data"]
    return argv


def _parents(path: str, made: set[str]) -> list[str]:
    """``--dir`` for each missing ancestor of ``path``, world-readable (bwrap's default is 0700)."""
    args: list[str] = []
    for parent in reversed(Path(path).parents):
        text = str(parent)
        if text not in made:
            made.add(text)
            args += ["--perms", "0755", "--dir", text]
    return args


def command(config: SandboxConfig) -> tuple[list[str], dict[str, str], str | None]:
    """(argv, environment of the process we start, a private directory to remove afterwards).

    Sandboxed: ``bwrap ... python -I -c <repl> <settings>``. Unsafe: the same REPL, no sandbox, in a
    fresh temporary directory: its ``data`` stands in for /mnt/data, its ``tmp`` for /tmp (``TMPDIR``), so
    that the watchdog's ``--code-data-mb`` on the directory counts temporary files too.
    """
    if config.unsafe:
        root = tempfile.mkdtemp(prefix="asstctl-unsafe-ci-")
        data, tmp = os.path.join(root, "data"), os.path.join(root, "tmp")
        os.mkdir(data, 0o700)
        os.mkdir(tmp, 0o700)
        argv = [python_binary(), "-I", "-c", repl_source(), json.dumps(settings(config, None, data))]
        return argv, environment(data, tmp), root
    bwrap = config.bwrap_path()
    if bwrap is None:
        raise SandboxUnavailable(INSTALL_HINT)
    uid = new_uid()
    tail = [python_binary(), "-I", "-c", repl_source(), json.dumps(settings(config, uid, "/mnt/data"))]
    return bwrap_argv(config, bwrap, uid) + ["--", *tail], {}, None


SECCOMP = seccomp_filter()


class SandboxUnavailable(Exception):
    """No sandbox can be started on this server (bwrap missing or failing)."""
