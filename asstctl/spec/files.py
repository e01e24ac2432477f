"""Reading the files a project names, safely: regular files only, with a size cap, inside the project.

Every file asstctl reads because a project names it (asstctl.yaml, specs, ``instructions_file``,
``parameters_file``, knowledge files, conversation files, engine rules) goes through here, so that a
symlink loop, a dangling link, a FIFO, a device (``/dev/zero``) or a huge file is one sentence
("is a named pipe (FIFO), not a regular file") instead of a traceback, a hang or a MemoryError.
A path that leaves the project root (``../../../../etc/passwd``, or a symlink pointing out) is refused
unless asstctl.yaml allows its folder (``allow_paths: [../shared]``). Imports only the standard library.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

PROJECT_FILE = "asstctl.yaml"
STATE_DIR = ".asstctl"

MAX_TEXT_BYTES = 16 * 2**20  # specs, instructions, schemas, conversations, rules: text a person writes


class FileProblem(Exception):
    """Why a file cannot be read, as the end of a sentence that starts with its path."""


def file_problem(path: Path | str) -> str | None:
    """``None`` when ``path`` (symlinks followed) is a regular file, else what it is instead, in words."""
    try:
        info = os.stat(path)
    except OSError as error:
        return _stat_problem(Path(path), error)
    return _kind_problem(info.st_mode)


def _stat_problem(path: Path, error: OSError) -> str:
    if error.errno == errno.ELOOP:
        return "is a symbolic link loop (the links point at each other); fix or remove the link"
    if error.errno in (errno.ENOENT, errno.ENOTDIR):
        if os.path.islink(path):
            return f"is a symbolic link to {os.readlink(path)}, which does not exist; fix or remove the link"
        return "does not exist"
    if error.errno == errno.EACCES:
        return "cannot be read (permission denied)"
    return f"cannot be read ({error.strerror or error})"


def _kind_problem(mode: int) -> str | None:
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISDIR(mode):
        return "is a directory, not a file"
    if stat.S_ISFIFO(mode):
        return "is a named pipe (FIFO), not a regular file"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "is a device, not a regular file"
    if stat.S_ISSOCK(mode):
        return "is a socket, not a regular file"
    return "is not a regular file"


def read_bytes(path: Path | str, limit: int = MAX_TEXT_BYTES) -> bytes:
    """The content of a regular file of at most ``limit`` bytes; raises :class:`FileProblem` otherwise.

    The file is opened non-blocking and checked again once open, so a FIFO swapped in between the
    check and the open cannot hang the read."""
    problem = file_problem(path)
    if problem:
        raise FileProblem(problem)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except OSError as error:
        raise FileProblem(_stat_problem(Path(path), error)) from None
    with os.fdopen(fd, "rb") as stream:
        info = os.fstat(stream.fileno())
        problem = _kind_problem(info.st_mode) or _size_problem(info.st_size, limit)
        if problem:
            raise FileProblem(problem)
        data = stream.read(limit + 1)
    if len(data) > limit:
        raise FileProblem(_size_problem(len(data), limit))
    return data


def _size_problem(size: int, limit: int) -> str | None:
    if size <= limit:
        return None
    return f"is {_megabytes(size)}; asstctl reads files of at most {_megabytes(limit)} here"


def _megabytes(size: int) -> str:
    return f"{size / 2**20:,.1f} MB" if size < 10 * 2**20 else f"{size / 2**20:,.0f} MB"


# --- staying inside the project ----------------------------------------------------------------------

def allowed_roots(root: Path | str, allow_paths: list[str] | tuple[str, ...] = ()) -> tuple[Path, ...]:
    """The real folders files may come from: the project root and the ``allow_paths`` of asstctl.yaml."""
    base = Path(os.path.realpath(root))
    return (base, *(Path(os.path.realpath(base / folder)) for folder in allow_paths))


def outside_problem(path: Path | str, roots: tuple[Path, ...] | None) -> str | None:
    """``None`` when ``path`` (symlinks resolved) is below one of ``roots`` (or no roots apply), else why."""
    if not roots:
        return None
    real = Path(os.path.realpath(path))
    if any(real == root or root in real.parents for root in roots):
        return None
    folder = os.path.relpath(real if real.is_dir() else real.parent, roots[0])
    via = "" if real == Path(os.path.abspath(path)) else f" (it leads to {real})"
    return (f"is outside the project{via}; asstctl reads only files below {roots[0]}: to allow that folder, add "
            f"`allow_paths: [{Path(folder).as_posix()}]` to asstctl.yaml")


def find_root(start: Path | None = None) -> Path | None:
    """The nearest directory at or above ``start`` that holds asstctl.yaml."""
    here = (start or Path.cwd()).resolve()
    for directory in (here, *here.parents):
        candidate = directory / PROJECT_FILE
        if os.path.lexists(candidate) and not candidate.is_dir():  # a FIFO or broken link is reported, not skipped
            return directory
    return None


def shown(path: Path) -> str:
    """A path as messages show it: relative to the working directory when it is below it, or below the root of
    the project the working directory is in (from its ``assistants/``: ``../asstctl.yaml``); else absolute."""
    try:
        relative = os.path.relpath(path)
    except ValueError:  # another drive (Windows)
        return str(path)
    if not relative.startswith(".."):
        return relative
    root = find_root()
    if root is not None and (Path(os.path.abspath(path)).is_relative_to(root) or Path(path).resolve().is_relative_to(root)):
        return os.path.relpath(Path(path).resolve(), Path.cwd().resolve())
    return str(path)


def project_roots(start: Path | str) -> tuple[Path, ...] | None:
    """The allowed roots of the project a file belongs to (found by its asstctl.yaml); ``None`` outside one."""
    root = find_root(Path(start))
    if root is None:
        return None
    try:
        import yaml

        data = yaml.safe_load(read_bytes(root / PROJECT_FILE)) or {}
    except Exception:  # noqa: BLE001 - asstctl.yaml's own problems are reported when it is loaded
        data = {}
    folders = data.get("allow_paths") if isinstance(data, dict) else None
    return allowed_roots(root, [f for f in folders if isinstance(f, str)] if isinstance(folders, list) else [])
