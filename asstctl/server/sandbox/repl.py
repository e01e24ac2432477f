"""The Python REPL that runs inside the sandbox (standard library only; never imported by the server).

The server starts it as ``python -I -c <this file's text> <settings JSON>`` and talks to it over
stdin/stdout with frames: a 4-byte big-endian length, then that many bytes of JSON.

Requests: ``{"op": "exec", "code": str}``, ``{"op": "put", "path": str, "data": base64}``.
Answers: ``{"ok": true}`` for a put; for an exec ``{"logs": str, "truncated": int, "error": bool,
"images": [base64 PNG], "files": [{"path", "data"}], "skipped": [path]}``.

Before it reads the first request it applies the limits (rlimits), drops to an unprivileged uid
when started as root, and points fds 1 and 2 at a pipe drained by a thread that keeps only the
first ``output_bytes``: user code can print anything, anywhere, without touching the protocol.
"""

import ast
import base64
import json
import linecache
import math
import os
import resource
import signal
import struct
import sys
import threading
import traceback

SETTINGS = json.loads(sys.argv[1])
DATA = SETTINGS["data_dir"]
MAIN_PID = 0
MARK = b"\x00asstctl-cell-end-%d\x00"


def drop_privileges():
    for name, value in SETTINGS["rlimits"].items():
        resource.setrlimit(getattr(resource, name), (value, value))
    uid = SETTINGS.get("uid")
    if uid is not None and os.getuid() == 0:
        os.setgroups([])
        os.setgid(uid)
        os.setuid(uid)
        if os.getuid() != uid or os.geteuid() != uid:
            raise SystemExit("could not drop privileges")
    if not SETTINGS["sandboxed"]:
        return
    with open("/proc/self/status") as status:
        caps = {k: v.strip() for k, _, v in (line.partition(":") for line in status)}
    if int(caps.get("CapEff", "0"), 16) or int(caps.get("CapPrm", "0"), 16):
        raise SystemExit("capabilities left after dropping privileges")


class Capture:
    """fds 1 and 2 write into a pipe; a thread keeps the first ``limit`` bytes of each cell."""

    def __init__(self, limit):
        self.limit = limit
        self.kept = bytearray()
        self.dropped = 0
        self.cond = threading.Condition()
        self.marks = 0
        read, write = os.pipe()
        os.dup2(write, 1)
        os.dup2(write, 2)
        os.close(write)
        self.read = read
        threading.Thread(target=self.drain, daemon=True).start()

    def drain(self):
        pending = b""
        while True:
            chunk = os.read(self.read, 65536)
            if not chunk:
                return
            pending += chunk
            with self.cond:
                while True:
                    mark = MARK % (self.marks + 1)
                    at = pending.find(mark)
                    if at < 0:
                        keep = max(0, len(pending) - len(mark))
                        self.take(pending[:keep])
                        pending = pending[keep:]
                        break
                    self.take(pending[:at])
                    pending = pending[at + len(mark):]
                    self.marks += 1
                    self.cond.notify_all()

    def take(self, data):
        room = self.limit - len(self.kept)
        self.kept += data[:max(0, room)]
        self.dropped += max(0, len(data) - max(0, room))

    def finish(self):
        """Wait until everything written before now is drained; return (text, dropped bytes)."""
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        with self.cond:
            target = self.marks + 1
        os.write(1, MARK % target)
        with self.cond:
            self.cond.wait_for(lambda: self.marks >= target, timeout=5)
            text, dropped = bytes(self.kept).decode("utf-8", "replace"), self.dropped
            self.kept, self.dropped = bytearray(), 0
        return text, dropped


def snapshot():
    seen = {}
    for root, dirs, files in os.walk(DATA):
        dirs[:] = [name for name in dirs if not name.startswith(".")]  # caches, e.g. .cache/
        for name in files:
            path = os.path.join(root, name)
            try:
                info = os.stat(path)
            except OSError:
                continue
            seen[path] = (info.st_mtime_ns, info.st_size)
    return seen


def changed_files(before):
    files, skipped, room = [], [], SETTINGS["max_file_bytes"]
    for path, mark in sorted(snapshot().items()):
        if before.get(path) == mark:
            continue
        if mark[1] > room or len(files) >= SETTINGS["max_files"]:
            skipped.append(path)
            continue
        room -= mark[1]
        try:
            with open(path, "rb") as handle:
                files.append({"path": path, "data": base64.b64encode(handle.read()).decode()})
        except OSError:
            skipped.append(path)
    return files, skipped


def figures():
    """PNGs of the matplotlib figures left open by the cell (then closed)."""
    pyplot = sys.modules.get("matplotlib.pyplot")
    if pyplot is None:
        return []
    import io

    images = []
    for number in pyplot.get_fignums()[:SETTINGS["max_images"]]:
        buffer = io.BytesIO()
        try:
            pyplot.figure(number).savefig(buffer, format="png")
            images.append(base64.b64encode(buffer.getvalue()).decode())
        except Exception as error:  # a broken figure must not break the cell's answer
            print(f"[figure {number} could not be saved: {error}]", file=sys.stderr)
    pyplot.close("all")
    return images


