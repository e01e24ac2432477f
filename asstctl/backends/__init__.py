"""Backends: how the reconciler reaches a target. Owns the SDK.

* ``targets``: which target (embedded, base URL, Azure, Agents API), the SDK client for it;
* ``sdk_errors``: the SDK's whole-target errors as one clear TargetError;
* ``assistants_v2``: every call the reconciler makes on the Assistants API v2 (assistants, vector
  stores and their files, uploads, project locks).

* ``agents``: the same calls on OpenAI's beta Agents API (an ``api: agents`` target: its ``Target.client``
  is this backend already).

``backend_for(client)`` gives the reconciler its backend (a backend passes through). May import asstctl.errors, asstctl.spec
(the project's target settings) and, lazily, asstctl.server.embedded (the embedded target) and the SDK;
never asstctl.reconcile, asstctl.testing or asstctl.cli.
"""

from __future__ import annotations

from typing import Any


def backend_for(client: Any) -> Any:
    """The backend for an SDK client (Assistants v2); a backend (Assistants v2, Agents) is returned as it is."""
    from asstctl.backends.assistants_v2 import AssistantsV2

    return client if isinstance(client, AssistantsV2) else AssistantsV2(client)

