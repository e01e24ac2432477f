"""Compatibility: the run executor moved to the package :mod:`asstctl.server.runs`."""

from asstctl.server.runs import ACTIVE, EXPIRY_SECONDS, TERMINAL, Listener, RunExecutor, public

__all__ = ["ACTIVE", "EXPIRY_SECONDS", "TERMINAL", "Listener", "RunExecutor", "public"]
