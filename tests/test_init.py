"""`asstctl init`: what it writes, that the result is a working project, and that it never clobbers."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from asstctl.cli import cli
from asstctl.spec.project import parse_project
from asstctl.spec.scaffold import templates

FILES = sorted(templates("x"))


def init(*args: str):
    return CliRunner().invoke(cli, ["init", *args])


@pytest.fixture
def project(tmp_path, monkeypatch) -> Path:
    """A fresh scaffold in tmp_path/Support Bots, with the working directory inside it."""
    result = init(str(tmp_path / "Support Bots"))
    assert result.exit_code == 0, result.output
    monkeypatch.chdir(tmp_path / "Support Bots")
    return tmp_path / "Support Bots"


def test_creates_the_project_files_and_names_the_next_step(tmp_path):
    result = init(str(tmp_path / "bots"))
    assert result.exit_code == 0, result.output
    for path in [*FILES, ".gitignore"]:
        assert (tmp_path / "bots" / path).is_file(), path
        assert path in result.output
    assert result.output.rstrip().endswith(f"Next: cd {tmp_path / 'bots'} && asstctl plan")
    assert "\x1b[" not in result.output  # not a terminal: no colour


def test_in_the_current_directory_the_next_step_is_plan(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = init()
    assert result.exit_code == 0, result.output
    assert result.output.rstrip().endswith("Next: asstctl plan")
    assert (tmp_path / "asstctl.yaml").is_file()


def test_project_file_names_the_project_after_the_directory(project):
    parsed = parse_project(project)
    assert parsed.name == "support-bots"
    assert parsed.engine_rules == project / "engine-rules.yaml"
    assert parsed.specs_dir == project / "assistants"
    assert parsed.targets == {}  # the examples are comments: the embedded server is the default
    text = (project / "asstctl.yaml").read_text()
    assert "#   azure:" in text and "azure: {api_version:" in text


def test_project_option_and_a_bad_name(tmp_path):
    assert init(str(tmp_path / "a"), "--project", "crm.bots_2").exit_code == 0
    assert parse_project(tmp_path / "a").name == "crm.bots_2"
    result = init(str(tmp_path / "b"), "--project", "no spaces")
    assert result.exit_code == 2
    assert "--project" in result.output and not (tmp_path / "b").exists()


def test_the_spec_and_conversation_are_consistent(project):
    spec = yaml.safe_load((project / "assistants/assistant.yaml").read_text())
    assert spec["model"] == "gpt-4o" and spec["name"] and spec["instructions"]
    [tool] = spec["tools"]
    assert tool["type"] == "function"
    conversations = yaml.safe_load((project / "assistants/assistant.test.yaml").read_text())["conversations"]
    called = [turn["expect"]["tool_called"]["name"] for c in conversations for turn in c["turns"]
              if "tool_called" in turn.get("expect", {})]
    assert called == [tool["function"]["name"]]


def test_engine_rules_load(project):
    from asstctl.server.engine.offline import load_rules

    rules = load_rules(str(project / "engine-rules.yaml"))
    assert len(rules) == 2


def test_workflow_plans_pull_requests_and_applies_and_tests_main(project):
    workflow = yaml.safe_load((project / ".github/workflows/asstctl.yml").read_text())
    triggers = workflow[True]  # PyYAML reads the key `on` as a boolean
    assert "pull_request" in triggers and triggers["push"]["branches"] == ["main"]
    plan = " ".join(step.get("run", "") for step in workflow["jobs"]["plan"]["steps"])
    deploy = " ".join(step.get("run", "") for step in workflow["jobs"]["deploy"]["steps"])
    assert "asstctl validate" in plan and "asstctl plan" in plan and "GITHUB_STEP_SUMMARY" in plan
    assert "asstctl apply --yes" in deploy and "--junit-xml" in deploy


def test_deploys_run_only_from_the_default_branch_and_pull_requests_never_see_the_deploy_key(project):
    text = (project / ".github/workflows/asstctl.yml").read_text()
    workflow = yaml.safe_load(text)
    plan, deploy = workflow["jobs"]["plan"], workflow["jobs"]["deploy"]
    assert "secrets.AZURE_OPENAI_API_KEY" not in yaml.safe_dump(plan) and "secrets." not in yaml.safe_dump(workflow["env"])
    assert deploy["env"]["AZURE_OPENAI_API_KEY"] == "${{ secrets.AZURE_OPENAI_API_KEY }}"
    assert plan["env"]["AZURE_OPENAI_API_KEY"] == "${{ secrets.ASSTCTL_PLAN_API_KEY }}"
    assert "workflow_dispatch" in workflow[True]
    assert deploy["if"] == ("github.event_name == 'push' || (github.event_name == 'workflow_dispatch' && "
                            "github.ref == format('refs/heads/{0}', github.event.repository.default_branch))")
    # (github.ref_name would also match a tag named like the default branch)


@pytest.mark.parametrize("uses", [True, False])
def test_the_deploy_job_installs_bubblewrap_when_an_assistant_uses_code_interpreter(project, tmp_path, uses):
    """The step's own script, with `sudo` a stand-in that records what it was asked to run. The specs are those of
    `specs:` in asstctl.yaml (here `bots/`, and `assistants/` holds a decoy); a comment or an instruction that
    names code_interpreter is no use of it."""
    import os
    import shutil
    import subprocess
    import sys

    workflow = yaml.safe_load((project / ".github/workflows/asstctl.yml").read_text())
    [step] = [step for step in workflow["jobs"]["deploy"]["steps"] if "bubblewrap" in step.get("name", "")]
    text = (project / "asstctl.yaml").read_text()
    (project / "asstctl.yaml").write_text(text.replace("specs: assistants ", "specs: bots       "))
    shutil.move(project / "assistants", project / "bots")
    (project / "assistants").mkdir()
    (project / "assistants" / "old.yaml").write_text("model: gpt-4o\ntools: [code_interpreter]\n")  # not a spec
    (project / "bots" / "calc.yaml").write_text(
        "# code_interpreter: not yet\nmodel: gpt-4o\ninstructions: Never say code_interpreter.\n"
        + ("tools: [code_interpreter]\n" if uses else "tools: [file_search]\n"))
    bin_dir, log = tmp_path / "bin", tmp_path / "sudo.log"
    bin_dir.mkdir()
    (bin_dir / "sudo").write_text(f'#!/bin/sh\necho "$@" >> {log}\n')
    (bin_dir / "sudo").chmod(0o755)
    # the job's Python, asstctl installed: a wrapper, not a symlink (a symlink to a venv's python outside the venv's
    # bin/ is not that venv: no pyvenv.cfg beside it, so asstctl would not be importable there)
    (bin_dir / "python").write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    (bin_dir / "python").chmod(0o755)
    done = subprocess.run(["bash", "-e", "-c", step["run"]], cwd=project, capture_output=True, text=True, timeout=60,
                          env={"PATH": f"{bin_dir}:/usr/bin:/bin", "PYTHONPATH": os.environ.get("PYTHONPATH", "")})
    assert done.returncode == 0, done.stderr
    ran = log.read_text().splitlines() if log.exists() else []
    assert ("apt-get install -y -qq bubblewrap" in ran) is uses and (len(ran) == 3) is uses


def test_refuses_to_overwrite_and_names_the_files(project):
    (project / "assistants/assistant.yaml").write_text("model: mine\n")
    result = init(str(project))
    assert result.exit_code == 1
    assert "Error: not overwriting existing files" in result.output
    assert "asstctl.yaml" in result.output and "assistants/assistant.yaml" in result.output
    assert "--force" in result.output
    assert (project / "assistants/assistant.yaml").read_text() == "model: mine\n"


def test_refuses_when_only_one_file_exists_and_writes_nothing(tmp_path):
    (tmp_path / "engine-rules.yaml").write_text("rules: []\n")
    result = init(str(tmp_path))
    assert result.exit_code == 1
    assert "engine-rules.yaml" in result.output
    assert not (tmp_path / "asstctl.yaml").exists()


def test_force_overwrites(project):
    (project / "assistants/assistant.yaml").write_text("model: mine\n")
    result = init(str(project), "--force")
    assert result.exit_code == 0, result.output
    assert "overwritten" in result.output
    assert "gpt-4o" in (project / "assistants/assistant.yaml").read_text()


def test_gitignore_is_extended_once(tmp_path):
    (tmp_path / ".gitignore").write_text("node_modules/")  # no final newline
    assert init(str(tmp_path)).exit_code == 0
    assert (tmp_path / ".gitignore").read_text().splitlines()[0] == "node_modules/"
    assert ".asstctl/" in (tmp_path / ".gitignore").read_text().splitlines()
    before = (tmp_path / ".gitignore").read_text()
    result = init(str(tmp_path), "--force")
    assert ".gitignore" not in result.output
    assert (tmp_path / ".gitignore").read_text() == before


def test_a_file_in_the_way_is_a_clear_error(tmp_path):
    (tmp_path / "taken").write_text("")
    result = init(str(tmp_path / "taken"))
    assert result.exit_code != 0
    assert "Traceback" not in result.output and "taken" in result.output


def test_a_file_where_a_directory_goes_is_a_clear_error_and_nothing_is_written(tmp_path):
    (tmp_path / "assistants").write_text("a file where a directory must go")
    result = init(str(tmp_path))
    assert result.exit_code == 1
    assert result.output.startswith("Error: assistants in ") and "must be a directory" in result.output
    assert "Traceback" not in result.output and not (tmp_path / "asstctl.yaml").exists()


def test_a_directory_that_cannot_be_created_is_a_clear_error(tmp_path):
    (tmp_path / "file").write_text("")
    result = init(str(tmp_path / "file" / "project"))  # mkdir fails (not a directory), even as root
    assert result.exit_code == 1
    assert result.output.startswith("Error: cannot write ") and "Traceback" not in result.output


def test_the_scaffold_validates(project):
    result = CliRunner().invoke(cli, ["validate"])
    assert result.exit_code == 0, result.output


def test_the_scaffold_deploys_and_its_conversations_pass_offline(project):
    runner = CliRunner()
    applied = runner.invoke(cli, ["apply", "--yes"])
    assert applied.exit_code == 0, applied.output
    tested = runner.invoke(cli, ["test"])
    assert tested.exit_code == 0, tested.output
    assert "looks up an order" in tested.output and "small talk calls no tool" in tested.output


def actionlint() -> str:
    """The actionlint binary of the test extra (next to this Python, or on PATH); its absence is a failure."""
    import shutil
    import sys

    beside = Path(sys.executable).parent / "actionlint"
    found = str(beside) if beside.is_file() else shutil.which("actionlint")
    assert found, "actionlint is missing: install the test extra (python -m pip install -e '.[test]')"
    return found


def test_the_workflow_passes_actionlint(project):
    import subprocess

    result = subprocess.run([actionlint(), "-no-color", ".github/workflows/asstctl.yml"], cwd=project,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_actionlint_does_find_mistakes(tmp_path):
    """The check above can fail: a broken workflow does not pass."""
    import subprocess

    from asstctl.spec.scaffold import workflow

    broken = tmp_path / ".github" / "workflows" / "broken.yml"
    broken.parent.mkdir(parents=True)
    broken.write_text(workflow().replace("runs-on: ubuntu-latest", "runs-on: ubuntu-latest\n    timeout: 5", 1))
    result = subprocess.run([actionlint(), "-no-color", str(broken)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 1 and "timeout" in result.stdout


def install_script(project: Path) -> str:
    workflow = yaml.safe_load((project / ".github/workflows/asstctl.yml").read_text())
    [step] = [step for step in workflow["jobs"]["deploy"]["steps"] if step.get("name") == "Install asstctl"]
    return step["run"]


def test_the_workflow_installs_the_version_that_wrote_it_and_says_what_to_change(project):
    import subprocess

    from asstctl import __version__

    text = (project / ".github/workflows/asstctl.yml").read_text()
    assert "asstctl==" not in text  # no package index has asstctl
    assert f"ASSTCTL_INSTALL: ${{{{ vars.ASSTCTL_INSTALL || 'asstctl @ git+https://github.com/YOUR-ORG/asstctl@v{__version__}' }}}}" in text
    assert f"# asstctl {__version__} wrote this workflow" in text and "change it to" in text
    unset = subprocess.run(["bash", "-c", install_script(project)], capture_output=True, text=True, timeout=60,
                           env={"PATH": "/usr/bin:/bin", "ASSTCTL_INSTALL": f"asstctl @ git+https://github.com/YOUR-ORG/asstctl@v{__version__}"})
    assert unset.returncode == 1 and "::error file=.github/workflows/asstctl.yml::" in unset.stdout


@pytest.mark.timeout(300)
def test_the_install_step_installs_asstctl_from_a_repository(project, tmp_path):
    """The step's own script, with ASSTCTL_INSTALL pointing at this repository's commit, in a fresh venv."""
    import subprocess
    import sys

    root = source_repository(tmp_path / "source")
    head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, check=True)
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    env = {"PATH": f"{venv}/bin:/usr/bin:/bin", "HOME": str(tmp_path), "PIP_QUIET": "1",
           "ASSTCTL_INSTALL": f"asstctl @ git+file://localhost{root}@{head.stdout.strip()}"}
    # `pip install X` of the step, into a folder of its own and without the dependencies (this Python has them)
    (venv / "bin" / "pip").write_text(f"#!/bin/sh\n[ \"$1\" = install ] && shift\n"
                                      f"exec {sys.executable} -m pip install --no-deps --target {tmp_path / 'site'} \"$@\"\n")
    (venv / "bin" / "pip").chmod(0o755)
    result = subprocess.run(["bash", "-c", install_script(project)], capture_output=True, text=True, env=env, timeout=280)
    assert result.returncode == 0, result.stdout + result.stderr
    assert list((tmp_path / "site").glob("asstctl-*.dist-info")) and (tmp_path / "site" / "asstctl" / "spec" / "scaffold.py").is_file()


def source_repository(where: Path) -> Path:
    """A git repository of this asstctl's sources (what pip needs to build it), made from the files themselves:
    the suite also runs from a source archive, outside any git checkout."""
    import shutil
    import subprocess

    source = Path(__file__).resolve().parents[1]
    shutil.copytree(source / "asstctl", where / "asstctl", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(source / name, where / name)
    git = ["git", "-C", str(where), "-c", "user.name=asstctl tests", "-c", "user.email=tests@localhost",
           "-c", "commit.gpgsign=false"]
    for command in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "asstctl sources"]):
        subprocess.run(git + command, check=True, capture_output=True, timeout=60)
    return where


def test_output_paths_create_their_folders(project):
    """The workflow's `--junit-xml reports/asstctl.xml`, and every other file option, in a folder that does not exist."""
    runner = CliRunner()
    planned = runner.invoke(cli, ["plan", "--out", "plans/new/plan.json"])
    assert planned.exit_code == 0 and (project / "plans/new/plan.json").is_file(), planned.output
    applied = runner.invoke(cli, ["apply", "plans/new/plan.json", "--yes"])
    assert applied.exit_code == 0, applied.output
    tested = runner.invoke(cli, ["test", "--junit-xml", "reports/deep/asstctl.xml"])
    assert tested.exit_code == 0 and (project / "reports/deep/asstctl.xml").is_file(), tested.output
    schema = runner.invoke(cli, ["schema", "-o", "schemas/spec.json"])
    assert schema.exit_code == 0 and (project / "schemas/spec.json").is_file(), schema.output
    exported = runner.invoke(cli, ["export", "--dir", "exported/specs"])
    assert exported.exit_code == 0 and (project / "exported/specs/assistant.yaml").is_file(), exported.output


