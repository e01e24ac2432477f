"""README.md's five-minute tour works as written on this repository's example project: its read-only
commands (validate, plan with and without keys, status) run in a copy of the project."""

from __future__ import annotations

import re
import shlex
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from asstctl.cli import cli

ROOT = Path(__file__).resolve().parents[2]
READ_ONLY = ("validate", "plan", "status")


def tour_commands() -> list[list[str]]:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    tour = readme.split("## A five-minute tour", 1)[1]
    block = re.search(r"```sh\n(.*?)```", tour, re.DOTALL)[1]
    commands = [shlex.split(line.split("#", 1)[0]) for line in block.splitlines()]
    return [command[1:] for command in commands if command[:1] == ["asstctl"] and command[1] in READ_ONLY]


@pytest.fixture(scope="module")
def example(tmp_path_factory) -> Path:
    copy = tmp_path_factory.mktemp("examples")
    shutil.copy(ROOT / "asstctl.yaml", copy / "asstctl.yaml")
    shutil.copy(ROOT / "engine-rules.yaml", copy / "engine-rules.yaml")
    shutil.copytree(ROOT / "assistants", copy / "assistants")
    return copy


def test_the_tour_names_commands_of_each_read_only_kind():
    assert {command[0] for command in tour_commands()} == set(READ_ONLY)
    assert any(command[0] == "plan" and len(command) > 1 and not command[1].startswith("-")
               for command in tour_commands())


@pytest.mark.parametrize("command", tour_commands(), ids=" ".join)
def test_each_read_only_command_of_the_tour_works_on_the_example_project(example, command, monkeypatch):
    monkeypatch.chdir(example)
    result = CliRunner().invoke(cli, command, env={"OPENAI_BASE_URL": None, "NO_COLOR": "1"})
    allowed = (0, 2) if "--detailed-exitcode" in command else (0,)
    assert result.exit_code in allowed, result.output
    assert "Error" not in result.output
