"""The vector store kind as users see it (mutation testing, docs/testing.md): the plan lines of a
store and its files, the outcome of every store and file step (its object, id and note), what lands
on the server (attributes, chunking, one version of each file), files attached by hand, saved plans
of stores that hold files, refused and failed steps, and ingestion that failed, was cancelled or
did not finish."""

from __future__ import annotations

import json

import pytest

from asstctl.reconcile.apply import ApplyRun, apply_plan, verified_remote
from asstctl.errors import PlanError
from asstctl.reconcile.plan import load_plan, save_plan
from asstctl.reconcile.report import render_json, render_report, render_text
from tests.knowledge.helpers import converge, managed_store, plan, project, store_files, write
from tests.strength.conftest import FILES, KNOWLEDGE_BOT, aim, assistant
from tests.strength.test_upload_kind import outcomes, sha

FAQ, SHIPPING = "assistants/knowledge/faq.md", "assistants/knowledge/shipping.md"
STORE_BOT = "model: gpt-4o\ntools:\n  - file_search:\n      vector_store:\n        name: Docs\n        files: [knowledge/*.md]\n"
AUTO = {"type": "static", "static": {"max_chunk_size_tokens": 800, "chunk_overlap_tokens": 400}}


def store_lines(text: str) -> list[str]:
    """The plan's lines of the vector store entries (and their files)."""
    lines, inside = [], False
    for line in text.splitlines():
        if not line.startswith(" "):
            inside = "vector store" in line
        if inside:
            lines.append(line)
    return lines


def ids_by_name(client) -> dict[str, str]:
    return {f.filename.split("--")[-1]: f.id for f in client.files.list()}


def test_a_new_store_is_planned_created_and_filled_as_reported(client, root):
    proj = project(root, {"assistants/bot.yaml": STORE_BOT, **FILES})
    assert store_lines(render_text(plan(client, proj))) == [
        "+ create vector store bot", '    + name: "Docs"', f"    + file {FAQ}", f"    + file {SHIPPING}"]
    _, result = converge(client, proj)
    store, ids = managed_store(client, "bot"), ids_by_name(client)
    assert outcomes(result, "create") == sorted([("vector store bot", True, store.id, None, None),
                                                 ("bot", True, assistant(client).id, None, None)])
    assert outcomes(result, "attach") == [(FAQ, True, ids["faq.md"], None, "to vector store bot"),
                                          (SHIPPING, True, ids["shipping.md"], None, "to vector store bot")]
    files = store_files(client, store.id)
    assert files[FAQ]["attributes"] == {"asstctl.project": "kb", "asstctl.path": FAQ,
                                        "asstctl.sha256": sha(FILES[FAQ])}
    assert {item["chunking_strategy"] == AUTO and item["status"] == "completed" for item in files.values()} == {True}
    assert store.metadata["asstctl.key"] == "bot" and store.metadata["asstctl.project"] == "kb"


def test_a_store_create_whose_response_was_lost_is_adopted(client, server, root):
    proj = project(root, {"assistants/bot.yaml": STORE_BOT, **FILES})
    fault = aim(server, "POST /v1/vector_stores", "lost")
    _, result = converge(client, proj)
    assert fault.injected == {"lost": 1} and not result.failed, result.failed
    [store] = [s for s in client.vector_stores.list() if (s.metadata or {}).get("asstctl.key") == "bot"]
    assert outcomes(result, "create")[1] == ("vector store bot", True, store.id, None, "adopted after a lost response")
    assert set(store_files(client, store.id)) == {FAQ, SHIPPING}
    assert not plan(client, proj).has_changes()


