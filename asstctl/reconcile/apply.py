"""Apply: carry out a plan's actions against a client, concurrently, and report each outcome.

* up to ``parallelism`` API calls at once (the SDK client is thread-safe);
* updates and deletes rely on the SDK's own retries, then ``remote.transient_retries`` (they are
  idempotent); a delete that finds the object already gone (404) succeeded;
* a create is never retried blindly: it is sent with ``max_retries=0`` and when its outcome is
  unknown (timeout, connection lost, 5xx) the remote is listed for the key before another
  attempt, so a create that did happen is adopted instead of made twice; 429 is retried after
  a backoff (the request was not carried out);
* one failed object does not stop the others; every failure names its key;
* ``check_fresh`` refuses a saved plan whose objects changed since it was computed;
* outcomes are reported in the order they finished;
* order: knowledge first (uploads, vector stores and their files, the wait for ingestion:
  asstctl.knowledge_apply), then assistant creates and updates (their ``tool_resources`` references
  resolved to ids), then deletions: assistants, vector stores, unused uploads.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable

from asstctl.errors import AsstctlError, PlanError
from asstctl.reconcile.plan import ASSISTANT, CREATE, DELETE, DESTROY_MODE, UPDATE, VECTOR_STORE, Action, Plan
from asstctl.progress import progress_bar
from asstctl.reconcile.remote import RemoteState, read_remote, refused, transient_retries


@dataclass
class RetryPolicy:
    attempts: int = 8
    base_delay: float = 0.25
    max_delay: float = 4.0

    def delay(self, attempt: int) -> float:
        return min(self.base_delay * 2**attempt, self.max_delay)


@dataclass
class Outcome:
    key: str
    kind: str
    ok: bool
    remote_id: str | None = None
    error: str | None = None
    note: str | None = None


@dataclass
class ApplyResult:
    outcomes: list[Outcome] = field(default_factory=list)

    @property
    def failed(self) -> list[Outcome]:
        return [outcome for outcome in self.outcomes if not outcome.ok]

    def count(self, kind: str) -> int:
        return sum(1 for outcome in self.outcomes if outcome.ok and outcome.kind == kind)


def apply_plan(plan: Plan, client: Any, *, parallelism: int = 8, retry: RetryPolicy | None = None,
               ingestion_timeout: float | None = None, progress: Any = None, root: Any = None) -> ApplyResult:
    """Execute every executable action of ``plan``; blocked deletions under destroy are failures.
    ``progress``: a ``cli.output.progress``-like factory (many writes, the wait for ingestion); ``root``: the
    project root the plan's file paths are relative to (default: where they were read when planning)."""
    from asstctl.reconcile.knowledge_apply import INGESTION_TIMEOUT, KnowledgeApply

    retry = retry or RetryPolicy()
    timeout = INGESTION_TIMEOUT if ingestion_timeout is None else ingestion_timeout
    sync = KnowledgeApply(plan, client, parallelism=parallelism, ingestion_timeout=timeout, progress=progress, root=root)
    outcomes = sync.before_assistants()
    work = [action for action in plan.actions if action.executable and action.object == ASSISTANT]
    ready, unresolved = sync.resolved([action for action in work if action.kind != DELETE])
    deletions = [action for action in work if action.kind == DELETE]
    with progress_bar(progress, len(ready) + len(deletions), "Applying", minimum=PROGRESS_FROM) as bar:
        outcomes += unresolved + run_all(ready, plan.project, client, retry, parallelism, bar)
        outcomes += run_all(deletions, plan.project, client, retry, parallelism, bar)
    outcomes += sync.after_assistants()
    outcomes += [blocked_outcome(action) for action in plan.actions if action.blocked and plan.mode == DESTROY_MODE]
    return ApplyResult(outcomes)  # in the order they ran (finished)


PROGRESS_FROM = 10  # writes: fewer than this finish before a bar is worth drawing


