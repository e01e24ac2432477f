"""The Python REPL that runs inside the sandbox (standard library only; never imported by the server).

The server starts it as ``python -I -c <repl_files.py's text, then this file's> <settings JSON>`` and talks to it over
stdin/stdout with frames: a 4-byte big-endian length, then that many bytes of JSON.

Two processes: this one, the **supervisor**, holds the channel to the server and never runs user
code; it forks a **worker** that runs the cells. The worker keeps none of the server's fds (its
0 is /dev/null, its 1 and 2 a pipe the supervisor drains, its only other fds a private pipe pair
to the supervisor), and the supervisor is not dumpable, so nothing the cell can open (``/proc/self/fd``,
``/proc/<supervisor>/fd``, ptrace) reaches the server's channel. The supervisor collects the
changed files of ``/mnt/data`` itself; of the worker it only takes the cell's error flag and its
figures (counted, size-capped, whole PNGs only), in an answer that carries the call's random token (sent
with the code, kept out of the cell's namespace). An answer without it (a frame the cell wrote to fd 4),
a second answer or a malformed one ends the session in the call that sent it. The end of a cell's output
is a random mark the supervisor writes once the worker answered: the cell cannot forge it.

Requests: ``{"op": "put", "name": str, "size": int}`` followed by ``size`` raw bytes; ``{"op": "exec", "code": str}``.
Answers: ``{"ok": bool, "path", "error", "reason"}`` for a put; for an exec ``{"logs": str,
"truncated": int, "error": bool, "images": [base64 PNG], "files": [{"path", "data"}],
"skipped": [{"path", "reason"}]}``; or ``{"fatal": str}`` before the supervisor exits.
"""

import ast
import base64
import ctypes
import errno
import io
import json
import linecache
import math
import os
import resource
import secrets
import select
import signal
import struct
import sys
import threading
import time
import traceback

SETTINGS = json.loads(sys.argv[1])
DATA = SETTINGS["data_dir"]
MARK_BYTES = 51  # of a cell's end mark: NUL, "asstctl-cell-end-", 32 hex digits, NUL
PNG = b"\x89PNG\r\n\x1a\n"
WORKER = {"pid": 0, "status": None}


def drop_privileges():
    uid = SETTINGS.get("uid")
    if uid is not None and os.getuid() == 0:
        os.setgroups([])
        os.setgid(uid)
        os.setuid(uid)
        if os.getuid() != uid or os.geteuid() != uid:
            raise SystemExit("could not drop privileges")
    libc = ctypes.CDLL(None, use_errno=True)
    if SETTINGS["sandboxed"]:
        with open("/proc/self/status") as status:
            caps = {k: v.strip() for k, _, v in (line.partition(":") for line in status)}
        if int(caps.get("CapEff", "0"), 16) or int(caps.get("CapPrm", "0"), 16):
            raise SystemExit("capabilities left after dropping privileges")
    elif libc.prctl(36, 1, 0, 0, 0) != 0:  # PR_SET_CHILD_SUBREAPER: no pid namespace, the cell's orphans come back
        raise SystemExit("could not become a child subreaper")
    if libc.prctl(4, 0, 0, 0, 0) != 0:  # PR_SET_DUMPABLE 0: no /proc/<pid>/fd, no ptrace (sandboxed or not)
        raise SystemExit("could not make the supervisor non-dumpable")


def drop_ptrace():
    """The worker of a plain subprocess run by root: CAP_SYS_PTRACE (the one capability that passes over a
    non-dumpable process) leaves it and its bounding set (an exec as root does not give it back)."""
    if SETTINGS["sandboxed"] or os.geteuid() != 0:
        return
    libc, header, data = ctypes.CDLL(None, use_errno=True), (ctypes.c_uint32 * 2)(0x20080522, 0), (ctypes.c_uint32 * 6)()
    if libc.prctl(24, 19, 0, 0, 0) != 0 or libc.capget(header, data) != 0:  # PR_CAPBSET_DROP CAP_SYS_PTRACE (19)
        raise SystemExit("could not drop CAP_SYS_PTRACE")
    for index in (0, 1, 2):  # effective, permitted, inheritable (bits 0-31)
        data[index] &= ~(1 << 19)
    if libc.capset(header, data) != 0:
        raise SystemExit("could not drop CAP_SYS_PTRACE")