def test_file_steps_and_store_updates_are_reported_with_their_notes(client, root):
    proj = project(root, {"assistants/bot.yaml": STORE_BOT, **FILES})
    converge(client, proj)
    store, old = managed_store(client, "bot"), ids_by_name(client)
    write(root, {FAQ: "# FAQ\nchanged\n", "assistants/knowledge/new.md": "new\n"})
    (root / SHIPPING).unlink()
    made = plan(client, proj)
    assert store_lines(render_text(made)) == [
        "~ update vector store bot", f"    ~ file {FAQ} (content changed)", "    + file assistants/knowledge/new.md",
        f"    - file {SHIPPING}"]
    _, result = converge(client, proj)
    new = ids_by_name(client)
    assert outcomes(result, "update") == [("vector store bot", True, store.id, None, "files")]
    assert outcomes(result, "attach") == [(FAQ, True, new["faq.md"], None, "to vector store bot"),
                                          ("assistants/knowledge/new.md", True, new["new.md"], None, "to vector store bot")]
    assert outcomes(result, "detach") == [(SHIPPING, True, old["shipping.md"], None, "from vector store bot")]
    assert {path: item["id"] for path, item in store_files(client, store.id).items()} == {
        FAQ: new["faq.md"], "assistants/knowledge/new.md": new["new.md"]}
    write(root, {"assistants/bot.yaml": STORE_BOT.replace("name: Docs", "name: Handbook")})
    _, renamed = converge(client, proj)
    assert outcomes(renamed, "update") == [("vector store bot", True, store.id, None, None)]
    assert managed_store(client, "bot").name == "Handbook"


def test_a_swapped_file_leaves_one_version_in_the_store_even_when_the_old_upload_stays(client, root):
    """The old upload is still used (by an assistant of someone else): it is kept, but not in the store."""
    proj = project(root, {"assistants/bot.yaml": STORE_BOT, **FILES})
    converge(client, proj)
    store, old = managed_store(client, "bot"), ids_by_name(client)["faq.md"]
    client.beta.assistants.create(model="gpt-4o", tool_resources={"code_interpreter": {"file_ids": [old]}})
    write(root, {FAQ: "# FAQ\nchanged\n"})
    _, result = converge(client, proj)
    assert not result.failed and old in {f.id for f in client.files.list()}
    listed = [item.id for item in client.vector_stores.files.list(store.id)]
    assert sorted(listed) == sorted([ids_by_name(client)["shipping.md"], store_files(client, store.id)[FAQ]["id"]])
    assert old not in listed


@pytest.mark.parametrize("status", ["failed", "cancelled"])
def test_a_file_whose_ingestion_did_not_complete_is_attached_again(client, server, root, status):
    proj = project(root, {"assistants/bot.yaml": STORE_BOT, **FILES})
    converge(client, proj)
    store, faq = managed_store(client, "bot"), ids_by_name(client)["faq.md"]
    server.state.store.update("vector_store_file", faq, lambda item: item.update(status=status), store.id)
    made = plan(client, proj)
    assert store_lines(render_text(made)) == ["~ update vector store bot", f"    ~ file {FAQ} (ingestion {status} before: again)"]
    assert made.uploads == [] and made.file_deletions == []
    _, result = converge(client, proj)
    assert outcomes(result, "attach") == [(FAQ, True, faq, None, "to vector store bot")]
    assert store_files(client, store.id)[FAQ]["status"] == "completed" and not plan(client, proj).has_changes()


def test_a_stale_tag_is_refreshed_to_the_hash_apply_writes(client, root):
    proj = project(root, {"assistants/bot.yaml": STORE_BOT, **FILES})
    converge(client, proj)
    store = managed_store(client, "bot")
    tag = store.metadata["asstctl.spec-hash"]
    client.vector_stores.update(store.id, metadata={**store.metadata, "asstctl.spec-hash": "0000000000000000"})
    assert store_lines(render_text(plan(client, proj))) == [
        "~ update vector store bot  (drift: changed outside asstctl)",
        f'    ~ metadata.asstctl.spec-hash: "0000000000000000" → "{tag}"']
    converge(client, proj)
    assert managed_store(client, "bot").metadata["asstctl.spec-hash"] == tag


def test_a_changed_spec_is_an_update_not_drift(client, root):
    proj = project(root, {"assistants/bot.yaml": STORE_BOT, **FILES})
    converge(client, proj)
    write(root, {"assistants/bot.yaml": STORE_BOT.replace("name: Docs", "name: Handbook")})
    made = plan(client, proj)
    action = next(a for a in made.actions if a.object == "vector_store")
    assert (action.kind, action.drift) == ("update", False)
    assert json.loads(render_json(made))["actions"][0]["drift"] is False
    assert store_lines(render_text(plan(client, proj))) == ["~ update vector store bot", '    ~ name: "Docs" → "Handbook"']


