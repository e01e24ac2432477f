"""The assistant kind where mutation testing found it unpinned (docs/testing.md): what a plan says about
orphans and duplicates, which object a kept duplicate is in a saved plan, and the outcomes users read."""

from __future__ import annotations

import contextlib
from types import SimpleNamespace

import pytest

from asstctl.errors import PlanError
from asstctl.reconcile.apply import RetryPolicy, apply_plan, check_fresh
from asstctl.reconcile.plan import load_plan, save_plan
from asstctl.reconcile.remote import read_remote
from asstctl.reconcile.report import render_result, render_text
from tests.knowledge.helpers import converge as kb_converge
from tests.knowledge.helpers import plan as kb_plan, project, write
from tests.reconcile.helpers import PROJECT, converge, make_plan, spec
from tests.strength.conftest import Script, assistant


def saved(made, root, name="plan.json"):
    save_plan(made, str(root / name))
    return load_plan(str(root / name))


def duplicate(client, key):
    first = read_remote(client, PROJECT).managed[key]
    return client.beta.assistants.create(model="gpt-4o", metadata=first["metadata"]).id


def lines(text: str) -> list[str]:
    return text.splitlines()


def test_an_assistant_without_a_spec_is_kept_and_the_plan_says_how_to_delete_it(client):
    converge(client, [spec("keep"), spec("gone")])
    text = render_text(make_plan(client, [spec("keep")]))
    assert "= no-op gone  (not in the specs: kept (re-run with --prune to delete it))" in lines(text)


def test_a_saved_plan_keeping_a_duplicate_is_fresh_until_the_duplicate_changes(client, root):
    """The kept duplicate is named by id with its fingerprint: unchanged, the plan applies; changed by
    hand, the plan is refused naming it."""
    converge(client, [spec("bot")])
    extra = duplicate(client, "bot")
    made = make_plan(client, [spec("bot", temperature=0.5)])
    kept = [a for a in made.actions if a.duplicate]
    assert [(a.kind, a.remote_id) for a in kept] == [("no-op", extra)]
    loaded = saved(made, root)
    check_fresh(loaded, read_remote(client, PROJECT))  # fresh: no error
    client.beta.assistants.update(extra, name="by hand")
    with pytest.raises(PlanError, match=f"bot: {extra} was changed$"):
        check_fresh(loaded, read_remote(client, PROJECT))


def test_apply_reports_each_assistant_by_key_and_id(client):
    converge(client, [spec("a"), spec("b"), spec("c")])
    ids = {key: obj["id"] for key, obj in read_remote(client, PROJECT).managed.items()}
    result = apply_plan(make_plan(client, [spec("a", temperature=0.5), spec("b"), spec("d")], prune=True), client)
    made = read_remote(client, PROJECT).managed["d"]["id"]
    assert sorted(lines(render_result(result))[:-1]) == sorted([
        f"~ a: updated {ids['a']}", f"+ d: created {made}", f"- c: deleted {ids['c']}"])
    assert lines(render_result(result))[-1] == "Apply complete: 1 created, 1 updated, 1 deleted, 0 failed."


@pytest.fixture
def faults(server):
    """Make every write of the test's server fail in one way (``faults.set("lost")``), until the test ends."""
    class Set:
        def set(self, kind: str) -> None:
            server.faults.kinds, server.faults.rate = (kind,), 1.0

        def clear(self) -> None:
            server.faults.rate = 0

    yield Set()
    server.faults.rate = 0


def test_a_create_whose_response_is_lost_adopts_what_it_made(client, faults):
    made = make_plan(client, [spec("bot")])
    faults.set("lost")  # the server creates it, then the connection drops before the answer
    result = apply_plan(made, client)
    faults.clear()
    bot = read_remote(client, PROJECT).managed["bot"]["id"]
    assert [(o.key, o.kind, o.ok, o.remote_id, o.note) for o in result.outcomes] == [
        ("bot", "create", True, bot, "adopted after a lost response")]
    assert lines(render_result(result))[0] == f"+ bot: created {bot} (adopted after a lost response)"
    assert [a.id for a in client.beta.assistants.list()] == [bot]


def test_a_create_that_keeps_failing_is_tried_as_often_as_the_retry_policy_says(client, server, faults):
    made = make_plan(client, [spec("bot")])
    faults.set("429")  # a rate limit: nothing was made, so no look before trying again
    result = apply_plan(made, client, retry=RetryPolicy(attempts=2, base_delay=0.001))
    faults.clear()
    assert [(o.key, o.kind, o.ok, o.remote_id) for o in result.outcomes] == [("bot", "create", False, None)]
    assert result.outcomes[0].error.startswith("Error code: 429 - Rate limit reached"), result.outcomes[0].error
    assert server.state.stats["POST /v1/assistants"] == 2
    assert list(client.beta.assistants.list()) == []


