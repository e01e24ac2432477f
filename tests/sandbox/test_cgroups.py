"""The kernel's backstop for the sandboxes' total memory (asstctl/server/sandbox/cgroups.py): sessions in
child cgroups of one limited parent, a burst between the watchdog's looks stopped by the kernel (the call
names the limit), the cgroups removed when sessions end; cgroup v2's structure (the server moved into a
leaf, the controller enabled for the sandboxes) made for real, with hugetlb standing in for memory where
the v2 hierarchy has no memory controller (as on the machine these were written on), and not made where
it may not be; an unprivileged server falls back to the watchdog and says so. The file formats are read
from this kernel's own files where it has them."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from asstctl.server.sandbox import SandboxConfig
from asstctl.server.sandbox.cgroups import (ENTER, Mount, delegated, directory, limit_bytes, mounts, oom_kills,
                                            own_cgroups, pids, systemd_unit)
from asstctl.server.sandbox.procs import descendants
from tests.sandbox.as_user import PROJECT, UNPRIVILEGED, python_for_user
from tests.sandbox.conftest import needs, require_cgroup, require_root



def read(path):
    with open(path) as handle:
        return handle.read()


OWN = own_cgroups(read("/proc/self/cgroup"))
MOUNTS = mounts(read("/proc/self/mountinfo"))
V1 = next((m for m in MOUNTS if m.fstype == "cgroup" and "memory" in m.options), None)
V1_DIR = directory(V1, OWN["memory"]) if V1 and "memory" in OWN else None


def needs_cgroup(version: str, place: str | None) -> object:
    """Root (failed, not skipped, under ASSTCTL_REQUIRE_ROOT) and a writable hierarchy of ``version`` (failed
    under ASSTCTL_REQUIRE_CGROUPS listing it)."""
    if os.geteuid() != 0:
        return needs("root", "the tests run as uid %d" % os.geteuid(), require_root())
    missing = (f"no cgroup {version} memory hierarchy" if place is None else
               None if os.access(place, os.W_OK) else f"{place} is not writable")
    return needs(f"a writable cgroup {version} hierarchy", missing, require_cgroup(version))


needs_v1 = needs_cgroup("v1", V1_DIR)
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
    # cgroup.procs (this machine's: the test's own cgroup v2 holds it) and systemd's unit cgroups
    assert pids("12\n345\n") == [12, 345] and pids("") == []
    unified = next((m for m in MOUNTS if m.fstype == "cgroup2"), None)
    if unified is not None:
        assert os.getpid() in pids(read(directory(unified, OWN[""]) + "/cgroup.procs"))
    assert systemd_unit("/system.slice/asstctl.service") and systemd_unit("/user.slice/user-1000.slice/session-3.scope")
    assert not systemd_unit("/docker/ab") and not systemd_unit("/system.slice") and not systemd_unit("/")
    assert not delegated(os.path.dirname(__file__))  # no trusted.delegate / user.delegate attribute
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


UNIFIED = next((m for m in MOUNTS if m.fstype == "cgroup2"), None)
needs_v2 = needs_cgroup("v2", UNIFIED.point if UNIFIED else None)
# Run in a fresh v2 cgroup (the server's own): each KernelLimit's first child, its log line, what it left
PROBE = """import json, logging, os, subprocess, sys
logging.basicConfig(level=logging.INFO, format='%(message)s')
from asstctl.server.sandbox import SandboxConfig
from asstctl.server.sandbox.cgroups import KernelLimit, enter, own_cgroups
def where(pid='self'):
    return own_cgroups(open(f'/proc/{pid}/cgroup').read())['']
def probe(controller, mode, aside=None):
    helper = subprocess.Popen(['sleep', '30'])  # a process of the server's: it moves with the server
    kernel = KernelLimit(SandboxConfig(max_total_memory_mb=64, max_total_disk_mb=8, cgroup=mode), controller)
    child = kernel.child()
    seen = dict(version=kernel.version, server=where(), helper=where(helper.pid), left=open('cgroup.procs').read(),
                control=open('cgroup.subtree_control').read().split(), entries=sorted(os.listdir('.')))
    if kernel.version == 2:
        seen['parent_control'] = open(os.path.join(kernel.path, 'cgroup.subtree_control')).read().split()
        seen['child_files'] = sorted(f for f in os.listdir(child.path) if f.startswith(controller + '.'))[:1]
        seen['entered'] = subprocess.run(enter(['cat', '/proc/self/cgroup'], child), capture_output=True,
                                         text=True).stdout.splitlines()[-1]
        seen['removed'] = child.remove() and not os.path.exists(child.path)
        if controller == 'memory':
            seen['max'] = open(os.path.join(kernel.path, 'memory.max')).read().strip()
    kernel.close()
    helper.kill()
    helper.wait()
    seen.update(closed=sorted(os.listdir('.')), server_after=where(), control_after=open('cgroup.subtree_control').read().split())
    return seen