def patch_show():
    """``plt.show()`` keeps the figure open (collected after the cell) instead of warning."""
    pyplot = sys.modules.get("matplotlib.pyplot")
    if pyplot is not None and getattr(pyplot.show, "__name__", "") != "_asstctl_show":
        def _asstctl_show(*args, **kwargs):
            return None

        pyplot.show = _asstctl_show


class CpuLimit(Exception):
    pass


def on_cpu_limit(signum, frame):
    raise CpuLimit(f"CPU time limit of {SETTINGS['cpu_seconds']} s per call exceeded")


IN_CELL = False


def on_interrupt(signum, frame):
    """The server's SIGINT after the wall time: stops a running cell, never the REPL itself."""
    if IN_CELL:
        raise KeyboardInterrupt("stopped: the call ran longer than the wall-time limit")


def run_cell(code, namespace):
    """Run ``code`` like a notebook cell: the value of a final expression is printed."""
    global IN_CELL
    soft, hard = resource.getrlimit(resource.RLIMIT_CPU)
    used = resource.getrusage(resource.RUSAGE_SELF)
    soft = math.ceil(used.ru_utime + used.ru_stime) + SETTINGS["cpu_seconds"]
    resource.setrlimit(resource.RLIMIT_CPU, (soft if hard == resource.RLIM_INFINITY else min(hard, soft), hard))
    IN_CELL = True
    try:
        linecache.cache["<cell>"] = (len(code), None, code.splitlines(True), "<cell>")
        tree = ast.parse(code, "<cell>", "exec")
        last = tree.body.pop() if tree.body and isinstance(tree.body[-1], ast.Expr) else None
        exec(compile(tree, "<cell>", "exec"), namespace)
        patch_show()
        if last is not None:
            value = eval(compile(ast.Expression(last.value), "<cell>", "eval"), namespace)
            if value is not None:
                print(repr(value))
        return False
    except BaseException as error:  # the cell failed; the session lives on
        if isinstance(error, SystemExit):
            print(f"SystemExit: {error.code}", file=sys.stderr)
        else:
            frames = traceback.extract_tb(error.__traceback__)
            shown = [frame for frame in frames if frame.filename != "<string>"]
            text = "".join(traceback.format_list(shown)) if shown else ""
            sys.stderr.write("Traceback (most recent call last):\n" + text if text else "")
            sys.stderr.write("".join(traceback.format_exception_only(type(error), error)))
        return True
    finally:
        IN_CELL = False
        patch_show()


def reap():
    """End every other process of the sandbox (what the cell left running, e.g. a fork bomb)."""
    if not SETTINGS["sandboxed"]:  # outside a pid namespace kill(-1) would hit the host
        return
    import time

    for _ in range(200):
        try:
            os.kill(-1, signal.SIGKILL)  # in our pid namespace: every process but us and its init
        except OSError:  # ESRCH: none left
            break
        try:
            while os.waitpid(-1, os.WNOHANG)[0] > 0:  # our own children stay zombies until reaped
                pass
        except ChildProcessError:
            pass
        time.sleep(0.002)


def read_frame(stream):
    head = stream.read(4)
    if len(head) < 4:
        return None
    (size,) = struct.unpack(">I", head)
    return json.loads(stream.read(size))


def write_frame(stream, message):
    body = json.dumps(message).encode()
    stream.write(struct.pack(">I", len(body)) + body)
    stream.flush()


def main():
    drop_privileges()
    import site

    for directory in SETTINGS["site_dirs"]:
        site.addsitedir(directory)
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a too-big write fails with EFBIG instead
    signal.signal(signal.SIGXCPU, on_cpu_limit)
    signal.signal(signal.SIGINT, on_interrupt)
    requests = os.fdopen(os.dup(0), "rb")
    answers = os.fdopen(os.dup(1), "wb")
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    capture = Capture(SETTINGS["output_bytes"])
    sys.stdout = os.fdopen(1, "w", buffering=1, closefd=False)
    sys.stderr = os.fdopen(2, "w", buffering=1, closefd=False)
    os.makedirs(DATA, exist_ok=True)
    os.chdir(DATA)
    global MAIN_PID
    MAIN_PID = os.getpid()
    namespace = {"__name__": "__main__", "__builtins__": __builtins__}
    write_frame(answers, {"ready": True, "pid": os.getpid()})
    while True:
        request = read_frame(requests)
        if request is None:
            return
        if request["op"] == "put":
            path = os.path.join(DATA, os.path.basename(request["path"]))
            try:
                with open(path, "wb") as handle:
                    handle.write(base64.b64decode(request["data"]))
                write_frame(answers, {"ok": True, "path": path})
            except OSError as error:
                try:
                    os.remove(path)  # no partial file
                except OSError:
                    pass
                write_frame(answers, {"ok": False, "path": path, "error": str(error)})
            continue
        before = snapshot()
        error = run_cell(request["code"], namespace)
        if os.getpid() != MAIN_PID:  # a process the cell forked must never answer
            os._exit(0)
        reap()
        logs, dropped = capture.finish()
        images = figures()
        files, skipped = changed_files(before)
        write_frame(answers, {"logs": logs, "truncated": dropped, "error": error,
                              "images": images, "files": files, "skipped": skipped})


main()
