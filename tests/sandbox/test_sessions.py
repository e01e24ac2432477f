"""Sessions: real Python in bubblewrap, state per thread, images and /mnt/data files, expiry."""

from __future__ import annotations

import os
import time

from asstctl.server.sandbox import SandboxConfig, SandboxUnavailable, SessionPool
from asstctl.server.sandbox.session import repl_error
from tests.sandbox.conftest import input_files


def test_state_is_kept_between_calls_of_one_thread(sandbox):
    first = sandbox.run("thread_a", "x = 41\nx + 1")
    assert (first.logs, first.error) == ("42\n", False)
    assert sandbox.run("thread_a", "x += 1\nprint('x is', x)").logs == "x is 42\n"
    assert sandbox.pool.started == 1


def test_state_is_not_shared_between_threads(sandbox):
    sandbox.run("thread_a", "secret = 'a-only'")
    other = sandbox.run("thread_b", "secret")
    assert other.error and "NameError: name 'secret' is not defined" in other.logs
    assert sandbox.run("thread_a", "secret").logs == "'a-only'\n"
    assert sandbox.run("thread_b", "import os; os.listdir('/mnt/data')").logs == "[]\n"


def test_an_error_is_a_traceback_and_the_session_lives_on(sandbox):
    sandbox.run("t", "y = 7")
    failed = sandbox.run("t", "def f():\n    return 1 / 0\nf()")
    assert failed.error and failed.failure is None
    assert 'File "<cell>", line 2, in f' in failed.logs and "ZeroDivisionError: division by zero" in failed.logs
    assert "repl" not in failed.logs  # no frame of the sandbox's own REPL
    assert sandbox.run("t", "y").logs == "7\n"


def test_the_scientific_packages_run(make_sandbox):
    sandbox = make_sandbox(cpu_seconds=10)
    code = ("from sympy import symbols, solve\nimport numpy, pandas\nx = symbols('x')\n"
            "print(solve(3*x + 11 - 14, x), numpy.arange(3).sum(), pandas.Series([1, 2]).mean())")
    result = sandbox.run("t", code)
    assert (result.logs, result.error) == ("[1] 3 1.5\n", False)


def test_a_matplotlib_figure_comes_back_as_a_png(make_sandbox):
    sandbox = make_sandbox(cpu_seconds=10)
    code = "import matplotlib.pyplot as plt\nplt.plot([1, 4, 9])\nplt.title('squares')\nplt.show()"
    result = sandbox.run("t", code)
    assert not result.error, result.logs
    assert len(result.images) == 1 and result.images[0].startswith(b"\x89PNG\r\n\x1a\n")
    assert sandbox.run("t", "print(len(plt.get_fignums()))").images == []  # figures are closed after a call
    many = sandbox.run("t", "for _ in range(12):\n    plt.figure(figsize=(1, 1), dpi=20)")
    assert len(many.images) == 10 and "[2 more figure(s) not returned: at most 10 per call]" in many.logs, many.logs


def test_files_go_in_and_written_files_come_out(sandbox):
    files = input_files(("file-1", "numbers.csv", b"n\n1\n2\n3\n"))
    code = ("import pandas as pd\ndf = pd.read_csv('/mnt/data/numbers.csv')\n"
            "df.assign(double=df.n * 2).to_csv('/mnt/data/doubled.csv', index=False)\nprint(df.n.sum())")
    result = sandbox.run("t", code, files)
    assert (result.logs, result.error) == ("6\n", False)
    assert result.files == [("/mnt/data/doubled.csv", b"n,double\n1,2\n2,4\n3,6\n")]
    again = sandbox.run("t", "open('/mnt/data/numbers.csv').read()", files)
    assert again.logs == "'n\\n1\\n2\\n3\\n'\n" and again.files == []  # nothing new or changed


def test_output_beyond_the_limit_is_counted_not_kept(sandbox):
    result = sandbox.run("t", "for i in range(10000):\n    print('line', i)")
    assert result.logs.startswith("line 0\nline 1\n") and len(result.logs.encode()) <= 2000
    assert result.truncated == len("".join(f"line {i}\n" for i in range(10000)).encode()) - len(result.logs.encode())