class Capture:
    """Reads the worker's fds 1 and 2 (a pipe); keeps the first ``limit`` bytes of each cell. A cell's output
    ends at a mark the supervisor writes (on its own end of the pipe) once the worker answered: random for
    each call, so nothing the cell writes can end another call's output early or late."""

    def __init__(self, limit, read, write):
        self.limit = limit
        self.write = write
        self.kept = bytearray()
        self.dropped = 0
        self.cond = threading.Condition()
        self.mark, self.seen = None, False
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
                at = pending.find(self.mark) if self.mark else -1
                if at < 0:
                    keep = max(0, len(pending) - MARK_BYTES)  # the start of a mark, split between two reads
                    self.take(pending[:keep])
                    pending = pending[keep:]
                    continue
                self.take(pending[:at])
                pending = pending[at + len(self.mark):]
                self.mark, self.seen = None, True
                self.cond.notify_all()

    def take(self, data):
        room = self.limit - len(self.kept)
        self.kept += data[:max(0, room)]
        self.dropped += max(0, len(data) - max(0, room))

    def finish(self):
        """End the cell's output (all the worker wrote before it answered, and what the processes reap() ended
        wrote before they ended); return (text, dropped bytes)."""
        with self.cond:
            self.mark, self.seen = b"\x00asstctl-cell-end-" + secrets.token_hex(16).encode() + b"\x00", False
            mark = self.mark
        os.write(self.write, mark)
        with self.cond:
            self.cond.wait_for(lambda: self.seen, timeout=5)
            text, dropped = bytes(self.kept).decode("utf-8", "replace"), self.dropped
            self.kept, self.dropped, self.mark = bytearray(), 0, None
        return text, dropped


# -- the supervisor: files of /mnt/data are looked at by repl_files.py's functions (its text comes first) --
def put(stream, answers, request):
    """Copy ``size`` bytes from the server into /mnt/data; the bytes are always consumed."""
    name, size = request.get("name"), request.get("size")
    if not isinstance(size, int) or size < 0:
        raise ValueError("a put without a size")
    path, error, reason, handle = None, None, None, None
    if not isinstance(name, str) or not name or "/" in name or "\x00" in name or name in (".", ".."):
        reason, error = "name", "not a plain file name"
    else:
        path = os.path.join(DATA, name)
    if path is not None:
        try:
            handle = open(path, "wb")
        except OSError as failure:
            reason, error = "io", failure.strerror
    left = size
    while left:
        chunk = stream.read(min(left, 1 << 20))
        if not chunk:
            raise EOFError("the server's stream ended inside a put")
        left -= len(chunk)
        if handle is not None:
            try:
                handle.write(chunk)
            except OSError as failure:
                reason = {errno.ENOSPC: "space", errno.EFBIG: "size"}.get(failure.errno, "io")
                error = failure.strerror
                handle.close()
                handle = None
                os.remove(path)  # no partial file
    if handle is not None:
        try:
            handle.close()
        except OSError as failure:
            reason, error = "space" if failure.errno == errno.ENOSPC else "io", failure.strerror
            os.remove(path)
    write_frame(answers, {"ok": error is None, "path": path, "error": error, "reason": reason})


