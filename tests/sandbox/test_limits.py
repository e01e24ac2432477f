"""Limits across sessions and the pool's lifecycle: total memory and disk caps (the watchdog ends the
largest session and says so), never evicting a starting or busy session, the server's own checks
of the REPL's answers, and the files copied into /mnt/data (hostile names, once per version, too big)."""

from __future__ import annotations

import asyncio
import base64
import re

import pytest

from asstctl.server.sandbox import InputFile, SandboxUnavailable, SessionsBusy
from asstctl.server.sandbox.limits import over
from asstctl.server.sandbox.session import _result, data_path

HOLD = "import time\nheld = b'x' * ({mb} * 2 ** 20)\ntime.sleep({seconds})\nprint('held')"
WRITE = "import time\nopen('/mnt/data/blob', 'wb').write(b'x' * ({mb} * 2 ** 20))\ntime.sleep({seconds})\nprint('written')"


def both(sandbox, *calls):
    """Run pool calls concurrently on the driver's loop."""
    async def gathered():
        return await asyncio.gather(*(sandbox.pool.run(*c) for c in calls))

    return sandbox.loop.run_until_complete(gathered())


def test_total_memory_beyond_the_cap_ends_the_largest_session(make_sandbox):
    sandbox = make_sandbox(max_total_memory_mb=220, memory_mb=512)  # a session's two processes: ~30 MB of their own
    for key in ("a", "b"):
        assert sandbox.run(key, HOLD.format(mb=30, seconds=0)).logs == "held\n"
    largest = sandbox.run("c", HOLD.format(mb=150, seconds=5))
    assert largest.failure == "crashed" and "session was restarted" in largest.logs
    assert "together used" in largest.logs and "--code-max-total-memory-mb" in largest.logs
    assert "this session was the largest" in largest.logs
    assert sandbox.run("a", "len(held)").logs == f"{30 * 2 ** 20}\n"  # the others live on
    assert sandbox.pool.watchdog.ended == 1


def test_total_disk_beyond_the_cap_ends_the_largest_session(make_sandbox):
    sandbox = make_sandbox(max_total_disk_mb=20, file_mb=16)
    for key in ("a", "b"):
        assert sandbox.run(key, WRITE.format(mb=6, seconds=0)).logs == "written\n"
    largest = sandbox.run("c", WRITE.format(mb=12, seconds=5))
    assert largest.failure == "crashed" and "--code-max-total-disk-mb" in largest.logs
    assert "disk space (/mnt/data, /tmp, /dev/shm; 1 KiB per file)" in largest.logs
    # (seen when over the cap: 12 MB once written, or 7 to 11 MB while it writes on a loaded machine)
    assert 6 < int(re.search(r"the largest \((\d+) MB\)", largest.logs).group(1)) <= 12, largest.logs
    used = re.search(r"together used ([\d.]+) MB of", largest.logs)  # over 20 as printed, not rounded down to it
    assert used is None or float(used.group(1)) > 20, largest.logs
    assert used is not None or re.search(r"together used \d+ bytes \(the limit: 20971520 bytes\)", largest.logs)
    assert sandbox.run("b", "import os; os.path.getsize('/mnt/data/blob')").logs == f"{6 * 2 ** 20}\n"


def test_a_size_over_a_limit_reads_as_over_it():
    """The watchdog's figures: rounded, 600.3 MB would read "600 MB, over the limit of 600 MB"."""
    assert over(600 * 2 ** 20 + 300_000, 600) == "600.3 MB" and over(700 * 2 ** 20, 600) == "700 MB"
    assert over(600 * 2 ** 20 + 2_000, 600) == "600.002 MB"
    assert over(600 * 2 ** 20 + 1, 600) == "629145601 bytes (the limit: 629145600 bytes)"


def test_a_starting_session_is_never_evicted(make_sandbox):
    sandbox = make_sandbox(max_sessions=1)
    first, second = both(sandbox, ("a", "print('a')"), ("b", "print('b')"))
    assert (first.logs, first.failure, second.logs, second.failure) == ("a\n", None, "b\n", None)
    assert list(sandbox.pool.sessions) == ["b"]  # a ended once idle, then b started


def test_a_busy_session_is_never_evicted_and_a_full_pool_says_so(make_sandbox):
    sandbox = make_sandbox(max_sessions=1, wall_seconds=2)
    sandbox.run("a", "kept = 1")

    async def crowded():
        busy = asyncio.ensure_future(sandbox.pool.run("a", "import time; time.sleep(1.5); print(kept)"))
        await asyncio.sleep(0.3)
        sandbox.pool.config.wall_seconds = 0.5  # how long the second call waits for a free session
        with pytest.raises(SessionsBusy) as refused:
            await sandbox.pool.run("b", "print('b')", ())
        return await busy, str(refused.value)

    done, refused = sandbox.loop.run_until_complete(crowded())
    assert done.logs == "1\n" and done.failure is None
    assert "all 1 sandbox sessions (--code-max-sessions 1) are starting or busy" in refused


