"""The escape and exhaustion corpus: every case runs for real through the code_interpreter tool of a
real server (with a database file), is contained, ends failed or truncated, and the server stays
healthy. Twice, with the same results: the server as root (the REPL drops to a session uid) and as
an unprivileged user (bubblewrap in a user namespace, like the Dockerfile's ``USER asstctl``)."""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

import pytest

import asstctl
from asstctl.server.embedded import start_server
from asstctl.server.sandbox import SandboxConfig
from tests.conftest import make_client
from tests.sandbox.as_user import UserServer
from tests.sandbox.conftest import TEST_LIMITS, require_root
from tests.sandbox.tool_driver import ToolDriver

SECRET = "sk-asstctl-test-secret-must-not-leak-0123456789"
PROJECT = Path(asstctl.__file__).resolve().parents[1]


class RootServer:
    """The server in this process (the tests run as root in CI) and its tool."""

    def __init__(self, db: Path):
        self.db = db
        self.patch = pytest.MonkeyPatch()
        self.patch.setenv("ASSTCTL_TEST_UPSTREAM_KEY", SECRET)  # in the server's environment, never in the sandbox's
        self.running = start_server(str(db), sandbox=SandboxConfig(**TEST_LIMITS))
        self.server = self.running.__enter__()
        self.tool = ToolDriver(self.server)
        self.base_url, self.port, self.api_key = self.server.base_url, self.server.port, self.server.api_key

    def call(self, code: str, thread_id: str):
        return self.tool.call(code, thread_id)

    def set_wall(self, seconds: float) -> None:
        self.configure(wall_seconds=seconds)

    def configure(self, **limits) -> None:
        for name, value in limits.items():
            setattr(self.tool.tool.config, name, value)

    def end_sessions(self) -> None:
        self.tool.end_sessions()

    def idle(self, seconds: float) -> None:
        self.tool.idle(seconds)

    def close(self) -> None:
        self.tool.close()
        self.running.__exit__(None, None, None)
        self.patch.undo()


@pytest.fixture(scope="module", params=["root", "unprivileged"])
def served(request, tmp_path_factory):
    if request.param == "root":
        if os.geteuid() != 0:  # .ci/run, as root, sets ASSTCTL_REQUIRE_ROOT: then this pass cannot go missing
            (pytest.fail if require_root() else pytest.skip)("the root pass needs root (CI runs the tests as root)")
        server = RootServer(tmp_path_factory.mktemp("escape") / "server.sqlite3")
    else:
        server = UserServer(TEST_LIMITS, {"ASSTCTL_TEST_UPSTREAM_KEY": SECRET})
    yield server
    server.close()


@pytest.fixture
def wall(served):
    """Lower the wall-time limit of the server's sandbox for one test."""
    yield served.set_wall
    served.set_wall(TEST_LIMITS["wall_seconds"])


@pytest.fixture
def call(served, contract):
    sdk = make_client(served, contract)
    thread = sdk.beta.threads.create()

    def run(code):
        return served.call(code, thread.id)

    yield run
    # Contained: the same thread's sandbox still answers, and so does the server.
    assert run("print('still alive')").output == "still alive\n"
    assert sdk.beta.threads.retrieve(thread.id).id == thread.id
    sdk.close()


def test_no_loopback_to_the_server(served, call):
    server = served
    with socket.create_connection(("127.0.0.1", server.port), timeout=5):
        pass  # reachable from outside the sandbox
    outcome = call(f"import socket\nsocket.create_connection(('127.0.0.1', {server.port}), timeout=5)")
    assert "ConnectionRefusedError" in outcome.output


def test_no_network_outside(call):
    outcome = call("import socket\nsocket.create_connection(('192.0.2.1', 80), timeout=5)")
    assert "Network is unreachable" in outcome.output


