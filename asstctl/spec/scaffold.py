"""``asstctl init``: the files of a new project, and the function that writes them.

The scaffold works as it is: ``asstctl validate`` passes, ``asstctl apply --yes && asstctl test``
deploys the example assistant to the embedded server and passes its conversations offline (the
``engine-rules.yaml`` it writes steers the offline engine, see docs/engine.md), and the CI workflow
runs ``plan`` on pull requests (without the deploy secret) and ``apply`` + ``test`` on main or a manual run
from the default branch, installing bubblewrap when an assistant uses code_interpreter (docs/recipes/github-actions.md).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from asstctl import __version__
from asstctl.errors import AsstctlError
from asstctl.spec.project import PROJECT_FILE, STATE_DIR

PROJECT_YAML = """\
# asstctl project file: `asstctl --help` and `asstctl COMMAND --help` explain every command.
# The project name tags everything asstctl manages: keep it stable once deployed.
project: {project}
specs: assistants                   # assistants/<key>.yaml; their conversations: <key>.test.yaml
engine_rules: engine-rules.yaml     # steers the embedded server's offline engine (asstctl test offline)

# Targets: where `asstctl plan/apply/test --target NAME` go. Without --target (and without
# $OPENAI_BASE_URL) asstctl uses its own embedded server, data under .asstctl/: no key, no network.
# targets:
#   azure:                                          # Azure OpenAI
#     base_url: https://YOUR-RESOURCE.openai.azure.com
#     api_key_env: AZURE_OPENAI_API_KEY             # the variable holding the key, never the key
#     azure: {{api_version: "2024-05-01-preview"}}
#   shared:                                         # any Assistants-compatible server, e.g. `asstctl serve`
#     base_url: http://127.0.0.1:8321/v1
#     api_key_env: ASSTCTL_SERVER_API_KEY
#   local:
#     embedded: true                                # the default
"""

ASSISTANT_YAML = """\
# yaml-language-server: $schema=../.asstctl/spec.schema.json
# An assistant as code. Its key is the file name: `assistant`. `asstctl plan` shows what would
# change on the target, `asstctl apply` makes it so. Fields are those of the Assistants API.
# Completion in your editor: `asstctl schema --out .asstctl/spec.schema.json`.
name: {project} order desk
model: gpt-4o
description: Answers questions about orders.
instructions: |
  You are the order desk of {project}. Be brief and friendly.
  When the user asks about an order, call get_order_status with the order id
  and report the status in one sentence.
tools:
  - type: function
    function:
      name: get_order_status
      description: The shipping status of an order.
      parameters:
        type: object
        properties:
          order_id: {{type: string, description: "The order id, e.g. A-1001"}}
        required: [order_id]
        additionalProperties: false
"""

CONVERSATION_YAML = """\
# Smoke tests of assistants/assistant.yaml, run by `asstctl test` after `asstctl apply`.
# Offline (the embedded server) the replies come from engine-rules.yaml; against a real
# model the expectations still hold. Mocks answer the function calls.
conversations:
  - name: looks up an order
    mocks:
      get_order_status: {template: "order {order_id} shipped yesterday and arrives tomorrow"}
    turns:
      - user: Where is my order A-1001?
        expect:
          tool_called: {name: get_order_status, arguments: {order_id: A-1001}}
          icontains: [A-1001, shipped]

  - name: small talk calls no tool
    turns:
      - user: Hello!
        expect:
          no_tool_called: true
          icontains: order
"""

ENGINE_RULES_YAML = """\
# Offline engine rules: how the embedded server answers when there is no model (docs/engine.md).
# First match wins; `assistant` is the assistant's key. Add rules for your own conversations.
rules:
  - match: "order (?P<order_id>[A-Z]+-\\\\d+)"
    assistant: assistant
    tool_calls: [{name: get_order_status, arguments: {order_id: "{order_id}"}}]
    then: "Your {output}."
  - match: "^(hi|hello|hey)\\\\b"
    assistant: assistant
    reply: "Hello! I can look up the status of your orders. What is the order id?"
"""

WORKFLOW_YAML = """\
# asstctl: plan on pull requests, apply and smoke-test on main.
# Without a target this uses asstctl's embedded server, fresh in every job: it checks that the
# specs are valid, deployable and pass their conversations. To deploy for real, set the repository
# variable ASSTCTL_TARGET to a target of asstctl.yaml and add the secret its api_key_env names.
name: asstctl