def test_files_attached_by_hand_are_left_alone(client, root):
    """Only store files with this project's attributes (project and path) are asstctl's."""
    proj = project(root, {"assistants/bot.yaml": STORE_BOT, **FILES})
    converge(client, proj)
    store = managed_store(client, "bot")
    hand = {name: client.files.create(file=(f"{name}.md", name.encode()), purpose="assistants").id
            for name in ("plain", "other", "pathless")}
    client.vector_stores.files.create(store.id, file_id=hand["plain"])
    client.vector_stores.files.create(store.id, file_id=hand["other"],
                                      attributes={"asstctl.project": "other", "asstctl.path": "x.md"})
    client.vector_stores.files.create(store.id, file_id=hand["pathless"], attributes={"asstctl.project": "kb"})
    assert not plan(client, proj).has_changes()
    converge(client, proj, prune=True)
    assert set(hand.values()) <= {item.id for item in client.vector_stores.files.list(store.id)}


def test_saved_destroy_and_prune_plans_of_stores_with_files_apply_while_fresh(client, root):
    proj = project(root, {"assistants/bot.yaml": KNOWLEDGE_BOT, "vector_stores/library.yaml":
                          "name: Library\nfiles: [../assistants/knowledge/*.md]\n", **FILES})
    converge(client, proj)
    (root / "vector_stores/library.yaml").unlink()
    save_plan(plan(client, proj, prune=True), str(root / "prune.json"))
    verified_remote(load_plan(str(root / "prune.json")), client)
    save_plan(plan(client, proj, destroy=True), str(root / "destroy.json"))
    saved = load_plan(str(root / "destroy.json"))
    verified_remote(saved, client)
    result = apply_plan(saved, client, root=root)
    assert not result.failed and list(client.vector_stores.list()) == []


def test_a_kept_duplicate_store_with_files_is_part_of_a_saved_plans_check(client, root):
    proj = project(root, {"assistants/bot.yaml": STORE_BOT, **FILES})
    converge(client, proj)
    kept = managed_store(client, "bot")
    extra = client.vector_stores.create(name="Docs", metadata=kept.metadata)
    faq = ids_by_name(client)["faq.md"]
    client.vector_stores.files.create(extra.id, file_id=faq, attributes={"asstctl.project": "kb", "asstctl.path": FAQ})
    save_plan(plan(client, proj), str(root / "plan.json"))
    saved = load_plan(str(root / "plan.json"))
    verified_remote(saved, client)
    client.vector_stores.files.delete(faq, vector_store_id=extra.id)
    with pytest.raises(PlanError, match=f"bot: {extra.id} was changed"):
        verified_remote(saved, client)


def test_store_deletions_are_reported_with_their_ids(client, root):
    proj = project(root, {"assistants/bot.yaml": STORE_BOT, **FILES})
    converge(client, proj)
    store = managed_store(client, "bot")
    _, result = converge(client, proj, destroy=True)
    assert ("vector store bot", True, store.id, None, None) in outcomes(result, "delete")


def test_a_refused_store_deletion_is_reported_by_store(keyed, root):
    client, refused = keyed
    proj = project(root, {"assistants/bot.yaml": STORE_BOT, **FILES})
    converge(client, proj)
    store = managed_store(client, "bot")
    result = apply_plan(plan(client, proj, destroy=True), refused, root=proj.root)
    [failed] = [o for o in result.failed if o.key == "vector store bot"]
    assert (failed.kind, failed.remote_id) == ("delete", store.id) and failed.error.startswith("Error code: 401")
    assert [s.id for s in client.vector_stores.list()] == [store.id]


def test_a_failed_store_update_is_reported_by_store_and_keeps_the_files_it_would_replace(client, root):
    proj = project(root, {"assistants/bot.yaml": STORE_BOT, **FILES})
    converge(client, proj)
    store, old = managed_store(client, "bot"), ids_by_name(client)["faq.md"]
    write(root, {"assistants/bot.yaml": STORE_BOT.replace("name: Docs", "name: Handbook"), FAQ: "# FAQ\nchanged\n"})
    made = plan(client, proj)
    client.vector_stores.delete(store.id)
    result = apply_plan(made, client, root=proj.root)
    failed = [(o.key, o.kind, o.remote_id, o.error) for o in result.failed]
    assert ("vector store bot", "update", store.id, f"Error code: 404 - No vector store found with id '{store.id}'.") in failed
    assert outcomes(result, "attach") == [] and old in {f.id for f in client.files.list()}
    assert ("file assistants/knowledge/faq.md", True, old, None, "kept: a step that replaces it failed") in outcomes(result, "delete")


