"""The asstctl command line: a thin click layer over the library.

Commands live in their own modules and are imported only when invoked, so
``asstctl --help`` does not pay for the openai SDK or the server. Every module
here only parses options and calls the library; known errors are
``AsstctlError`` and become ``Error: ...`` with exit 1 (traceback with --debug).
The only package that imports click; may import every other package of asstctl.
"""

from __future__ import annotations

import importlib
import os
import sys
import warnings

import click

from asstctl import __version__

# name -> (module, attribute). Order here is the order in --help.
COMMANDS: dict[str, tuple[str, str]] = {
    "init": ("asstctl.cli.init_cmd", "init"),
    "validate": ("asstctl.cli.validate_cmd", "validate"),
    "schema": ("asstctl.cli.validate_cmd", "schema"),
    "plan": ("asstctl.cli.plan_cmd", "plan"),
    "apply": ("asstctl.cli.plan_cmd", "apply"),
    "destroy": ("asstctl.cli.plan_cmd", "destroy"),
    "status": ("asstctl.cli.status_cmd", "status"),
    "force-unlock": ("asstctl.cli.status_cmd", "force_unlock"),
    "import": ("asstctl.cli.porting_cmd", "import_"),
    "export": ("asstctl.cli.porting_cmd", "export"),
    "test": ("asstctl.cli.test_cmd", "test"),
    "serve": ("asstctl.cli.serve_cmd", "serve"),
}
ALIASES = {"diff": "plan"}


def silence_sdk_deprecation() -> None:
    """The SDK warns on every Assistants call; that is noise in asstctl's own output."""
    warnings.filterwarnings("ignore", message="deprecated", category=DeprecationWarning)
    warnings.filterwarnings("ignore", message="The Assistants API is deprecated", category=DeprecationWarning)


class LazyGroup(click.Group):
    """A click group that imports a command's module only when it is needed."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        name = ALIASES.get(name, name)
        if name not in COMMANDS:
            return None
        module_name, attr = COMMANDS[name]
        return getattr(importlib.import_module(module_name), attr)

    def invoke(self, ctx: click.Context):
        from asstctl.errors import AsstctlError

        try:
            return super().invoke(ctx)
        except AsstctlError as error:
            if ctx.obj and ctx.obj.get("debug"):
                raise
            report_error(error)
            ctx.exit(error.exit_code)


def report_error(error) -> None:
    click.echo(f"Error: {error.message}", err=True)
    if error.hint:
        click.echo(error.hint, err=True)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="asstctl")
@click.option("--debug", is_flag=True, envvar="ASSTCTL_DEBUG", help="Show tracebacks and HTTP request details (keys redacted).")
@click.option("-v", "--verbose", count=True, help="Log each step and HTTP request (repeatable).")
@click.option("--chdir", "-C", type=click.Path(file_okay=False), help="Run as if started in this directory.")
@click.pass_context
def cli(ctx: click.Context, debug: bool, verbose: int, chdir: str | None) -> None:
    """Assistants as code: plan, apply and test OpenAI-style assistants.

    \b
    Example:
        asstctl init && asstctl plan && asstctl apply --yes && asstctl test
    """
    silence_sdk_deprecation()
    if chdir:
        os.chdir(chdir)
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug
    ctx.obj["verbose"] = verbose
    from asstctl.cli.logs import configure

    configure(verbose, debug)


def main() -> None:
    silence_sdk_deprecation()
    cli(prog_name="asstctl")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
