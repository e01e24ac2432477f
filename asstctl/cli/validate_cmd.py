"""``asstctl validate`` and ``asstctl schema``: offline checks of the spec files and their JSON Schema."""

from __future__ import annotations

import json
import re
from pathlib import Path

import click

_PROBLEM = re.compile(r"^(?P<file>.*?):(?P<line>\d+):(?P<col>\d+): (?P<message>.*)$", re.DOTALL)


@click.command()
@click.option("--output", type=click.Choice(["text", "json"]), default="text", show_default=True,
              help="`json`: {valid, specs, conversation_files, problems: [{file, line, col, message}]}.")
def validate(output: str) -> None:
    """Check every spec and conversation file of the project, and its engine rules, offline.

    Reports every problem at once as `path:line:col: message` and exits 1,
    or prints how many files are valid and exits 0. Needs no target, no key
    and no network: run it in pre-commit hooks and CI before `plan`.

    \b
    Example:
        asstctl validate
        asstctl validate --output json | jq '.problems[].message'
    """
    from asstctl.testing.conversations import conversation_files, orphan_problems, validate_conversations
    from asstctl.spec.project import load_project
    from asstctl.spec.rules_check import rules_problems
    from asstctl.spec.loader import spec_files, validate_project

    project = load_project()
    problems = (validate_project(project) + validate_conversations(project) + orphan_problems(project)
                + rules_problems(project))
    specs, conversations = len(spec_files(project)), len(conversation_files(project))
    if output == "json":
        click.echo(json.dumps(_report(problems, specs, conversations), indent=2))
    else:
        _echo_text(problems, specs, conversations)
    if problems:
        raise click.exceptions.Exit(1)


def _echo_text(problems: list[str], specs: int, conversations: int) -> None:
    for problem in problems:
        click.echo(problem)
    if problems:
        click.echo(f"{len(problems)} problem{'s' if len(problems) != 1 else ''} found", err=True)
        return
    click.echo(f"{specs} spec{'s' if specs != 1 else ''} valid, "
               f"{conversations} conversation file{'s' if conversations != 1 else ''} valid")


def _report(problems: list[str], specs: int, conversations: int) -> dict:
    return {"valid": not problems, "specs": specs, "conversation_files": conversations,
            "problems": [_split(problem) for problem in problems]}


def _split(problem: str) -> dict:
    match = _PROBLEM.match(problem)
    if not match:
        return {"file": None, "line": None, "col": None, "message": problem}
    return {"file": match["file"], "line": int(match["line"]), "col": int(match["col"]), "message": match["message"]}


SCHEMA_KINDS = ("assistant", "vector-store", "conversation", "project")


@click.command()
@click.option("--kind", type=click.Choice(SCHEMA_KINDS), default="assistant", show_default=True,
              help="assistant: assistants/*.yaml; vector-store: vector_stores/*.yaml; "
                   "conversation: assistants/*.test.yaml; project: asstctl.yaml.")
@click.option("--out", "-o", "output", type=click.Path(dir_okay=False, path_type=Path), metavar="FILE",
              help="Write the schema to FILE (directories are created) instead of standard output.")
@click.option("--output", "old_output", type=click.Path(dir_okay=False, path_type=Path), hidden=True)
def schema(kind: str, output: Path | None, old_output: Path | None) -> None:
    """Print the JSON Schema (draft 2020-12) of spec files.

    Editors that use the YAML language server complete and check specs with
    it: add `# yaml-language-server: $schema=../.asstctl/spec.schema.json` as
    the first line of a spec (see docs/spec-format.md).

    \b
    Example:
        asstctl schema > .asstctl/spec.schema.json
        asstctl schema --kind conversation --out .asstctl/conversation.schema.json
    """
    if old_output is not None:  # the spelling before --output meant a format everywhere else
        click.echo("Note: `asstctl schema --output FILE` is deprecated: use --out FILE", err=True)
        output = output or old_output
    text = json.dumps(_schema_of(kind), indent=2, ensure_ascii=False) + "\n"
    if output is None:
        click.echo(text, nl=False)
        return
    from asstctl.outfile import writing

    with writing(output) as target:
        target.write_text(text, encoding="utf-8")
    click.echo(f"wrote {output}", err=True)


def _schema_of(kind: str) -> dict:
    if kind == "conversation":
        from asstctl.testing.conversations import SCHEMA

        return SCHEMA
    if kind == "project":
        from asstctl.spec.project_schema import project_schema

        return project_schema()
    from asstctl.spec.schema import spec_schema, vector_store_schema

    return vector_store_schema() if kind == "vector-store" else spec_schema()