def test_the_servers_environment_is_invisible(call):
    code = ("import os, glob\nfound = [k for k, v in os.environ.items() if 'asstctl' in (k + v).lower()]\n"
            "for path in glob.glob('/proc/*/environ'):\n"
            "    try:\n        found += [path] if b'ASSTCTL' in open(path, 'rb').read() else []\n"
            "    except OSError:\n        pass\n"
            "print('found:', found, sorted(os.environ))")
    outcome = call(code)
    assert outcome.output.startswith("found: [] ") and SECRET not in outcome.output
    assert "'MPLBACKEND'" in outcome.output  # the clean environment it does get


def test_the_servers_files_are_invisible(served, call):
    db = served.db
    assert db.exists() and (PROJECT / "pyproject.toml").exists()
    files = [str(db), str(PROJECT / "pyproject.toml"), str(PROJECT / "asstctl" / "__init__.py"), "/etc/passwd",
             "/etc/shadow", str(Path.home() / ".bash_history")]
    code = (f"import os\nfor p in {files!r}:\n"
            "    try:\n        open(p, 'rb').read()\n        print('READ', p)\n"
            "    except OSError as e:\n        print('blocked', type(e).__name__)\n"
            f"for d in {[str(db.parent), str(PROJECT)]!r}:\n"
            "    print('listing', os.listdir(d) if os.path.isdir(d) else None)")
    outcome = call(code)
    assert "READ" not in outcome.output and outcome.output.count("blocked") == len(files)
    listings = [line for line in outcome.output.splitlines() if line.startswith("listing")]
    # The database's folder is absent; of the project only the venv's site-packages may show (read-only).
    assert listings[0] == "listing None" and listings[1] in ("listing None", "listing ['.venv']"), listings


def test_no_writes_outside_mnt_data(call):
    targets = ["/escape.txt", "/usr/escape.txt", "/etc/escape.txt", f"{sys.base_prefix}/escape.txt",
               f"{Path(asstctl.__file__).parent}/escape.txt", f"{PROJECT}/escape.txt"]
    code = (f"for p in {targets!r}:\n"
            "    try:\n        open(p, 'w').write('x')\n        print('WROTE', p)\n"
            "    except OSError as e:\n        print('blocked', type(e).__name__)")
    outcome = call(code)
    assert "WROTE" not in outcome.output and outcome.output.count("blocked") == len(targets)
    assert not any(Path(p).exists() for p in targets)
    inside = ["/x", "/etc/x", "/mnt/x", "/dev/x", "/usr/x", "/proc/x", "/fill"]  # the sandbox's own root
    outcome = call(f"for p in {inside!r}:\n"
                   "    try:\n        open(p, 'w').write('x')\n        print('WROTE', p)\n"
                   "    except OSError as e:\n        print('blocked', e.strerror)")
    assert "WROTE" not in outcome.output and outcome.output.count("blocked") == len(inside), outcome.output


def test_every_writable_place_is_private_and_capped(call):
    fill = ("import os\nfor place in ['/tmp', '/mnt/data', '/dev/shm']:\n    i = 0\n    try:\n"
            "        while i < 64:\n            open(f'{place}/fill{i}', 'wb').write(b'x' * 2 ** 22)\n            i += 1\n"
            "    except OSError as e:\n        print(place, e.strerror, i * 4, 'MB')\n"
            "    for name in os.listdir(place):\n        os.remove(os.path.join(place, name))\n")
    outcome = call(fill)
    caps = {"/tmp": TEST_LIMITS["data_mb"], "/mnt/data": TEST_LIMITS["data_mb"], "/dev/shm": TEST_LIMITS["shm_mb"]}
    *lines, hint = outcome.output.splitlines()
    assert hint == "[sandbox limits: /mnt/data and /tmp hold at most 32 MB each (--code-data-mb), /dev/shm 8 MB (--code-shm-mb)]"
    lines = [line.split(" ", 1) for line in lines]
    assert [place for place, _ in lines] == list(caps), outcome.output
    for place, rest in lines:
        assert rest.startswith("No space left on device ") and caps[place] - 4 <= int(rest.split()[-2]) <= caps[place]