on:
  pull_request:
  push:
    branches: [main]
  workflow_dispatch:

permissions:
  contents: read

env:
  # asstctl {version} wrote this workflow, and both jobs install that version: ASSTCTL_INSTALL is what
  # `pip install` gets (asstctl is not on PyPI). If the line below still says YOUR-ORG, change it to
  # the repository your team gets asstctl from, keeping the pin, e.g.
  #   asstctl @ git+https://github.com/acme/asstctl@v{version}
  # (or set the repository variable ASSTCTL_INSTALL, which wins over this line).
  ASSTCTL_INSTALL: ${{{{ vars.ASSTCTL_INSTALL || '{install}' }}}}
  ASSTCTL_TARGET: ${{{{ vars.ASSTCTL_TARGET }}}}

jobs:
  plan:
    if: github.event_name == 'pull_request'
    runs-on: ubuntu-latest
    env:
      # Never the deploy key: a pull request's code runs in this job. Without this secret the plan runs
      # against the embedded server; with a read-only key of the target in it, against ASSTCTL_TARGET.
      AZURE_OPENAI_API_KEY: ${{{{ secrets.ASSTCTL_PLAN_API_KEY }}}}   # the variable your target names
    steps:
{setup}
      - run: asstctl validate
      - name: Plan (shown in the job summary)
        run: |
          set -o pipefail
          if [ -n "$ASSTCTL_TARGET" ] && [ -n "$AZURE_OPENAI_API_KEY" ]; then set -- --target "$ASSTCTL_TARGET"; fi
          asstctl plan "$@" | tee plan.txt
          {{ echo "### asstctl plan"; echo '```'; cat plan.txt; echo '```'; }} >> "$GITHUB_STEP_SUMMARY"
        env:
          NO_COLOR: "1"

  deploy:
    # a push to main, or a manual run from the default branch (never from another branch)
    if: >-
      github.event_name == 'push' ||
      (github.event_name == 'workflow_dispatch' && github.ref == format('refs/heads/{{0}}', github.event.repository.default_branch))
    runs-on: ubuntu-latest
    concurrency: asstctl-deploy       # one apply at a time
    env:
      AZURE_OPENAI_API_KEY: ${{{{ secrets.AZURE_OPENAI_API_KEY }}}}   # or the variable your target names
    steps:
{setup}
      - name: Install bubblewrap when an assistant uses code_interpreter (its sandbox)
        run: |
          # the specs asstctl.yaml names (`specs:`), as the apply below reads them (for $ASSTCTL_TARGET):
          # not comments nor instructions
          if python - <<'EOF'
          import os
          import sys
          from asstctl.spec.loader import load_specs
          from asstctl.spec.project import load_project
          try:
              specs = load_specs(load_project(), os.environ.get("ASSTCTL_TARGET") or None)
          except Exception:  # a spec asstctl cannot read: `asstctl apply` below says what is wrong
              sys.exit(1)
          sys.exit(not any(tool.get("type") == "code_interpreter" for spec in specs
                           for tool in spec.fields.get("tools") or []))
          EOF
          then
            sudo apt-get update -qq && sudo apt-get install -y -qq bubblewrap
            # Ubuntu 24.04 lets only programs with an AppArmor profile create user namespaces; bubblewrap needs them
            sudo sysctl -q -w kernel.apparmor_restrict_unprivileged_userns=0 || true
          fi
      - run: asstctl apply --yes ${{ASSTCTL_TARGET:+--target "$ASSTCTL_TARGET"}}
      - run: asstctl test ${{ASSTCTL_TARGET:+--target "$ASSTCTL_TARGET"}} --junit-xml reports/asstctl.xml
      - uses: actions/upload-artifact@v6
        if: always()
        with:
          name: asstctl-test-report
          path: reports/
"""

WORKFLOW_SETUP = """\
      - uses: actions/checkout@v5
      - uses: actions/setup-python@v6
        with:
          python-version: "3.12"
      - name: Install asstctl
        run: |
          if [[ "$ASSTCTL_INSTALL" == *YOUR-ORG* ]]; then
            echo "::error file=.github/workflows/asstctl.yml::say where to install asstctl from: see ASSTCTL_INSTALL in this file"
            exit 1
          fi
          pip install "$ASSTCTL_INSTALL"
