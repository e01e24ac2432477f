"""Terminal manners for every command: colour only where it helps, progress only on a terminal.

* ``use_color(stream)`` — colour is on when the stream is a TTY (and ``TERM`` is not ``dumb``).
  ``NO_COLOR`` (any non-empty value, https://no-color.org) turns it off; ``FORCE_COLOR`` (non-empty,
  not ``0``) turns it on even when piped, e.g. in CI logs. ``NO_COLOR`` wins when both are set, as in
  CPython.
* ``style(text, fg, stream=None, bold=False)`` — ``text`` coloured for ``stream`` (default stdout),
  plain when ``use_color`` says no, so piped output and files never contain escape codes::

      click.echo(style("+ create", "green") + " weather-bot")
      click.echo(style("Error:", "red", stream=sys.stderr), err=True)

* ``progress(items=None, length=None, label="")`` — a context manager for long operations. On a TTY
  (stderr by default, so stdout stays parseable) it draws a ``click.progressbar``; anywhere else it
  draws nothing. Either way it yields an object you iterate (when ``items`` is given) and/or call
  ``update(n)`` on::

      with progress(specs, label="Applying") as bar:
          for spec in bar:
              apply_one(spec)

      with progress(length=len(calls), label="Waiting for runs") as bar:
          for done in as_completed(calls):
              bar.update(1)
"""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from typing import IO, Any, Iterable, Iterator

import click


def is_tty(stream: IO[Any] | None) -> bool:
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except ValueError:  # a closed stream
        return False


def use_color(stream: IO[Any] | None = None) -> bool:
    """Whether to colour output written to ``stream`` (default: stdout)."""
    if os.environ.get("NO_COLOR"):
        return False
    if os.environ.get("FORCE_COLOR", "0") not in ("", "0"):
        return True
    if os.environ.get("TERM") == "dumb":
        return False
    return is_tty(sys.stdout if stream is None else stream)


def style(text: str, fg: str | None = None, stream: IO[Any] | None = None, bold: bool = False) -> str:
    """``text`` in colour ``fg`` (a click colour name) if ``stream`` gets colour, else unchanged."""
    if not use_color(stream):
        return text
    return click.style(text, fg=fg, bold=bold or None)


class _Silent:
    """What ``progress`` yields off a terminal: the same interface, drawing nothing."""

    def __init__(self, items: Iterable[Any] | None):
        self._items = items if items is not None else ()

    def __iter__(self) -> Iterator[Any]:
        return iter(self._items)

    def update(self, n_steps: int, current_item: Any = None) -> None:
        pass


@contextmanager
def progress(
    items: Iterable[Any] | None = None,
    length: int | None = None,
    label: str = "",
    stream: IO[Any] | None = None,
) -> Iterator[Any]:
    """A progress bar on ``stream`` (default stderr) when it is a TTY; silent otherwise."""
    stream = sys.stderr if stream is None else stream
    if not is_tty(stream):
        yield _Silent(items)
        return
    with click.progressbar(items, length=length, label=label, file=stream, color=use_color(stream)) as bar:
        yield bar
