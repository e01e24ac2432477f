"""``asstctl status`` (what the project manages on a target: asstctl.reconcile.status) and ``asstctl force-unlock``
(the project lock: asstctl.reconcile.lock)."""

from __future__ import annotations

import click

from asstctl.cli.plan_cmd import confirm, target_options, yes_option


@click.command()
@target_options
@click.option("--output", type=click.Choice(["text", "json"]), default="text", show_default=True,
              help="json: {project, target, lock, in_sync, counts, objects: [{object, key, id, state, spec}]}.")
@click.option("--detailed-exitcode", is_flag=True, help="Exit 0: everything in sync, 1: error, 2: anything else.")
@click.pass_context
def status(ctx, target_name, base_url, output, detailed_exitcode) -> None:
    """Show what the project manages on the target, and whether it matches the specs.

    One row per assistant and vector store: key, id, state, spec file. States: in sync, drift
    (changed outside asstctl), pending (spec changed, not applied), missing (never applied),
    duplicate and no spec (both deleted by `apply --prune`). Also shows who holds the project's
    lock, if anyone. Nothing is changed. Exit codes: 0 status shown, 1 error; with
    --detailed-exitcode, 2 when anything is not in sync.

    \b
    Example:
        asstctl status --output json --detailed-exitcode
    """
    from asstctl.reconcile import status as report
    from asstctl.reconcile.lock import live_now
    from asstctl.reconcile.plan import plan_for
    from asstctl.spec.project import load_project
    from asstctl.backends.targets import open_target

    project = load_project()
    with open_target(project, target_name, base_url) as target:
        result = plan_for(project, target)
        locks = live_now(target.client, project.name)
    table = report.rows(result, project.root)
    click.echo((report.render_json if output == "json" else report.render_text)(result, table, locks), nl=False)
    if detailed_exitcode and not report.in_sync(table):
        ctx.exit(2)


@click.command("force-unlock")
@click.argument("lock_id", required=False, metavar="[LOCK_ID]")
@target_options
@yes_option
def force_unlock(lock_id, target_name, base_url, yes) -> None:
    """Remove the project's lock left by an apply or destroy that crashed.

    A lock expires by itself two minutes after its holder stopped renewing it (at once for an apply
    on the same machine, once the holder's process is gone); this removes it at once. Without LOCK_ID, every lock of the project on the target is listed and removed.
    Removing the lock of an apply that still runs lets a second one run beside it: check first.

    \b
    Example:
        asstctl force-unlock vs_0123abcd --yes
    """
    from asstctl.reconcile.lock import delete_lock, find_locks, iso
    from asstctl.spec.project import load_project
    from asstctl.backends.targets import open_target

    project = load_project()
    with open_target(project, target_name, base_url) as target:
        locks = find_locks(target.client, project.name, lock_id)
        if not locks:
            click.echo(f"project {project.name} is not locked on {target.label}")
            return
        for info in locks:
            click.echo(f"lock {info.id}: {info.describe()}, expires {iso(info.expires)}")
        confirm(yes, f"Remove {'this lock' if len(locks) == 1 else f'these {len(locks)} locks'}?")
        for info in locks:
            delete_lock(target.client, info.id)
            click.echo(f"removed lock {info.id}")