def strays():
    """The live processes to end after a call: in the sandbox (a pid namespace of its own) every one but the
    supervisor and the worker; without it, every descendant of the supervisor but the worker (the supervisor
    is a child subreaper there: what the cell left behind comes back to it, daemons and ``setsid`` too)."""
    parents = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                fields = stat.read().rpartition(")")[2].split()
        except OSError:
            continue
        if len(fields) > 1 and fields[0] != "Z":
            parents[int(entry)] = int(fields[1])
    keep = {os.getpid(), WORKER["pid"]}
    if SETTINGS["sandboxed"]:
        return [pid for pid in parents if pid not in keep]
    children = {}
    for pid, ppid in parents.items():
        children.setdefault(ppid, []).append(pid)
    found, below = [], [os.getpid()]
    while below:
        below_one = children.get(below.pop(), [])
        found += [pid for pid in below_one if pid not in keep]
        below += below_one
    return found


def reap():
    """End the processes the cell left behind (e.g. a fork bomb's, a background job's)."""
    for _ in range(200):
        collect()
        found = False
        for pid in strays():
            try:
                os.kill(pid, signal.SIGKILL)
                found = True
            except OSError:
                continue
        if not found:
            return collect()
        time.sleep(0.002)


def refuse_hidden_memory():
    """Install the server's seccomp filter (``command.seccomp_filter``) on this process and all it starts:
    System V shared memory and message queues, memfds and secret memory are refused with EPERM (memory no
    RSS, no size-capped tmpfs and so no limit would see). The REPL does not start without it."""
    program = base64.b64decode(SETTINGS["seccomp"] or "")
    if not program:
        return
    class Program(ctypes.Structure):  # struct sock_fprog
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_char_p)]

    libc = ctypes.CDLL(None, use_errno=True)
    fprog = Program(len(program) // 8, program)
    # PR_SET_NO_NEW_PRIVS (bwrap sets it too), then PR_SET_SECCOMP with SECCOMP_MODE_FILTER
    if libc.prctl(38, 1, 0, 0, 0) != 0 or libc.prctl(22, 2, ctypes.byref(fprog), 0, 0) != 0:
        raise SystemExit(f"could not install the seccomp filter ({os.strerror(ctypes.get_errno())})")


def refuse_memfd(*args, **kwargs):
    raise PermissionError(errno.EPERM, "os.memfd_create is refused in the code_interpreter sandbox: its memory "
                                       "would escape the memory limits; use a file in /tmp or /dev/shm instead")


def collect():
    """Reap the ended processes the supervisor inherited (as the sandbox's pid 1), the worker's status kept."""
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        if pid == WORKER["pid"]:
            WORKER["status"] = status


def valid_images(images):
    if not isinstance(images, list) or len(images) > SETTINGS["max_images"]:
        raise ValueError("too many images")
    kept = []
    for image in images:
        if not isinstance(image, str) or len(image) > SETTINGS["max_image_bytes"] * 4 // 3 + 4:
            raise ValueError("an image that is too big")
        if not whole_png(base64.b64decode(image, validate=True)):
            raise ValueError("an image that is not a whole PNG (its signature, IHDR first, IEND last)")
        kept.append(image)
    return kept


def whole_png(data):
    """Whether ``data`` has a PNG's structure: its signature, the IHDR chunk first, chunks that fit, IEND last."""
    if data[:16] != PNG + b"\0\0\0\x0dIHDR":
        return False
    at = 8
    while at + 12 <= len(data):  # at most len(data) / 12 chunks
        size, kind = struct.unpack(">I4s", data[at:at + 8])
        at += 12 + size
        if kind == b"IEND":
            return size == 0 and at == len(data)
    return False


def supervise(requests, answers, to_worker, from_worker, capture):
    """Each call's answer of the worker must carry the call's token (random, sent with the code, never shown to it):
    a frame the cell wrote to the worker's reply pipe ends the session, in the call that wrote it."""
    while True:
        request = read_frame(requests, 1 << 30)
        if request is None:
            return
        if request.get("op") == "put":
            put(requests, answers, request)
            continue
        code = request.get("code")
        before, token, reply = snapshot(DATA), secrets.token_hex(16), None
        try:
            if select.select([from_worker], [], [], 0)[0]:
                raise ValueError("the previous call's code wrote to the worker's reply pipe: its answer came twice")
            write_frame(to_worker, {"code": code if isinstance(code, str) else "", "token": token})
            if not wait_for_worker(from_worker, requests):
                return  # the server went away: end the sandbox, whatever the cell is doing
            reply = read_frame(from_worker, (SETTINGS["max_images"] + 1) * SETTINGS["max_image_bytes"] * 2)
            if reply is None:
                raise ChildProcessError("its reply pipe ended")
            if not isinstance(reply, dict):
                raise ValueError("not an object")
            if reply.get("token") != token:
                raise ValueError("not the worker's own: the code wrote to the worker's reply pipe")
            images, error = valid_images(reply.get("images")), bool(reply.get("error"))
        except (ValueError, RecursionError, TypeError, BrokenPipeError, ChildProcessError) as problem:
            ended = worker_ended() if isinstance(problem, (BrokenPipeError, ChildProcessError)) else None
            try:
                os.kill(WORKER["pid"], signal.SIGKILL)
            except OSError:
                pass
            write_frame(answers, {"fatal": ended or f"the cell's process sent a malformed answer ({problem})"})
            return
        reap()
        logs, dropped = capture.finish()
        files, skipped = changed_files(DATA, before, SETTINGS)
        write_frame(answers, {"logs": logs, "truncated": dropped, "error": error,
                              "images": images, "files": files, "skipped": skipped})


def wait_for_worker(from_worker, requests):
    """Until the worker answers (True) or the server's side of the channel ends or speaks out of turn (False)."""
    while True:
        ready, _, _ = select.select([from_worker, requests], [], [])
        if from_worker in ready:
            return True
        if requests in ready:
            return False


def worker_ended():
    """How the worker ended (None if it still lived: it is ended now)."""
    for _ in range(50):
        status = WORKER["status"]
        if status is not None:
            break
        try:
            pid, status = os.waitpid(WORKER["pid"], os.WNOHANG)
        except ChildProcessError:
            return "the cell's process ended"
        if pid:
            break
        time.sleep(0.02)
    else:
        os.kill(WORKER["pid"], signal.SIGKILL)
        return None
    if os.WIFSIGNALED(status):
        return f"the cell's process ended (signal {os.WTERMSIG(status)})"
    if os.WEXITSTATUS(status) == 70:  # start_worker's: the worker's own loop failed
        return ("the cell's process ended (exit status 70: the REPL's loop in it failed, e.g. the code closed, read "
                "or wrote the pipes it takes requests from and answers on, fds 3 and 4)")
    return f"the cell's process ended (exit status {os.WEXITSTATUS(status)})"


# -- the worker: runs the cells ----------------------------------------------------------------
class CpuLimit(Exception):
    pass


IN_CELL = False


def on_cpu_limit(signum, frame):
    """Stops a cell over its CPU time; between cells (a thread the cell left running) the server's watchdog
    counts the CPU time instead, and the REPL waits for its next request."""
    if IN_CELL:
        raise CpuLimit(f"CPU time limit of {SETTINGS['cpu_seconds']} s per call exceeded (--code-cpu-seconds)")


def on_interrupt(signum, frame):
    """The server's SIGINT after the wall time: stops a running cell, never the REPL itself."""
    if IN_CELL:
        raise KeyboardInterrupt("stopped: the call ran longer than the wall-time limit (--code-timeout)")


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


def figures():
    """PNGs of the matplotlib figures left open by the cell (then closed)."""
    pyplot = sys.modules.get("matplotlib.pyplot")
    if pyplot is None:
        return []
    images, numbers, most = [], pyplot.get_fignums(), SETTINGS["max_images"]
    if len(numbers) > most:
        print(f"[{len(numbers) - most} more figure(s) not returned: at most {most} per call]", file=sys.stderr)
    for number in numbers[:most]:
        buffer = io.BytesIO()
        try:
            pyplot.figure(number).savefig(buffer, format="png")
            if buffer.tell() > SETTINGS["max_image_bytes"]:
                raise ValueError(f"the PNG is over {SETTINGS['max_image_bytes'] >> 20} MB")
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


def work(commands, replies):
    """The worker's loop: one cell per command; its output goes to fds 1 and 2 (the capture pipe)."""
    import site

    for directory in SETTINGS["site_dirs"]:
        site.addsitedir(directory)
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a too-big write fails with EFBIG instead
    signal.signal(signal.SIGXCPU, on_cpu_limit)
    signal.signal(signal.SIGINT, on_interrupt)
    if SETTINGS["seccomp"]:
        os.memfd_create = refuse_memfd  # refused anyway (seccomp): with a message that says so
    sys.stdout = os.fdopen(1, "w", buffering=1, closefd=False)
    sys.stderr = os.fdopen(2, "w", buffering=1, closefd=False)
    me = os.getpid()
    namespace = {"__name__": "__main__", "__builtins__": __builtins__}
    while True:
        command = read_frame(commands, 1 << 30)
        if command is None:
            os._exit(0)
        try:
            while os.waitpid(-1, os.WNOHANG)[0] > 0:  # what the supervisor ended after the last cell
                pass
        except ChildProcessError:
            pass
        token, code = command.pop("token"), command.pop("code")  # the token in no object the cell is given
        error = run_cell(code, namespace)
        if os.getpid() != me:  # a process the cell forked must never answer
            os._exit(0)
        images = figures()  # before the answer: what it says is the cell's output
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        write_frame(replies, {"error": error, "images": images, "token": token})


def start_worker(devnull):
    to_worker_r, to_worker_w = os.pipe()
    from_worker_r, from_worker_w = os.pipe()
    output_r, output_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            for fd, target in ((devnull, 0), (output_w, 1), (output_w, 2), (to_worker_r, 3), (from_worker_w, 4)):
                os.dup2(fd, target)
            os.closerange(5, 1 << 16)  # nothing of the server's channel, nor of the supervisor's side
            drop_ptrace()
            for name, value in SETTINGS["rlimits"].items():  # the worker's (and its children's), not the supervisor's
                resource.setrlimit(getattr(resource, name), (value, value))
            os.chdir(DATA)
            work(os.fdopen(3, "rb"), os.fdopen(4, "wb"))
        finally:
            os._exit(70)
    WORKER["pid"] = pid
    os.close(to_worker_r), os.close(from_worker_w)
    return os.fdopen(to_worker_w, "wb"), os.fdopen(from_worker_r, "rb", buffering=0), (output_r, output_w)


def read_exact(stream, size):
    data, chunk = b"", b"-"
    while len(data) < size and chunk:
        chunk = stream.read(size - len(data))
        data += chunk
    return data if len(data) == size else None


def read_frame(stream, limit):
    head = read_exact(stream, 4)
    if head is None:
        return None
    (size,) = struct.unpack(">I", head)
    if size > limit:
        raise ValueError(f"a frame of {size} bytes")
    body = read_exact(stream, size)
    return None if body is None else json.loads(body)


def write_frame(stream, message):
    body = json.dumps(message).encode()
    stream.write(struct.pack(">I", len(body)) + body)
    stream.flush()


def main():
    drop_privileges()
    refuse_hidden_memory()
    requests = os.fdopen(os.dup(0), "rb", buffering=0)  # unbuffered: select() sees all that is pending
    answers = os.fdopen(os.dup(1), "wb")
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1):
        os.dup2(devnull, fd)
    os.makedirs(DATA, exist_ok=True)
    os.chdir(DATA)
    to_worker, from_worker, output = start_worker(devnull)
    signal.signal(signal.SIGINT, lambda signum, frame: os.kill(WORKER["pid"], signal.SIGINT))
    capture = Capture(SETTINGS["output_bytes"], *output)
    write_frame(answers, {"ready": True, "pid": os.getpid()})
    try:
        supervise(requests, answers, to_worker, from_worker, capture)
    except BrokenPipeError:
        pass
    finally:
        try:
            os.kill(WORKER["pid"], signal.SIGKILL)
        except OSError:
            pass


main()
