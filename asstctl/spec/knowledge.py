"""Knowledge files in specs: paths and globs → hashed :class:`LocalFile` entries, and the API's limits.

Paths and globs (``data/*.csv``, ``docs/**/*.md``; hidden files are not matched) are relative to the
file that declares them. Every problem is one ``path:line:col: message`` at the list item: a path
that does not exist, a glob that matches nothing, a file over 512 MB, a type file_search does not
read. Files are hashed (sha256) here, so the reconciler compares content without reading them again.
"""

from __future__ import annotations

import functools
import glob
import hashlib
import re
from pathlib import Path
from typing import Callable

from asstctl.spec.model import LocalFile, VectorStoreSpec

MAX_FILE_BYTES = 512 * 1024 * 1024
CODE_INTERPRETER_FILES = 20
# The file types file_search reads (platform.openai.com/docs/assistants/tools/file-search#supported-files).
FILE_SEARCH_EXTENSIONS = (".c", ".cpp", ".cs", ".css", ".doc", ".docx", ".go", ".html", ".java", ".js", ".json",
                          ".md", ".pdf", ".php", ".pptx", ".py", ".rb", ".sh", ".tex", ".ts", ".txt")
_GLOB = re.compile(r"[*?\[]")


def local_files(base: Path, patterns: list[str], where: Callable[[int], str], *,
                search: bool) -> tuple[tuple[LocalFile, ...], list[str]]:
    """The files ``patterns`` name below ``base`` (each once, in pattern then name order) and the problems."""
    found: dict[Path, LocalFile] = {}
    problems: list[str] = []
    for index, pattern in enumerate(patterns):
        paths, problem = _expand(base, pattern)
        for path in paths:
            problem = problem or _file_problem(path, search)
            if problem is None and path not in found:
                found[path] = local_file(path)
        if problem:
            problems.append(f"{where(index)}: {problem}")
    return tuple(found.values()), problems


def _expand(base: Path, pattern: str) -> tuple[list[Path], str | None]:
    if not _GLOB.search(pattern):
        path = base / pattern
        if path.is_dir():
            return [], f"{shown(path)} is a directory; name its files with a glob such as `{pattern.rstrip('/')}/*.md`"
        if not path.is_file():
            return [], f"{shown(path)} does not exist (paths are relative to the file that names them)"
        return [path], None
    names = sorted(glob.glob(pattern, root_dir=base, recursive=True))
    paths = [base / name for name in names if (base / name).is_file()]
    return paths, None if paths else f"`{pattern}` matches no file in {shown(base)}"


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
    from asstctl.project import find_root

    return find_root(directory)


def shown(path: Path) -> str:
    from asstctl.spec.loader import shown as relative

    return relative(path)


def store_spec(key: str, source: Path, data: dict, where: Callable[..., str], *,
               prevent_destroy: bool = False) -> tuple[VectorStoreSpec | None, list[str]]:
    """A :class:`VectorStoreSpec` from a schema-valid store mapping (inline or its own file)."""
    files, problems = local_files(source.parent, data["files"], lambda i: where("files", i), search=True)
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
