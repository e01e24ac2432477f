"""The upload kind as users see it (mutation testing, docs/testing.md): what a plan uploads and
deletes and why, the outcome of every upload and deletion (its file, id and note), where apply reads
the files from, and what a lost or refused response does. Faults are the server's own fault
injection, aimed at one request (``aim`` in conftest)."""

from __future__ import annotations

import hashlib
import json
import shutil


from asstctl.reconcile.apply import apply_plan
from asstctl.reconcile.plan import load_plan, save_plan
from asstctl.reconcile.report import render_report, render_text
from tests.knowledge.helpers import converge, counts, plan, project, write
from tests.strength.conftest import FILES, KNOWLEDGE_BOT, aim, assistant

CODE_BOT = "model: gpt-4o\ntools:\n  - code_interpreter: {files: [data/*.csv]}\n"
CSV = FILES["assistants/data/a.csv"]
TWO_CSV = {**FILES, "assistants/data/b.csv": "x,y\n3,4\n"}


def assistant_id(result) -> str:
    return next(o.remote_id for o in result.outcomes if o.key == "bot")


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def outcomes(result, kind: str) -> list[tuple]:
    return sorted((o.key, o.ok, o.remote_id, o.error, o.note) for o in result.outcomes if o.kind == kind)


def uploads_named(client, name: str) -> list:
    return [f for f in client.files.list() if f.filename.endswith(f"--{name}")]


def test_a_plan_names_each_upload_by_content_and_apply_reports_its_id(client, root):
    proj = project(root, {"assistants/bot.yaml": KNOWLEDGE_BOT, **FILES})
    made = plan(client, proj)
    faq = FILES["assistants/knowledge/faq.md"]
    item = next(u for u in made.uploads if u.path == "assistants/knowledge/faq.md")
    assert (item.ref, item.sha256, item.bytes) == (f"file:faq.md#{sha(faq)[:16]}", sha(faq), len(faq.encode()))
    assert item.filename == f"asstctl--kb--{sha(faq)[:16]}--faq.md"
    assert item.source == str((root / "assistants/knowledge/faq.md").resolve())
    _, result = converge(client, proj)
    ids = {f.filename.split("--")[-1]: f.id for f in client.files.list()}
    assert outcomes(result, "upload") == [
        ("assistants/data/a.csv", True, ids["a.csv"], None, None),
        ("assistants/knowledge/faq.md", True, ids["faq.md"], None, None),
        ("assistants/knowledge/shipping.md", True, ids["shipping.md"], None, None)]
    assert result.count("upload") == 3 and not result.failed
    assert client.files.content(ids["faq.md"]).read() == faq.encode()


def test_a_destroy_plan_uploads_nothing_even_for_a_changed_file(client, root):
    proj = project(root, {"assistants/bot.yaml": KNOWLEDGE_BOT, **FILES})
    converge(client, proj)
    write(root, {"assistants/knowledge/faq.md": "# FAQ\nchanged\n", "assistants/knowledge/new.md": "new\n"})
    made = plan(client, proj, destroy=True)
    assert made.uploads == [] and len(made.file_deletions) == 3
    assert render_text(made).rstrip().endswith("Files: 0 to upload, 3 to delete.")


def test_deletions_say_which_file_and_why(client, root):
    """A file whose content changed is replaced (a store file and a code_interpreter file alike);
    one no spec names any more is no longer used. Store files are named by their path, code files by
    their name as uploaded (the file object holds no path)."""
    proj = project(root, {"assistants/bot.yaml": KNOWLEDGE_BOT, **FILES})
    converge(client, proj)
    old = {f.filename.split("--")[-1]: f for f in client.files.list()}
    write(root, {"assistants/knowledge/faq.md": "# FAQ\nchanged\n", "assistants/data/a.csv": "x,y\n9,9\n"})
    (root / "assistants/knowledge/shipping.md").unlink()
    made = plan(client, proj)
    assert sorted((d.path, d.file_id, d.filename, d.reason) for d in made.file_deletions) == [
        ("a.csv", old["a.csv"].id, old["a.csv"].filename, "replaced by its new content"),
        ("assistants/knowledge/faq.md", old["faq.md"].id, old["faq.md"].filename, "replaced by its new content"),
        ("assistants/knowledge/shipping.md", old["shipping.md"].id, old["shipping.md"].filename, "no longer used")]
    assert sorted(line for line in render_text(made).splitlines() if line.startswith("- delete file")) == [
        "- delete file a.csv  (replaced by its new content)",
        "- delete file assistants/knowledge/faq.md  (replaced by its new content)",
        "- delete file assistants/knowledge/shipping.md  (no longer used)"]
    _, result = converge(client, proj)
    assert outcomes(result, "delete") == sorted(
        (f"file {d.path}", True, d.file_id, None, None) for d in made.file_deletions)
    assert not {f.id for f in old.values()} & {f.id for f in client.files.list()}


def test_a_deletion_that_finds_the_file_gone_succeeds_and_says_so(client, root):
    proj = project(root, {"assistants/bot.yaml": CODE_BOT, **TWO_CSV})
    converge(client, proj)
    (root / "assistants/data/b.csv").unlink()
    made = plan(client, proj)
    [gone] = made.file_deletions
    client.files.delete(gone.file_id)
    result = apply_plan(made, client, root=proj.root)
    assert outcomes(result, "delete") == [("file b.csv", True, gone.file_id, None, "already gone")]


