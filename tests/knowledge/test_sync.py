"""Knowledge sync against the local server: files uploaded once by content, swapped, detached and
deleted; stores shared; ingestion failures named by path. Uploads and deletions are counted on the
server (``POST /v1/files``, ``DELETE /v1/files/{id}``), not just read from the end state."""

from __future__ import annotations

import contextlib
from types import SimpleNamespace

import pytest

from tests.knowledge.helpers import converge, counts, managed_store, plan, project, store_files, write

BOT = """\
model: gpt-4o
tools:
  - code_interpreter: {files: [data/*.csv]}
  - file_search:
      vector_store:
        name: Support docs
        files: [knowledge/*.md]
        metadata: {team: support}
"""
FILES = {
    "assistants/bot.yaml": BOT,
    "assistants/data/a.csv": "x,y\n1,2\n",
    "assistants/data/b.csv": "x,y\n3,4\n",
    "assistants/knowledge/faq.md": "# FAQ\nReturns within 30 days.\n",
    "assistants/knowledge/shipping.md": "# Shipping\nWe ship worldwide.\n",
}


@pytest.fixture
def proj(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return project(tmp_path, FILES)


def assistant(client, key="bot"):
    return next(a for a in client.beta.assistants.list() if a.metadata.get("asstctl.key") == key)


def test_first_apply_uploads_every_file_once_and_a_replan_is_a_no_op(client, server, proj):
    made, result = converge(client, proj)
    assert not result.failed, result.failed
    assert counts(server) == (4, 0)
    assert len(made.uploads) == 4
    store = managed_store(client, "bot")
    assert store.name == "Support docs" and store.metadata["team"] == "support"
    files = store_files(client, store.id)
    assert set(files) == {"assistants/knowledge/faq.md", "assistants/knowledge/shipping.md"}
    assert all(item["status"] == "completed" for item in files.values())
    bot = assistant(client)
    assert bot.tool_resources.file_search.vector_store_ids == [store.id]
    assert len(bot.tool_resources.code_interpreter.file_ids) == 2
    names = {client.files.retrieve(i).filename for i in bot.tool_resources.code_interpreter.file_ids}
    assert all(name.startswith("asstctl--kb--") for name in names) and {n.split("--")[-1] for n in names} == {"a.csv", "b.csv"}
    again = plan(client, proj)
    assert not again.has_changes(), [(a.key, a.kind, a.changes, a.files) for a in again.actions]
    converge(client, proj)
    assert counts(server) == (4, 0)


def test_changing_one_file_reuploads_exactly_it_and_swaps_it_in_the_store(client, server, proj, tmp_path):
    converge(client, proj)
    store = managed_store(client, "bot")
    old = store_files(client, store.id)["assistants/knowledge/faq.md"]["id"]
    write(tmp_path, {"assistants/knowledge/faq.md": "# FAQ\nReturns within 60 days.\n"})
    made = plan(client, proj)
    ops = {(a.object, op.op, op.path, op.reason) for a in made.actions for op in a.files}
    assert ops == {("vector_store", "~", "assistants/knowledge/faq.md", "content changed")}
    assert [u.path for u in made.uploads] == ["assistants/knowledge/faq.md"]
    assert [d.file_id for d in made.file_deletions] == [old]
    _, result = converge(client, proj)
    assert not result.failed, result.failed
    assert counts(server) == (5, 1)
    files = store_files(client, store.id)
    assert set(files) == {"assistants/knowledge/faq.md", "assistants/knowledge/shipping.md"}
    assert files["assistants/knowledge/faq.md"]["id"] != old
    assert not plan(client, proj).has_changes()


def test_changing_a_code_interpreter_file_swaps_it_on_the_assistant(client, server, proj, tmp_path):
    converge(client, proj)
    before = set(assistant(client).tool_resources.code_interpreter.file_ids)
    write(tmp_path, {"assistants/data/a.csv": "x,y\n5,6\n"})
    made = plan(client, proj)
    bot = next(a for a in made.actions if a.key == "bot" and a.object == "assistant")
    assert bot.kind == "update" and [(op.op, op.path) for op in bot.files] == [("~", "assistants/data/a.csv")]
    _, result = converge(client, proj)
    assert not result.failed and counts(server) == (5, 1)
    after = set(assistant(client).tool_resources.code_interpreter.file_ids)
    assert len(after) == 2 and len(after & before) == 1
    assert not plan(client, proj).has_changes()


def test_removing_a_file_from_a_glob_detaches_it_and_deletes_the_upload(client, server, proj, tmp_path):
    converge(client, proj)
    store = managed_store(client, "bot")
    gone = store_files(client, store.id)["assistants/knowledge/shipping.md"]["id"]
    (tmp_path / "assistants/knowledge/shipping.md").unlink()
    made = plan(client, proj)
    ops = [(op.op, op.path) for a in made.actions for op in a.files]
    assert ops == [("-", "assistants/knowledge/shipping.md")]
    _, result = converge(client, proj)
    assert not result.failed and counts(server) == (4, 1)
    assert set(store_files(client, store.id)) == {"assistants/knowledge/faq.md"}
    assert gone not in {f.id for f in client.files.list()}
    assert not plan(client, proj).has_changes()


def test_two_assistants_sharing_a_store_upload_its_files_once(client, server, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    shared = "model: gpt-4o\ntools:\n  - file_search: {vector_store: handbook}\n"
    proj = project(tmp_path, {
        "vector_stores/handbook.yaml": "name: Handbook\nfiles: [docs/*.md]\n",
        "vector_stores/docs/a.md": "alpha\n", "vector_stores/docs/b.md": "beta\n",
        "assistants/one.yaml": shared, "assistants/two.yaml": shared,
    })
    _, result = converge(client, proj)
    assert not result.failed and counts(server) == (2, 0)
    store = managed_store(client, "handbook")
    ids = {a.metadata["asstctl.key"]: a.tool_resources.file_search.vector_store_ids for a in client.beta.assistants.list()}
    assert ids == {"one": [store.id], "two": [store.id]}
    assert set(store_files(client, store.id)) == {"vector_stores/docs/a.md", "vector_stores/docs/b.md"}
    assert not plan(client, proj).has_changes()


def test_a_failed_ingestion_is_reported_by_path(client, server, proj, tmp_path):
    server.faults.ingest_fail_marker = b"ASSTCTL-INGEST-FAIL"
    write(tmp_path, {"assistants/knowledge/broken.md": "# Broken\nASSTCTL-INGEST-FAIL\n"})
    _, result = converge(client, proj)
    assert [(o.key, o.kind) for o in result.failed] == [("assistants/knowledge/broken.md", "ingest")]
    assert "could not be parsed" in result.failed[0].error and "invalid_file" in result.failed[0].error
    again = plan(client, proj)
    assert [(op.op, op.path) for a in again.actions for op in a.files] == [("~", "assistants/knowledge/broken.md")]


def test_foreign_files_and_stores_are_untouched(client, server, proj):
    foreign_file = client.files.create(file=("notes.md", b"mine"), purpose="assistants")
    lookalike = client.files.create(file=("asstctl--other--0123456789abcdef--x.md", b"theirs"), purpose="assistants")
    foreign_store = client.vector_stores.create(name="hand-made", file_ids=[foreign_file.id])
    other = client.vector_stores.create(name="x", metadata={"asstctl.managed-by": "asstctl", "asstctl.project": "other",
                                                            "asstctl.key": "bot"})
    converge(client, proj)
    converge(client, proj, destroy=True)
    assert {f.id for f in client.files.list()} == {foreign_file.id, lookalike.id}
    assert {s.id for s in client.vector_stores.list()} == {foreign_store.id, other.id}
    assert list(client.beta.assistants.list()) == []


def test_destroy_removes_managed_stores_and_files(client, server, proj):
    converge(client, proj)
    made, result = converge(client, proj, destroy=True)
    assert not result.failed
    assert [(a.object, a.kind) for a in made.actions] == [("vector_store", "delete"), ("assistant", "delete")]
    assert counts(server) == (4, 4)
    assert list(client.vector_stores.list()) == [] and list(client.files.list()) == []


def test_an_orphaned_store_is_kept_with_its_files_until_prune(client, server, proj, tmp_path):
    converge(client, proj)
    write(tmp_path, {"assistants/bot.yaml": "model: gpt-4o\ntools: [code_interpreter]\n"})
    made, result = converge(client, proj)
    assert not result.failed
    store_action = next(a for a in made.actions if a.object == "vector_store")
    assert store_action.kind == "no-op" and "--prune" in store_action.reason
    assert counts(server) == (4, 2)  # the code_interpreter files went; the store's are kept
    assert len(store_files(client, managed_store(client, "bot").id)) == 2
    converge(client, proj, prune=True)
    assert list(client.vector_stores.list()) == [] and list(client.files.list()) == []


def test_a_duplicate_store_is_deleted_with_prune_and_its_assistant_moved_to_the_kept_one(client, server, proj):
    converge(client, proj)
    kept = managed_store(client, "bot")
    duplicate = client.vector_stores.create(name="Support docs", metadata=kept.metadata)
    bot = assistant(client)
    client.beta.assistants.update(bot.id, tool_resources={"file_search": {"vector_store_ids": [duplicate.id]}})
    made, result = converge(client, proj)  # without --prune: the assistant is moved, the duplicate kept
    assert not result.failed
    kinds = {(a.object, a.kind, a.remote_id, a.duplicate) for a in made.actions if a.kind != "no-op" or a.duplicate}
    assert kinds == {("vector_store", "no-op", duplicate.id, True), ("assistant", "update", bot.id, False)}
    assert assistant(client).tool_resources.file_search.vector_store_ids == [kept.id]
    assert {s.id for s in client.vector_stores.list()} == {kept.id, duplicate.id}
    made, result = converge(client, proj, prune=True)
    assert not result.failed
    kinds = {(a.object, a.kind, a.remote_id) for a in made.actions if a.kind != "no-op"}
    assert kinds == {("vector_store", "delete", duplicate.id)}
    assert {s.id for s in client.vector_stores.list()} == {kept.id}
    assert not plan(client, proj).has_changes()


def test_an_upload_a_foreign_assistant_uses_is_kept(client, server, proj, tmp_path):
    converge(client, proj)
    upload = next(f for f in client.files.list() if f.filename.endswith("--a.csv"))
    other = client.beta.assistants.create(model="gpt-4o", tool_resources={"code_interpreter": {"file_ids": [upload.id]}})
    (tmp_path / "assistants/data/a.csv").unlink()
    made, result = converge(client, proj)
    assert not result.failed and made.file_deletions == [] and counts(server) == (4, 0)
    client.beta.assistants.delete(other.id)
    made, _ = converge(client, proj)
    assert [d.file_id for d in made.file_deletions] == [upload.id] and counts(server) == (4, 1)


def test_store_settings_and_chunking_change_without_uploads(client, server, proj, tmp_path):
    converge(client, proj)
    changed = BOT.replace("name: Support docs", "name: Docs\n        expires_after: {days: 7}\n"
                          "        chunking_strategy: {type: static, static: {max_chunk_size_tokens: 400, chunk_overlap_tokens: 100}}")
    write(tmp_path, {"assistants/bot.yaml": changed})
    made = plan(client, proj)
    store = next(a for a in made.actions if a.object == "vector_store")
    assert {c.path for c in store.changes} == {"name", "expires_after"}
    assert {(op.op, op.reason) for op in store.files} == {("~", "chunking changed")}
    _, result = converge(client, proj)
    assert not result.failed and counts(server) == (4, 0)
    remote = managed_store(client, "bot")
    assert remote.name == "Docs" and remote.expires_after.days == 7
    sizes = {item["chunking_strategy"]["static"]["max_chunk_size_tokens"] for item in store_files(client, remote.id).values()}
    assert sizes == {400}
    assert not plan(client, proj).has_changes()


def test_ingestion_still_in_progress_at_the_timeout_is_a_failure_named_by_path(client, proj):
    from asstctl.reconcile.apply import ApplyRun as KnowledgeApply

    made, _ = converge(client, proj)
    store = managed_store(client, "bot")
    file_id = store_files(client, store.id)["assistants/knowledge/faq.md"]["id"]
    seen = []

    def progress(length, label):
        seen.append((length, label))
        return contextlib.nullcontext(SimpleNamespace(update=lambda n: seen.append(n)))

    sync = KnowledgeApply(made, client, ingestion_timeout=0, progress=progress)
    sync.pending = [(store.id, file_id, "assistants/knowledge/faq.md", SimpleNamespace(status="in_progress"))]
    [outcome] = sync.wait()
    assert (outcome.key, outcome.kind, outcome.ok) == ("assistants/knowledge/faq.md", "ingest", False)
    assert "within 0 s" in outcome.error and seen == [(1, "Waiting for ingestion"), 0]
    sync = KnowledgeApply(made, client, ingestion_timeout=5, progress=progress)
    sync.pending = [(store.id, file_id, "assistants/knowledge/faq.md", SimpleNamespace(status="in_progress"))]
    assert sync.wait() == []  # polled: the server reports it completed


def test_destroy_keeps_the_store_and_files_of_a_prevent_destroy_assistant(client, server, proj, tmp_path):
    write(tmp_path, {"assistants/bot.yaml": BOT + "prevent_destroy: true\n"})
    converge(client, proj)
    made, result = converge(client, proj, destroy=True)
    blocked = {(a.object, a.key) for a in made.actions if a.blocked}
    assert blocked == {("vector_store", "bot"), ("assistant", "bot")}
    assert {o.key for o in result.failed} == {"bot", "vector store bot"}
    assert made.file_deletions == [] and counts(server) == (4, 0)
    assert len(list(client.vector_stores.list())) == 1


def test_a_file_edited_between_plan_and_apply_is_not_uploaded(client, server, proj, tmp_path):
    from asstctl.reconcile.apply import apply_plan

    made = plan(client, proj)
    write(tmp_path, {"assistants/knowledge/faq.md": "edited after planning\n"})
    result = apply_plan(made, client, root=proj.root)
    failed = {(o.key, o.kind): o.error for o in result.failed}
    assert "changed since the plan was made" in failed[("assistants/knowledge/faq.md", "upload")]
    assert "its upload failed" in failed[("assistants/knowledge/faq.md", "attach")]
    assert counts(server) == (3, 0)
    _, again = converge(client, proj)
    assert not again.failed and counts(server) == (4, 0)
    assert not plan(client, proj).has_changes()


def test_lost_responses_on_uploads_and_store_creates_make_no_duplicates(proj):
    from asstctl.server.embedded import start_server
    from asstctl.server.faults import Faults
    from asstctl.backends.targets import make_client

    with start_server(":memory:", faults=Faults(seed=7)) as server:
        client = make_client(server.base_url, server.api_key)  # the SDK's own retries on, as the CLI has them
        server.faults.kinds = ("lost",)
        server.faults.rate = 0.5
        made, result = converge(client, proj)
        server.faults.rate = 0
        assert server.faults.injected.get("lost", 0) > 0
        assert not result.failed, result.failed
        # every lost create was found by listing, never made twice
        uploads = [f for f in client.files.list() if f.filename.startswith("asstctl--kb--")]
        assert len(uploads) == 4
        stores = [s for s in client.vector_stores.list() if (s.metadata or {}).get("asstctl.key") == "bot"]
        assert len(stores) == 1
        assert not plan(client, proj).has_changes()
        client.close()
