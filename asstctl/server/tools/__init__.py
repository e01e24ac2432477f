"""Built-in tools that the server itself runs inside a run: ``file_search`` and ``code_interpreter``.

Owns: the :class:`BuiltinTool` contract (``base.py``) and one module per tool. The run executor
offers each tool the run has attached to the engine, runs the calls the engine makes, records them
as ``tool_calls`` steps in the API's shape and feeds their output back to the engine.

May import: ``asstctl.server.store``, ``asstctl.server.http``, ``asstctl.server.errors`` and its own
helpers (``asstctl.server.retrieval``, ``asstctl.server.sandbox``). Never the executor, the routes
or the engines (they import us).
"""