def run_all(actions: list[Action], project: str, client: Any, retry: RetryPolicy, parallelism: int,
            bar: Any = None) -> list[Outcome]:
    """Run ``actions`` concurrently; their outcomes in the order they finished."""
    lock, done = threading.Lock(), []

    def one(action: Action) -> None:
        outcome = run_action(action, project, client, retry)
        with lock:
            done.append(outcome)
            if bar is not None:
                bar.update(1)

    with ThreadPoolExecutor(max_workers=max(1, parallelism)) as pool:
        list(pool.map(one, actions))
    return done


def blocked_outcome(action: Action) -> Outcome:
    key = f"vector store {action.key}" if action.object == VECTOR_STORE else action.key
    return Outcome(key, DELETE, False, action.remote_id, "prevent_destroy is set in its spec: not deleted")


def run_action(action: Action, project: str, client: Any, retry: RetryPolicy) -> Outcome:
    import openai

    try:
        return RUNNERS[action.kind](action, project, client, retry)
    except (openai.OpenAIError, AsstctlError) as error:
        return Outcome(action.key, action.kind, False, action.remote_id, describe(error))


def describe(error: BaseException) -> str:
    text = getattr(error, "message", None) or str(error) or type(error).__name__
    return text.splitlines()[0]


def update(action: Action, project: str, client: Any, retry: RetryPolicy) -> Outcome:
    transient_retries(lambda: client.beta.assistants.update(action.remote_id, **action.body))
    return Outcome(action.key, UPDATE, True, action.remote_id)


def delete(action: Action, project: str, client: Any, retry: RetryPolicy) -> Outcome:
    return deleted(action.key, action.remote_id, lambda: client.beta.assistants.delete(action.remote_id))


def deleted(label: str, remote_id: str, call: Callable[[], Any]) -> Outcome:
    """A deletion (retried on transient faults); one that finds the object already gone (404) succeeded."""
    import openai

    try:
        transient_retries(call)
    except openai.NotFoundError:
        return Outcome(label, DELETE, True, remote_id, note="already gone")
    return Outcome(label, DELETE, True, remote_id)


def create(action: Action, project: str, client: Any, retry: RetryPolicy) -> Outcome:
    """Create once; when the outcome is unknown, look for the key before trying again."""
    creator = client.with_options(max_retries=0).beta.assistants
    new_id, note = create_verified(lambda: creator.create(**action.body),
                                   lambda: read_remote(client, project).find(action.key), retry)
    return Outcome(action.key, CREATE, True, new_id, note=note)


def create_verified(make: Callable[[], Any], find: Callable[[], dict[str, Any] | None],
                    retry: RetryPolicy | None = None) -> tuple[str, str | None]:
    """Run ``make`` (a create with the SDK's retries off) until it succeeds; after a response
    that leaves the outcome unknown (timeout, lost connection, 5xx), ``find`` the object before
    trying again, so no duplicate is ever made. Returns (id, note)."""
    import openai

    retry = retry or RetryPolicy()
    for attempt in range(retry.attempts):
        try:
            return make().id, None
        except (openai.APIConnectionError, openai.InternalServerError, openai.RateLimitError) as error:
            if refused(error):  # it never reached the target: nothing was made, the target is down
                raise
            found = None if isinstance(error, openai.RateLimitError) else created_anyway(find, error)
            if found is not None:
                return found["id"], "adopted after a lost response"
            if attempt + 1 == retry.attempts:
                raise
            time.sleep(retry.delay(attempt))
    raise AssertionError("unreachable")  # pragma: no cover


def created_anyway(find: Callable[[], dict[str, Any] | None], error: BaseException) -> dict[str, Any] | None:
    """The object a create whose response was lost made after all, or None (then a retry is safe)."""
    try:
        return find()
    except AsstctlError as failure:
        raise AsstctlError(f"create outcome unknown ({describe(error)}) and the check for it failed: {failure}; "
                           "not retried, so no duplicate can be made (`asstctl apply` again will find it)") from None


RUNNERS = {CREATE: create, UPDATE: update, DELETE: delete}


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
    from asstctl.reconcile.knowledge import read_knowledge

    remote = read_remote(client, plan.project)
    uses_knowledge = plan.refs or plan.uploads or plan.file_deletions or any(a.object == VECTOR_STORE for a in plan.actions)
    check_fresh(plan, remote, read_knowledge(client, plan.project) if uses_knowledge else None)
    return remote
