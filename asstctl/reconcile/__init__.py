"""The reconciler: specs against a target, as a pipeline normalize → diff → plan → apply → report.

Owns the plan data (``model``), the remote state (``remote``: assistants; ``knowledge``: vector stores and
uploads, their references), one module per resource kind (``kinds/``), the planner (``plan``, with
``selection`` for ``plan KEY``), the executor (``apply``), rendering (``report``, ``status``), the project
lock (``lock``) and import/export (``porting``). Each module imports only modules below it in that order
(tests/test_architecture.py lists the layers). May import asstctl.spec, asstctl.backends and the root
leaves; never the SDK (the backends call it), the server, the runner or the CLI.
"""