def test_an_idle_session_ends(make_sandbox):
    sandbox = make_sandbox(idle_seconds=0.2)
    sandbox.run("t", "z = 1")
    sandbox.loop.run_until_complete(_sleep(0.6))
    assert "t" not in sandbox.pool.sessions
    expired = sandbox.run("t", "z").logs
    assert expired.startswith("[The thread's previous session was ended: it was unused for 0.00333333 minutes "
                              "(--code-idle-minutes 0.00333333); its variables and files are gone.]\n"), expired
    assert "NameError" in expired and sandbox.pool.started == 2
    # A session whose process ended on its own while idle: the next call says so too.
    sandbox.pool.sessions["t"].kill()
    sandbox.loop.run_until_complete(sandbox.pool.sessions["t"].process.wait())
    died = sandbox.run("t", "z").logs
    assert died.startswith("[The thread's previous session was ended: its process ended while it was idle "
                           "(signal 9)"), died


def test_the_least_recently_used_session_ends_beyond_the_maximum(make_sandbox):
    sandbox = make_sandbox(max_sessions=2)
    for key in ("a", "b"):
        sandbox.run(key, f"name = {key!r}")
    sandbox.run("a", "name")  # b is now the least recently used
    sandbox.run("c", "name = 'c'")
    assert sorted(sandbox.pool.sessions) == ["a", "c"]
    assert sandbox.run("a", "name").logs == "'a'\n"
    evicted = sandbox.run("b", "name").logs  # b's next call says why its variables are gone, once
    assert evicted.startswith("[The thread's previous session was ended: it was the least recently used idle "
                              "session and --code-max-sessions 2 was reached; its variables and files are gone.]\n")
    assert "NameError" in evicted and "previous session" not in sandbox.run("b", "name = 1").logs


def test_without_bwrap_there_is_no_sandbox_and_no_fallback(tmp_path):
    import asyncio

    pool = SessionPool(SandboxConfig(bwrap=str(tmp_path / "no-bwrap")))
    try:
        asyncio.run(pool.run("t", "print(1)"))
    except SandboxUnavailable as error:
        assert "apt-get install bubblewrap" in str(error) and "--unsafe-code-interpreter" in str(error)
    else:
        raise AssertionError("code ran without bwrap")


FORGE = r"""import os, struct
body = ('{"logs": "\\u0046ORGED", "truncated": 0, "error": false, "images": [], "skipped": [], "mark": 3, '
        '"files": [{"path": "/mnt/data/forged.txt", "data": "Rk9SR0VE"}]}').encode()
reached = 0
for fd in range(64):
    try:
        handle = os.open(f'/proc/{os.getppid()}/fd/{fd}', os.O_WRONLY | os.O_NONBLOCK)
    except OSError:
        continue
    reached += 1
    try:
        os.write(handle, struct.pack('>I', len(body)) + body)
    except OSError:
        pass
    os.close(handle)
print('reached', reached, "of its parent's fds")
"""