def test_a_refused_deletion_is_reported_by_file_and_the_upload_stays(keyed, root):
    client, refused = keyed
    proj = project(root, {"assistants/bot.yaml": CODE_BOT, **FILES})
    converge(client, proj)
    made = plan(client, proj, destroy=True)
    [doomed] = made.file_deletions
    # the file's deletion alone (a failed deletion of the assistant would keep the file it names)
    made.actions = [action for action in made.actions if action.object != "assistant"]
    result = apply_plan(made, refused, root=proj.root)
    failed = [(o.key, o.ok, o.remote_id) for o in result.failed if o.kind == "delete"]
    assert failed == [("file a.csv", False, doomed.file_id)]
    error = next(o.error for o in result.failed if o.key == "file a.csv")
    assert error.startswith("Error code: 401")
    assert doomed.file_id in {f.id for f in client.files.list()}
    _, again = converge(client, proj, destroy=True)
    assert outcomes(again, "delete") == [("bot", True, assistant_id(again), None, None),
                                         ("file a.csv", True, doomed.file_id, None, None)]


def test_an_upload_whose_response_was_lost_is_adopted_not_sent_twice(client, server, root):
    proj = project(root, {"assistants/bot.yaml": CODE_BOT, **FILES})
    fault = aim(server, "POST /v1/files", "lost")
    _, result = converge(client, proj)
    assert fault.injected == {"lost": 1} and not result.failed
    [upload] = uploads_named(client, "a.csv")
    assert outcomes(result, "upload") == [("assistants/data/a.csv", True, upload.id, None, "adopted after a lost response")]
    assert assistant(client).tool_resources.code_interpreter.file_ids == [upload.id]
    assert not plan(client, proj).has_changes()


def test_an_upload_refused_once_is_sent_again(client, server, root):
    proj = project(root, {"assistants/bot.yaml": CODE_BOT, **FILES})
    fault = aim(server, "POST /v1/files", "500")
    _, result = converge(client, proj)
    assert fault.injected == {"500": 1} and not result.failed
    [upload] = uploads_named(client, "a.csv")
    assert outcomes(result, "upload") == [("assistants/data/a.csv", True, upload.id, None, None)]
    assert counts(server) == (2, 0)  # the refused request and the one that made it


def test_a_saved_plan_reads_its_files_under_the_root_it_is_applied_from(client, root, tmp_path_factory):
    """`apply PLANFILE` in another checkout of the project: the files are read there, not where planned."""
    proj = project(root, {"assistants/bot.yaml": CODE_BOT, **FILES})
    save_plan(plan(client, proj), str(root / "plan.json"))
    other = tmp_path_factory.mktemp("checkout")
    shutil.copytree(root / "assistants", other / "assistants")
    shutil.rmtree(root / "assistants")
    result = apply_plan(load_plan(str(root / "plan.json")), client, root=other)
    assert not result.failed, result.failed
    [upload] = uploads_named(client, "a.csv")
    assert client.files.content(upload.id).read() == CSV.encode()


def test_without_a_root_apply_reads_the_files_where_they_were_planned(client, root, monkeypatch, tmp_path_factory):
    proj = project(root, {"assistants/bot.yaml": CODE_BOT, **FILES})
    made = plan(client, proj)
    monkeypatch.chdir(tmp_path_factory.mktemp("elsewhere"))
    result = apply_plan(made, client)
    assert not result.failed, result.failed
    [upload] = uploads_named(client, "a.csv")
    assert outcomes(result, "upload") == [("assistants/data/a.csv", True, upload.id, None, None)]


def test_a_file_changed_since_planning_fails_its_upload_with_the_fix(client, root):
    proj = project(root, {"assistants/bot.yaml": CODE_BOT, **FILES})
    made = plan(client, proj)
    write(root, {"assistants/data/a.csv": "x,y\nedited\n"})
    result = apply_plan(made, client, root=proj.root)
    failed = [(o.key, o.kind, o.error) for o in result.failed if o.kind == "upload"]
    assert failed == [("assistants/data/a.csv", "upload",
                       "assistants/data/a.csv changed since the plan was made; run `asstctl plan` again")]
    report = json.loads(render_report(made, result))
    assert report["totals"]["uploaded"] == 0 and report["status"] == "failed"


def test_an_upload_a_spec_names_by_id_is_kept(client, root):
    """A spec that lists one of this project's uploads by its id keeps it in use."""
    proj = project(root, {"assistants/bot.yaml": CODE_BOT, **FILES})
    converge(client, proj)
    [upload] = uploads_named(client, "a.csv")
    write(root, {"assistants/bot.yaml": "model: gpt-4o\ntools: [code_interpreter]\n"
                 f"tool_resources: {{code_interpreter: {{file_ids: [{upload.id}]}}}}\n"})
    (root / "assistants/data/a.csv").unlink()
    made = plan(client, proj)
    assert made.file_deletions == [] and made.uploads == []
    converge(client, proj)
    assert assistant(client).tool_resources.code_interpreter.file_ids == [upload.id]
    assert upload.id in {f.id for f in client.files.list()}


def test_the_files_of_a_kept_orphan_store_stay_until_it_is_pruned(client, root):
    proj = project(root, {"assistants/bot.yaml": KNOWLEDGE_BOT, **FILES})
    converge(client, proj)
    write(root, {"assistants/bot.yaml": CODE_BOT})
    kept = plan(client, proj)
    assert kept.file_deletions == []
    pruned = plan(client, proj, prune=True)
    assert sorted(d.path for d in pruned.file_deletions) == ["assistants/knowledge/faq.md", "assistants/knowledge/shipping.md"]
