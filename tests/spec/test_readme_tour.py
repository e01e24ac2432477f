"""README.md's five-minute tour works as written: its block runs line by line, in order, from `asstctl init demo
&& cd demo` on, in an empty directory (every line but the last, `asstctl serve`, which runs until stopped)."""

from __future__ import annotations

import io
import re
import shlex
from pathlib import Path

from click.testing import CliRunner

from asstctl.cli import cli

ROOT = Path(__file__).resolve().parents[2]


def tour_lines() -> list[list[list[str]]]:
    """Each line of the tour's block: its commands (split on `&&`), each as its words."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    tour = readme.split("## A five-minute tour", 1)[1]
    block = re.search(r"```sh\n(.*?)```", tour, re.DOTALL)[1]
    lines = [line.split("#", 1)[0].strip() for line in block.splitlines()]
    return [[shlex.split(part) for part in line.split("&&")] for line in lines if line]


class Terminal(io.BytesIO):
    """A person at a terminal: `apply` asks them (it refuses to ask a pipe), they answer."""

    def isatty(self) -> bool:
        return True


def test_the_tour_runs_as_written_in_order_from_init(tmp_path, monkeypatch):
    lines = tour_lines()
    assert lines[0][0][:2] == ["asstctl", "init"] and lines[0][1][0] == "cd", "the tour starts with init && cd"
    assert lines[-1] == [["asstctl", "serve"]], "only the last line, serve, is left out"
    monkeypatch.chdir(tmp_path)
    ran = []
    for line in lines[:-1]:
        for words in line:
            if words[0] == "cd":
                monkeypatch.chdir(words[1])
                continue
            assert words[0] == "asstctl", words
            result = CliRunner().invoke(cli, words[1:], input=Terminal(b"y\n"),
                                        env={"OPENAI_BASE_URL": None, "NO_COLOR": "1"})
            allowed = (0, 2) if "--detailed-exitcode" in words else (0,)
            assert result.exit_code in allowed, f"{shlex.join(words)}:\n{result.output}"
            assert "Error" not in result.output, result.output
            ran.append((words[1], result.output))
    outputs = dict(ran)
    assert [command for command, _ in ran] == ["init", "validate", "plan", "apply", "plan", "plan", "status", "test",
                                               "export"]
    assert "Apply complete: 1 created" in outputs["apply"]
    assert "No changes." in ran[5][1] and "= no-op assistant" in ran[5][1], "plan KEY after apply"
    assert "in sync" in outputs["status"]
    assert (Path.cwd() / "junit.xml").is_file() and "0 failed" in outputs["test"]


def test_the_keys_the_readme_names_are_keys_of_a_project_it_shows():
    """`asstctl plan/apply/destroy KEY...` anywhere in README.md names assistants of `asstctl init`'s project
    (`assistant`) or of this repository's example project (assistants/*.yaml), not made-up ones."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    known = {"assistant"} | {path.name.removesuffix(".yaml") for path in (ROOT / "assistants").glob("*.yaml")
                             if not path.name.endswith(".test.yaml")}
    named = [(match[0], word) for match in re.finditer(r"asstctl (?:plan|apply|destroy)((?: [a-z][\w-]*(?![\w.]))+)", readme)
             for word in match[1].split()]
    assert ("asstctl apply support-bot weather-bot", "weather-bot") in named
    assert [(command, key) for command, key in named if key not in known] == []
