"""The Assistants API v2 backend: every call the reconciler makes, through the openai SDK.

The reconciler (asstctl.reconcile) never touches the SDK; it asks a backend to list, create, update and
delete objects, as plain dicts in the API's own field names. This module holds the SDK specifics:

* ``client.beta.assistants.*`` (assistants), ``client.vector_stores.*`` (vector stores and their files,
  project locks), ``client.files.*`` (uploads);
* idempotent calls (list, update, delete, attach) are retried after transient faults the SDK's own
  retries did not ride out (``transient_retries``, policy ``TRANSIENT``); a delete that finds the object
  gone returns False;
* creates are never retried blindly (``create_verified``): sent with the SDK's retries off, and after a
  response that leaves the outcome unknown the object is looked for before another attempt.

A second backend (the Agents API) is a new module with the same methods. May import asstctl.errors and
asstctl.backends.targets (the SDK's errors as TargetError), and the SDK lazily.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Iterator, TypeVar

from asstctl.backends.base import describe
from asstctl.errors import AsstctlError, TargetError

PAGE_SIZE = 100
MODELS_LIMIT = 10_000  # model ids read from GET /models
PURPOSE = "assistants"  # uploads for assistants (code_interpreter files, vector store files)
T = TypeVar("T")


@dataclass
class RetryPolicy:
    attempts: int = 8
    base_delay: float = 0.25
    max_delay: float = 4.0

    def delay(self, attempt: int) -> float:
        return min(self.base_delay * 2**attempt, self.max_delay)


# idempotent calls: each attempt with the SDK's own retries, so a 20 % fault rate is ridden out
TRANSIENT = RetryPolicy(attempts=6, base_delay=0.1, max_delay=2.0)


class AssistantsV2:
    """One target's Assistants v2 API, over an openai SDK client (thread-safe, like the client)."""

    name = "assistants_v2"

    def __init__(self, client: Any):
        self.client = client

    @property
    def errors(self) -> tuple[type[BaseException], ...]:
        """What a failed call raises (besides AsstctlError): caught per object, never a traceback."""
        import openai

        return (openai.OpenAIError,)

    @property
    def not_found(self) -> type[BaseException]:
        import openai

        return openai.NotFoundError

    def target_errors(self, doing: str):
        """A context in which the SDK's whole-target errors (401, 403, 404, unreachable, other statuses)
        become one TargetError saying what asstctl was ``doing``."""
        from asstctl.backends.sdk_errors import api_errors

        return api_errors(self.client, doing)

    def where(self) -> str:
        return str(self.client.base_url).rstrip("/")  # every SDK client has one

    # --- reading ---------------------------------------------------------------------------------------

    def _read(self, path: str, doing: str, not_found: str | None = None, **params: Any) -> tuple[list[dict[str, Any]], int]:
        """A whole list through the lean client (no SDK import: asstctl.backends.lean), failures as TargetError."""
        from asstctl.backends.lean import HTTPFailure
        from asstctl.backends.sdk_errors import read_error

        try:
            return self.client.get_list(path, params, paged=path != "models")
        except HTTPFailure as failure:
            raise read_error(self.client, failure, doing, not_found) from None

    @property
    def lean(self) -> bool:
        """Whether reads can skip the SDK (a LazyClient): plain GETs, the same answers, no second of imports."""
        return callable(getattr(type(self.client), "get_list", None)) and self.client.reads_lean

    def list_assistants(self) -> tuple[list[dict[str, Any]], int]:
        """All assistants, oldest first, and the number of list requests it took (ceil(N/100), at least 1)."""
        from asstctl.backends.sdk_errors import api_errors

        if self.lean:
            return self._read("assistants", "listing assistants", order="asc")
        objects: list[dict[str, Any]] = []
        requests, after = 0, None
        with api_errors(self.client):
            while True:
                options = {"after": after} if after else {}
                page = transient_retries(lambda: self.client.beta.assistants.list(limit=PAGE_SIZE, order="asc", **options))
                requests += 1
                objects.extend(item.to_dict() for item in page.data)  # API names (e.g. "schema")
                if not page.has_more or not page.data:
                    return objects, requests
                after = page.data[-1].id

    @contextmanager
    def knowledge_errors(self) -> Iterator[None]:
        """Whole-target errors while reading vector stores and files, as one clear TargetError."""
        if self.lean:  # its reads raise TargetError themselves
            yield
            return
        import openai

        from asstctl.backends.sdk_errors import api_errors

        with api_errors(self.client, "reading vector stores and files"):
            try:
                yield
            except openai.NotFoundError:
                raise TargetError(self._no_knowledge()) from None

    def _no_knowledge(self) -> str:
        return (f"{self.where()} has no /vector_stores or /files endpoint (404): asstctl reads "
                "them to sync knowledge; use a target with the full Assistants API")

    def list_vector_stores(self) -> list[dict[str, Any]]:
        if self.lean:
            return self._read("vector_stores", "reading vector stores", self._no_knowledge(), order="asc")[0]
        return listed(lambda: self.client.vector_stores.list(limit=PAGE_SIZE, order="asc"))

    def list_store_files(self, vs_id: str) -> list[dict[str, Any]]:
        if self.lean:
            return self._read(f"vector_stores/{vs_id}/files", "reading vector store files", self._no_knowledge())[0]
        return listed(lambda: self.client.vector_stores.files.list(vs_id, limit=PAGE_SIZE))

    def list_uploads(self) -> list[dict[str, Any]]:
        if self.lean:
            return self._read("files", "reading files", self._no_knowledge(), purpose=PURPOSE, order="asc")[0]
        return listed(lambda: self.client.files.list(purpose=PURPOSE, order="asc"))

    def list_models(self, limit: int = MODELS_LIMIT) -> list[str] | None:
        """The model ids the target lists (GET /models, at most ``limit``); None when it lists none or
        cannot (no such endpoint, an error): checking models is advice, never a reason to fail a plan. None on
        Azure OpenAI, whose GET /models lists base models while an assistant's ``model`` names a deployment."""
        if self.lean:
            try:
                models = self._read("models", "listing models")[0]
            except TargetError:
                return None
            return [str(model.get("id")) for model in models[:limit]] or None
        import openai

        if isinstance(self.client, openai.AzureOpenAI):
            return None
        ids: list[str] = []
        try:
            for model in self.client.models.list():
                ids.append(str(model.id))
                if len(ids) >= limit:
                    break
        except (openai.APIError, ValueError, TypeError, AttributeError):
            return None
        return ids or None

    # --- assistants ------------------------------------------------------------------------------------

    def create_assistant(self, body: dict[str, Any], find: Callable[[], dict[str, Any] | None],
                         retry: RetryPolicy | None = None) -> tuple[str, str | None]:
        creator = self.client.with_options(max_retries=0).beta.assistants
        return create_verified(lambda: creator.create(**body), find, retry)

    def update_assistant(self, assistant_id: str, body: dict[str, Any]) -> None:
        transient_retries(lambda: self.client.beta.assistants.update(assistant_id, **body))

    def delete_assistant(self, assistant_id: str) -> bool:
        return self._deleted(lambda: self.client.beta.assistants.delete(assistant_id))

    # --- vector stores and their files -----------------------------------------------------------------

    def create_vector_store(self, body: dict[str, Any], find: Callable[[], dict[str, Any] | None]) -> tuple[str, str | None]:
        creator = self.client.with_options(max_retries=0).vector_stores
        return create_verified(lambda: creator.create(**body), find)

    def update_vector_store(self, vs_id: str, body: dict[str, Any]) -> None:
        transient_retries(lambda: self.client.vector_stores.update(vs_id, **body))

    def delete_vector_store(self, vs_id: str) -> bool:
        return self._deleted(lambda: self.client.vector_stores.delete(vs_id))

    def attach_file(self, vs_id: str, file_id: str, attributes: dict[str, Any] | None, options: dict[str, Any]) -> Any:
        """Attach an upload to a store; the store file (its ``status``, ``last_error``) as the SDK returns it."""
        return transient_retries(lambda: self.client.vector_stores.files.create(
            vs_id, file_id=file_id, attributes=attributes, **options))

    def detach_file(self, vs_id: str, file_id: str) -> None:
        """Detach a file from a store; one already detached is fine."""
        self._deleted(lambda: self.client.vector_stores.files.delete(file_id, vector_store_id=vs_id))

    def store_file(self, vs_id: str, file_id: str) -> Any:
        return transient_retries(lambda: self.client.vector_stores.files.retrieve(file_id, vector_store_id=vs_id))

    # --- uploads ---------------------------------------------------------------------------------------

    def upload(self, filename: str, data: bytes, find: Callable[[], dict[str, Any] | None]) -> tuple[str, str | None]:
        files = self.client.with_options(max_retries=0).files
        return create_verified(lambda: files.create(file=(filename, data), purpose=PURPOSE), find)

    def delete_upload(self, file_id: str) -> bool:
        return self._deleted(lambda: self.client.files.delete(file_id))

    # --- project locks (empty vector stores: asstctl.reconcile.lock) -------------------------------------

    def create_lock(self, name: str, metadata: dict[str, str]) -> dict[str, Any]:
        """A new lock object (an empty vector store), verified as creates are (``verified_lock``)."""
        creator = self.client.with_options(max_retries=0).vector_stores
        return verified_lock(lambda: creator.create(name=name, metadata=metadata), self.list_locks, metadata)

    def list_locks(self) -> list[dict[str, Any]]:
        from asstctl.backends.sdk_errors import api_errors

        if self.lean:
            return self._read("vector_stores", "listing the project's locks", order="asc")[0]
        with api_errors(self.client, "listing the project's locks"):
            return self.list_vector_stores()

    # --- helpers ---------------------------------------------------------------------------------------

    def _deleted(self, call: Callable[[], Any]) -> bool:
        """A deletion (retried on transient faults); False when the object was already gone (404)."""
        import openai

        try:
            transient_retries(call)
        except openai.NotFoundError:
            return False
        return True