"""
PLACEHOLDER_INSTALL = "asstctl @ git+https://github.com/YOUR-ORG/asstctl@v{version}"

GITIGNORE_LINES = ("# asstctl: embedded server data, saved plans", f"{STATE_DIR}/")


@dataclass
class Scaffold:
    """What ``init`` wrote: paths relative to ``root``."""

    root: Path
    project: str
    created: list[str] = field(default_factory=list)
    overwritten: list[str] = field(default_factory=list)
    gitignore: str = "unchanged"  # "created", "updated" or "unchanged"


def project_name(directory: Path) -> str:
    """A project name from a directory name: lower case, runs of other characters → ``-``."""
    slug = re.sub(r"[^a-z0-9._]+", "-", directory.resolve().name.lower()).strip("-.")
    return slug or "assistants"


def templates(project: str) -> dict[str, str]:
    """Relative path → content of every file ``init`` writes (``.gitignore`` aside)."""
    return {
        PROJECT_FILE: PROJECT_YAML.format(project=project),
        "assistants/assistant.yaml": ASSISTANT_YAML.format(project=project),
        "assistants/assistant.test.yaml": CONVERSATION_YAML,
        "engine-rules.yaml": ENGINE_RULES_YAML,
        ".github/workflows/asstctl.yml": workflow(install_spec()),
    }


def workflow(install: str | None = None) -> str:
    """The CI workflow; both jobs install ``install`` (default: this version from a repository to fill in)."""
    install = install or PLACEHOLDER_INSTALL.format(version=__version__)
    return WORKFLOW_YAML.format(setup=WORKFLOW_SETUP.rstrip(), version=__version__, install=install.replace("'", "''"))


def install_spec() -> str | None:
    """How this asstctl was installed, as a pip requirement pinned to its exact commit, when it came from a
    remote git repository (pip's direct_url.json says so); ``None`` otherwise (the workflow then asks
    for the repository)."""
    import json
    from importlib import metadata

    try:
        text = metadata.distribution("asstctl").read_text("direct_url.json")
    except metadata.PackageNotFoundError:
        return None
    if text is None:
        return None
    try:
        origin = json.loads(text)
    except ValueError:
        return None
    vcs = origin.get("vcs_info") or {}
    if vcs.get("vcs") == "git" and vcs.get("commit_id") and not str(origin.get("url", "")).startswith("file:"):
        return f"asstctl @ git+{origin['url']}@{vcs['commit_id']}"
    return None


def scaffold(directory: Path, *, project: str | None = None, force: bool = False) -> Scaffold:
    """Write a new project into ``directory`` (created if missing); never overwrites unless ``force``."""
    root = Path(directory)
    if root.exists() and not root.is_dir():
        raise AsstctlError(f"{root} exists and is not a directory", hint="Give `asstctl init` a directory.")
    result = Scaffold(root=root, project=project or project_name(root))
    files = templates(result.project)
    existing = [path for path in files if (root / path).exists()]
    blocked = sorted({str(Path(path).parent) for path in files if (root / path).parent.is_file()})
    if blocked:
        raise AsstctlError(f"{', '.join(blocked)} in {root} must be a directory, but is a file",
                           hint="Move it away, or choose another directory.")
    if existing and not force:
        raise AsstctlError(
            f"not overwriting existing files in {root}: {', '.join(existing)}",
            hint="Move them away, or add --force to overwrite them.",
        )
    try:
        for path, content in files.items():
            (root / path).parent.mkdir(parents=True, exist_ok=True)
            (root / path).write_text(content, encoding="utf-8")
            (result.overwritten if path in existing else result.created).append(path)
        result.gitignore = _ignore_state(root / ".gitignore")
    except OSError as error:
        raise AsstctlError(f"cannot write {error.filename or root}: {error.strerror or error}",
                           hint="Check the directory's permissions, or choose another directory.") from None
    return result


def _ignore_state(path: Path) -> str:
    """Add ``.asstctl/`` to ``.gitignore`` unless it is there already."""
    if not path.exists():
        path.write_text("\n".join(GITIGNORE_LINES) + "\n", encoding="utf-8")
        return "created"
    text = path.read_text(encoding="utf-8")
    if any(line.strip() in (STATE_DIR, f"{STATE_DIR}/", f"/{STATE_DIR}/") for line in text.splitlines()):
        return "unchanged"
    separator = "" if not text or text.endswith("\n") else "\n"
    path.write_text(text + separator + "\n".join(GITIGNORE_LINES) + "\n", encoding="utf-8")
    return "updated"