def test_fork_bomb(call):
    outcome = call("import os\nwhile True:\n    os.fork()")
    assert "Resource temporarily unavailable" in outcome.output
    assert "[sandbox limits: a session may run at most 16 processes and threads (--code-max-processes)]" \
        in outcome.output, outcome.output
    left = call("import os\nprint(sorted(int(p) for p in os.listdir('/proc') if p.isdigit()))")
    assert len(eval(left.output)) <= 3  # its init, this REPL (and at most a dying straggler): the bomb was reaped


def test_memory_bomb(call):
    outcome = call("hog = bytearray(8 * 1024 ** 3)")
    assert "MemoryError" in outcome.output
    assert outcome.output.endswith("\n[sandbox limits: a process may use at most 1024 MB of address space "
                                   "(--code-memory-mb)]"), outcome.output


def test_endless_loop_hits_the_cpu_limit(call, wall):
    wall(600)  # only the CPU limit (1 s) can end it
    outcome = call("while True:\n    pass")
    assert "CPU time limit of 1 s per call exceeded (--code-cpu-seconds)" in outcome.output


def test_endless_sleep_hits_the_wall_time_limit_and_is_interrupted(call, wall):
    call("kept = 1")
    wall(3)
    outcome = call("import time\nwhile True:\n    time.sleep(1)")
    assert "KeyboardInterrupt: stopped: the call ran longer than the wall-time limit" in outcome.output
    assert outcome.output.endswith("[Execution interrupted: it ran longer than the wall-time limit of 3 s (--code-timeout).]")
    assert call("kept").output == "1\n"  # interrupted, not restarted: the session lives on


def test_a_cell_that_ignores_the_interrupt_is_ended_with_its_session(call, wall):
    call("kept = 1")
    wall(2)
    code = "import time\nwhile True:\n    try:\n        time.sleep(1)\n    except KeyboardInterrupt:\n        pass"
    outcome = call(code)
    assert "(--code-timeout) and did not stop when interrupted" in outcome.output and "restarted" in outcome.output
    assert "NameError" in call("kept").output


def test_huge_output_is_truncated(call):
    outcome = call("for i in range(20000):\n    print('spam' * 100)")
    (output,) = outcome.call["code_interpreter"]["outputs"]
    assert output["logs"].startswith("spam") and len(output["logs"]) < 2200
    assert output["logs"].endswith(f"[output truncated: {20000 * 401 - 2000} more bytes (--code-output-bytes)]")


def test_endless_output_is_truncated_and_interrupted(call, wall):
    wall(2)
    outcome = call("import time\nwhile True:\n    print('spam' * 1000)\n    time.sleep(0.001)")  # ended by the wall time
    (output,) = outcome.call["code_interpreter"]["outputs"]
    assert output["logs"].startswith("spamspam") and "KeyboardInterrupt" not in output["logs"][:2000]
    assert "[Execution interrupted" in output["logs"] and "[output truncated:" in output["logs"]


def test_disk_fill(call):
    outcome = call("with open('/mnt/data/fill', 'wb') as f:\n    while True:\n        f.write(b'x' * 2 ** 20)")
    assert "File too large" in outcome.output and "a file may be at most 8 MB (--code-file-mb)" in outcome.output
    many = call("i = 0\nwhile True:\n    open(f'/mnt/data/f{i}', 'wb').write(b'x' * 2 ** 22)\n    i += 1")
    assert "No space left on device" in many.output
    assert "/mnt/data and /tmp hold at most 32 MB each (--code-data-mb), /dev/shm 8 MB (--code-shm-mb)" in many.output
    files = call("held = [open('/dev/null') for _ in range(300)]")
    assert "Too many open files" in files.output and "a process may have at most 256 open files" in files.output
    assert sum(len(path) for path, _ in many.written_files) < 10_000 and len(many.written_files) <= 20


