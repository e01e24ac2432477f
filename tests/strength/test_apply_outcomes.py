"""Apply's outcomes that mutation testing found unpinned (docs/testing.md): an upload whose
replacing step failed is kept (never a knowledge file lost), and the plan file's exact form."""

from __future__ import annotations

import json

from asstctl.reconcile.apply import apply_plan
from asstctl.reconcile.plan import save_plan
from tests.knowledge.helpers import converge, plan, project, write
from tests.reconcile.helpers import make_plan, spec
from tests.strength.conftest import FILES, KNOWLEDGE_BOT


def test_an_upload_whose_replacing_step_failed_is_kept(client, root):
    """The store the new version goes into is gone when apply runs: the old upload is not deleted."""
    proj = project(root, {"assistants/bot.yaml": KNOWLEDGE_BOT, **FILES})
    converge(client, proj)
    old = next(f for f in client.files.list() if f.filename.endswith("--faq.md"))
    write(root, {"assistants/knowledge/faq.md": "# FAQ\nReturns within 60 days.\n"})
    made = plan(client, proj)
    assert [d.file_id for d in made.file_deletions] == [old.id]
    store = next(s for s in client.vector_stores.list() if (s.metadata or {}).get("asstctl.key") == "bot")
    client.vector_stores.delete(store.id)
    result = apply_plan(made, client, root=proj.root)
    assert result.failed
    kept = [o for o in result.outcomes if o.remote_id == old.id and o.kind == "delete"]
    assert [(o.key, o.ok, o.note) for o in kept] == [
        ("file assistants/knowledge/faq.md", True, "kept: a step that replaces it failed")]
    assert old.id in {f.id for f in client.files.list()}


def test_the_plan_file_is_indented_utf8_json_in_format_order(client, tmp_path):
    made = make_plan(client, [spec("bot", instructions="Grüße aus Köln 👋")])
    path = tmp_path / "plan.json"
    save_plan(made, str(path))
    text = path.read_text(encoding="utf-8")
    assert text.startswith('{\n  "format_version": 1,\n  "project": "demo",') and text.endswith("}\n")
    assert "Grüße aus Köln 👋" in text and "\\u" not in text
    assert list(json.loads(text)) == ["format_version", *[k for k in made.to_dict() if k != "format_version"]]
