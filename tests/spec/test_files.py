"""Files a project names are read safely: symlink loops, dangling links, FIFOs, devices, huge files and
paths outside the project are one `path:line:col` problem each, never a hang, a traceback or a read of
gigabytes (real symlinks and FIFOs in tmp dirs; every test is bounded by a timeout)."""

from __future__ import annotations

import os

import pytest
from click.testing import CliRunner

from asstctl.cli import cli
from asstctl.spec.files import MAX_TEXT_BYTES
from tests.spec.conftest import problems, write

pytestmark = pytest.mark.timeout(30)


def validate(root) -> tuple[int, list[str]]:
    result = CliRunner().invoke(cli, ["-C", str(root), "validate"])
    assert "Traceback" not in result.output and not isinstance(result.exception, (OSError, MemoryError))
    return result.exit_code, [line for line in result.output.splitlines() if line.startswith("assistants/")]


def test_a_knowledge_glob_through_symlink_loops_ends_and_finds_each_file_once(project):
    docs = project / "assistants" / "docs"
    (docs / "a" / "b").mkdir(parents=True)
    (docs / "top.md").write_text("top")
    (docs / "a" / "b" / "deep.md").write_text("deep")
    os.symlink("..", docs / "a" / "b" / "up")          # three loops, each back to a folder above
    os.symlink("../..", docs / "a" / "b" / "upup")
    os.symlink("../../docs", docs / "a" / "again")
    write(project, {"bot.yaml": "model: gpt-4o\ntools:\n  - code_interpreter: {files: ['docs/**/*.md', 'docs/**']}\n"})
    from asstctl.spec.project import load_project
    from asstctl.spec.loader import load_specs

    [spec] = load_specs(load_project(project))
    assert sorted(f.label for f in spec.code_files) == ["assistants/docs/a/b/deep.md", "assistants/docs/top.md"]


def test_instructions_file_at_a_symlink_loop_a_fifo_or_a_device_is_one_error_each(project):
    (project / "asstctl.yaml").write_text("project: demo\nallow_paths: [/dev]\n")
    os.symlink("loop.md", project / "assistants" / "loop.md")
    os.mkfifo(project / "assistants" / "pipe.md")
    write(project, {
        "a.yaml": "model: gpt-4o\ninstructions_file: loop.md\n",
        "b.yaml": "model: gpt-4o\ninstructions_file: pipe.md\n",
        "c.yaml": "model: gpt-4o\ninstructions_file: /dev/zero\n",
        "d.yaml": "model: gpt-4o\ntools:\n  - function: {name: f, parameters_file: pipe.md}\n",
    })
    code, lines = validate(project)
    assert code == 1
    assert lines == [
        "assistants/a.yaml:2:1: `instructions_file` points to assistants/loop.md, which is a symbolic link loop "
        "(the links point at each other); fix or remove the link",
        "assistants/b.yaml:2:1: `instructions_file` points to assistants/pipe.md, which is a named pipe (FIFO), "
        "not a regular file",
        "assistants/c.yaml:2:1: `instructions_file` points to /dev/zero, which is a device, not a regular file",
        "assistants/d.yaml:3:25: `parameters_file` points to assistants/pipe.md, which is a named pipe (FIFO), "
        "not a regular file",
    ]


def test_knowledge_at_a_fifo_a_device_or_a_dangling_link_is_an_error(project):
    (project / "asstctl.yaml").write_text("project: demo\nallow_paths: [/dev]\n")
    os.mkfifo(project / "assistants" / "pipe.csv")
    os.symlink("gone.csv", project / "assistants" / "dangling.csv")
    found = problems(project, {"bot.yaml": "model: gpt-4o\ntools:\n  - code_interpreter:\n      files: "
                                           "[pipe.csv, /dev/zero, dangling.csv, '*.csv']\n"})
    assert [problem.split(": ", 1)[1] for problem in found] == [
        "assistants/pipe.csv is a named pipe (FIFO), not a regular file",
        "/dev/zero is a device, not a regular file",
        "assistants/dangling.csv is a symbolic link to gone.csv, which does not exist; fix or remove the link",
        "`*.csv` matches assistants/dangling.csv, which is a symbolic link to gone.csv, which does not exist; "
        "fix or remove the link",
    ]


