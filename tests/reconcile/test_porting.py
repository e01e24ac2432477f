"""`asstctl import` / `export` (CliRunner + --base-url against the test's server): the written specs
load, and `asstctl plan` is a no-op afterwards; foreign objects and existing files are respected."""

from __future__ import annotations

import pytest
import yaml

from asstctl.ownership import KEY, MANAGED_BY, PROJECT, SPEC_HASH, hash_tag
from asstctl.reconcile.porting import derive_key, escaped, spec_fields
from asstctl.spec.project import load_project
from asstctl.reconcile.remote import read_remote
from asstctl.spec.loader import load_specs
from tests.reconcile.test_cli import NAME, project, run, write_spec  # noqa: F401  (project is a fixture)

LONG = "You are the support desk.\n" + "Answer in one sentence, and always be polite. " * 10
TOOLS = [
    {"type": "code_interpreter"},
    {"type": "function", "function": {
        "name": "lookup", "description": "Find an order.", "strict": True,
        "parameters": {"type": "object", "properties": {"id": {"type": "string"}}, "required": ["id"],
                       "additionalProperties": False}}},
    {"type": "function", "function": {"name": "ping"}},
]


@pytest.fixture
def empty(project):
    """The CLI project without its specs: a project that manages nothing yet."""
    for path in (project / "assistants").iterdir():
        path.unlink()
    return project


def spec_file(root, key: str) -> str:
    return (root / "assistants" / f"{key}.yaml").read_text(encoding="utf-8")


def plan_is_no_op(server) -> None:
    result = run(server, "plan", "--detailed-exitcode")
    assert result.exit_code == 0, result.output
    assert "No changes." in result.output


def loaded(root, key: str) -> dict:
    [spec] = [spec for spec in load_specs(load_project(root)) if spec.key == key]
    return spec.fields


def test_import_writes_the_canonical_spec_and_plan_is_a_no_op(server, client, empty):
    bot = client.beta.assistants.create(model="gpt-4o", name="Support", instructions=LONG, temperature=0.2,
                                        tools=TOOLS, metadata={"team": "care", "tier": "1"})
    result = run(server, "import", "support", bot.id)
    assert result.exit_code == 0, result.output
    assert f"Wrote assistants/support.yaml from {bot.id}." in result.output
    assert f"{MANAGED_BY}=asstctl, {PROJECT}={NAME}, {KEY}=support" in result.output
    text = spec_file(empty, "support")
    assert text.startswith("# yaml-language-server: $schema=../.asstctl/spec.schema.json\n")
    data = yaml.safe_load(text)
    assert list(data) == ["name", "model", "instructions", "temperature", "tools", "metadata"]
    assert "instructions: |" in text and "top_p" not in text and "response_format" not in text
    assert data["tools"][0] == "code_interpreter" and data["tools"][2] == {"function": {"name": "ping"}}
    assert data["tools"][1]["function"]["strict"] is True and "type" not in data["tools"][1]
    assert data["metadata"] == {"team": "care", "tier": "1"}
    metadata = client.beta.assistants.retrieve(bot.id).metadata
    assert metadata["team"] == "care" and metadata[KEY] == "support" and metadata[PROJECT] == NAME
    plan_is_no_op(server)


def test_import_refuses_another_projects_assistant_and_existing_files(server, client, project):
    theirs = client.beta.assistants.create(model="gpt-4o", metadata={MANAGED_BY: "asstctl", PROJECT: "other", KEY: "x"})
    result = run(server, "import", "x", theirs.id)
    assert result.exit_code == 1
    assert f"{theirs.id} is managed by the asstctl project `other` (key `x`): it is theirs" in result.output
    assert not (project / "assistants" / "x.yaml").exists()
    assert client.beta.assistants.retrieve(theirs.id).metadata[PROJECT] == "other"

    mine = client.beta.assistants.create(model="gpt-4o-mini", name="Triage 2")
    before = spec_file(project, "triage")
    result = run(server, "import", "triage", mine.id)
    assert result.exit_code == 1 and "assistants/triage.yaml already exists" in result.output
    assert "--force" in result.output and spec_file(project, "triage") == before
    assert client.beta.assistants.retrieve(mine.id).metadata == {}
    result = run(server, "import", "triage", mine.id, "--force")
    assert result.exit_code == 0, result.output
    assert yaml.safe_load(spec_file(project, "triage"))["model"] == "gpt-4o-mini"


@pytest.mark.parametrize(("args", "message"), [
    (["Bad_Key", "ID"], "`Bad_Key` is not a valid key"),
    (["ok", "asst_nope"], "there is no assistant asst_nope on this target"),
])
def test_import_refuses_bad_arguments(server, empty, args, message):
    result = run(server, "import", *args)
    assert result.exit_code == 1 and message in result.output
    assert "Traceback" not in result.output and list((empty / "assistants").iterdir()) == []