# -- ingestion: the store files apply attached, as the API returned them ------------------------------
def pending_run(client, proj, status: str, last_error=None, timeout: float = 0):
    """An apply whose one attached file the API reported with ``status`` (and ``last_error``)."""
    made, _ = converge(client, proj)
    store = managed_store(client, "bot")
    item = client.vector_stores.files.retrieve(ids_by_name(client)["faq.md"], vector_store_id=store.id)
    reported = item.model_copy(update={"status": status, "last_error": last_error})
    run = ApplyRun(made, client, ingestion_timeout=timeout)
    run.pending = [(store.id, item.id, FAQ, reported)]
    return made, run, item.id


def test_a_cancelled_ingestion_without_a_reason_is_a_failure_saying_so(client, root):
    made, run, file_id = pending_run(client, project(root, {"assistants/bot.yaml": STORE_BOT, **FILES}), "cancelled")
    [outcome] = run.wait()
    assert (outcome.key, outcome.kind, outcome.remote_id, outcome.error) == (FAQ, "ingest", file_id, "cancelled: no reason given")
    from asstctl.reconcile.model import ApplyResult

    report = json.loads(render_report(made, ApplyResult([outcome])))
    assert report["outcomes"] == [{"object": "file", "key": FAQ, "action": "ingest", "ok": False, "id": file_id,
                                   "error": "cancelled: no reason given", "note": None}]


def test_a_cancelled_ingestion_with_a_reason_names_the_status_and_the_reason(client, root):
    from openai.types.vector_stores.vector_store_file import LastError

    error = LastError(code="server_error", message="Ingestion was stopped.")
    _, run, file_id = pending_run(client, project(root, {"assistants/bot.yaml": STORE_BOT, **FILES}), "cancelled", error)
    assert [(o.key, o.ok, o.remote_id, o.error) for o in run.wait()] == [
        (FAQ, False, file_id, "cancelled: Ingestion was stopped. (server_error)")]


def test_an_ingestion_still_running_at_the_timeout_says_what_to_do(client, root):
    _, run, file_id = pending_run(client, project(root, {"assistants/bot.yaml": STORE_BOT, **FILES}), "in_progress",
                                  timeout=0)
    assert [(o.key, o.kind, o.ok, o.remote_id, o.error) for o in run.wait()] == [
        (FAQ, "ingest", False, file_id, "ingestion did not finish within 0 s (still in_progress); raise "
                                        "--ingestion-timeout or run `asstctl apply` again later")]


def test_a_failed_ingestion_in_an_apply_is_reported_with_the_apis_reason(client, server, root):
    server.faults.ingest_fail_marker = b"ASSTCTL-INGEST-FAIL"
    proj = project(root, {"assistants/bot.yaml": STORE_BOT, **FILES, FAQ: "# FAQ\nASSTCTL-INGEST-FAIL\n"})
    made, result = converge(client, proj)
    faq = ids_by_name(client)["faq.md"]
    assert [(o.key, o.kind, o.ok, o.remote_id, o.error) for o in result.failed] == [
        (FAQ, "ingest", False, faq, f"The file {faq} could not be parsed (injected failure). (invalid_file)")]
    [reported] = [o for o in json.loads(render_report(made, result))["outcomes"] if o["action"] == "ingest"]
    assert (reported["ok"], reported["id"]) == (False, faq)


def test_a_failed_detach_is_reported_by_file_and_keeps_its_upload(keyed, root):
    """A store whose only change is its files sends nothing for the store itself; the detach is refused."""
    client, refused = keyed
    proj = project(root, {"assistants/bot.yaml": STORE_BOT, **FILES})
    converge(client, proj)
    shipping = ids_by_name(client)["shipping.md"]
    (root / SHIPPING).unlink()
    result = apply_plan(plan(client, proj), refused, root=proj.root)
    assert outcomes(result, "update") == [("vector store bot", True, managed_store(client, "bot").id, None, "files")]
    [failed] = result.failed
    assert (failed.key, failed.kind, failed.remote_id) == (SHIPPING, "detach", shipping)
    assert failed.error.startswith("Error code: 401")
    assert outcomes(result, "delete") == [(f"file {SHIPPING}", True, shipping, None, "kept: a step that replaces it failed")]