def test_answers_are_checked_by_the_server():
    good = {"logs": "", "truncated": 0, "error": False, "images": [], "files": [], "skipped": []}
    forged = base64.b64encode(b"root::0:0").decode()
    assert data_path("/mnt/data/sub/out.csv") == "/mnt/data/sub/out.csv"
    for path in ("/mnt/data/../../../etc/passwd", "/etc/passwd", "/mnt/data/a\x00b", "/mnt/data/./x", "relative",
                 "/mnt/data/caf\udce9.csv"):  # the last: not UTF-8 (a lone surrogate)
        with pytest.raises(ValueError):
            _result({**good, "files": [{"path": path, "data": forged}]})
    with pytest.raises(ValueError, match="20001 files"):
        _result({**good, "files": [{"path": "/mnt/data/x", "data": forged}] * 20_001})
    with pytest.raises(ValueError, match="over the limit of 8 bytes"):
        _result({**good, "files": [{"path": "/mnt/data/x", "data": forged}]}, file_bytes=8)
    with pytest.raises(ValueError, match="not a PNG"):
        _result({**good, "images": [forged]})
    for broken in ({}, {**good, "files": "x"}, {**good, "skipped": [{"path": "/mnt/data/x"}]}):
        with pytest.raises(ValueError):
            _result(broken)


def test_hostile_names_are_refused_by_the_repl_and_files_are_copied_once_per_version(sandbox):
    reads = []

    def source(data):
        def chunks():
            reads.append(len(data))
            yield data
        return chunks

    files = [InputFile("f1:3:1", "a\x00b.txt", 3, source(b"bad")), InputFile("f2:2:1", "..", 2, source(b"up")),
             InputFile("f3:5:1", "ok.txt", 5, source(b"first"))]
    result = sandbox.run("t", "import os; open('/mnt/data/ok.txt', 'a').write('+'); sorted(os.listdir('/mnt/data'))", files)
    assert result.logs.startswith("['ok.txt']\n")
    assert "a\x00b.txt (not a usable file name); .. (not a usable file name)" in result.logs
    again = sandbox.run("t", "open('/mnt/data/ok.txt').read()", files[2:])
    assert again.logs == "'first+'\n" and reads == [3, 2, 5]  # not read nor sent again
    newer = sandbox.run("t", "open('/mnt/data/ok.txt').read()", [InputFile("f3:6:2", "ok.txt", 6, source(b"second"))])
    assert newer.logs == "'second'\n"  # a new version of the file is copied


def test_a_file_over_the_sandbox_file_limit_is_named_not_read(make_sandbox):
    sandbox = make_sandbox(file_mb=1)
    never = InputFile("big:3000000:1", "big.bin", 3_000_000, lambda: pytest.fail("read a file over the limit"))
    result = sandbox.run("t", "import os; os.listdir('/mnt/data')", [never])
    assert result.logs == "[]\n\n[not copied into /mnt/data: big.bin (2.9 MB, over the sandbox's file limit of 1 MB)]"


def test_a_session_that_cannot_start_names_the_cause(make_sandbox):
    """The kernel's memory limit (when the server may make cgroups) and the start timeout, not bubblewrap."""
    tiny = make_sandbox(max_total_memory_mb=3, max_total_disk_mb=1)  # the kernel's limit: 4 MB, under Python's start
    try:
        tiny.run("t", "print(1)")
    except SandboxUnavailable as error:
        assert tiny.pool.watchdog.kernel.made == 1 and "while it started" in str(error), error
        assert "--code-max-total-memory-mb" in str(error) and "bubblewrap" not in str(error), error
    else:  # no cgroup here (an unprivileged server): the session started, the watchdog alone watches
        assert tiny.pool.watchdog.kernel.made == 0
    slow = make_sandbox(start_seconds=0)  # (0.001 s: on a loaded machine the hello could be read in time)
    with pytest.raises(SandboxUnavailable, match=r"did not start within 0 s \(the server may be overloaded\)"):
        slow.run("t", "print(1)")
    slow.pool.config.start_seconds = 15
    assert slow.run("t", "print(1)").logs == "1\n"


def test_a_python_out_of_the_users_reach_is_named_as_the_cause():
    """Not "check that bubblewrap works": the interpreter bubblewrap would run (the server's, by its real path) lies
    below a directory the server's user cannot enter (e.g. a pyenv below /root). As root: asked as uid 65534."""
    import json
    import os
    import shutil
    import subprocess
    import sys
    import tempfile
    from pathlib import Path

    from tests.sandbox.as_user import PROJECT, UNPRIVILEGED, python_for_user

    base = Path(tempfile.mkdtemp(prefix="asstctl-reach-"))  # in /tmp: any user may enter it (0755)
    base.chmod(0o755)
    hidden, python = base / "hidden", base / "hidden" / "bin" / "python3"
    python.parent.mkdir(parents=True)
    python.write_bytes(b"")
    python.chmod(0o755)
    hidden.chmod(0)
    ask = f"from asstctl.server.sandbox.session import python_unreachable as u; print(u({str(python)!r}))"
    try:
        if os.geteuid() == 0:
            prefix = ["setpriv", f"--reuid={UNPRIVILEGED}", f"--regid={UNPRIVILEGED}", "--clear-groups"]
            packages = [p for p in sys.path if p.endswith(("site-packages", "dist-packages")) and os.path.isdir(p)]
            env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": os.pathsep.join([str(PROJECT), *packages])}
            user_python = python_for_user(prefix, env)
            assert user_python, f"no Python that uid {UNPRIVILEGED} can run"
            out = subprocess.run([*prefix, user_python, "-c", ask], cwd=PROJECT, env=env, capture_output=True,
                                 text=True, timeout=60)
            problem = out.stdout.strip() or out.stderr
        else:
            from asstctl.server.sandbox.session import python_unreachable

            problem = python_unreachable(str(python))
    finally:
        hidden.chmod(0o755)
        shutil.rmtree(base)
    assert problem.startswith(f"the server's Python ({python}) is out of reach of its user (uid "), problem
    assert f": {hidden} cannot be entered. Run the server with a Python that user can reach" in problem, problem
