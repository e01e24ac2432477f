"""Shared by the reconciler strength tests: a project folder as the working directory, and the
knowledge files and specs most of them deploy."""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from types import SimpleNamespace

import pytest

from asstctl.server.embedded import start_server
from asstctl.server.faults import Faults
from tests.conftest import make_client

KNOWLEDGE_BOT = """\
model: gpt-4o
tools:
  - code_interpreter: {files: [data/*.csv]}
  - file_search:
      vector_store:
        name: Docs
        files: [knowledge/*.md]
"""
FILES = {
    "assistants/data/a.csv": "x,y\n1,2\n",
    "assistants/knowledge/faq.md": "# FAQ\nReturns within 30 days.\n",
    "assistants/knowledge/shipping.md": "# Shipping\nWorldwide.\n",
}


@pytest.fixture
def root(tmp_path, monkeypatch):
    """The test's project folder, also its working directory."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def assistant(client, key="bot"):
    """The deployed assistant of ``key``."""
    return next(a for a in client.beta.assistants.list() if (a.metadata or {}).get("asstctl.key") == key)


@dataclass
class Script(Faults):
    """Faults by script: ``script["POST /v1/assistants"] = ["lost", "500"]`` gives the next two matching
    requests those faults, in order (patterns as fnmatch: ``DELETE /v1/assistants/*``); others pass."""

    script: dict[str, list[str]] = field(default_factory=dict)

    def pick(self, method: str, path: str) -> str | None:
        with self._lock:
            for pattern, kinds in self.script.items():
                if kinds and fnmatch.fnmatchcase(f"{method} {path}", pattern):
                    kind = kinds.pop(0)
                    self.injected[kind] = self.injected.get(kind, 0) + 1
                    return kind
        return None


def aim(server, route: str, kind: str) -> Script:
    """``kind`` for the server's next request matching ``route`` (``"POST /v1/files"``), nothing else."""
    server.state.config.faults = Script(retry_after_ms=1, script={route: [kind]})
    return server.state.config.faults


@pytest.fixture
def waits(monkeypatch):
    """The backoff waits of the backend, in order (recorded, not slept)."""
    import asstctl.backends.assistants_v2 as v2

    seen: list[float] = []
    monkeypatch.setattr(v2, "time", SimpleNamespace(sleep=seen.append))
    return seen


@pytest.fixture
def keyed(contract):
    """A server that checks its key, a client with the key, and one with a revoked key (every request
    it sends fails with 401: nothing is retried)."""
    import openai

    with start_server(":memory:", api_key="sk-test-key") as server:
        client = make_client(server, contract)
        refused = openai.OpenAI(base_url=server.base_url, api_key="sk-revoked", max_retries=0)
        yield client, refused
        client.close()
        refused.close()