def test_empty_files_meet_the_limit_on_files(call):
    """tmpfs' size cap counts bytes, not inodes: 300,000 empty files held ~246 MB of the kernel's memory while
    the disk seen was 0. Files are made until refused or for 20 s at most; the session ends at 2,000 files."""
    code = ("import time\nstart, i = time.monotonic(), 0\nwhile time.monotonic() - start < 20:\n    try:\n"
            "        open(f'/tmp/e{i}', 'w').close()\n    except OSError as e:\n        print('refused', e)\n"
            "        break\n    i += 1\n    if i > 2000:\n        time.sleep(0.001)\nprint('made', i)")
    outcome = call(code)  # (past the limit it slows down: the watchdog, not the 1 s CPU limit, must end it)
    assert "files and directories in /tmp, /mnt/data and /dev/shm, over the limit of 2000 per session (--code-max-inodes" in \
        outcome.output and "session was restarted" in outcome.output, outcome.output


def test_killing_itself_restarts_the_session(call):
    outcome = call("import os, signal\nos.kill(os.getpid(), signal.SIGKILL)")
    assert "the cell's process ended (signal 9)" in outcome.output and "session was restarted" in outcome.output


# The cell's fds, and the fds in /proc it can open again (only its own: never the supervisor's, pid 1).
FDS = r"""import glob, os
fds = {}
for fd in sorted(int(n) for n in os.listdir('/proc/self/fd')):
    try:
        link = os.readlink(f'/proc/self/fd/{fd}')
    except OSError:  # the fd listdir read its directory with, closed since
        continue
    fds[fd] = link
print('fds', [(fd, 'pipe' if link.startswith('pipe:') else link) for fd, link in fds.items()],
      len(set(fds.values())))
opened = []
for path in sorted(set(glob.glob('/proc/self/fd/*') + glob.glob('/proc/[0-9]*/fd/*'))):
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))
    except OSError:
        continue
    opened.append(path.split('/')[2])
print('opened', sorted(set(opened)) == sorted({'self', str(os.getpid())}), len(opened))
"""
# A valid answer, forged (a whole PNG's signature only, a file with a valid path, the predictable marks of the
# first calls): logs "FORGED" (written \\u0046ORGED, so a frame merely echoed as the cell's output does not show it).
# Through every fd the cell can reach in /proc, its own fds 0-4 included (4: the worker's reply pipe).
FORGE = r"""import glob, json, os, struct, time
body = ('{"logs": "\\u0046ORGED", "truncated": 0, "error": false, "images": ["iVBORw0KGgpmb3JnZWQ="], "skipped": [], '
        '"mark": 1, "token": "0", "files": [{"path": "/mnt/data/forged.txt", "data": "Rk9SR0VE"}]}').encode()
def forge(fd):
    try:
        os.write(fd, struct.pack('>I', len(body)) + body)
    except OSError:
        pass
for fd in range(5):  # as inherited
    forge(fd)
for path in sorted(set(glob.glob('/proc/self/fd/*') + glob.glob('/proc/[0-9]*/fd/*'))):  # opened again
    try:
        fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
    except OSError:
        continue
    forge(fd)
    os.close(fd)
time.sleep(0.5)
print('still running')
"""


def test_forged_protocol_frames_reach_nothing_of_the_servers_channel(call):
    outcome = call(FDS)
    # The cell's fds are exactly its own: /dev/null, its output pipe (1 and 2), its two pipes to the supervisor.
    assert "fds [(0, '/dev/null'), (1, 'pipe'), (2, 'pipe'), (3, 'pipe'), (4, 'pipe')] 4\n" in outcome.output, \
        outcome.output
    assert outcome.output.rstrip().endswith("opened True 10"), outcome.output
    # The answers it forges through them: none is taken for the call's answer, no forged file or image comes back,
    # and the call that forged them (not the next one) ends its session, saying why.
    forged = call(FORGE)
    assert "FORGED" not in forged.output and not forged.written_files and "[file saved" not in forged.output
    assert forged.output.startswith("Execution stopped: the cell's process sent a malformed answer (not the "
                                    "worker's own: the code wrote to the worker's reply pipe)"), forged.output
    assert "still running" not in forged.output
    again = call("import os\nprint('after', os.path.exists('/mnt/data/forged.txt'))")
    assert again.output == "after False\n", again.output


