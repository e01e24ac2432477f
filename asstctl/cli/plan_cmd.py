"""``asstctl plan`` (alias ``diff``), ``apply`` and ``destroy``: thin wrappers over the reconciler
(asstctl.reconcile: plan → apply → report)."""

from __future__ import annotations

import sys

import click

from asstctl.cli.lock_cmd import lock_timeout_option


def target_options(command):
    command = click.option("--base-url", metavar="URL",
                           help="An Assistants-compatible endpoint, e.g. http://127.0.0.1:8321/v1 "
                                "(key from $OPENAI_API_KEY); not with an `api: agents` --target. "
                                "[default: the embedded server]")(command)
    return click.option("--target", "target_name", metavar="NAME",
                        help="A target defined in asstctl.yaml (one with `api: agents` is OpenAI's beta Agents "
                             "API: docs/agents.md).")(command)


def parallelism_option(command):
    return click.option("--parallelism", default=8, show_default=True, type=click.IntRange(1, 64), metavar="N",
                        help="Concurrent API calls.")(command)


def yes_option(command):
    return click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation (needed without a terminal).")(command)


def keys_argument(command):
    return click.argument("keys", nargs=-1, metavar="[KEY]...")(command)


OUTPUT_HELP = "json: a report of what was done (docs/plan-format.md), for scripts; text: for people."


@click.command()
@keys_argument
@target_options
@click.option("--prune", is_flag=True, help="Also delete this project's assistants and vector stores whose spec was removed, "
                                            "and duplicates.")
@click.option("--detailed-exitcode", is_flag=True, help="Exit 0: no changes, 1: error, 2: changes to apply.")
@click.option("--output", type=click.Choice(["text", "json"]), default="text", show_default=True,
              help="json: the versioned plan format of docs/plan-format.md.")
@click.option("--out", "out_file", metavar="FILE", type=click.Path(dir_okay=False),
              help="Also save the plan (JSON) for `asstctl apply FILE`.")
@click.pass_context
def plan(ctx, keys, target_name, base_url, prune, detailed_exitcode, output, out_file) -> None:
    """Show what `apply` would change; nothing is changed.

    With KEYs, only those assistants and their knowledge (their vector stores and uploads) are
    planned, like terraform's -target.

    \b
    Example:
        asstctl plan --detailed-exitcode --out plan.json && asstctl apply plan.json --yes
        asstctl plan triage faq
    """
    from asstctl.reconcile.plan import plan_for, save_plan
    from asstctl.spec.project import load_project
    from asstctl.reconcile.report import render_json
    from asstctl.backends.targets import open_target

    project = load_project()
    with open_target(project, target_name, base_url) as target:
        result = plan_for(project, target, prune=prune, keys=keys, warn=warn)
    if out_file:
        save_plan(result, out_file)
    click.echo(render_json(result) if output == "json" else shown(result), nl=False)
    if detailed_exitcode and result.has_changes():
        ctx.exit(2)


@click.command()
@click.argument("args", nargs=-1, metavar="[PLANFILE | KEY...]")
@target_options
@click.option("--prune", is_flag=True, help="Also delete this project's assistants and vector stores whose spec was removed, "
                                            "and duplicates.")
@yes_option
@parallelism_option
@click.option("--ingestion-timeout", default=300.0, show_default=True, type=click.FloatRange(min=0), metavar="SECONDS",
              help="How long to wait for vector store files to be ingested.")
@lock_timeout_option
@click.option("--output", type=click.Choice(["text", "json"]), default="text", show_default=True, help=OUTPUT_HELP)
def apply(args, target_name, base_url, prune, yes, parallelism, ingestion_timeout, use_lock, lock_timeout,
          output) -> None:
    """Make the target match the specs (or carry out a saved PLANFILE).

    A saved plan is applied only if the remote objects it was computed from did not change.
    With KEYs, only those assistants and their knowledge are applied. An existing file
    argument is a saved plan; anything else is a key.
    Knowledge files are uploaded first and the apply waits for their ingestion; a file that
    fails it is named by its path and makes the apply fail.

    Applies and destroys of one project on one target run one at a time: a second one is
    refused at once, naming who holds the lock since when, or waits for it (--lock-timeout).

    \b
    Example:
        asstctl apply --yes
        asstctl apply triage --yes --lock-timeout 2m --output json
    """
    from asstctl.cli.lock_cmd import locked
    from asstctl.reconcile.plan import plan_for
    from asstctl.spec.project import load_project
    from asstctl.backends.targets import open_target

    planfile, keys = split_args(args)
    if planfile and prune:
        raise click.UsageError("--prune cannot change a saved plan: pass it to `asstctl plan` instead")
    project = load_project()
    with open_target(project, target_name, base_url) as target, \
            locked(target, project.name, "apply", lock_timeout, use_lock):
        result = saved_plan(planfile, project, target) if planfile else \
            plan_for(project, target, prune=prune, keys=keys, warn=warn)  # a deploy job may run only apply
        run_plan(result, target.client, output, yes, "Apply these changes?", parallelism=parallelism,
                 verify=bool(planfile) or not yes, ingestion_timeout=ingestion_timeout, root=project.root)


