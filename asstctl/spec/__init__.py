"""Spec files: load (YAML with positions) → validate (JSON Schema + semantic checks) → resolve to API-shaped data."""