def listed(call: Callable[[], Any]) -> list[dict[str, Any]]:
    """Every item of a paginated list (the SDK follows the cursor), retried as a whole on transient faults."""
    return transient_retries(lambda: [item.to_dict() for item in call()])


def transient_retries(call: Callable[[], T]) -> T:
    """``call()`` (idempotent), tried again after transient faults the SDK's own retries did not ride
    out: 429, 5xx, a connection dropped mid-request (``TRANSIENT``: 6 attempts, 0.1 s between the first
    two, doubling). Never after a refused connection or a timeout."""
    import openai

    for attempt in range(TRANSIENT.attempts - 1):
        try:
            return call()
        except (openai.APIConnectionError, openai.InternalServerError, openai.RateLimitError) as error:
            if isinstance(error, openai.APITimeoutError) or refused(error):
                raise
        time.sleep(TRANSIENT.delay(attempt))
    return call()  # the last attempt: what it raises is the caller's


def refused(error: BaseException) -> bool:
    """The target is not there (connection refused, unknown host): failing fast is the answer."""
    import httpx2  # the openai SDK's HTTP library

    return isinstance(error.__cause__, httpx2.ConnectError)


def create_verified(make: Callable[[], Any], find: Callable[[], dict[str, Any] | None],
                    retry: RetryPolicy | None = None) -> tuple[str, str | None]:
    """Run ``make`` (a create with the SDK's retries off) until it succeeds; after a response
    that leaves the outcome unknown (timeout, lost connection, 5xx), ``find`` the object before
    trying again, so no duplicate is ever made. Returns (id, note)."""
    retry = retry or RetryPolicy()
    for attempt in range(retry.attempts - 1):
        made = create_once(make, find)
        if made is not None:
            return made
        time.sleep(retry.delay(attempt))
    return create_once(make, find, last=True)