def test_a_text_file_over_the_cap_is_refused_without_reading_it(project):
    big = project / "assistants" / "big.md"
    with open(big, "wb") as stream:
        stream.truncate(MAX_TEXT_BYTES + 1)  # sparse: nothing is written to disk
    [problem] = problems(project, {"bot.yaml": "model: gpt-4o\ninstructions_file: big.md\n"})
    assert problem == ("assistants/bot.yaml:2:1: `instructions_file` points to assistants/big.md, which is 16 MB; "
                       "asstctl reads files of at most 16 MB here")


def test_paths_outside_the_project_are_refused_unless_allowed(project, tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "style.md").write_text("Be brief.")
    (shared / "faq.md").write_text("faq")
    os.symlink(shared / "faq.md", project / "assistants" / "faq.md")  # a link inside that leads out
    spec = ("model: gpt-4o\ninstructions_file: ../../shared/style.md\ntools:\n"
            "  - code_interpreter: {files: [../../shared/*.md, faq.md, ../../../../../../../etc/passwd]}\n")
    found = problems(project, {"bot.yaml": spec})
    assert [problem.split(": ", 1)[0] for problem in found] == [
        "assistants/bot.yaml:2:1", "assistants/bot.yaml:4:32", "assistants/bot.yaml:4:51", "assistants/bot.yaml:4:59"]
    assert all("is outside the project" in problem for problem in found), found
    assert "add `allow_paths: [../shared]` to asstctl.yaml" in found[0]
    assert f"(it leads to {shared / 'faq.md'})" in found[2]
    (project / "asstctl.yaml").write_text("project: demo\nallow_paths: [../shared]\n")
    [left] = problems(project, {})
    assert left.startswith("assistants/bot.yaml:4:59: ") and "etc/passwd is outside the project" in left


def test_a_spec_that_is_a_dangling_link_a_loop_or_a_fifo_is_an_error_not_skipped(project):
    specs = project / "assistants"
    os.symlink("gone.yaml", specs / "dangling.yaml")
    os.symlink("looped.yaml", specs / "looped.yaml")
    os.mkfifo(specs / "piped.yaml")
    (specs / "folder.yaml").mkdir()
    code, lines = validate(project)
    assert code == 1
    assert lines == [
        "assistants/dangling.yaml:1:1: this file is a symbolic link to gone.yaml, which does not exist; "
        "fix or remove the link",
        "assistants/folder.yaml:1:1: this file is a directory, not a file",
        "assistants/looped.yaml:1:1: this file is a symbolic link loop (the links point at each other); "
        "fix or remove the link",
        "assistants/piped.yaml:1:1: this file is a named pipe (FIFO), not a regular file",
    ]


def test_a_conversation_file_and_asstctl_yaml_at_a_fifo_do_not_hang(project):
    os.mkfifo(project / "assistants" / "bot.test.yaml")
    write(project, {"bot.yaml": "model: gpt-4o\n"})
    code, lines = validate(project)
    assert code == 1 and lines == ["assistants/bot.test.yaml:1:1: this file is a named pipe (FIFO), not a regular file"]
    (project / "asstctl.yaml").unlink()
    os.mkfifo(project / "asstctl.yaml")
    result = CliRunner().invoke(cli, ["-C", str(project), "validate"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "asstctl.yaml:1:1: this file is a named pipe (FIFO), not a regular file" in result.output


def test_conversation_attachments_are_regular_files_inside_the_project(project):
    os.mkfifo(project / "assistants" / "pipe.txt")
    write(project, {"bot.yaml": "model: gpt-4o\n", "bot.test.yaml": (
        "conversations:\n  - name: a\n    turns:\n      - user: hi\n"
        "        attachments: [pipe.txt, ../../../../../../../../etc/passwd, gone.txt]\n")})
    code, lines = validate(project)
    assert code == 1 and len(lines) == 3, lines
    assert lines[0].endswith("pipe.txt is a named pipe (FIFO), not a regular file")
    assert "etc/passwd is outside the project" in lines[1] and lines[2].endswith("gone.txt does not exist")