def test_import_of_a_managed_assistant_says_which_key_it_has(server, client, project):
    assert run(server, "apply", "--yes").exit_code == 0
    triage = read_remote(client, NAME).managed["triage"]
    result = run(server, "import", "other", triage["id"])
    assert result.exit_code == 1
    assert f"{triage['id']} is already managed by this project as `triage`" in result.output
    assert "`asstctl export triage` writes its spec" in result.output
    unmanaged = client.beta.assistants.create(model="gpt-4o")
    result = run(server, "import", "faq", unmanaged.id)
    assert result.exit_code == 1
    assert "assistants/faq.yaml already exists" in result.output  # the file is checked first
    (project / "assistants" / "faq.yaml").unlink()
    result = run(server, "import", "faq", unmanaged.id)
    assert result.exit_code == 1 and "the key `faq` already belongs to" in result.output


def test_a_spec_that_cannot_hold_the_assistant_is_refused_before_anything_changes(server, client, empty):
    crowded = client.beta.assistants.create(model="gpt-4o", metadata={f"k{i}": "v" for i in range(14)})
    result = run(server, "import", "crowded", crowded.id)
    assert result.exit_code == 1, result.output
    assert "assistants/crowded.yaml" in result.output and "metadata" in result.output
    assert "nothing was written" in result.output
    assert not (empty / "assistants" / "crowded.yaml").exists()
    assert MANAGED_BY not in client.beta.assistants.retrieve(crowded.id).metadata


def test_export_recovers_deleted_spec_files(server, client, project):
    write_spec(project, "strict", response_format={"type": "json_schema", "json_schema": {
        "name": "answer", "schema": {"type": "object", "properties": {"a": {"type": "string"}}}}},
        top_p=0.5, reasoning_effort="low", tools=[{"file_search": {"max_num_results": 7}}])
    assert run(server, "apply", "--yes").exit_code == 0
    originals = {key: loaded(project, key) for key in ("triage", "faq", "strict")}
    for path in (project / "assistants").iterdir():
        path.unlink()
    result = run(server, "export")
    assert result.exit_code == 0, result.output
    assert "Export: 3 written (0 adopted), 0 kept, 0 failed." in result.output
    assert {key: loaded(project, key) for key in originals} == originals
    plan_is_no_op(server)
    again = run(server, "export", "faq")
    assert again.exit_code == 0 and "Kept assistants/faq.yaml: it exists (--force overwrites it)" in again.output


def test_export_all_adopts_unmanaged_assistants_after_confirmation(server, client, empty):
    twins = [client.beta.assistants.create(model="gpt-4o", name="Café Bot", instructions=f"Twin {i}") for i in (1, 2)]
    nameless = client.beta.assistants.create(model="gpt-4o")
    theirs = client.beta.assistants.create(model="gpt-4o", metadata={MANAGED_BY: "asstctl", PROJECT: "other", KEY: "x"})
    refused = run(server, "export", "--all")
    assert refused.exit_code == 1 and "re-run with --yes" in refused.output
    assert f"{twins[1].id} 'Café Bot' as `cafe-bot-2`" in refused.output
    assert list((empty / "assistants").iterdir()) == [] and read_remote(client, NAME).managed == {}
    result = run(server, "export", "--all", "--yes")
    assert result.exit_code == 0, result.output
    assert "Export: 3 written (3 adopted), 0 kept, 0 failed." in result.output
    assert "1 assistant(s) of other asstctl projects were not exported." in result.output
    managed = read_remote(client, NAME).managed
    assert {key: obj["id"] for key, obj in managed.items()} == {
        "cafe-bot": twins[0].id, "cafe-bot-2": twins[1].id, "assistant": nameless.id}
    assert client.beta.assistants.retrieve(theirs.id).metadata[PROJECT] == "other"
    plan_is_no_op(server)


def test_export_to_another_directory_adopts_nothing(server, client, empty, tmp_path):
    client.beta.assistants.create(model="gpt-4o", name="Loose")
    result = run(server, "export", "--all", "--dir", str(tmp_path / "out"))
    assert result.exit_code == 0, result.output
    assert "(asst_" in result.output and "adopted" not in result.output.splitlines()[0]
    assert yaml.safe_load((tmp_path / "out" / "loose.yaml").read_text()) == {"name": "Loose", "model": "gpt-4o"}
    assert read_remote(client, NAME).managed == {}


ODD = [
    "Prices look like ${amount}; $${literal} stays; a lone ${ and $ { too.",
    "  leading spaces\nand a trailing one \n",
    "Ünïcödé ✓ 日本語 🚀 — 'single' \"double\" `back` # not a comment: {flow} [list] &anchor *alias",
    "ends with blank lines\n\n\n",
    "yes",
    "tab\tinside, \\backslash, null, 1.0",
    "trailing spaces   \n   \n\tindented by a tab\n \n" + "long line " * 40,
    "other line breaks\u2028here\x85and\r\nthere, a BOM \ufeff and a bell \x07",
]


