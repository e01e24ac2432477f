"""Spec files: load (YAML with positions) → validate (JSON Schema + semantic checks) → resolve to API-shaped data.

Owns asstctl.yaml (``project``), the spec and conversation-file schemas, reading files safely (``files``),
knowledge declarations, the offline engine rules check (``rules_check``) and ``asstctl init``'s templates
(``scaffold``). May import asstctl.errors, asstctl.ownership and, for the ``engine:`` section and the
rules file, asstctl.server.engine; never the reconciler, the backends, the runner or the CLI.
"""