# A figure that is not a PNG, through a stand-in for matplotlib's pyplot (whose figures the worker collects).
FAKE_FIGURE = """import sys, types
class Figure:
    def savefig(self, buffer, format):
        buffer.write(b'\\\\x89PNG\\\\r\\\\n\\\\x1a\\\\nforged')
sys.modules['matplotlib.pyplot'] = types.SimpleNamespace(get_fignums=lambda: [1], figure=lambda number: Figure(),
                                                         close=lambda which: None, show=lambda: None)
"""


def test_an_image_that_is_not_a_whole_png_ends_the_call_that_made_it(call):
    outcome = call(FAKE_FIGURE)
    assert outcome.output.startswith("Execution stopped: the cell's process sent a malformed answer (an image that "
                                     "is not a whole PNG (its signature, IHDR first, IEND last))"), outcome.output


def test_forged_end_marks_do_not_scramble_later_calls(call):
    """The end of a cell's output is a mark the supervisor writes after the worker answered, random for each
    call: a cell that writes the marks a predictable scheme would use next cannot move later calls' output."""
    marks = call("import os\nsent = os.write(1, b'before\\n' + b''.join(b'\\x00asstctl-cell-end-%d\\x00' % i "
                 "for i in range(1, 40)) + b'after\\n')")
    assert marks.output.startswith("before\n") and marks.output.endswith("after\n"), repr(marks.output[-300:])
    assert call("print('second call')").output == "second call\n"
    assert call("print('third call')").output == "third call\n"


PTRACE = """import ctypes, errno, os
libc = ctypes.CDLL(None, use_errno=True)
for name, pid in (('init', 1), ('parent', os.getppid())):
    print(name, pid, libc.ptrace(16, pid, 0, 0), errno.errorcode[ctypes.get_errno()])  # PTRACE_ATTACH
    print(name, pid, libc.ptrace(0x4206, pid, 0, 0), errno.errorcode[ctypes.get_errno()])  # PTRACE_SEIZE
    try:
        open(f'/proc/{pid}/mem', 'rb').read(1)
        print(name, 'mem READ')
    except OSError as e:
        print(name, 'mem', type(e).__name__)
"""


def test_no_ptrace_of_the_supervisor(call):
    """The cell's parent is the sandbox's pid 1, the supervisor that holds the server's pipes: not dumpable,
    so neither ptrace nor its /proc/<pid>/mem reaches it."""
    outcome = call(PTRACE)
    assert outcome.output == "".join(f"{name} 1 -1 EPERM\n{name} 1 -1 EPERM\n{name} mem PermissionError\n"
                                     for name in ("init", "parent")), outcome.output


def test_another_threads_mnt_data_is_invisible(served, call):
    other = "thread_other_" + os.urandom(6).hex()
    secret = "another-thread-" + os.urandom(6).hex()
    written = served.call(f"open('/mnt/data/{secret}.txt', 'w').write('{secret}')", other)
    assert [path for path, _ in written.written_files] == [f"/mnt/data/{secret}.txt"], written.output
    code = ("import glob, os\nfound = glob.glob('/mnt/data/*') + glob.glob('/tmp/*') + glob.glob('/dev/shm/*')\n"
            "found += glob.glob('/proc/*/root/mnt/data/*') + glob.glob('/proc/*/cwd/*')\n"
            f"print([p for p in found if '{secret}' in p], len(glob.glob('/proc/[0-9]*')))")
    outcome = call(code)
    assert outcome.output.startswith("[] ") and int(outcome.output.split()[-1]) <= 3, outcome.output
    assert served.call(f"print(open('/mnt/data/{secret}.txt').read())", other).output == f"{secret}\n"  # it was there


def test_raising_the_cpu_soft_limit_meets_the_hard_one(call, wall):
    wall(60)
    code = ("import resource\nresource.setrlimit(resource.RLIMIT_CPU, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))\n"
            "while True:\n    pass")
    outcome = call(code)
    assert "CPU-time limit of 1 s per call (--code-cpu-seconds; a hard limit" in outcome.output and "session was restarted" in outcome.output