@pytest.mark.parametrize("text", ODD)
def test_odd_strings_round_trip(server, client, empty, text):
    bot = client.beta.assistants.create(model="gpt-4o", name=text.strip()[:200] or "x", description="",
                                        instructions=text, metadata={"note": text[:500]})
    result = run(server, "import", "odd", bot.id)
    assert result.exit_code == 0, result.output
    fields = loaded(empty, "odd")
    assert fields["instructions"] == text and fields["metadata"] == {"note": text[:500]}
    assert "description" not in fields
    plan_is_no_op(server)


def test_escaping_survives_the_loaders_interpolation(monkeypatch):
    from asstctl.spec.loader import interpolate
    from asstctl.spec.yamlpos import Document

    monkeypatch.setenv("amount", "SUBSTITUTED")
    values = ["${amount}", "$${amount}", "$$${amount}", "${a${b}", "${", "$}", "${amount", "x${}y"]
    doc = Document(escaped(values))
    assert interpolate(doc) == [] and doc.data == values


def test_reasoning_effort_is_recovered_from_the_spec_hash_tag():
    content = {"model": "gpt-4o"}
    metadata = {MANAGED_BY: "asstctl", PROJECT: NAME, KEY: "k", SPEC_HASH: hash_tag(content, {"reasoning_effort": "high"})}
    assert spec_fields({"id": "asst_1", "model": "gpt-4o", "metadata": metadata}) == {
        "model": "gpt-4o", "reasoning_effort": "high"}


@pytest.mark.parametrize(("name", "taken", "key"), [
    ("Support Bot", set(), "support-bot"),
    ("Support Bot", {"support-bot", "support-bot-2"}, "support-bot-3"),
    ("  ¡Olé!  ", set(), "ole"),
    (None, set(), "assistant"),
    ("日本語", {"assistant"}, "assistant-2"),
    ("x" * 100 + " y", set(), "x" * 56),
])
def test_derived_keys_are_valid_and_unique(name, taken, key):
    import re

    from asstctl.spec.schema import KEY_PATTERN

    assert derive_key(name, taken) == key and re.match(KEY_PATTERN, key)


def test_export_of_a_drifted_assistant_says_apply_records_it(server, client, project):
    assert run(server, "apply", "--yes").exit_code == 0
    client.beta.assistants.update(read_remote(client, NAME).managed["faq"]["id"], temperature=1.5)
    (project / "assistants" / "faq.yaml").unlink()
    result = run(server, "export", "faq")
    assert result.exit_code == 0, result.output
    assert "`faq` was changed outside asstctl since its last apply" in result.output
    assert loaded(project, "faq")["temperature"] == 1.5
    plan = run(server, "plan", "--detailed-exitcode")
    assert plan.exit_code == 2 and f"metadata.{SPEC_HASH}" in plan.output and "temperature" not in plan.output


def test_export_writes_declared_knowledge_not_pinned_ids_and_plan_prune_keeps_it(server, client, project):
    """A shared store by key, an inline store with its files and the code files by path: then `plan --prune`
    is a no-op (pinned ids would have made it delete the stores still in use)."""
    (project / "docs").mkdir()
    (project / "docs" / "faq.md").write_text("Returns take 30 days.\n")
    (project / "docs" / "prices.csv").write_text("item,price\nmug,4\n")
    (project / "vector_stores").mkdir()
    (project / "vector_stores" / "kb.yaml").write_text("files: [../docs/faq.md]\n")
    write_spec(project, "triage", tools=[{"file_search": {"vector_store": "kb"}}])
    write_spec(project, "faq", tools=[{"file_search": {"vector_store": {"files": ["../docs/faq.md"], "name": "FAQ"},
                                                       "max_num_results": 4}},
                                      {"code_interpreter": {"files": ["../docs/prices.csv"]}}])
    before = {key: spec_file(project, key) for key in ("triage", "faq")}
    assert run(server, "apply", "--yes").exit_code == 0
    for key in before:
        (project / "assistants" / f"{key}.yaml").unlink()
    result = run(server, "export")
    assert result.exit_code == 0, result.output
    assert "changed outside asstctl" not in result.output
    assert yaml.safe_load(spec_file(project, "triage"))["tools"] == [{"file_search": {"vector_store": "kb"}}]
    faq = yaml.safe_load(spec_file(project, "faq"))
    assert "tool_resources" not in faq and faq["tools"] == [
        {"file_search": {"vector_store": {"files": ["../docs/faq.md"], "name": "FAQ"}, "max_num_results": 4}},
        {"code_interpreter": {"files": ["../docs/prices.csv"]}}]
    plan = run(server, "plan", "--prune", "--detailed-exitcode")
    assert plan.exit_code == 0 and "No changes." in plan.output, plan.output
