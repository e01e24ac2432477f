"""Shared by the reconciler strength tests: a project folder as the working directory, and the
knowledge files and specs most of them deploy."""

from __future__ import annotations

import pytest

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