HIDDEN = """import ctypes, errno, os
libc = ctypes.CDLL(None, use_errno=True)
made = [libc.shmget(0, 50 * 2 ** 20, 0o1600) for _ in range(12)]  # System V shared memory
print('shmget', made.count(-1), errno.errorcode[ctypes.get_errno()])
print('msgget', libc.msgget(0, 0o1600), errno.errorcode[ctypes.get_errno()])
print('memfd_create', libc.memfd_create(b'm', 0), errno.errorcode[ctypes.get_errno()])
held = [os.memfd_create(f'm{i}') for i in range(4)]
"""


def test_memory_no_limit_would_see_is_refused(call):
    """System V segments, message queues and memfds hold memory no RSS and no size-capped tmpfs shows: the
    seccomp filter refuses them (the audit's 12 x 50 MB segments and 4 x 50 MB memfds)."""
    outcome = call(HIDDEN)
    assert outcome.output.startswith("shmget 12 EPERM\nmsgget -1 EPERM\nmemfd_create -1 EPERM\n"), outcome.output
    assert "PermissionError: [Errno 1] os.memfd_create is refused in the code_interpreter sandbox: its memory would " \
           "escape the memory limits" in outcome.output


@pytest.mark.skipif(os.uname().machine != "x86_64", reason="the x32 and i386 ABIs of x86_64")
def test_the_filter_holds_for_the_other_abis(call):
    x32 = call("import ctypes, errno\nlibc = ctypes.CDLL(None, use_errno=True)\n"
               "print(libc.syscall(0x40000000 + 319, b'm', 0), errno.errorcode[ctypes.get_errno()])")  # memfd_create
    assert x32.output == "-1 EPERM\n", x32.output
    i386 = ("import ctypes, mmap\npage = mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)\n"
            "page.write(b'\\xb8\\x14\\x00\\x00\\x00\\xcd\\x80\\xc3')  # mov eax, 20 (getpid); int 0x80; ret\n"
            "address = ctypes.addressof(ctypes.c_char.from_buffer(page))\nctypes.CFUNCTYPE(ctypes.c_int)(address)()")
    assert "the cell's process ended (signal 31)" in call(i386).output  # SIGSYS


def test_cpu_between_calls_is_limited(served, call):
    spin = ("import resource, threading\n"
            "resource.setrlimit(resource.RLIMIT_CPU, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))\n"
            "def spin():\n    while True:\n        pass\n"
            "threading.Thread(target=spin, daemon=True).start()\nkept = 1")
    assert call(spin).output == "(no output)"
    for attempt in range(12):  # a spinning thread reaches the 1 s allowance in about a second of idle time,
        served.idle(1 if attempt == 0 else 3)  # longer on a loaded machine, where it gets a share of a core
        outcome = call("print(kept)")
        if not outcome.output.startswith("1\n"):  # (on a loaded machine the spinner may also reach the call's
            break                                    # own CPU limit first: the session lives on, the loop goes on)
    assert outcome.output.startswith("[The thread's previous session was ended: it used ") and \
        "s of CPU time between calls, over the allowance of 1 s" in outcome.output, outcome.output
    assert "NameError" in outcome.output  # a fresh session


def test_names_the_server_cannot_take_are_named_not_returned(call):
    code = ("open('/mnt/data/tab\\tname.csv', 'w').write('a')\nopen(b'/mnt/data/caf\\xe9.csv', 'wb').write(b'b')\n"
            "open('/mnt/data/ok.csv', 'w').write('c')")
    outcome = call(code)
    assert [path for path, _ in outcome.written_files] == ["/mnt/data/ok.csv"], outcome.output
    why = "its name has a control character or is not valid UTF-8 (rename it)"
    assert f"[file not returned: /mnt/data/caf?.csv: {why}]" in outcome.output
    assert f"[file not returned: /mnt/data/tab?name.csv: {why}]" in outcome.output