os.chdir(sys.argv[1])
print(json.dumps([probe(*step) for step in json.loads(sys.argv[2])]))
"""


@pytest.fixture
def v2_place():
    """A fresh cgroup below the cgroup2 root (test only: the server never touches the root), removed after."""
    place = os.path.join(UNIFIED.point, f"asstctl-test-{os.getpid()}")
    os.mkdir(place)
    yield place
    for directory_, names, _ in sorted(os.walk(place), key=lambda entry: -len(entry[0])):
        os.rmdir(directory_)


def run_probe(place, steps):
    out = subprocess.run(["/bin/sh", "-c", ENTER, os.path.join(place, "cgroup.procs"), sys.executable, "-c", PROBE,
                          place, json.dumps(steps)], cwd=PROJECT, env={**os.environ, "PYTHONPATH": str(PROJECT)},
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout), [line for line in out.stderr.splitlines() if "total sandbox memory" in line]


@needs_v2
def test_a_v2_cgroup_without_the_memory_controller_is_left_as_it_is_and_the_log_says_why(v2_place):
    """This machine's cgroup2 hierarchy has no memory controller (a hybrid: memory is v1's): the server in a
    writable v2 cgroup is not moved and uses v1 (auto) or the watchdog alone (--code-cgroup v2), saying why."""
    name = "/" + os.path.basename(v2_place)
    offered = read(os.path.join(v2_place, "cgroup.controllers")).split()
    if "memory" in offered:
        pytest.skip("this cgroup2 hierarchy has the memory controller")
    seen, said = run_probe(v2_place, [["memory", "auto"], ["memory", "v2"]])
    reason = f"cgroup v2: {v2_place} offers no memory controller (cgroup.controllers: {' '.join(offered) or 'none'})"
    for step, line in zip(seen, said):
        assert (step["server"], step["helper"], step["server_after"]) == (name, name, name)  # never moved
        assert step["control"] == [] and not [e for e in step["entries"] if e.startswith("asstctl")]
        assert reason in line, line
    assert len(said) == 2 and seen[1]["version"] == 0 and said[1].startswith(
        "code_interpreter: total sandbox memory enforced by the watchdog only") and "cgroup v1" not in said[1]
    if V1_DIR and os.access(V1_DIR, os.W_OK):
        assert seen[0]["version"] == 1 and "enforced by the kernel (cgroup v1 " in said[0], said[0]
        assert said[0].endswith(f"not {reason}")


@needs_v2
def test_the_v2_structure_for_real_with_memory_or_hugetlb_standing_in(v2_place):
    """The no-internal-processes rule holds for every v2 controller: with memory where the cgroup2 hierarchy
    offers it, else hugetlb (this machine's only one) in its place, the server's processes move into a leaf,
    the controller is enabled for the sandboxes' parent and its children, a session enters its child, and
    closing leaves the cgroup as found. Refused while a process that is not the server's is in its cgroup."""
    root_control = os.path.join(UNIFIED.point, "cgroup.subtree_control")
    offered = read(os.path.join(UNIFIED.point, "cgroup.controllers")).split()
    controller = "memory" if "memory" in read(root_control).split() else "hugetlb"
    if controller not in offered:
        pytest.skip("neither memory nor hugetlb in this cgroup2 hierarchy")
    added = controller not in read(root_control).split()
    if added:  # the test's own setup (the server never writes the root): hugetlb offered to v2_place
        with open(root_control, "w") as handle:
            handle.write("+hugetlb")
    stranger = subprocess.Popen(["sleep", "60"])
    try:
        with open(os.path.join(v2_place, "cgroup.procs"), "w") as handle:
            handle.write(str(stranger.pid))
        [refused], said = run_probe(v2_place, [[controller, "v2"]])
        assert refused["version"] == 0 and refused["control"] == [] and "asstctl-server" not in refused["entries"]
        assert f"holds 1 process(es) that are not the server's (pid {stranger.pid})" in said[0], said
        stranger.kill()
        stranger.wait()
        [made], said = run_probe(v2_place, [[controller, "v2"]])
    finally:
        stranger.kill()
        if added:
            try:
                with open(root_control, "w") as handle:
                    handle.write("-hugetlb")
            except OSError:
                pass  # another test's cgroup still enables it
    name = "/" + os.path.basename(v2_place)
    assert made["version"] == 2 and "enforced by the kernel (cgroup v2 " in said[0], said
    assert made["server"] == made["helper"] == name + "/asstctl-server"  # the server and its helper: in the leaf
    assert made["left"] == "" and made["control"] == [controller]  # none left in its cgroup; for its children
    [parent] = [e for e in made["entries"] if e.startswith("asstctl-sandbox-")]
    assert made["parent_control"] == [controller] and made["child_files"]  # the session's child has its files
    assert made["entered"] == f"0::{name}/{parent}/s1" and made["removed"]
    if controller == "memory":
        assert made["max"] == str(72 * 2 ** 20)  # memory + disk caps
    # closed: the parent gone, the server back in its cgroup, the leaf removed, the controller disabled
    assert not [e for e in made["closed"] if e.startswith("asstctl")]
    assert (made["server_after"], made["control_after"]) == (name, [])


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
    assert ("cgroup v2: " in said[0]) == (UNIFIED is not None), said[0]  # why not v2 either
