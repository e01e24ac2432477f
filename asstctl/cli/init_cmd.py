"""``asstctl init``: scaffold a new project (asstctl.spec.scaffold does the work)."""

from __future__ import annotations

import shlex
from pathlib import Path

import click

from asstctl.cli.output import style

PROJECT_NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"


def _project_name(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    import re

    if value is not None and not re.match(PROJECT_NAME, value):
        raise click.BadParameter("letters, digits, '.', '_' and '-' only, starting with a letter or digit")
    return value


@click.command()
@click.argument("directory", default=".", type=click.Path(file_okay=False, path_type=Path))
@click.option("--project", metavar="NAME", callback=_project_name,
              help="Project name.  [default: the directory's name]")
@click.option("--force", is_flag=True, help="Overwrite files that already exist.")
def init(directory: Path, project: str | None, force: bool) -> None:
    """Create a new asstctl project in DIRECTORY (default: the current one).

    Writes asstctl.yaml, an example assistant (assistants/assistant.yaml) with its smoke-test
    conversation (assistants/assistant.test.yaml), engine-rules.yaml so that conversation passes
    offline, a GitHub Actions workflow (.github/workflows/asstctl.yml), and adds .asstctl/ to
    .gitignore. Existing files are never overwritten without --force.

    \b
    Example:
        asstctl init support-bots
        cd support-bots && asstctl plan
    """
    from asstctl.spec.scaffold import scaffold

    result = scaffold(directory, project=project, force=force)
    click.echo(f"Created asstctl project {style(result.project, 'cyan', bold=True)} in {directory}:")
    for path in result.created:
        _line("created", "green", path)
    for path in result.overwritten:
        _line("overwritten", "yellow", path)
    if result.gitignore != "unchanged":
        _line(result.gitignore, "green", ".gitignore")
    click.echo(f"\nNext: {next_step(directory)}")


def _line(action: str, color: str, path: str) -> None:
    click.echo(f"  {style(f'{action:<12}', color)} {path}")


def next_step(directory: Path) -> str:
    if Path(directory) == Path("."):
        return "asstctl plan"
    return f"cd {shlex.quote(str(directory))} && asstctl plan"
