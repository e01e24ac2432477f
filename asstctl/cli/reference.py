"""The CLI reference (docs/cli.md), generated from the commands' own ``--help``.

    python -m asstctl.cli.reference > docs/cli.md

tests/test_docs.py fails when docs/cli.md differs from what this prints. The help is rendered
at a fixed width, so the output does not depend on the terminal it runs in.
"""

from __future__ import annotations

import click

WIDTH = 100
HEADER = """\
# asstctl command reference

Generated from the commands' own `--help` by `python -m asstctl.cli.reference > docs/cli.md`;
do not edit by hand. Recipes: [CI](recipes/github-actions.md), [pre-commit](recipes/pre-commit.md),
[editor](recipes/editor.md), [shell completion](recipes/shell-completion.md).
"""


def context(command: click.Command, info_name: str, parent: click.Context | None = None) -> click.Context:
    """The context ``command --help`` runs in (its context_settings apply), at a fixed width."""
    return command.make_context(info_name, [], parent=parent, resilient_parsing=True,
                                terminal_width=WIDTH, max_content_width=WIDTH)


def command_names(group: click.Group) -> list[str]:
    """The commands the group lists (those whose module exists), in --help order."""
    return group.list_commands(context(group, "asstctl"))


def section(title: str, text: str) -> str:
    return f"## {title}\n\n```\n{text.rstrip()}\n```\n"


def reference(group: click.Group | None = None) -> str:
    """The whole reference: the group's help, then every command's."""
    from asstctl.cli import cli

    group = group or cli
    root = context(group, "asstctl")
    parts = [HEADER, section("asstctl", root.get_help())]
    for name in group.list_commands(root):
        command = group.get_command(root, name)
        parts.append(section(f"asstctl {name}", context(command, name, root).get_help()))
    return "\n".join(parts)


def main() -> None:
    click.echo(reference(), nl=False)


if __name__ == "__main__":
    main()