DEEP = """import os
for _ in range(1100):  # deeper than the supervisor's recursion limit (os.walk recurses on Python 3.11)
    os.mkdir('d')
    os.chdir('d')
open('deep.txt', 'w').write('x')
os.chdir('/mnt/data')
open('top.txt', 'w').write('y')
os.makedirs('locked/inner')
open('locked/inner/in.txt', 'w').write('z')
os.chmod('locked/inner', 0)
"""


def test_directories_the_walk_cannot_look_at_are_named_not_fatal(call):
    """Too deep (the first one: the REPL's own walk must not break), or unreadable: named in the call's notes, as
    unreadable files are, in the call that made them so."""
    outcome = call(DEEP)
    assert [path for path, _ in outcome.written_files] == ["/mnt/data/top.txt"], outcome.output
    assert (f"[file not returned: /mnt/data/{'d/' * 100}d: directories more than 100 levels deep in /mnt/data are "
            "not looked at: files in them are not returned]") in outcome.output, outcome.output[-500:]
    assert ("[file not returned: /mnt/data/locked/inner: an unreadable directory (Permission denied): files in it "
            "are not returned]") in outcome.output, outcome.output[-500:]


FOUR = """import os, time
held = b'x' * (40 * 2 ** 20)
ready, told = os.pipe()
for _ in range(3):
    if os.fork() == 0:
        mine = b'y' * (40 * 2 ** 20)
        os.write(told, b'.')
        time.sleep(20)
        os._exit(0)
got = b''
while len(got) < 3:
    got += os.read(ready, 3)
print('held')
time.sleep(20)
"""


def test_the_total_caps_end_the_largest_session(served, call):
    """--code-max-total-memory-mb and --code-max-total-disk-mb across sessions, whatever user the server runs
    as: a session of 4 processes (each under its own memory limit) is the largest and is ended, the other
    lives on."""
    other = "thread_caps_" + os.urandom(6).hex()
    served.end_sessions()  # those of the tests before: only this test's two sessions count
    assert call("kept = b'k' * (20 * 2 ** 20)\nopen('/mnt/data/kept', 'wb').write(b'k' * (4 * 2 ** 20))") \
        .output.startswith("4194304\n")
    served.configure(max_total_memory_mb=200)
    try:
        largest = served.call(FOUR, other).output
    finally:
        served.configure(max_total_memory_mb=TEST_LIMITS.get("max_total_memory_mb", 4096))
    assert "--code-max-total-memory-mb" in largest and "this session was the largest" in largest, largest
    served.configure(max_total_disk_mb=16)
    try:
        fill = "for i in range(2):\n    open(f'/tmp/f{i}', 'wb').write(b'x' * (7 * 2 ** 20))\nimport time; time.sleep(20)"
        largest = served.call(fill, other).output
    finally:
        served.configure(max_total_disk_mb=TEST_LIMITS.get("max_total_disk_mb", 4096))
    assert "--code-max-total-disk-mb" in largest and "this session was the largest" in largest, largest
    assert call("print(len(kept), len(open('/mnt/data/kept', 'rb').read()))").output == f"{20 * 2 ** 20} {4 * 2 ** 20}\n"


SOCKETS = """import socket, time
held, pairs = 0, []
for _ in range(120):
    a, b = socket.socketpair()
    a.setblocking(False)
    try:
        while True:
            held += a.send(b'x' * 65536)
    except BlockingIOError:
        pass
    pairs.append((a, b))
print('queued', held >> 20, 'MB')
time.sleep(20)
"""


def test_socket_buffers_count_as_memory(served, call):
    """Bytes queued in sockets are the kernel's memory, in no RSS (26 MB in 120 socketpairs beside an RSS of
    14 MB): the watchdog counts each socket at the most its buffer may hold, so the cap ends the session."""
    served.end_sessions()
    served.configure(max_total_memory_mb=64)
    try:
        ended = call(SOCKETS).output
    finally:
        served.configure(max_total_memory_mb=TEST_LIMITS.get("max_total_memory_mb", 4096))
    assert "--code-max-total-memory-mb" in ended and "sockets' and pipes' buffers may hold" in ended, ended