CODE_BOT = "model: gpt-4o\ntools:\n  - code_interpreter: {files: [data/*.csv]}\n"


def test_an_assistant_whose_files_could_not_be_uploaded_is_not_applied(client, root):
    """Both files changed again after planning: their uploads are refused, so the update that would
    attach them is not sent, and says which references are missing."""
    proj = project(root, {"assistants/bot.yaml": CODE_BOT, "assistants/data/a.csv": "a\n1\n", "assistants/data/b.csv": "b\n1\n"})
    kb_converge(client, proj)
    before = assistant(client)
    assert len(before.tool_resources.code_interpreter.file_ids) == 2
    write(root, {"assistants/data/a.csv": "a\n2\n", "assistants/data/b.csv": "b\n2\n"})
    made = kb_plan(client, proj)
    refs = sorted(upload.ref for upload in made.uploads)
    assert len(refs) == 2
    write(root, {"assistants/data/a.csv": "a\n3\n", "assistants/data/b.csv": "b\n3\n"})
    result = apply_plan(made, client, root=proj.root)
    update = [o for o in result.outcomes if o.key == "bot"]
    assert [(o.kind, o.ok, o.remote_id, o.error) for o in update] == [
        ("update", False, before.id, f"not applied: {refs[0]}, {refs[1]} could not be made")]
    assert f"! bot: update failed: not applied: {refs[0]}, {refs[1]} could not be made" in lines(render_result(result))
    assert assistant(client).tool_resources == before.tool_resources


def recording_progress(calls):
    @contextlib.contextmanager
    def progress(length, label):
        bar = SimpleNamespace(steps=0)
        bar.update = lambda n: setattr(bar, "steps", bar.steps + n)
        calls.append((label, length, bar))
        yield bar

    return progress


def test_one_bar_counts_creates_updates_and_deletions(client):
    converge(client, [spec("old-1"), spec("old-2"), spec("kept")])
    calls = []
    specs = [spec("kept", temperature=0.5)] + [spec(f"new-{i}") for i in range(9)]
    result = converge(client, specs, prune=True, parallelism=3, progress=recording_progress(calls))
    assert not result.failed and (result.count("create"), result.count("update"), result.count("delete")) == (9, 1, 2)
    assert [(label, length, bar.steps) for label, length, bar in calls] == [("Applying", 12, 12)]


def test_a_failed_update_names_the_object_it_was_for(client):
    converge(client, [spec("bot")])
    made = make_plan(client, [spec("bot", temperature=0.5)])
    gone = made.actions[0].remote_id
    client.beta.assistants.delete(gone)
    result = apply_plan(made, client)
    assert [(o.key, o.kind, o.ok, o.remote_id) for o in result.outcomes] == [("bot", "update", False, gone)]
    assert result.outcomes[0].error == f"Error code: 404 - No assistant found with id '{gone}'."


def test_a_changed_assistant_keeps_its_reasoning_effort_in_the_update_body(client):
    converge(client, [spec("thinker", model="o3-mini", reasoning_effort="low")])
    made = make_plan(client, [spec("thinker", model="o3-mini", reasoning_effort="low", temperature=0.5)])
    assert made.actions[0].kind == "update" and made.actions[0].body["reasoning_effort"] == "low"
    assert not apply_plan(made, client).failed
    assert not make_plan(client, [spec("thinker", model="o3-mini", reasoning_effort="low", temperature=0.5)]).has_changes()


def test_code_files_in_a_plan_added_changed_and_removed(client, root):
    proj = project(root, {"assistants/bot.yaml": CODE_BOT, "assistants/data/a.csv": "a\n1\n", "assistants/data/b.csv": "b\n1\n"})
    kb_converge(client, proj)
    (root / "assistants/data/b.csv").unlink()
    write(root, {"assistants/data/a.csv": "a\n2\n", "assistants/data/c.csv": "c\n1\n"})
    made = kb_plan(client, proj)
    refs = {upload.path: upload.ref for upload in made.uploads}
    [action] = [a for a in made.actions if a.key == "bot"]
    assert [(op.op, op.path, op.ref, op.file_id, op.reason) for op in action.files] == [
        ("~", "assistants/data/a.csv", refs["assistants/data/a.csv"], None, "content changed"),
        ("+", "assistants/data/c.csv", refs["assistants/data/c.csv"], None, None),
        ("-", "b.csv", None, None, None)]
    text = lines(render_text(made))
    assert text[text.index("~ update bot") + 1:text.index("~ update bot") + 4] == [
        "    ~ file assistants/data/a.csv (content changed)", "    + file assistants/data/c.csv", "    - file b.csv"]
    assert not apply_plan(made, client, root=proj.root).failed and not kb_plan(client, proj).has_changes()


