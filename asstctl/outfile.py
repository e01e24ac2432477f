"""Files the CLI writes on request (``plan --out``, ``test --junit-xml``...): the folder is created first,
and a path that cannot be written is one clear error, never a traceback. Imports only asstctl.errors."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from asstctl.errors import AsstctlError


@contextmanager
def writing(path: Path | str) -> Iterator[Path]:
    """``with writing(path) as target: target.write_text(...)``: creates the folder of ``path`` first and turns
    an OSError (no permission, a file where a folder goes, ``path`` is a folder...) into an AsstctlError."""
    target = Path(path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        yield target
    except OSError as error:
        raise AsstctlError(f"cannot write {path}: {error.strerror or error}",
                           hint="Choose another path, or check the folder's permissions.") from None
