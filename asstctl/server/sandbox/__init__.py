"""The code_interpreter sandbox: Python sessions per thread, isolated with bubblewrap.

Owns: building the bwrap command line (``command.py``), the REPL that runs inside the sandbox
(``repl.py``, standard library only, started as ``python -I -c``), one session's process and its
framed protocol (``session.py``), the sessions per thread with idle expiry and a cap on their
number (``pool.py``) and the limits across sessions, measured from /proc (``limits.py``, ``procs.py``). See docs/engine.md, "The code_interpreter sandbox".

May import: the standard library only. The code_interpreter tool (``asstctl.server.tools``) uses it.
"""

from asstctl.server.sandbox.command import INSTALL_HINT, SandboxConfig, SandboxUnavailable
from asstctl.server.sandbox.pool import SessionPool, SessionsBusy
from asstctl.server.sandbox.session import CellResult, InputFile, Session, safe_name

__all__ = ["INSTALL_HINT", "CellResult", "InputFile", "SandboxConfig", "SandboxUnavailable", "Session",
           "SessionPool", "SessionsBusy", "safe_name"]
