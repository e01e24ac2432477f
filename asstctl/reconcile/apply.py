"""The executor: carry out a plan's actions through a backend, kind by kind, and report each outcome.

* order: every kind's creates and updates in dependency order (asstctl.reconcile.kinds: uploads, vector
  stores and their files and the wait for ingestion, then assistants with their ``tool_resources``
  references resolved to ids), then deletions in the reverse order: assistants, vector stores, unused uploads;
* up to ``parallelism`` API calls at once (backends are thread-safe);
* updates and deletes are idempotent and retried by the backend; a delete that finds the object already
  gone succeeded; a create is never retried blindly (asstctl.backends.assistants_v2.create_verified);
* one failed object does not stop the others; every failure names its key;
* ``check_fresh`` refuses a saved plan whose objects changed since it was computed;
* outcomes are reported in the order they finished.

Imports model, remote, knowledge and kinds of asstctl.reconcile, and asstctl.backends; never plan or report.
"""

from __future__ import annotations

import contextlib
import threading
from pathlib import Path
from typing import Any, Callable

from asstctl.backends import backend_for
from asstctl.backends.assistants_v2 import RetryPolicy
from asstctl.errors import PlanError
from asstctl.reconcile.kinds import KINDS
from asstctl.reconcile.kinds.vector_store import INGESTION_TIMEOUT, store_label, wait
from asstctl.reconcile.knowledge import read_knowledge
from asstctl.reconcile.model import CREATE, DELETE, DESTROY_MODE, VECTOR_STORE, Action, ApplyResult, Outcome, Plan
from asstctl.reconcile.remote import RemoteState, read_remote

__all__ = ["ApplyResult", "ApplyRun", "Outcome", "RetryPolicy", "apply_plan", "check_fresh", "check_plan_target",
           "verified_remote"]


class ApplyRun:
    """One apply's shared state, handed to every kind: ``refs`` grows with the ids of new uploads and
    stores; ``kept`` holds file ids a failed step left in use (never deleted by this apply); ``pending``
    the attached files waiting for ingestion."""

    def __init__(self, plan: Plan, client: Any, *, parallelism: int = 8, ingestion_timeout: float = INGESTION_TIMEOUT,
                 progress: Callable[..., Any] | None = None, root: Path | str | None = None,
                 retry: RetryPolicy | None = None):
        self.plan, self.backend, self.parallelism = plan, backend_for(client), max(1, parallelism)
        self.timeout, self.progress, self.root = ingestion_timeout, progress, root
        self.retry = retry  # None: the backend's default policy
        self.refs = dict(plan.refs)
        self.kept: set[str] = set()
        self.pending: list[tuple[str, str, str, Any]] = []  # (store id, file id, path, attached object)
        self.lock = threading.Lock()
        self.stack = contextlib.ExitStack()  # what a kind keeps open across its phases (a progress bar)
        self.state: dict[str, Any] = {}  # a kind's own state between its changes and its deletions

    def wait(self) -> list[Outcome]:
        """Wait for the ingestion of the attached files (``pending``)."""
        return wait(self)


def apply_plan(plan: Plan, client: Any, *, parallelism: int = 8, retry: RetryPolicy | None = None,
               ingestion_timeout: float | None = None, progress: Any = None, root: Any = None) -> ApplyResult:
    """Execute every executable action of ``plan``; blocked deletions under destroy are failures.
    ``progress``: a ``cli.output.progress``-like factory (many writes, the wait for ingestion); ``root``: the
    project root the plan's file paths are relative to (default: where they were read when planning)."""
    timeout = INGESTION_TIMEOUT if ingestion_timeout is None else ingestion_timeout
    run = ApplyRun(plan, client, parallelism=parallelism, ingestion_timeout=timeout, progress=progress, root=root,
                   retry=retry)
    outcomes: list[Outcome] = []
    with run.stack:
        for kind in KINDS:
            outcomes += kind.apply_changes(run)
        for kind in reversed(KINDS):
            outcomes += kind.apply_deletions(run)
    outcomes += [blocked_outcome(action) for action in plan.actions if action.blocked and plan.mode == DESTROY_MODE]
    return ApplyResult(outcomes)  # in the order they ran (finished)


def blocked_outcome(action: Action) -> Outcome:
    key = store_label(action.key) if action.object == VECTOR_STORE else action.key
    return Outcome(key, DELETE, False, action.remote_id, "prevent_destroy is set in its spec: not deleted")


def check_fresh(plan: Plan, remote: RemoteState, knowledge: Any = None) -> None:
    """Refuse a saved plan when the remote objects it was computed from changed since
    (``knowledge``: the stores and uploads, for a plan that has any)."""
    current = {**remote.fingerprints(), **(knowledge.fingerprints() if knowledge is not None else {})}
    stores = knowledge.stores if knowledge is not None else remote
    stale = [stale_reason(action, current, stores if action.object == VECTOR_STORE else remote) for action in plan.actions]
    stale += [f"{ref}: {ref_id} is gone" for ref, ref_id in plan.refs.items() if ref_id not in current]
    stale += [f"file {item.path}: {item.file_id} is gone" for item in plan.file_deletions if item.file_id not in current]
    stale = [reason for reason in stale if reason]
    if stale:
        raise PlanError(
            "the saved plan is stale, the remote changed since it was made: " + "; ".join(stale),
            hint="Run `asstctl plan` again (and `--out FILE` to save the new plan).",
        )


def stale_reason(action: Action, current: dict[str, str], remote: RemoteState) -> str | None:
    if action.kind == CREATE:
        found = remote.find(action.key)
        return f"{action.key}: now exists ({found['id']})" if found else None
    if action.remote_id is None:
        return None
    now = current.get(action.remote_id)
    if now is None:
        return f"{action.key}: {action.remote_id} is gone or no longer managed by this project"
    return f"{action.key}: {action.remote_id} was changed" if now != action.fingerprint else None


def check_plan_target(plan: Plan, project: str, target: str) -> None:
    if plan.project != project:
        raise PlanError(f"the saved plan is for project `{plan.project}`, this is `{project}`")
    if plan.target != target:
        raise PlanError(f"the saved plan was made for {plan.target}, not {target}",
                        hint="Pass the same --target/--base-url as when planning.")


def verified_remote(plan: Plan, client: Any) -> RemoteState:
    """Re-read the remote and check that a saved plan still applies to it."""
    remote = read_remote(client, plan.project)
    # Existing uploads and stores are in ``refs`` (so are the files to delete); a store to create is checked
    # against the stores; uploads alone have nothing to check.
    uses_knowledge = bool(plan.refs) or any(a.object == VECTOR_STORE for a in plan.actions)
    check_fresh(plan, remote, read_knowledge(client, plan.project) if uses_knowledge else None)
    return remote