def test_an_output_path_that_cannot_be_written_is_one_clear_error(project):
    (project / "taken").write_text("a file where a folder goes")
    for args in (["plan", "--out", "taken/plan.json"], ["schema", "-o", "taken/spec.json"]):
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == 1 and "Traceback" not in result.output and result.exception is not None
        assert result.output.startswith("Error: cannot write taken/"), result.output


def test_no_test_needs_a_git_checkout():
    """The suite runs from a source archive too: `git` is run only on a repository a test made itself
    (`source_repository`, and the test that made one); never on this checkout (`git rev-parse`, `ls-files`...)."""
    import ast
    import re

    root = Path(__file__).resolve().parent
    found = []
    for path in sorted(root.rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        if not re.search(r"""["']git[ "']""", text):  # parse only what may run it
            continue
        tree = ast.parse(text, str(path))
        allowed = {id(node) for function in ast.walk(tree) if isinstance(function, ast.FunctionDef) and (
            function.name == "source_repository" or any(getattr(getattr(call, "func", None), "id", None) ==
                                                        "source_repository" for call in ast.walk(function)))
                   for node in ast.walk(function)}
        for node in ast.walk(tree):  # ["git", ...] or run("git ...", shell=True)
            first = (node.elts[:1] if isinstance(node, (ast.List, ast.Tuple)) else
                     node.args[:1] if isinstance(node, ast.Call) else [])
            if first and isinstance(first[0], ast.Constant) and str(first[0].value).split(" ")[0] == "git" \
                    and id(node) not in allowed:
                found.append(f"{path.relative_to(root.parent)}:{node.lineno}")
    assert not found, f"git run on this checkout (the suite must pass from a source archive): {found}"
    assert len(list(root.rglob("*.py"))) > 50  # the scan saw the suite
