"""Reading the remote (asstctl.reconcile.remote.classify) around the project lock: a lock object is none of
the project's objects, and what was made after it is still seen, as when `asstctl apply` deploys under its lock."""

from __future__ import annotations

from asstctl.reconcile import lock
from asstctl.reconcile.knowledge import read_knowledge
from tests.knowledge.helpers import converge, plan, project
from tests.strength.conftest import FILES, KNOWLEDGE_BOT


def test_stores_made_after_the_lock_are_seen_and_the_lock_is_not_one_of_them(client, root):
    proj = project(root, {"assistants/bot.yaml": KNOWLEDGE_BOT, **FILES})
    with lock.acquire(client, "kb", "apply") as held:  # the lock is older than every store of the first deploy
        _, result = converge(client, proj)
        assert not result.failed
        stores = read_knowledge(client, "kb").stores
        assert list(stores.managed) == ["bot"] and stores.foreign == [] and not stores.duplicates
        assert held.info.id not in {obj["id"] for obj in stores.owned()}
        assert not plan(client, proj).has_changes()