def verified_lock(make: Callable[[], Any], locks: Callable[[], list[dict[str, Any]]], metadata: dict[str, str]) -> dict[str, Any]:
    """A new lock object made by ``make``, verified as creates are: after a lost response the lock it
    made anyway (listed by ``locks`` with the same metadata: holder, process, time) is found and used,
    never left behind as an older lock that would block the apply that made it."""
    made: dict[str, Any] = {}

    def make_one() -> Any:
        obj = make()
        made["lock"] = obj.to_dict()
        return obj

    def find() -> dict[str, Any] | None:
        made["lock"] = next((obj for obj in locks() if obj.get("metadata") == metadata), None)
        return made["lock"]

    create_verified(make_one, find, TRANSIENT)  # retried as other idempotent calls are: 6 attempts, 0.1 s doubling
    return made["lock"]


def create_once(make: Callable[[], Any], find: Callable[[], dict[str, Any] | None],
                last: bool = False) -> tuple[str, str | None] | None:
    """One attempt of ``create_verified``: (id, note), or None when nothing was made and trying again is
    safe; raises when the target is not there at all, and on the ``last`` attempt."""
    import openai

    try:
        return make().id, None
    except (openai.APIConnectionError, openai.InternalServerError, openai.RateLimitError) as error:
        if refused(error):  # it never reached the target: nothing was made, the target is down
            raise
        found = None if isinstance(error, openai.RateLimitError) else created_anyway(find, error)
        if found is not None:
            return found["id"], "adopted after a lost response"
        if last:
            raise
    return None


def created_anyway(find: Callable[[], dict[str, Any] | None], error: BaseException) -> dict[str, Any] | None:
    """The object a create whose response was lost made after all, or None (then a retry is safe)."""
    try:
        return find()
    except AsstctlError as failure:
        raise AsstctlError(f"create outcome unknown ({describe(error)}) and the check for it failed: {failure}; "
                           "not retried, so no duplicate can be made (`asstctl apply` again will find it)") from None
