"""The run executor: runs move through their states as asyncio tasks on the server's event loop.

Owns: the run state machine and its stream events (``executor.py``, ``events.py``), one model
call's streamed reply turned into messages, steps and deltas (``writer.py``), the built-in tool
dispatch (``builtin.py``), the Chat Completions request of a turn with truncation (``chat.py``),
token counts and context windows (``tokens.py``), the executor's per-run bookkeeping
(``book.py``) and the partial decoding of a tool call's arguments as they stream (``partial_json.py``).

May import: ``asstctl.server.store``, ``asstctl.server.replicas``, ``asstctl.server.http``, ``asstctl.server.engine.base`` and
``asstctl.server.tools`` (lazily, through its registry). Never the routes (they import us) or
``asstctl.cli``.
"""

from asstctl.server.runs.events import ACTIVE, EXPIRY_SECONDS, TERMINAL, Listener, public
from asstctl.server.runs.executor import RunExecutor

__all__ = ["ACTIVE", "EXPIRY_SECONDS", "TERMINAL", "Listener", "RunExecutor", "public"]
