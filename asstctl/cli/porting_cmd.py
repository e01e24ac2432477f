"""``asstctl import`` and ``export``: thin wrappers over asstctl.reconcile.porting."""

from __future__ import annotations

import click

from asstctl.cli.plan_cmd import confirm, target_options, yes_option

FORCE_HELP = "Overwrite existing spec files."


@click.command("import")
@click.argument("key")
@click.argument("assistant_id")
@target_options
@click.option("--force", is_flag=True, help="Overwrite assistants/KEY.yaml if it exists.")
def import_(key, assistant_id, target_name, base_url, force) -> None:
    """Adopt an existing assistant: write assistants/KEY.yaml from it and tag it as this project's.

    Naming KEY and ASSISTANT_ID is the confirmation (like `terraform import`): there is no prompt.
    The assistant's only change is its metadata: asstctl's ownership tags are added to its own keys,
    so that `asstctl plan` then shows no change (and `apply --prune`, `destroy` manage it from now on).
    Refused for another asstctl project's assistant, a KEY already in use, and an existing file
    (unless --force). The API does not return `reasoning_effort`: add it to the spec if the assistant
    uses one.

    \b
    Example:
        asstctl import support-bot asst_abc123 && asstctl plan --detailed-exitcode
    """
    from asstctl.ownership import is_reserved
    from asstctl.reconcile.porting import import_assistant
    from asstctl.spec.project import load_project
    from asstctl.spec.loader import shown
    from asstctl.backends.targets import open_target

    project = load_project()
    with open_target(project, target_name, base_url) as target:
        done = import_assistant(project, target.client, key, assistant_id, force=force)
    click.echo(f"Wrote {shown(done.path)} from {assistant_id}.")
    if done.metadata is None:
        click.echo(f"{assistant_id} was already this project's `{key}`: not changed.")
    else:
        tags = ", ".join(f"{name}={value}" for name, value in done.metadata.items() if is_reserved(name))
        click.echo(f"Tagged {assistant_id} as this project's `{key}` (its metadata, own keys kept): {tags}")
    click.echo(drift_note(key) if done.drift else f"`asstctl plan` now shows no change for `{key}`.")


@click.command()
@click.argument("keys", nargs=-1, metavar="[KEY]...")
@target_options
@click.option("--all", "include_unmanaged", is_flag=True,
              help="Also unmanaged assistants (keys from their names), which are adopted: tagged as this "
                   "project's after a confirmation.")
@click.option("--dir", "out_dir", metavar="DIR", type=click.Path(file_okay=False),
              help="Write the specs here instead of the specs directory; nothing is adopted. [default: assistants/]")
@click.option("--force", is_flag=True, help=FORCE_HELP)
@yes_option
def export(keys, target_name, base_url, include_unmanaged, out_dir, force, yes) -> None:
    """Write specs of the assistants on the target: this project's (all, or those KEYs), e.g. to recover
    lost spec files; with --all also the unmanaged ones.

    Existing files are kept (--force overwrites them). An unmanaged assistant written into the specs
    directory is adopted like `asstctl import` does (only its metadata changes), so that `asstctl plan`
    is a no-op afterwards instead of planning a managed copy; adopting asks first (--yes, needed without
    a terminal). With --dir elsewhere nothing is adopted (`asstctl import KEY ID` adopts one).
    Other asstctl projects' assistants are never exported.

    \b
    Example:
        asstctl export --all --yes && asstctl plan --detailed-exitcode
    """
    from asstctl.errors import AsstctlError
    from asstctl.reconcile.porting import finish_export, prepare_export
    from asstctl.spec.project import load_project
    from asstctl.backends.targets import open_target

    if keys and include_unmanaged:
        raise click.UsageError("KEY arguments select this project's assistants; --all exports every one: use one or the other")
    project = load_project()
    with open_target(project, target_name, base_url) as target:
        batch = prepare_export(project, target.client, keys, include_unmanaged=include_unmanaged,
                               out_dir=out_dir, force=force)
        if batch.to_adopt():
            ask_to_adopt(batch, yes)
        finish_export(project, target.client, batch)
    report(batch, include_unmanaged)
    if batch.failures:
        raise AsstctlError(f"{len(batch.failures)} assistant(s) not exported:\n  " + "\n  ".join(batch.failures))


def ask_to_adopt(batch, yes: bool) -> None:
    click.echo("These unmanaged assistants will be adopted (their metadata gets this project's tags):")
    for item in batch.to_adopt():
        click.echo(f"  {item.obj['id']} {item.obj.get('name') or '(no name)'!r} as `{item.key}`")
    confirm(yes, "Adopt them and write their specs?")


def report(batch, include_unmanaged: bool) -> None:
    from asstctl.spec.loader import shown

    for item in batch.items:
        if item.skipped is None:
            how = f"adopted as `{item.key}`" if item.adopt else f"`{item.key}`"
            click.echo(f"Wrote {shown(item.path)} ({item.obj['id']}, {how})")
            if item.drift:
                click.echo(f"  {drift_note(item.key)}")
    for item in batch.kept():
        click.echo(f"Kept {shown(item.path)}: it exists (--force overwrites it)")
    written = batch.written()
    adopted = sum(1 for item in written if item.adopt)
    click.echo(f"Export: {len(written)} written ({adopted} adopted), {len(batch.kept())} kept, "
               f"{len(batch.failures)} failed.")
    if not batch.items and not include_unmanaged:
        click.echo("This project manages no assistant on this target (`--all` also exports unmanaged ones).")
    if batch.other_projects:
        click.echo(f"{batch.other_projects} assistant(s) of other asstctl projects were not exported.")


def drift_note(key: str) -> str:
    return (f"`{key}` was changed outside asstctl since its last apply: the spec shows it as it is now, "
            "and `asstctl apply` records that (its spec-hash tag only).")