@click.command()
@keys_argument
@target_options
@yes_option
@parallelism_option
@lock_timeout_option
@click.option("--output", type=click.Choice(["text", "json"]), default="text", show_default=True, help=OUTPUT_HELP)
def destroy(keys, target_name, base_url, yes, parallelism, use_lock, lock_timeout, output) -> None:
    """Delete every assistant, vector store and upload this project manages (never anyone else's).

    With KEYs, only those assistants and the knowledge no other assistant uses.
    Objects whose spec sets `prevent_destroy: true` are kept and reported as errors.

    \b
    Example:
        asstctl destroy --base-url http://127.0.0.1:8321/v1 --yes
        asstctl destroy old-bot --yes --output json
    """
    from asstctl.cli.lock_cmd import locked
    from asstctl.reconcile.plan import plan_for
    from asstctl.spec.project import load_project
    from asstctl.backends.targets import open_target

    project = load_project()
    with open_target(project, target_name, base_url) as target, \
            locked(target, project.name, "destroy", lock_timeout, use_lock):
        result = plan_for(project, target, destroy=True, keys=keys)
        run_plan(result, target.client, output, yes, "Destroy these assistants?", parallelism=parallelism,
                 verify=not yes, root=project.root, run_always=bool(result.actions))


def warn(warning: str) -> None:
    """A warning of plan or apply (a model the target does not list), on stderr: stdout may be a JSON report."""
    click.echo(f"Warning: {warning}", err=True)


def split_args(args: tuple[str, ...]) -> tuple[str | None, list[str]]:
    """(plan file, keys): an argument naming an existing file is a saved plan, anything else a key."""
    import os

    files = [arg for arg in args if os.path.isfile(arg)]
    missing = [arg for arg in args if arg not in files and (arg.endswith(".json") or os.sep in arg)]
    if missing:
        raise click.UsageError(f"{missing[0]}: no such plan file (assistant keys have no `/` nor `.json`)")
    if not files:
        return None, list(args)
    if len(args) > 1:
        raise click.UsageError(f"pass either one saved plan or assistant keys, not both ({files[0]} is a file)")
    return files[0], []


def run_plan(result, client, output: str, yes: bool, question: str, run_always: bool = False, **options) -> None:
    """Show the plan, ask, carry it out and report (text or JSON)."""
    from asstctl.reconcile.report import render_report

    as_json = output == "json"
    if not as_json or (result.has_changes() and not yes):
        click.echo(shown(result), nl=False, err=as_json)  # people read it; stdout stays one JSON document
    outcome = None
    if result.has_changes() or run_always:
        if result.has_changes():
            confirm(yes, question, err=as_json)
        outcome = execute(result, client, output=output, **options)
    if as_json:
        click.echo(render_report(result, outcome), nl=False)
    if outcome is not None:
        failed(outcome)


def saved_plan(planfile: str, project, target):
    from asstctl.reconcile.apply import check_plan_target
    from asstctl.reconcile.plan import load_plan

    saved = load_plan(planfile)
    check_plan_target(saved, project.name, target.label)
    return saved


def shown(result) -> str:
    from asstctl.cli.output import use_color
    from asstctl.reconcile.report import render_text

    return render_text(result, color=use_color(sys.stdout))


def confirm(yes: bool, question: str, err: bool = False) -> None:
    from asstctl.errors import AsstctlError

    if yes:
        return
    if not sys.stdin.isatty():
        raise AsstctlError("stdin is not a terminal, so asstctl cannot ask for confirmation: re-run with --yes")
    if not click.confirm(question, default=False, err=err):
        raise AsstctlError("cancelled: nothing was changed")


def execute(result, client, parallelism: int, verify: bool, ingestion_timeout: float | None = None, root=None,
            output: str = "text"):
    """Apply the plan and return its ApplyResult; ``verify``: first check the remote did not change since it
    was planned (a saved plan, or a plan a person looked at for a while before confirming)."""
    from asstctl.reconcile.apply import apply_plan, verified_remote
    from asstctl.cli.output import progress, use_color
    from asstctl.reconcile.report import render_result

    if verify:
        verified_remote(result, client)
    outcome = apply_plan(result, client, parallelism=parallelism, ingestion_timeout=ingestion_timeout,
                         progress=progress, root=root)
    if output != "json":
        click.echo(render_result(outcome, color=use_color(sys.stdout), mode=result.mode), nl=False)
    return outcome


def failed(outcome) -> None:
    from asstctl.errors import ApplyError

    if outcome.failed:
        keys = ", ".join(sorted({failure.key for failure in outcome.failed}))
        raise ApplyError(f"{len(outcome.failed)} operation(s) failed ({keys}); the others were carried out",
                         hint="Fix the cause and run `asstctl apply` again: it only does what is still missing.")
