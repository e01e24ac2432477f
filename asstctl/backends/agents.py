"""The Agents API backend: OpenAI's beta Agents API (``client.beta.agents``) behind the same seam as Assistants v2.

A target with ``api: agents`` (asstctl.yaml) gets this backend; the reconciler's assistant kind plans and
applies agents through it unchanged, because objects cross the seam in the spec's shape:

* reading: each agent as a dict with its tools in the spec's nested form (``{type: function, function:
  {...}}``, ``{type: mcp, mcp: {...}}``); the Agents-only fields (``reasoning``, ``text``, ``service_tier``,
  ``multi_agent``) as the API returns them, with its defaults filled in (the reconciler's normalization
  leaves those out: asstctl.reconcile.normalize); ``compaction`` left out (the API ignores ``async`` and
  reports false; a spec may only say false: asstctl.spec.agents);
* writing: the body the reconciler builds, in the API's form: tools flattened (asstctl.spec.agents.api_tools),
  Assistants-only keys dropped (the spec check refuses them before), and on a full update every Agents-only
  field the spec does not set sent back to its default (an update leaves what it does not name);
  ``metadata`` is always sent whole (the API replaces the whole map on update; asstctl's 4 tags and at
  most 12 of the user's keys fit its 16 pairs);
* creates never duplicate (``create_verified``), idempotent calls are retried (``transient_retries``);
* project locks are agents tagged ``asstctl.lock`` (no vector stores here), never seen as managed or foreign,
  created verified too (a lock whose create response was lost is found and used, not left to block the apply);
* knowledge (vector stores, uploads) does not exist here: reading it finds none, and a project's shared
  ``vector_stores/*.yaml`` (for its Assistants targets) are left out of the plan, with a note (``ignored_stores``).

May import asstctl.errors, asstctl.ownership, asstctl.spec.agents, asstctl.backends; the SDK lazily.
"""

from __future__ import annotations

from contextlib import contextmanager, nullcontext
from typing import Any, Callable, Iterator

from asstctl.backends.assistants_v2 import (PAGE_SIZE, AssistantsV2, RetryPolicy, create_verified, transient_retries,
                                           verified_lock)
from asstctl.errors import AsstctlError, TargetError
from asstctl.ownership import is_lock
from asstctl.spec.agents import api_tools, spec_tools

BODY_FIELDS = ("model", "name", "instructions", "metadata", "tools", "reasoning", "text", "service_tier",
               "multi_agent", "compaction", "experimental")
# What an update sends for an Agents-only field the spec does not set (the server's defaults).
RESETS: dict[str, Any] = {
    "reasoning": {"effort": None, "summary": None},
    "text": {"format": {"type": "text"}, "verbosity": "medium"},
    "service_tier": "auto",
    "multi_agent": {"enabled": False},
    "compaction": {"async": False},
    "experimental": {"time_awareness": False},  # merged by key on update: every key sent, so a dropped one resets
}
LOCK_MODEL = "gpt-5-mini"  # a lock agent never runs; the API wants a model all the same
NO_KNOWLEDGE = "the Agents API has no vector stores or uploads for agents (docs/agents.md)"


