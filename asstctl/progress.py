"""Progress for long library operations, without the library knowing about terminals.

Callers (the CLI) pass a ``progress`` factory such as ``asstctl.cli.output.progress``:
``progress(length=N, label=...)`` is a context manager yielding an object with ``update(n)``.
"""

from __future__ import annotations

import contextlib
from typing import Any


def progress_bar(progress: Any, count: int, label: str, minimum: int = 1):
    """A bar from ``progress`` over ``count`` steps; it yields None when there is no ``progress``
    or fewer than ``minimum`` steps (then nothing is worth drawing)."""
    if progress is None or count < minimum:
        return contextlib.nullcontext(None)
    return progress(length=count, label=label)