def test_a_file_whose_upload_failed_is_not_attached_and_says_why(client, root):
    proj = project(root, {"assistants/bot.yaml": STORE_BOT, **FILES})
    made = plan(client, proj)
    write(root, {FAQ: "# FAQ\nedited after planning\n"})
    result = apply_plan(made, client, root=proj.root)
    assert [(o.key, o.ok, o.remote_id, o.error) for o in result.outcomes if o.kind == "attach" and not o.ok] == [
        (FAQ, False, None, "not attached: its upload failed")]


def detaches_and_attaches(server) -> tuple[int, int]:
    stats = server.state.stats
    return stats["DELETE /v1/vector_stores/{id}/files/{id}"], stats["POST /v1/vector_stores/{id}/files"]


def test_a_reattached_file_is_detached_first_and_a_swapped_one_after(client, server, root):
    """A new chunking strategy attaches the same upload again: it is detached first (the API keeps a
    file's chunks while it stays attached). A new version is attached, then the old one detached."""
    proj = project(root, {"assistants/bot.yaml": STORE_BOT, **FILES})
    converge(client, proj)
    before = detaches_and_attaches(server)
    write(root, {"assistants/bot.yaml": STORE_BOT + "        chunking_strategy: {type: static, static: "
                 "{max_chunk_size_tokens: 400, chunk_overlap_tokens: 100}}\n"})
    converge(client, proj)
    after = detaches_and_attaches(server)
    assert (after[0] - before[0], after[1] - before[1]) == (2, 2)
    write(root, {FAQ: "# FAQ\nchanged\n"})
    converge(client, proj)
    last = detaches_and_attaches(server)
    assert (last[0] - after[0], last[1] - after[1]) == (1, 1)


def test_a_failure_seen_before_the_last_poll_is_still_reported(client, root):
    """One file failed at once, another was still being ingested: the wait polls it to completion and
    reports the failure it saw first."""
    proj = project(root, {"assistants/bot.yaml": STORE_BOT, **FILES})
    made, _ = converge(client, proj)
    store, ids = managed_store(client, "bot"), ids_by_name(client)
    items = {name: client.vector_stores.files.retrieve(ids[name], vector_store_id=store.id) for name in ("faq.md", "shipping.md")}
    run = ApplyRun(made, client, ingestion_timeout=5)
    run.pending = [(store.id, ids["faq.md"], FAQ, items["faq.md"].model_copy(update={"status": "failed"})),
                   (store.id, ids["shipping.md"], SHIPPING, items["shipping.md"].model_copy(update={"status": "in_progress"}))]
    assert [(o.key, o.remote_id, o.error) for o in run.wait()] == [(FAQ, ids["faq.md"], "no reason given")]


def test_a_store_action_names_the_file_it_was_declared_in(client, root):
    """The plan data's ``source`` of a store: the assistant spec of an inline store, the store file of a
    shared one (docs/plan-format.md), as the assistants' own actions name their spec file; both when
    created and when updated."""
    proj = project(root, {"assistants/bot.yaml": STORE_BOT, **FILES,
                          "vector_stores/library.yaml": "name: Library\nfiles: [../assistants/knowledge/*.md]\n",
                          "assistants/reader.yaml": "model: gpt-4o\ntools:\n  - file_search: {vector_store: library}\n"})
    expected = {"bot": "assistants/bot.yaml", "library": "vector_stores/library.yaml"}  # relative to the project
    made = plan(client, proj)
    assert {a.key: a.source for a in made.actions if a.object == "vector_store"} == expected
    converge(client, proj)
    write(root, {"vector_stores/library.yaml": "name: Library 2\nfiles: [../assistants/knowledge/*.md]\n",
                 "assistants/bot.yaml": STORE_BOT.replace("Docs", "Docs 2")})
    made = plan(client, proj)
    assert {a.key: (a.kind, a.source) for a in made.actions if a.object == "vector_store"} == {
        key: ("update", source) for key, source in expected.items()}
