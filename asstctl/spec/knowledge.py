"""Knowledge files in specs: paths and globs → hashed :class:`LocalFile` entries, and the API's limits.

Paths and globs (``data/*.csv``, ``docs/**/*.md``; hidden files are not matched) are relative to the
file that declares them. Every problem is one ``path:line:col: message`` at the list item: a path
that does not exist, a glob that matches nothing, a file over 512 MB, a type file_search does not
read. Files are hashed (sha256) here, so the reconciler compares content without reading them again.
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
from pathlib import Path
from typing import Callable

from asstctl.spec.model import LocalFile, VectorStoreSpec

MAX_FILE_BYTES = 512 * 1024 * 1024
MAX_GLOB_ENTRIES = 100_000  # a glob that visits more files and folders is refused
CODE_INTERPRETER_FILES = 20
# The file types file_search reads (platform.openai.com/docs/assistants/tools/file-search#supported-files).
FILE_SEARCH_EXTENSIONS = (".c", ".cpp", ".cs", ".css", ".doc", ".docx", ".go", ".html", ".java", ".js", ".json",
                          ".md", ".pdf", ".php", ".pptx", ".py", ".rb", ".sh", ".tex", ".ts", ".txt")
_GLOB = re.compile(r"[*?\[]")


def local_files(base: Path, patterns: list[str], where: Callable[[int], str], *,
                search: bool, roots: tuple[Path, ...] | None = None) -> tuple[tuple[LocalFile, ...], list[str]]:
    """The files ``patterns`` name below ``base`` (each once, in pattern then name order) and the problems.
    Only regular files below one of ``roots`` (the project root and its ``allow_paths``) are taken."""
    found: dict[Path, LocalFile] = {}
    problems: list[str] = []
    for index, pattern in enumerate(patterns):
        paths, problem = _expand(base, pattern, roots)
        for path in paths:
            problem = problem or _file_problem(path, search)
            if problem is None and path not in found:
                found[path] = local_file(path)
        if problem:
            problems.append(f"{where(index)}: {problem}")
    return tuple(found.values()), problems


def _expand(base: Path, pattern: str, roots: tuple[Path, ...] | None) -> tuple[list[Path], str | None]:
    from asstctl.spec.files import file_problem, outside_problem

    if _GLOB.search(pattern):
        return _glob(base, pattern, roots)
    path = base / pattern
    problem = file_problem(path)
    if problem == "is a directory, not a file":
        return [], f"{shown(path)} is a directory; name its files with a glob such as `{pattern.rstrip('/')}/*.md`"
    if problem == "does not exist":
        return [], f"{shown(path)} does not exist (paths are relative to the file that names them)"
    problem = problem or outside_problem(path, roots)
    return ([], f"{shown(path)} {problem}") if problem else ([path], None)


def _glob(base: Path, pattern: str, roots: tuple[Path, ...] | None) -> tuple[list[Path], str | None]:
    """A glob's regular files, found by a walk that visits every real folder once (symlink loops end) and
    never enters a folder outside ``roots``."""
    from asstctl.spec.files import file_problem, outside_problem

    parts = pattern.split("/")
    literal = next((i for i, part in enumerate(parts) if _GLOB.search(part)), len(parts))
    start, rest = base.joinpath(*parts[:literal]), [part for part in parts[literal:] if part]
    outside = outside_problem(start, roots) if start.exists() else None
    if outside:
        return [], f"`{pattern}` reaches {shown(start)}, which {outside}"
    walked, problem = _walk(start, None if "**" in rest else len(rest), roots)
    if problem:
        return [], f"`{pattern}` {problem}"
    match = re.compile(_translate(rest))
    paths = [start / name for name in sorted(walked) if match.fullmatch(name)]
    for path in paths:
        broken = file_problem(path) or outside_problem(path, roots)
        if broken:
            return [], f"`{pattern}` matches {shown(path)}, which {broken}"
    return paths, None if paths else f"`{pattern}` matches no file in {shown(base)}"


def _walk(start: Path, depth: int | None, roots) -> tuple[list[str], str | None]:
    """Relative names (``a/b.md``) of the entries below ``start`` that are not folders, hidden ones left out;
    every real folder is listed once, so symlink loops end."""
    from asstctl.spec.files import outside_problem

    names: list[str] = []
    seen: set[tuple[int, int]] = set()
    stack: list[tuple[Path, str]] = [(start, "")]
    visited = 0
    while stack:
        directory, prefix = stack.pop()
        for entry in _folder(directory, seen):
            visited += 1
            if visited > MAX_GLOB_ENTRIES:
                return [], f"visits more than {MAX_GLOB_ENTRIES:,} files and folders; narrow it"
            if entry.name.startswith("."):
                continue
            name = prefix + entry.name
            if not _is_folder(entry):
                names.append(name)
            elif (depth is None or name.count("/") + 1 < depth) and not outside_problem(entry.path, roots):
                stack.append((Path(entry.path), name + "/"))
    return names, None


def _folder(directory: Path, seen: set[tuple[int, int]]) -> list[os.DirEntry]:
    """The entries of a folder not listed before (by device and inode), sorted; [] when unreadable."""
    try:
        info = os.stat(directory)
        if (info.st_dev, info.st_ino) in seen:
            return []
        seen.add((info.st_dev, info.st_ino))
        with os.scandir(directory) as entries:
            return sorted(entries, key=lambda entry: entry.name)
    except OSError:
        return []


def _is_folder(entry: os.DirEntry) -> bool:
    try:
        return entry.is_dir()  # follows symlinks; False for a loop or a dangling link
    except OSError:
        return False


def _translate(parts: list[str]) -> str:
    """A regex for the glob's segments after its literal folders: ``**`` spans folders, ``*`` and ``?`` do not."""
    out = ""
    for index, part in enumerate(parts):
        last = index == len(parts) - 1
        if part == "**":
            out += ".*" if last else "(?:[^/]+/)*"
        else:
            out += _segment(part) + ("" if last else "/")
    return out


