"""The documentation keeps up with the CLI: every command has help with an example, is in the
generated reference docs/cli.md (which must be current) and in README.md; the recipes match
what asstctl ships."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import click
import pytest
import yaml
from click.testing import CliRunner

from asstctl.cli import cli
from asstctl.cli.reference import context, reference
from asstctl.spec.scaffold import templates, workflow

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
REGENERATE = "run python -m asstctl.cli.reference > docs/cli.md"
GROUP = context(cli, "asstctl")
COMMANDS = cli.list_commands(GROUP)


def command(name: str) -> click.Command:
    return cli.get_command(GROUP, name)


def test_there_are_commands_to_check():
    assert "init" in COMMANDS


@pytest.mark.parametrize("name", COMMANDS)
def test_command_has_help_with_an_example(name):
    help_text = command(name).help
    assert help_text and help_text.strip(), f"`asstctl {name}` has no help text (its docstring)"
    assert "Example" in help_text, f"`asstctl {name}` help has no 'Example:' block"


def test_group_help_has_an_example():
    assert "Example" in cli.help


@pytest.mark.parametrize("name", COMMANDS)
def test_command_is_in_the_reference(name):
    assert f"\n## asstctl {name}\n" in (DOCS / "cli.md").read_text(encoding="utf-8"), \
        f"`asstctl {name}` is not in docs/cli.md: {REGENERATE}"


def test_reference_is_current():
    assert (DOCS / "cli.md").read_text(encoding="utf-8") == reference(), f"docs/cli.md is stale: {REGENERATE}"


@pytest.mark.parametrize("name", COMMANDS)
def test_command_is_mentioned_in_the_readme(name):
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert re.search(rf"\basstctl {re.escape(name)}\b", readme), f"README.md never mentions `asstctl {name}`"


def test_reference_is_the_help_the_user_sees():
    text = reference()
    assert "-h, --help" in text  # the group's context settings apply
    assert "Example:\n      asstctl init" in text


def test_github_actions_recipe_shows_the_workflow_init_writes():
    recipe = (DOCS / "recipes/github-actions.md").read_text(encoding="utf-8")
    blocks = [m[1] for m in re.findall(r"^(`{3,})yaml\n(.*?)^\1$", recipe, re.S | re.M)]
    assert blocks and blocks[0] == workflow(), "docs/recipes/github-actions.md: the first block must be " \
                                               "asstctl.spec.scaffold.workflow()"
    for block in blocks:
        yaml.safe_load(block)


def test_pre_commit_hook():
    [hook] = yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text(encoding="utf-8"))
    assert hook["id"] == "asstctl-validate" and hook["entry"] == "asstctl validate"
    assert hook["pass_filenames"] is False
    files = re.compile(hook["files"])
    for path in ("assistants/bot.yaml", "assistants/bot.test.yml", "asstctl.yaml"):
        assert files.search(path), path
    for path in ("README.md", "docs/asstctl.yaml.md", "other/bot.yaml", "asstctl.yaml.bak"):
        assert not files.search(path), path
    assert hook["files"] in (DOCS / "recipes/pre-commit.md").read_text(encoding="utf-8")


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_shell_completion_recipe_works(shell):
    recipe = (DOCS / "recipes/shell-completion.md").read_text(encoding="utf-8")
    assert f"_ASSTCTL_COMPLETE={shell}_source asstctl" in recipe
    script = subprocess.run(
        [sys.executable, "-c", "from asstctl.cli import main; main()"],
        env={**os.environ, "_ASSTCTL_COMPLETE": f"{shell}_source"},
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout
    assert "_ASSTCTL_COMPLETE" in script and "asstctl" in script


def test_editor_recipe_commands_exist():
    recipe = (DOCS / "recipes/editor.md").read_text(encoding="utf-8")
    assert "asstctl schema > .asstctl/spec.schema.json" in recipe
    assert "# yaml-language-server: $schema=../.asstctl/spec.schema.json" in recipe
    if "schema" not in COMMANDS:
        pytest.skip("`asstctl schema` does not exist yet (asstctl.cli.validate_cmd)")
    import jsonschema

    result = CliRunner().invoke(cli, ["schema"])
    assert result.exit_code == 0, result.output
    schema = json.loads(result.stdout)
    jsonschema.Draft202012Validator(schema).validate(yaml.safe_load(templates("demo")["assistants/assistant.yaml"]))
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft202012Validator(schema).validate({"model": "gpt-4o", "nmae": "typo"})


@pytest.mark.parametrize("page", ["cli.md", *(f"recipes/{p.name}" for p in sorted((DOCS / "recipes").glob("*.md")))])
def test_relative_links_resolve(page):
    path = DOCS / page
    for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", path.read_text(encoding="utf-8")):
        assert (path.parent / target).exists(), f"docs/{page}: link to {target}, which does not exist"