class Agents(AssistantsV2):
    """One target's Agents API, over an openai SDK client (thread-safe, like the client)."""

    name = "agents"

    def __enter__(self) -> "Agents":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.client.close()

    @contextmanager
    def target_errors(self, doing: str = "listing agents") -> Iterator[None]:
        """The SDK's whole-target errors as one TargetError; a 404 says the base URL serves no Agents API."""
        import openai

        from asstctl.backends.sdk_errors import api_errors

        with api_errors(self.client, doing):
            try:
                yield
            except openai.NotFoundError:
                raise TargetError(self.no_agents_api()) from None

    def no_agents_api(self, what: str = "") -> str:
        return (f"{self.where()} does not serve the Agents API (404 on {self.where()}/agents){what}: check the "
                "target's base_url (OpenAI's is https://api.openai.com/v1)")

    # --- reading ---------------------------------------------------------------------------------------

    def list_assistants(self) -> tuple[list[dict[str, Any]], int]:
        """All agents (locks left out), oldest first, in the spec's shape; and the number of list requests."""
        objects, requests = self._list()
        return [obj for obj in objects if not is_lock(obj)], requests

    def _list(self) -> tuple[list[dict[str, Any]], int]:
        objects: list[dict[str, Any]] = []
        requests, after = 0, None
        with self.target_errors():
            while True:
                options = {"after": after} if after else {}
                page = transient_retries(lambda: self.client.beta.agents.list(limit=PAGE_SIZE, order="asc", **options))
                requests += 1
                objects.extend(spec_shape(item.to_dict()) for item in page.data)
                if not page.has_more or not page.data:
                    return objects, requests
                after = page.data[-1].id

    def ignored_stores(self, stores: list[Any]) -> str:
        """The plan's note for the project's shared vector stores, which a plan for this target leaves out."""
        names = ", ".join(f"`{store.key}` ({store.path})" for store in stores)
        return (f"vector store{'s' if len(stores) != 1 else ''} {names} not planned on {self.where()}: {NO_KNOWLEDGE}; "
                "give an agent knowledge through an MCP server (`tools: [{mcp: ...}]`) or `web_search` (the stores "
                "are for the project's Assistants targets)")

    def knowledge_errors(self):
        return nullcontext()

    def list_vector_stores(self) -> list[dict[str, Any]]:
        return []

    def list_store_files(self, vs_id: str) -> list[dict[str, Any]]:
        return []

    def list_uploads(self) -> list[dict[str, Any]]:
        return []

    # --- agents ----------------------------------------------------------------------------------------

    def create_assistant(self, body: dict[str, Any], find: Callable[[], dict[str, Any] | None],
                         retry: RetryPolicy | None = None) -> tuple[str, str | None]:
        creator = self.client.with_options(max_retries=0).beta.agents
        request = agent_body(body)
        return create_verified(lambda: creator.create(**request), find, retry)

    def update_assistant(self, assistant_id: str, body: dict[str, Any]) -> None:
        request = agent_body(body, update=True)
        transient_retries(lambda: self.client.beta.agents.update(assistant_id, **request))

    def delete_assistant(self, assistant_id: str) -> bool:
        return self._deleted(lambda: self.client.beta.agents.delete(assistant_id))

    # --- no knowledge ----------------------------------------------------------------------------------

    def create_vector_store(self, body: dict[str, Any], find: Any) -> tuple[str, str | None]:
        raise AsstctlError(NO_KNOWLEDGE)

    def attach_file(self, vs_id: str, file_id: str, attributes: Any, options: dict[str, Any]) -> Any:
        raise AsstctlError(NO_KNOWLEDGE)

    def upload(self, filename: str, data: bytes, find: Any) -> tuple[str, str | None]:
        raise AsstctlError(NO_KNOWLEDGE)

    # --- project locks: agents tagged asstctl.lock (asstctl.reconcile.lock) ------------------------------

    def create_lock(self, name: str, metadata: dict[str, str]) -> dict[str, Any]:
        """A new lock agent, verified as agent creates are (``verified_lock``)."""
        import openai

        creator = self.client.with_options(max_retries=0).beta.agents
        try:
            return verified_lock(lambda: creator.create(model=LOCK_MODEL, name=name, metadata=metadata), self.list_locks,
                                 metadata)
        except openai.NotFoundError:
            raise TargetError(self.no_agents_api(", where asstctl keeps the project lock")) from None

    def list_locks(self) -> list[dict[str, Any]]:
        with self.target_errors("listing the project's locks"):
            return [obj for obj in self._list()[0] if is_lock(obj)]

    def update_vector_store(self, vs_id: str, body: dict[str, Any]) -> None:
        """A lock's new metadata (the whole map)."""
        transient_retries(lambda: self.client.beta.agents.update(vs_id, metadata=body["metadata"]))

    def delete_vector_store(self, vs_id: str) -> bool:
        """Remove a lock agent; False when it was already gone."""
        return self.delete_assistant(vs_id)


def spec_shape(agent: dict[str, Any]) -> dict[str, Any]:
    """An agent as the API returned it, with its tools in the spec's nested form, and without ``compaction``:
    the API ignores ``async`` (compaction is always blocking), so what it reports is never a change."""
    return {**{key: value for key, value in agent.items() if key != "compaction"},
            "tools": spec_tools(agent.get("tools") or [])}


def agent_body(body: dict[str, Any], update: bool = False) -> dict[str, Any]:
    """The reconciler's create/update body in the Agents API's form; a full update (one naming the model)
    resets every Agents-only field the spec leaves out, and completes partial ones."""
    out = {name: value for name, value in body.items() if name in BODY_FIELDS}
    if "tools" in out:
        out["tools"] = api_tools(out["tools"] or [])
    if update and "model" in body:
        for name, default in RESETS.items():
            value = out.get(name)
            out[name] = {**default, **value} if isinstance(default, dict) and isinstance(value, dict) else (
                default if value is None else value)
    return out