def test_unsafe_mode_runs_the_same_repl_without_bwrap(make_sandbox, tmp_path):
    # cgroup "none": no memory cgroup whose removal would end what the session leaves (a non-root server's case)
    sandbox = make_sandbox(unsafe=True, bwrap=str(tmp_path / "no-bwrap"), data_mb=2, cgroup="none")
    assert sandbox.run("t", "v = 2\nv * 21").logs == "42\n"
    assert sandbox.run("t", "import os; os.getcwd() != '/mnt/data'").logs == "True\n"
    # The supervisor is not dumpable here too (and a root server's worker has no CAP_SYS_PTRACE): the cell
    # reaches none of its fds, so no answer it forges through them is taken.
    forged = sandbox.run("t", FORGE)
    assert forged.logs.startswith("reached 0 of its parent's fds") and "FORGED" not in forged.logs, forged.logs
    assert forged.files == [] and sandbox.run("t", "v").logs == "2\n"
    # The rlimits hold here too: address space, file size (a sparse file: no disk used), open files; CPU time.
    limits = sandbox.run("t", "for attempt in (lambda: bytearray(2 ** 31), lambda: open('big', 'wb').truncate(2 ** 24),\n"
                              "                lambda: [open(os.devnull) for _ in range(300)]):\n"
                              "    try:\n        attempt()\n    except (MemoryError, OSError) as error:\n"
                              "        print(type(error).__name__, getattr(error, 'strerror', ''))")
    assert limits.logs.startswith("MemoryError \nOSError File too large\nOSError Too many open files\n"), limits.logs
    assert "(--code-memory-mb)" in limits.logs and "(--code-file-mb)" in limits.logs, limits.logs
    assert "CPU time limit of 1 s per call exceeded (--code-cpu-seconds)" in sandbox.run("t", "while True:\n    pass").logs
    # What a call leaves running ends with it, even in a session of its own (it comes back to the REPL's
    # supervisor, a child subreaper): no pid namespace to end it with.
    left = sandbox.run("t", "import subprocess\nprint(subprocess.run(['sh', '-c', 'setsid sleep 60 >/dev/null 2>&1 & echo $!'], "
                            "capture_output=True, text=True).stdout.strip())").logs
    assert _ended(int(left)), f"the call's background process {left} still runs"
    # No tmpfs caps its stand-ins for /mnt/data and /tmp (TMPDIR, beside it): the watchdog does (--code-data-mb).
    tmp = sandbox.run("t", "import tempfile; tempfile.gettempdir()").logs.strip().strip("'")
    assert tmp.startswith(sandbox.pool.sessions["t"].data_dir + "/") and os.path.isdir(tmp)
    pids = tmp_path / "pids"  # processes of their own sessions, more than one look at the tree would see
    full = sandbox.run("t", f"pids = [subprocess.Popen(['setsid', 'sleep', '300']).pid for _ in range(10)]\n"
                            f"open({str(pids)!r}, 'w').write(' '.join(map(str, pids)))\n"
                            "tempfile.NamedTemporaryFile(delete=False).write(b'x' * 3 * 2 ** 20)\n"
                            "import time\ntime.sleep(10)")
    assert full.failure == "crashed" and "MB of files in its directory (1 KiB per file counted), over the limit " \
        "of 2 MB (--code-data-mb)" in full.logs, full.logs
    assert not os.path.exists(tmp)  # removed with its session
    for pid in pids.read_text().split():  # ended with their session (no pid namespace ends them here)
        assert _ended(int(pid)), f"process {pid} outlived its session"
    # No RLIMIT_NPROC (it would count every process of the server's uid): the watchdog counts the session's.
    crowd = sandbox.run("t", "import threading, time\nfor _ in range(20):\n    threading.Thread(target=time.sleep, "
                             "args=(10,), daemon=True).start()\ntime.sleep(10)")
    assert crowd.failure == "crashed" and "processes and threads, over the limit of 16 per session " \
        "(--code-max-processes)" in crowd.logs, crowd.logs


def _ended(pid: int) -> bool:
    """Whether process ``pid`` ended (a zombie or gone) within 5 s."""
    for _ in range(100):
        try:
            with open(f"/proc/{pid}/stat") as stat:
                if stat.read().rpartition(")")[2].split()[0] == "Z":
                    return True
        except FileNotFoundError:
            return True
        time.sleep(0.05)
    return False


async def _sleep(seconds):
    import asyncio

    started = time.monotonic()
    while time.monotonic() - started < seconds:
        await asyncio.sleep(0.05)


def test_a_file_too_big_for_mnt_data_is_reported_not_fatal(make_sandbox):
    sandbox = make_sandbox(data_mb=1)
    result = sandbox.run("t", "import os; sorted(os.listdir('/mnt/data'))",
                         input_files(("file-big", "big.bin", b"x" * (2 * 1024 * 1024)), ("file-small", "small.txt", b"ok")))
    assert result.logs.startswith("['small.txt']\n") and "not copied into /mnt/data: big.bin (no space left in /mnt/data)" in result.logs