def _segment(part: str) -> str:
    out, i = "", 0
    while i < len(part):
        char = part[i]
        close = part.find("]", i + 2) if char == "[" else -1
        if char == "*":
            out += "[^/]*"
        elif char == "?":
            out += "[^/]"
        elif close != -1:
            inner = part[i + 1:close]
            inner = "^" + inner[1:] if inner.startswith("!") else inner
            out += "[" + inner.replace("\\", "\\\\") + "]"
            i = close
        else:
            out += re.escape(char)
        i += 1
    return out


def _file_problem(path: Path, search: bool) -> str | None:
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        return f"{shown(path)} is {size / 2**20:,.0f} MB; the API takes files of at most 512 MB"
    if search and path.suffix.lower() not in FILE_SEARCH_EXTENSIONS:
        return (f"{shown(path)}: file_search cannot read `{path.suffix or 'extension-less'}` files; it reads "
                f"{' '.join(FILE_SEARCH_EXTENSIONS)} (convert the file, or give it to code_interpreter)")
    return None


def local_file(path: Path) -> LocalFile:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return LocalFile(label=label(path), path=path, sha256=digest.hexdigest(), size=path.stat().st_size)


def label(path: Path) -> str:
    """The path relative to the project root (the directory of asstctl.yaml), POSIX separators."""
    absolute = path.resolve()
    root = _root(absolute.parent)
    return absolute.relative_to(root).as_posix() if root else absolute.as_posix()


@functools.lru_cache(maxsize=64)
def _root(directory: Path) -> Path | None:
    from asstctl.spec.files import find_root

    return find_root(directory)


def shown(path: Path) -> str:
    from asstctl.spec.files import shown as relative

    return relative(path)


def store_spec(key: str, source: Path, data: dict, where: Callable[..., str], *, prevent_destroy: bool = False,
               roots: tuple[Path, ...] | None = None) -> tuple[VectorStoreSpec | None, list[str]]:
    """A :class:`VectorStoreSpec` from a schema-valid store mapping (inline or its own file)."""
    if roots is None:
        from asstctl.spec.files import project_roots

        roots = project_roots(source.parent)
    files, problems = local_files(source.parent, data["files"], lambda i: where("files", i), search=True, roots=roots)
    chunking = chunking_strategy(data.get("chunking_strategy"))
    static = (chunking or {}).get("static") or {}
    if static and static["chunk_overlap_tokens"] * 2 > static["max_chunk_size_tokens"]:
        problems.append(f"{where('chunking_strategy', 'static', 'chunk_overlap_tokens')}: `chunk_overlap_tokens` "
                        "must be at most half of `max_chunk_size_tokens`")
    fields = {"name": data.get("name") or key}
    if data.get("metadata"):
        fields["metadata"] = data["metadata"]
    if data.get("expires_after"):
        fields["expires_after"] = {"anchor": "last_active_at", "days": data["expires_after"]["days"]}
    spec = VectorStoreSpec(key=key, path=source, fields=fields, files=files, chunking_strategy=chunking,
                           prevent_destroy=prevent_destroy)
    return (None if problems else spec), problems


def chunking_strategy(value) -> dict | None:
    """``None`` for the API's ``auto`` (800/400), else the static strategy as the API takes it."""
    if value in (None, "auto") or value.get("type") == "auto":
        return None
    return {"type": "static", "static": dict(value["static"])}


def too_many_code_files(files: tuple[LocalFile, ...]) -> str | None:
    if len(files) <= CODE_INTERPRETER_FILES:
        return None
    return (f"code_interpreter gets {len(files)} files; an assistant takes at most {CODE_INTERPRETER_FILES} "
            "(narrow the globs, or put the files in a zip archive)")
