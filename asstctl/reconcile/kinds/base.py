"""What every resource kind shares: the ``Kind`` interface, the planning context, and apply helpers.

A kind (assistant, vector store, upload) knows how to read its remote objects, normalize both sides,
diff them into plan entries, and carry out its entries through a backend (asstctl.backends). The planner
(asstctl.reconcile.plan) and the executor (asstctl.reconcile.apply) only iterate kinds in dependency order:
uploads → vector stores → assistants for creates and updates, the reverse for deletions.
Imports asstctl.errors, asstctl.progress, asstctl.backends, and model, remote, knowledge of asstctl.reconcile.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Protocol

from asstctl.backends.base import describe
from asstctl.errors import AsstctlError
from asstctl.reconcile.knowledge import KnowledgeRemote
from asstctl.reconcile.model import DELETE, DESTROY_MODE, Outcome, Plan
from asstctl.reconcile.remote import RemoteState


@dataclass
class PlanContext:
    """What planning compares: the desired side (specs, stores) and the remote side, for one project."""

    project: str
    mode: str
    prune: bool
    specs: list[Any]  # assistant specs (their tool_resources as knowledge references when knowledge is read)
    stores: list[Any]  # vector store specs
    remote: RemoteState  # the assistants
    knowledge: KnowledgeRemote | None = None  # vector stores, their files, uploads (None: not read)
    names: dict[str, str] | None = None  # remote id -> knowledge reference

    @property
    def destroy(self) -> bool:
        return self.mode == DESTROY_MODE


class Kind(Protocol):
    """One resource kind of the pipeline."""

    object: str  # what its plan entries are: "assistant", "vector_store", "upload"

    def plan(self, ctx: PlanContext, plan: Plan) -> None:
        """Add its entries (actions, uploads), in dependency order after the kinds before it."""

    def settle(self, ctx: PlanContext, plan: Plan) -> None:
        """Entries that depend on every kind's actions (run in reverse order, after all ``plan`` calls)."""

    def apply_changes(self, run: Any) -> list[Outcome]:
        """Carry out its creates and updates (``run``: asstctl.reconcile.apply.ApplyRun)."""

    def apply_deletions(self, run: Any) -> list[Outcome]:
        """Carry out its deletions."""


def guarded(run: Any, key: str, kind: str, remote_id: str | None, call: Callable[[], Any]) -> Any:
    """``call()``'s outcome, or a failed outcome naming ``key`` with the error's first line."""
    try:
        return call()
    except (*run.backend.errors, AsstctlError, OSError) as error:
        return Outcome(key, kind, False, remote_id, describe(error))


def deletion(label: str, remote_id: str, done: bool) -> Outcome:
    """The outcome of a deletion; one that found the object already gone (``done`` false) succeeded."""
    return Outcome(label, DELETE, True, remote_id, note=None if done else "already gone")


def concurrently(call: Callable[[Any], Any], items: Iterable[Any], parallelism: int, bar: Any = None) -> list[Any]:
    """``call`` on each item, up to ``parallelism`` at once; the results in the order they finished."""
    lock, done = threading.Lock(), []

    def one(item: Any) -> None:
        result = call(item)
        with lock:
            done.append(result)
            if bar is not None:
                bar.update(1)

    with ThreadPoolExecutor(max_workers=max(1, parallelism)) as pool:
        list(pool.map(one, items))
    return done
