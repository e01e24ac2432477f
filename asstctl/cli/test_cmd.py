"""``asstctl test``: run the smoke-test conversations against deployed assistants."""

from __future__ import annotations

import json
from pathlib import Path

import click

from asstctl.cli.output import progress, style
from asstctl.cli.plan_cmd import target_options


@click.command()
@click.argument("files", nargs=-1, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@target_options
@click.option("-k", "patterns", multiple=True, metavar="PATTERN",
              help="Only conversations whose `<assistant>/<name>` contains PATTERN (repeatable).")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=60, show_default=True,
              metavar="SECONDS", help="Per-run limit.")
@click.option("--parallel", type=click.IntRange(1, 64), default=1, show_default=True, metavar="N",
              help="Conversations run at once.")
@click.option("--repeat", type=click.IntRange(min=1), default=1, show_default=True, metavar="N",
              help="Run every conversation N times (each on a fresh thread); those that pass some attempts "
                   "and fail others are flagged FLAKY.")
@click.option("--min-pass-rate", type=click.FloatRange(0, 1), default=1.0, show_default=True, metavar="R",
              help="Share of the --repeat attempts that must pass.")
@click.option("--keep-threads", is_flag=True, help="Keep the test threads (and uploaded files) for inspection.")
@click.option("--junit-xml", type=click.Path(dir_okay=False, path_type=Path), metavar="PATH",
              help="Also write a JUnit XML report (one testcase per conversation).")
@click.option("--output", type=click.Choice(["text", "json"]), default="text", show_default=True,
              help="json: every turn with its reply, latency and token usage; tokens, latency and cost per "
                   "conversation.")
def test(files, target_name, base_url, patterns, timeout, parallel, repeat, min_pass_rate, keep_threads, junit_xml,
         output) -> None:
    """Run the conversations of assistants/*.test.yaml against the deployed assistants.

    Every conversation reports its tokens and latency, and its cost when asstctl.yaml has
    test.prices (per 1M tokens). rubric: and similar: expectations are graded by a model
    through engine.upstream (test.grader.model, engine.embeddings.model).

    Exit status: 0 all passed, 1 a conversation failed, 2 usage or configuration error.

    \b
    Example:
        asstctl apply --yes && asstctl test --junit-xml report.xml
    """
    from asstctl.spec.project import load_project
    from asstctl.testing.runner import RunOptions, test_project
    from asstctl.testing.testreport import report_json, summary_lines

    options = RunOptions(timeout=timeout, parallel=parallel, repeat=repeat, min_pass_rate=min_pass_rate,
                         keep_threads=keep_threads, progress=progress if output == "text" else None)
    project = _project(load_project)
    report = test_project(project, options, files=list(files) or None, patterns=patterns, target=target_name,
                          base_url=base_url)
    if junit_xml:
        _write_junit(report, junit_xml)
    if output == "json":
        click.echo(json.dumps(report_json(report), indent=2, ensure_ascii=False))
    else:
        click.echo("\n".join(_coloured(line) for line in summary_lines(report)))
    click.get_current_context().exit(0 if report.passed else 1)


def _write_junit(report, path: Path) -> None:
    from asstctl.errors import AsstctlError
    from asstctl.testing.junit import write_junit

    try:
        write_junit(report, path)
    except AsstctlError as error:
        error.exit_code = 2
        raise


def _project(load_project):
    from asstctl.errors import ConfigError

    try:
        return load_project()
    except ConfigError as error:
        error.exit_code = 2
        raise


def _coloured(line: str) -> str:
    for word, colour in (("PASS", "green"), ("FAIL", "red")):
        if line.startswith(f"  {word}  "):
            return f"  {style(word, colour, bold=True)}{line[6:]}"
    return line
