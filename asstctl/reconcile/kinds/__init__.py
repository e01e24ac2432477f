"""Resource kinds: one module per kind of object the reconciler manages (``Kind``: kinds/base.py).

``KINDS`` is the dependency order: uploads → vector stores (they hold uploads) → assistants (they name
both). Planning and creates/updates run in this order, deletions in the reverse. A new kind (an agent,
for the Agents API) is a new module here and an entry in ``KINDS``.
Kinds import asstctl.reconcile.{model, diff, normalize, remote, knowledge}, asstctl.ownership,
asstctl.progress, asstctl.errors and asstctl.backends.base; never plan, apply, report or the SDK.
"""

from __future__ import annotations

from asstctl.reconcile.kinds.assistant import Assistants
from asstctl.reconcile.kinds.base import Kind, PlanContext
from asstctl.reconcile.kinds.upload import Uploads
from asstctl.reconcile.kinds.vector_store import VectorStores

KINDS: tuple[Kind, ...] = (Uploads(), VectorStores(), Assistants())

__all__ = ["KINDS", "Kind", "PlanContext"]
