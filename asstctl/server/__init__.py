"""asstctl's own Assistants API v2 server (``asstctl serve`` and the embedded target).

Owns the HTTP layer (``app``, ``http``, ``routes/``, ``validation``, ``protocol``), persistence
(``store/``), the run executor (``runs/``), the engines that write replies (``engine/``), the built-in
tools (``tools/``, with ``retrieval/`` and ``sandbox/``), and the in-process server (``embedded``).
A request flows: route → store → executor → engine → tools. May import asstctl.errors and, in
``embedded`` only, asstctl.spec (the project's database and engine settings); never the reconciler,
the backends, the runner or the CLI.
"""
