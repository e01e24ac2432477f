"""The one exception base of asstctl.

Every error a user can cause or fix is an ``AsstctlError``: the CLI prints it as
``Error: <message>`` plus an optional hint line and exits with ``exit_code``
(1 unless a command says otherwise). Anything else is a bug and shows a traceback
only under ``--debug``.
"""

from __future__ import annotations


class AsstctlError(Exception):
    """A known, user-facing error: what went wrong, where, and what to do next."""

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None, exit_code: int | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint
        if exit_code is not None:
            self.exit_code = exit_code

    def __str__(self) -> str:
        return self.message


class ConfigError(AsstctlError):
    """asstctl.yaml, targets, credentials: exit 1 (2 for `asstctl test`)."""


class SpecError(AsstctlError):
    """One or more spec files are invalid; ``problems`` are ``path:line:col: message`` strings."""

    def __init__(self, problems: list[str], hint: str | None = None):
        self.problems = list(problems)
        count = len(self.problems)
        summary = "\n".join(self.problems)
        super().__init__(f"{summary}\n{count} problem{'s' if count != 1 else ''} found", hint)


class TargetError(AsstctlError):
    """The target endpoint is unreachable, refuses our key, or does not serve the Assistants API."""


class PlanError(AsstctlError):
    """A saved plan cannot be applied (stale, corrupt, other project)."""


class ApplyError(AsstctlError):
    """Some operations of an apply failed; the others were carried out."""
