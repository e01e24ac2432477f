"""The kernel's backstop for the sandboxes' total memory (asstctl/server/sandbox/cgroups.py): sessions in
child cgroups of one limited parent, a burst between the watchdog's looks stopped by the kernel (the call
names the limit), the cgroups removed when sessions end; an unprivileged server falls back to the
watchdog and says so. The file formats are read from this kernel's own files where it has them."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from asstctl.server.sandbox import SandboxConfig
from asstctl.server.sandbox.cgroups import (ENTER, Mount, directory, limit_bytes, mounts, oom_kills, own_cgroups)
from asstctl.server.sandbox.procs import descendants
from tests.sandbox.as_user import PROJECT, UNPRIVILEGED, python_for_user



def read(path):
    with open(path) as handle:
        return handle.read()


OWN = own_cgroups(read("/proc/self/cgroup"))
MOUNTS = mounts(read("/proc/self/mountinfo"))
V1 = next((m for m in MOUNTS if m.fstype == "cgroup" and "memory" in m.options), None)
V1_DIR = directory(V1, OWN["memory"]) if V1 and "memory" in OWN else None
needs_v1 = pytest.mark.skipif(os.geteuid() != 0 or not V1_DIR or not os.access(V1_DIR, os.W_OK),
                              reason="needs root and a writable cgroup v1 memory hierarchy")
# A burst between two of the watchdog's looks (here it looks once a minute, so only the kernel is in time):
# memory held by the cell's process, the OOM killer's choice
BURST = "held = b'x' * ({mb} << 20)\nprint('held')\n"


def test_the_kernel_file_formats_are_parsed():
    # this machine's own files: /proc/self/cgroup and mountinfo
    assert OWN.get("") is not None and all(path.startswith("/") for path in OWN.values())
    assert {m.fstype for m in MOUNTS} <= {"cgroup", "cgroup2"} and MOUNTS
    v2 = own_cgroups("0::/system.slice/asstctl.service\n")  # a systemd host, cgroup v2 only
    assert v2 == {"": "/system.slice/asstctl.service"}
    hybrid = own_cgroups("5:cpu,cpuacct:/a\n4:memory:/process_api/x\n1:name=systemd:/\n0::/\n")
    assert hybrid == {"cpu": "/a", "cpuacct": "/a", "memory": "/process_api/x", "name=systemd": "/", "": "/"}
    [unified, memory] = mounts("41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n"
                               "35 31 0:32 /docker/ab /sys/fs/cgroup/memory rw,nosuid - cgroup cgroup rw,memory\n"
                               "22 1 0:21 / /proc rw - proc proc rw\n")
    assert (unified.fstype, unified.point, memory.root, memory.options) == (
        "cgroup2", "/sys/fs/cgroup/unified", "/docker/ab", {"rw", "memory"})
    # a container's mount shows only its own cgroup: paths below it map below the mount point
    assert directory(memory, "/docker/ab") == "/sys/fs/cgroup/memory"
    assert directory(memory, "/docker/ab/x") == "/sys/fs/cgroup/memory/x"
    assert directory(memory, "/docker/abc") is None and directory(memory, "/") is None
    assert directory(Mount("/", "/sys/fs/cgroup", "cgroup2", set()), "/a/b") == "/sys/fs/cgroup/a/b"
    # memory.events (v2, the kernel's format) and memory.oom_control (v1, this machine's file)
    assert oom_kills("low 0\nhigh 0\nmax 12\noom 2\noom_kill 2\noom_group_kill 1\n") == 2
    if V1_DIR:
        text = read(os.path.join(V1_DIR, "memory.oom_control"))
        assert "oom_kill " in text and oom_kills(text) == int(text.split("oom_kill ")[1].split()[0])
    assert oom_kills("oom_kill_disable 0\nunder_oom 0\n") == 0
    config = SandboxConfig(max_total_memory_mb=100, max_total_disk_mb=20)
    assert limit_bytes(config) == 120 * 2 ** 20  # tmpfs pages are charged as memory
    unbounded = SandboxConfig(max_total_memory_mb=100, max_total_disk_mb=0, max_sessions=2, data_mb=10, shm_mb=4)
    assert limit_bytes(unbounded) == (100 + 2 * (2 * 10 + 4)) * 2 ** 20  # every session's tmpfs at most


@needs_v1
def test_a_burst_the_watchdog_does_not_see_in_time_is_stopped_by_the_kernel(make_sandbox, caplog):
    sandbox = make_sandbox(max_total_memory_mb=150, max_total_disk_mb=16, cpu_seconds=10, watch_seconds=60)
    assert sandbox.run("a", "kept = 1").logs == ""
    assert sandbox.run("b", BURST.format(mb=48) + "del held").logs == "held\n"  # under the limit
    kernel = sandbox.pool.watchdog.kernel
    assert kernel.version == 1 and kernel.path.startswith(V1_DIR + "/asstctl-sandbox-")
    assert int(read(os.path.join(kernel.path, "memory.limit_in_bytes"))) == 166 * 2 ** 20  # memory + disk caps
    children = {}
    for key, session in sandbox.pool.sessions.items():  # every process of the sandbox is in its child
        placed = {int(pid) for pid in read(session.cgroup.procs).split()}
        assert set(descendants(session.process.pid)) <= placed and len(placed) >= 3  # bwrap, the REPL, its cell
        children[key] = session.cgroup.path
    assert len(set(children.values())) == 2
    over = sandbox.run("b", BURST.format(mb=160))
    assert over.failure == "crashed" and "--code-max-total-memory-mb" in over.logs, over.logs
    assert "enforced by the kernel at 166 MB" in over.logs and "the kernel ended a process" in over.logs
    # the watchdog saw nothing over its own limits (it may end the session for the kernel, with the same words)
    assert not [r for r in caplog.records if "together used" in r.getMessage()]
    assert not os.path.exists(children["b"])  # removed with its session
    assert sandbox.run("a", "print(kept)").logs == "1\n"  # the other session lives on
    assert sandbox.run("b", "print('again')").logs == "again\n"  # a fresh session, in a fresh child
    parent = kernel.path
    sandbox.loop.run_until_complete(sandbox.pool.aclose())
    assert not os.path.exists(parent) and kernel.path is None


@needs_v1
def test_a_server_in_a_cgroup2_cgroup_never_uses_v2():
    """cgroup v2 enables the memory controller for children only in a cgroup without processes, and the
    server's holds the server (never moved): a server placed in a fresh v2 cgroup uses v1 here (none where
    v1 is not writable: the watchdog alone, tests below)."""
    unified = next((m for m in MOUNTS if m.fstype == "cgroup2"), None)
    if unified is None or not os.access(unified.point, os.W_OK):
        pytest.skip("no writable cgroup2 mount")
    place = os.path.join(unified.point, f"asstctl-test-{os.getpid()}")
    os.mkdir(place)
    probe = ("import json\nfrom asstctl.server.sandbox import SandboxConfig\n"
             "from asstctl.server.sandbox.cgroups import KernelLimit, own_cgroups\n"
             "kernel = KernelLimit(SandboxConfig(max_total_memory_mb=64, max_total_disk_mb=8))\nchild = kernel.child()\n"
             "print(json.dumps([own_cgroups(open('/proc/self/cgroup').read())[''], kernel.version, "
             "child.path.startswith(kernel.path)]))\nkernel.close()")
    try:
        out = subprocess.run(["/bin/sh", "-c", ENTER, os.path.join(place, "cgroup.procs"), sys.executable, "-c", probe],
                             cwd=PROJECT, env={**os.environ, "PYTHONPATH": str(PROJECT)}, capture_output=True,
                             text=True, timeout=60)
    finally:
        os.rmdir(place)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == ["/" + os.path.basename(place), 1, True]


def test_an_unprivileged_server_falls_back_to_the_watchdog_and_says_so(tmp_path):
    prefix = []
    if os.geteuid() == 0:
        prefix = ["setpriv", f"--reuid={UNPRIVILEGED}", f"--regid={UNPRIVILEGED}", "--clear-groups"]
    packages = [p for p in sys.path if p.endswith(("site-packages", "dist-packages")) and os.path.isdir(p)]
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": "/tmp",
           "PYTHONPATH": os.pathsep.join([str(PROJECT), *packages])}
    python = python_for_user(prefix, env)
    assert python, "no Python the unprivileged user can run with this checkout (see tests/sandbox/as_user.py)"
    script = ("import logging, os\nlogging.basicConfig(level=logging.INFO, format='%(message)s')\n"
              "from tests.sandbox.conftest import Driver\n"
              "driver = Driver(max_total_memory_mb=64, max_total_disk_mb=8)\n"
              "print('uid', os.geteuid(), driver.run('t', 'print(6 * 7)').logs.strip(), "
              "driver.pool.watchdog.kernel.version, flush=True)\ndriver.close()")
    out = subprocess.run([*prefix, python, "-c", script], cwd=PROJECT, env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["uid", str(UNPRIVILEGED if prefix else os.geteuid()), "42", "0"], out
    said = [line for line in out.stderr.splitlines() if "total sandbox memory" in line]
    assert len(said) == 1 and said[0].startswith("code_interpreter: total sandbox memory enforced by the "
                                                 "watchdog only"), out.stderr
    assert "cgroup v1:" in said[0] and (not V1_DIR or "not writable by this user" in said[0])
    unified = any(m.fstype == "cgroup2" for m in MOUNTS)
    assert ("cgroup v2 is not used (the server's cgroup holds the server)" in said[0]) == unified, said[0]
