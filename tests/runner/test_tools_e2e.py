"""`file_cited:` and `code_ran:` / `code_output_contains:` end to end: `asstctl apply` then `asstctl test` on the
embedded server, whose offline engine searches the knowledge store with file_search (citations) and runs
`code:` rules with code_interpreter in the thread's sandbox."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from asstctl.cli import cli

KNOWLEDGE = Path(__file__).resolve().parents[2] / "assistants" / "knowledge"
SUPPORT = """name: Support Bot
model: gpt-4o
instructions: Answer from the knowledge base and cite it.
tools:
  - file_search:
      vector_store: {name: Support knowledge base, files: [knowledge/*.md]}
"""
TUTOR = "name: Math Tutor\nmodel: gpt-4o\ninstructions: Run code to answer.\ntools: [code_interpreter]\n"
RULES = """rules:
  - match: "6 times 7"
    assistant: math-tutor
    code: "print(6 * 7)"
    then: "It is {output}."
  - match: "^hello"
    assistant: math-tutor
    reply: "Hello!"
"""


def project(root: Path, key: str, spec: str, conversations: str, rules: str | None = None) -> Path:
    (root / "assistants").mkdir(parents=True)
    (root / "asstctl.yaml").write_text("project: tools\n")
    (root / "assistants" / f"{key}.yaml").write_text(spec)
    (root / "assistants" / f"{key}.test.yaml").write_text(conversations)
    if rules:
        (root / "engine-rules.yaml").write_text(rules)
    return root


def apply_and_test(root: Path, monkeypatch, *args: str):
    monkeypatch.chdir(root)
    runner, env = CliRunner(), {"OPENAI_BASE_URL": None}
    applied = runner.invoke(cli, ["apply", "--yes"], env=env)
    assert applied.exit_code == 0, applied.output
    return runner.invoke(cli, ["test", "--output", "json", *args], env=env)


def by_name(result) -> dict:
    assert result.exit_code in (0, 1), result.output
    return {c["name"]: c for c in json.loads(result.stdout)["conversations"]}


def first_failure(conversation) -> str:
    return conversation["attempts"][0]["turns"][-1]["failures"][0]["reason"]


CITED = """conversations:
  - name: cites returns
    turns:
      - user: How long do I have to return an item?
        expect: {file_cited: [knowledge/returns.md, returns.md], regex: "30 days"}
  - name: does not cite shipping
    turns:
      - user: How long do I have to return an item?
        expect: {file_cited: knowledge/shipping.md}
"""


def test_file_cited_maps_the_citation_to_the_knowledge_file(tmp_path, monkeypatch):
    root = project(tmp_path / "p", "support-bot", SUPPORT, CITED)
    shutil.copytree(KNOWLEDGE, root / "assistants" / "knowledge")
    report = by_name(apply_and_test(root, monkeypatch))
    assert report["cites returns"]["passed"], json.dumps(report["cites returns"], indent=2)[:3000]
    reason = first_failure(report["does not cite shipping"])
    assert re.fullmatch(r'"knowledge/shipping\.md" was not cited; cited: returns\.md \(content [0-9a-f]{16}\)', reason)


def test_a_citation_of_an_outdated_upload_is_not_the_file_in_the_checkout(tmp_path, monkeypatch):
    root = project(tmp_path / "p", "support-bot", SUPPORT, CITED)
    shutil.copytree(KNOWLEDGE, root / "assistants" / "knowledge")
    monkeypatch.chdir(root)
    applied = CliRunner().invoke(cli, ["apply", "--yes"], env={"OPENAI_BASE_URL": None})
    assert applied.exit_code == 0, applied.output
    returns = root / "assistants" / "knowledge" / "returns.md"
    returns.write_text(returns.read_text() + "\nEdited after apply.\n")  # not applied: the store holds the old one
    result = CliRunner().invoke(cli, ["test", "--output", "json", "-k", "cites returns"], env={"OPENAI_BASE_URL": None})
    reason = first_failure(by_name(result)["cites returns"])
    assert re.fullmatch(r'"knowledge/returns\.md" was not cited; cited: returns\.md \(content [0-9a-f]{16}\)', reason)


CODE = """conversations:
  - name: runs code
    turns:
      - user: What is 6 times 7?
        expect: {code_ran: true, code_output_contains: "42", contains: "It is 42."}
  - name: wrong output
    turns:
      - user: What is 6 times 7?
        expect: {code_output_contains: ["42", "43"]}
  - name: no code
    turns:
      - user: hello there
        expect: {code_ran: false}
  - name: expects code
    turns:
      - user: hello again
        expect: {code_ran: true}
"""


@pytest.mark.timeout(300)
def test_code_ran_and_code_output_contains_read_the_run_steps(tmp_path, monkeypatch):
    assert shutil.which("bwrap"), "code_interpreter needs bubblewrap: apt-get install bubblewrap"
    root = project(tmp_path / "p", "math-tutor", TUTOR, CODE, RULES)
    report = by_name(apply_and_test(root, monkeypatch))
    assert report["runs code"]["passed"], json.dumps(report["runs code"], indent=2)[:3000]
    turn = report["runs code"]["attempts"][0]["turns"][0]
    assert turn["code"] == [{"input": "print(6 * 7)", "logs": "42\n"}] or turn["code"][0]["logs"].strip() == "42"
    assert first_failure(report["wrong output"]).startswith('"43" not in the code output; code output: "42')
    assert report["no code"]["passed"]
    assert first_failure(report["expects code"]) == "no code_interpreter call ran"
