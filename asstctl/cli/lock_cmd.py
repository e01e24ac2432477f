"""The project lock on the command line: ``--lock-timeout`` for apply and destroy (asstctl.reconcile.lock;
``asstctl force-unlock`` is in asstctl.cli.status_cmd)."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator

import click



class Duration(click.ParamType):
    name = "duration"

    def convert(self, value: Any, param: Any, ctx: Any) -> float:
        if isinstance(value, (int, float)):
            return float(value)
        from asstctl.reconcile.lock import parse_duration

        try:
            return parse_duration(str(value))
        except ValueError as error:
            self.fail(str(error), param, ctx)


DURATION = Duration()


def lock_timeout_option(command):
    command = click.option("--lock/--no-lock", "use_lock", default=True, show_default=True,
                           help="Take the project lock on the target (--no-lock: for a target without vector "
                                "stores, when you make sure nothing else applies the project).")(command)
    return click.option("--lock-timeout", default="0s", show_default=True, type=DURATION, metavar="DURATION",
                        help="Wait this long (e.g. 30s, 2m) for another apply or destroy of the project "
                             "to release its lock; 0s: refuse at once.")(command)


@contextmanager
def locked(target: Any, project: str, operation: str, timeout: float, use_lock: bool = True) -> Iterator[Any]:
    """Hold the project's lock on ``target`` for the block (asstctl.reconcile.lock); nothing with ``use_lock`` false."""
    from asstctl.reconcile.lock import acquire

    if not use_lock:
        yield None
        return
    with acquire(target.client, project, operation, timeout) as lock:
        yield lock
