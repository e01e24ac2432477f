"""``asstctl plan`` (alias ``diff``), ``apply`` and ``destroy``: thin wrappers over the reconciler
(asstctl.plan → asstctl.apply → asstctl.report)."""

from __future__ import annotations

import sys

import click


def target_options(command):
    command = click.option("--base-url", metavar="URL",
                           help="An Assistants-compatible endpoint, e.g. http://127.0.0.1:8321/v1 "
                                "(key from $OPENAI_API_KEY). [default: the embedded server]")(command)
    return click.option("--target", "target_name", metavar="NAME",
                        help="A target defined in asstctl.yaml.")(command)


def parallelism_option(command):
    return click.option("--parallelism", default=8, show_default=True, type=click.IntRange(1, 64), metavar="N",
                        help="Concurrent API calls.")(command)


def yes_option(command):
    return click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation (needed without a terminal).")(command)


@click.command()
@target_options
@click.option("--prune", is_flag=True, help="Also delete this project's assistants and vector stores whose spec was removed.")
@click.option("--detailed-exitcode", is_flag=True, help="Exit 0: no changes, 1: error, 2: changes to apply.")
@click.option("--output", type=click.Choice(["text", "json"]), default="text", show_default=True,
              help="json: the versioned plan format of docs/plan-format.md.")
@click.option("--out", "out_file", metavar="FILE", type=click.Path(dir_okay=False),
              help="Also save the plan (JSON) for `asstctl apply FILE`.")
@click.pass_context
def plan(ctx, target_name, base_url, prune, detailed_exitcode, output, out_file) -> None:
    """Show what `apply` would change; nothing is changed.

    \b
    Example:
        asstctl plan --detailed-exitcode --out plan.json && asstctl apply plan.json --yes
    """
    from asstctl.plan import plan_for, save_plan
    from asstctl.project import load_project
    from asstctl.report import render_json
    from asstctl.targets import open_target

    project = load_project()
    with open_target(project, target_name, base_url) as target:
        result = plan_for(project, target, prune=prune)
    if out_file:
        save_plan(result, out_file)
    click.echo(render_json(result) if output == "json" else shown(result), nl=False)
    if detailed_exitcode and result.has_changes():
        ctx.exit(2)


@click.command()
@click.argument("planfile", required=False, type=click.Path(exists=True, dir_okay=False))
@target_options
@click.option("--prune", is_flag=True, help="Also delete this project's assistants and vector stores whose spec was removed.")
@yes_option
@parallelism_option
@click.option("--ingestion-timeout", default=300.0, show_default=True, type=click.FloatRange(min=0), metavar="SECONDS",
              help="How long to wait for vector store files to be ingested.")
def apply(planfile, target_name, base_url, prune, yes, parallelism, ingestion_timeout) -> None:
    """Make the target match the specs (or carry out a saved PLANFILE).

    A saved plan is applied only if the remote objects it was computed from did not change.
    Knowledge files are uploaded first and the apply waits for their ingestion; a file that
    fails it is named by its path and makes the apply fail.

    \b
    Example:
        asstctl apply --yes
    """
    from asstctl.plan import plan_for
    from asstctl.project import load_project
    from asstctl.targets import open_target

    if planfile and prune:
        raise click.UsageError("--prune cannot change a saved plan: pass it to `asstctl plan` instead")
    project = load_project()
    with open_target(project, target_name, base_url) as target:
        result = saved_plan(planfile, project, target) if planfile else plan_for(project, target, prune=prune)
        click.echo(shown(result), nl=False)
        if result.has_changes():
            confirm(yes, "Apply these changes?")
            execute(result, target.client, parallelism, verify=bool(planfile) or not yes,
                    ingestion_timeout=ingestion_timeout, root=project.root)


@click.command()
@target_options
@yes_option
@parallelism_option
def destroy(target_name, base_url, yes, parallelism) -> None:
    """Delete every assistant, vector store and upload this project manages (never anyone else's).

    Objects whose spec sets `prevent_destroy: true` are kept and reported as errors.

    \b
    Example:
        asstctl destroy --base-url http://127.0.0.1:8321/v1 --yes
    """
    from asstctl.plan import plan_for
    from asstctl.project import load_project
    from asstctl.targets import open_target

    project = load_project()
    with open_target(project, target_name, base_url) as target:
        result = plan_for(project, target, destroy=True)
        click.echo(shown(result), nl=False)
        if result.actions:
            if result.has_changes():
                confirm(yes, "Destroy these assistants?")
            execute(result, target.client, parallelism, verify=not yes, root=project.root)


def saved_plan(planfile: str, project, target):
    from asstctl.apply import check_plan_target
    from asstctl.plan import load_plan

    saved = load_plan(planfile)
    check_plan_target(saved, project.name, target.label)
    return saved


def shown(result) -> str:
    from asstctl.cli.output import use_color
    from asstctl.report import render_text

    return render_text(result, color=use_color(sys.stdout))


def confirm(yes: bool, question: str) -> None:
    from asstctl.errors import AsstctlError

    if yes:
        return
    if not sys.stdin.isatty():
        raise AsstctlError("stdin is not a terminal, so asstctl cannot ask for confirmation: re-run with --yes")
    if not click.confirm(question, default=False):
        raise AsstctlError("cancelled: nothing was changed")


def execute(result, client, parallelism: int, verify: bool, ingestion_timeout: float | None = None, root=None) -> None:
    """Apply the plan; ``verify``: first check the remote did not change since it was planned
    (a saved plan, or a plan a person looked at for a while before confirming)."""
    from asstctl.apply import apply_plan, verified_remote
    from asstctl.errors import ApplyError
    from asstctl.cli.output import progress, use_color
    from asstctl.report import render_result

    if verify:
        verified_remote(result, client)
    outcome = apply_plan(result, client, parallelism=parallelism, ingestion_timeout=ingestion_timeout,
                         progress=progress, root=root)
    click.echo(render_result(outcome, color=use_color(sys.stdout)), nl=False)
    if outcome.failed:
        keys = ", ".join(sorted({failure.key for failure in outcome.failed}))
        raise ApplyError(f"{len(outcome.failed)} operation(s) failed ({keys}); the others were carried out",
                         hint="Fix the cause and run `asstctl apply` again: it only does what is still missing.")