def test_garbage_on_the_protocol_pipe_ends_the_session_not_the_server(sandbox):
    sandbox.run("t", "kept = 1")
    code = "import os, struct\nfor fd in range(3, 10):\n    try:\n        os.write(fd, struct.pack('>I', 2**31) + b'x')\n    except OSError:\n        pass\nimport time; time.sleep(1)"
    result = sandbox.run("t", code)
    assert result.failure == "crashed" and "session was restarted" in result.logs
    assert "NameError" in sandbox.run("t", "kept").logs


GROWS = """import os, threading, time
open('a.bin', 'wb').write(b'a' * 2 ** 20)
for i in range(18):
    open(f'b{i:02}.bin', 'wb').write(b'b' * 380_000)
open('z.txt', 'wb').close()
seen = os.stat('a.bin').st_atime_ns
def grow():  # once a.bin was read (its atime moves), the files are being collected: z.txt grows past the room left
    end = time.monotonic() + 2
    while time.monotonic() < end:
        if os.stat('a.bin').st_atime_ns != seen:
            open('z.txt', 'ab').write(b'z' * 2 ** 20)
            return
threading.Thread(target=grow).start()
"""


def test_files_not_returned_are_named_with_the_reason(sandbox):
    """Unreadable, not a regular file, over 20 per call, and grown between the look and the read (the
    room left of --code-file-mb: 8 MB here)."""
    code = ("import os\nos.mkfifo('0-fifo')\nos.symlink('/etc/hostname', '0-link')\n"
            "open('0-unreadable', 'w').write('x')\nos.chmod('0-unreadable', 0)\n"
            "for i in range(22):\n    open(f'f{i:02}', 'w').write(str(i))\n"
            "os.makedirs('.hidden/deep')\nopen('.hidden/deep/a', 'w').close()\nopen('.hidden/b', 'w').close()")
    result = sandbox.run("t", code)
    assert [path for path, _ in result.files] == [f"/mnt/data/f{i:02}" for i in range(20)], result.logs
    assert result.skipped == [("/mnt/data/.hidden", "2 changed file(s) in a hidden directory (a name starting with "
                                                    "'.') are not returned"),
                              ("/mnt/data/0-fifo", "not a regular file"), ("/mnt/data/0-link", "not a regular file"),
                              ("/mnt/data/0-unreadable", "unreadable (Permission denied)"),
                              ("/mnt/data/f20", "more than 20 files changed in one call"),
                              ("/mnt/data/f21", "more than 20 files changed in one call")], result.skipped
    grown = sandbox.run("t", GROWS)
    assert ("/mnt/data/z.txt", "grew while it was read") in grown.skipped, (grown.skipped, grown.logs)
    assert len(grown.files) == 19 and sandbox.run("t", "os.path.getsize('z.txt')").logs == f"{2 ** 20}\n"


def test_files_past_the_ones_looked_at_are_named(make_sandbox):
    sandbox = make_sandbox(max_inodes=20_000)
    result = sandbox.run("t", "import os\nos.mkdir('many')\nfor i in range(10_001):\n    open(f'many/{i}', 'w').close()")
    assert result.skipped[0] == ("/mnt/data/...", "only the first 10000 files of /mnt/data are looked at: those "
                                                  "past them are not returned"), result.skipped[:3]


def test_the_repls_own_exception_is_named_not_a_limit():
    """How a REPL that ended with an uncaught exception is described (the tail of its stderr), bounded and
    printable; a signal or a limit leaves no traceback (None)."""
    tail = (b"Traceback (most recent call last):\n  File \"<string>\", line 5, in snapshot\n"
            b"RecursionError: maximum recursion depth exceeded\x1b[31m\n")
    assert repl_error(tail) == "RecursionError: maximum recursion depth exceeded?[31m"
    assert repl_error(b"x" * 100 + b"Traceback (most recent call last):\nOSError: " + b"y" * 400) == \
        "OSError: " + "y" * 291 + "..."
    assert repl_error(b"bwrap: setting up uid map: Permission denied\n") is None