def test_dropping_code_files_sends_an_empty_list_for_them(client, root):
    """An update does not unset by omission: the body names the tool's files, empty."""
    proj = project(root, {"assistants/bot.yaml": CODE_BOT, "assistants/data/a.csv": "a\n1\n"})
    kb_converge(client, proj)
    write(root, {"assistants/bot.yaml": "model: gpt-4o\ntools: [code_interpreter]\n"})
    made = kb_plan(client, proj)
    [action] = [a for a in made.actions if a.key == "bot"]
    assert action.body["tool_resources"] == {"code_interpreter": {"file_ids": []}}


def test_a_saved_deletion_is_fresh_until_its_object_changes(client, root):
    converge(client, [spec("keep"), spec("gone")])
    loaded = saved(make_plan(client, [spec("keep")], prune=True), root)
    gone = read_remote(client, PROJECT).managed["gone"]["id"]
    check_fresh(loaded, read_remote(client, PROJECT))  # fresh: no error
    client.beta.assistants.update(gone, name="by hand")
    with pytest.raises(PlanError, match=f"gone: {gone} was changed$"):
        check_fresh(loaded, read_remote(client, PROJECT))


def test_a_stale_tag_alone_is_refreshed_to_the_tag_apply_writes(client):
    converge(client, [spec("bot", temperature=0.5)])
    bot = read_remote(client, PROJECT).managed["bot"]
    client.beta.assistants.update(bot["id"], metadata={**bot["metadata"], "asstctl.spec-hash": "0000000000000000"})
    made = make_plan(client, [spec("bot", temperature=0.5)])
    [change] = made.actions[0].changes
    assert (change.path, change.old) == ("metadata.asstctl.spec-hash", "0000000000000000")
    assert "    ~ metadata.asstctl.spec-hash: \"0000000000000000\" → \"" in render_text(made)
    assert not apply_plan(made, client).failed
    assert read_remote(client, PROJECT).managed["bot"]["metadata"]["asstctl.spec-hash"] == change.new == bot["metadata"]["asstctl.spec-hash"]
    assert not make_plan(client, [spec("bot", temperature=0.5)]).has_changes()


def test_reasoning_effort_changes_say_the_server_does_not_show_it(client):
    """The server never returns reasoning_effort: its old value is "(not readable)", set or removed."""
    converge(client, [spec("thinker", model="o3-mini")])
    added = make_plan(client, [spec("thinker", model="o3-mini", reasoning_effort="high")])
    assert [(c.path, c.old, c.new, c.kind) for c in added.actions[0].changes] == [
        ("reasoning_effort", "(not readable)", "high", "changed")]
    assert '    ~ reasoning_effort: "(not readable)" → "high"' in lines(render_text(added))
    apply_plan(added, client)
    removed = make_plan(client, [spec("thinker", model="o3-mini")])
    assert [(c.path, c.old, c.new, c.kind) for c in removed.actions[0].changes] == [
        ("reasoning_effort", "(not readable)", None, "removed")]
    assert '    - reasoning_effort: "(not readable)"' in lines(render_text(removed))



@pytest.mark.parametrize("readable", [True, False], ids=["read-back", "unreadable"])
def test_a_failed_update_keeps_the_code_files_the_assistant_still_names(client, server, root, readable, waits):
    """The assistant's update is refused (a hand-edited plan the server rejects with 400): it still names
    its old code_interpreter file, so that upload is kept, not deleted. When the assistant cannot even be
    read back (500s on every listing), every planned file deletion is kept. The next apply replaces it."""
    proj = project(root, {"assistants/bot.yaml": "model: gpt-4o\ntools:\n  - code_interpreter: {files: [data/*.csv]}\n",
                          "assistants/data/a.csv": "x,y\n1,2\n"})
    kb_converge(client, proj)
    old = next(f for f in client.files.list() if f.filename.endswith("--a.csv"))
    write(root, {"assistants/data/a.csv": "x,y\n9,9\n"})
    made = kb_plan(client, proj)
    assert [d.file_id for d in made.file_deletions] == [old.id]
    [update] = [a for a in made.actions if a.object == "assistant"]
    update.body["temperature"] = 5  # out of range: 400
    if not readable:
        server.state.config.faults = Script(retry_after_ms=1, script={"GET /v1/assistants": ["500"] * 6})
    result = apply_plan(made, client, root=proj.root)
    assert [(o.key, o.ok) for o in result.outcomes if o.kind == "update" and not o.ok] == [("bot", False)]
    [kept] = [o for o in result.outcomes if o.remote_id == old.id]
    assert (kept.ok, kept.note) == (True, "kept: a step that replaces it failed")
    assert assistant(client).tool_resources.code_interpreter.file_ids == [old.id]
    assert old.id in {f.id for f in client.files.list()}
    assert len(waits) == (0 if readable else 5)
    server.state.config.faults = Script()
    kb_converge(client, proj)
    assert old.id not in {f.id for f in client.files.list()}
    assert not kb_plan(client, proj).has_changes()
