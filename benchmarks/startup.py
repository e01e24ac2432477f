"""Start-up: `asstctl --help` and `asstctl validate` (N specs in a temporary project; last, N specs with a
`strict: true` function each, every schema a little different) as fresh processes, against
`python -c "import openai"` (each at most a fraction of it, measured in the same run), `asstctl validate` of the
example project too; and whether either command imports the SDK (``python -X importtime``: the chain
of modules that pulled it in). Also a no-op `asstctl plan` and
`asstctl status` of this repository's example project (a copy, applied to its embedded server first),
which must take at most as long as importing the SDK, whatever extras are installed: the rows say whether
every top-level module of the `code` and `test` extras is importable, and are not judged when one is not."""

from __future__ import annotations

import os
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks.common import Row, Size, timed, verdict

PYCACHE = os.path.join(tempfile.gettempdir(), f"asstctl-bench-pycache-{os.getuid()}")
IMPORT_LINE = re.compile(r"^import time:\s+\d+ \|\s+\d+ \|( *)(\S+)")


def startup_rows(size: Size) -> list[Row]:
    runs = size.startup_runs
    with tempfile.TemporaryDirectory() as tmp:
        project = spec_project(Path(tmp), size.specs)
        sdk = run_median([sys.executable, "-c", "import openai"], project, runs)
        example = example_project(Path(tmp) / "example")
        rows = [startup_row(size, "asstctl --help", ["--help"], project, sdk, most=HELP_MOST),
                startup_row(size, f"asstctl validate, {size.specs} specs", ["validate"], project, sdk,
                            most=VALIDATE_MOST),
                sdk_import_row(project, size.specs),  # tests/test_benchmarks.py finds it by its place
                startup_row(size, "asstctl validate, the example project", ["validate"], example, sdk,
                            most=VALIDATE_MOST)]
        heavy = extra_modules(HEAVY_EXTRAS)
        missing = not_importable(heavy, example)
        extras = (f"the {' and '.join(HEAVY_EXTRAS)} extras installed ({len(heavy)} modules)" if not missing else
                  f"{', '.join(missing)} not installed: not judged; install the `code` and `test` extras")
        for command in ("plan", "status"):
            row = startup_row(size, f"asstctl {command}, no-op, example project, {extras}", [command], example, sdk,
                              most=1.0)
            row.data["heavy_extras_missing"] = missing
            if missing:
                row.passed = None
            rows.append(row)
        functions = spec_project(Path(tmp) / "functions", size.specs, strict_function=True)
        rows.append(startup_row(size, f"asstctl validate, {size.specs} specs with a strict function each",
                                ["validate"], functions, sdk, most=VALIDATE_MOST))
    return rows


# --help and validate stay where they are, as fractions of `python -c "import openai"` in the same run (a loaded
# or slower machine slows both sides): on an idle machine, --help 134 ms and validate of 100 specs 395 ms against
# a 1013 ms import, the 150 ms and 500 ms these rows had as absolute targets
HELP_MOST, VALIDATE_MOST = 0.15, 0.5


HEAVY_EXTRAS = ("code", "test")  # their packages are what a no-op plan must not import, installed or not


def optional_dependencies(text: str | None = None) -> dict[str, list[str]]:
    """pyproject.toml's ``[project.optional-dependencies]``: with tomllib (Python 3.11+), or on 3.10, which lacks
    it (and may not have asstctl installed, so no metadata to ask), with ``plain_optional_dependencies``."""
    text = (EXAMPLE / "pyproject.toml").read_text() if text is None else text
    try:
        import tomllib
    except ImportError:  # Python 3.10
        return plain_optional_dependencies(text)
    return tomllib.loads(text)["project"]["optional-dependencies"]


def plain_optional_dependencies(text: str) -> dict[str, list[str]]:
    """The table as pyproject.toml writes it: ``name = ["req", ...]`` over one or more lines, ``#`` comments."""
    table = re.search(r"^\[project\.optional-dependencies\]\s*$(.*?)(?=^\[)", text + "\n[", re.M | re.S).group(1)
    lines = (re.sub(r"""#[^"']*$""", "", line) for line in table.splitlines())
    return {name: re.findall(r'"([^"]+)"', body)
            for name, body in re.findall(r"^([A-Za-z0-9_-]+)\s*=\s*\[(.*?)\]\s*$", "\n".join(lines), re.M | re.S)}


def extra_modules(extras: tuple[str, ...] | None = None) -> tuple[str, ...]:
    """The top-level modules of the packages of ``extras`` (every optional dependency when None) in pyproject.toml:
    from each installed package's files, or the package's name (``-`` as ``_``) for one not installed."""
    import importlib.metadata

    def normal(name: str) -> str:
        return re.sub(r"[-_.]+", "-", name).lower()

    names = {normal(re.match(r"[A-Za-z0-9._-]+", requirement).group())
             for extra, requirements in optional_dependencies().items()
             if extras is None or extra in extras for requirement in requirements}
    found: dict[str, set[str]] = {}
    for module, distributions in importlib.metadata.packages_distributions().items():
        for distribution in distributions:
            if normal(distribution) in names and module.isidentifier() and not module.startswith("_"):
                found.setdefault(normal(distribution), set()).add(module)
    guessed = {name.replace("-", "_") for name in names if name not in found}
    return tuple(sorted({module for modules in found.values() for module in modules} | guessed))


def not_importable(modules: tuple[str, ...], cwd: Path) -> list[str]:
    """Those of ``modules`` the interpreter the commands run with cannot find (one process, nothing imported)."""
    code = "import importlib.util, sys\nfor m in sys.argv[1:]:\n    if importlib.util.find_spec(m) is None: print(m)"
    return run([sys.executable, "-c", code, *modules], cwd).stdout.split()


EXAMPLE = Path(__file__).resolve().parents[1]  # the repository is itself an asstctl project


def example_project(root: Path) -> Path:
    """A copy of the repository's example project (asstctl.yaml, assistants/, engine-rules.yaml), applied to its
    embedded server so that a plan of it is a no-op."""
    import shutil

    root.mkdir()
    shutil.copy(EXAMPLE / "asstctl.yaml", root / "asstctl.yaml")
    shutil.copy(EXAMPLE / "engine-rules.yaml", root / "engine-rules.yaml")
    shutil.copytree(EXAMPLE / "assistants", root / "assistants")
    check(run(asstctl("apply", "--yes"), root), asstctl("apply", "--yes"))
    return root


def spec_project(root: Path, n: int, strict_function: bool = False) -> Path:
    """``n`` specs; with ``strict_function``, each with a `strict: true` function whose schema differs from the
    others' (a property named after the spec), so that no check is answered from another spec's."""
    (root / "assistants").mkdir(parents=True)
    (root / "asstctl.yaml").write_text("project: bench\n")
    for i in range(n):
        tools = STRICT_FUNCTION.format(i=i) if strict_function else ""
        (root / "assistants" / f"bot-{i:03d}.yaml").write_text(
            f"name: Bot {i}\nmodel: gpt-4o\ninstructions: |\n  You are bot {i}.\n  Be brief.\ntemperature: 0.2\n{tools}")
    return root


STRICT_FUNCTION = """tools:
  - type: function
    function:
      name: lookup_order
      strict: true
      parameters:
        type: object
        additionalProperties: false
        required: [order_id_{i}, unit, when, lines]
        properties:
          order_id_{i}: {{type: string, pattern: "^[A-Z]{{2}}[0-9]+$", description: The order number}}
          unit: {{type: [string, "null"], enum: [c, f, null]}}
          when: {{anyOf: [{{type: string, format: date}}, {{type: "null"}}]}}
          lines:
            type: array
            items: {{$ref: "#/$defs/line"}}
        $defs:
          line:
            type: object
            additionalProperties: false
            required: [sku, quantity]
            properties: {{sku: {{type: string}}, quantity: {{type: integer, minimum: 1}}}}
"""


def asstctl(*args: str) -> list[str]:
    return [sys.executable, "-m", "asstctl", *args]


def run(command: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """``command`` with cached bytecode, as an installed package has it (PYTHONDONTWRITEBYTECODE would make every
    run compile asstctl from source, but not the SDK's preinstalled .pyc): in a folder of its own, so nothing is
    written into the checkout; the warm-up run of ``run_median`` fills it, for both sides alike."""
    env = {**os.environ, "NO_COLOR": "1", "PYTHONPYCACHEPREFIX": PYCACHE}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def run_median(command: list[str], cwd: Path, runs: int) -> float:
    """Median wall seconds of ``runs`` runs (after one warm-up run); raises when the command fails."""
    check(run(command, cwd), command)
    times = []
    for _ in range(runs):
        elapsed, done = timed(lambda: run(command, cwd))
        check(done, command)
        times.append(elapsed)
    return statistics.median(times)


def check(done: subprocess.CompletedProcess, command: list[str]) -> None:
    if done.returncode != 0:
        problem = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
        raise CommandFailed(f"`{' '.join(command[1:])}` exited {done.returncode}: {problem[0]}")


class CommandFailed(Exception):
    pass


def startup_row(size: Size, name: str, args: list[str], project: Path, sdk: float, most: float) -> Row:
    """A command's median time against the SDK's import, measured in the same run: at most ``most`` times it."""
    runs = size.startup_runs
    row = Row(f"start-up: {name} (median of {runs})", "", f"{sdk * 1000:.0f} ms (python -c \"import openai\")",
              "", f"at most {most:g}x the import", None, {"baseline_seconds": sdk, "at_most": most})
    try:
        mine = run_median(asstctl(*args), project, runs)
    except CommandFailed as error:
        row.measured, row.ratio = f"not measured: {error}", "-"
        return row
    row.measured = f"{mine * 1000:.0f} ms"
    row.ratio, met = f"{mine / sdk:.2f}x the import", mine <= most * sdk
    row.passed, row.data["seconds"] = verdict(size, met), mine
    return row


def sdk_import_row(project: Path, specs: int) -> Row:
    found = {" ".join(args): sdk_importer(args, project) for args in (["--help"], ["validate"])}
    culprits = {command: chain for command, chain in found.items() if chain}
    failed = [command for command, chain in found.items() if chain is None]
    measured = "; ".join(f"{command}: {' -> '.join(chain)}" for command, chain in culprits.items()) or "not imported"
    measured += "".join(f" (`{command}` failed: not checked)" for command in failed)
    passed = None if failed and not culprits else not culprits
    return Row(f"start-up: openai SDK imported by --help / validate ({specs} specs)", measured, "-", "-",
               "not imported", passed, {"importers": culprits, "not_checked": failed})


def sdk_importer(args: list[str], project: Path) -> list[str] | None:
    """The import chain that loaded ``openai`` during the command ([]: not imported; None: it failed)."""
    done = run([sys.executable, "-X", "importtime", "-m", "asstctl", *args], project)
    return import_chain(done.stderr, "openai") if done.returncode == 0 else None


def import_chain(importtime: str, module: str) -> list[str]:
    """From ``-X importtime`` output (children are listed before their parent, indented deeper):
    the outermost module whose import pulled in ``module``, down to ``module``."""
    lines = [(len(m.group(1)), m.group(2)) for m in map(IMPORT_LINE.match, importtime.splitlines()) if m]
    for index, (depth, name) in enumerate(lines):
        if name == module:
            chain = [name]
            for later_depth, later in lines[index + 1:]:
                if later_depth < depth:
                    chain.insert(0, later)
                    depth = later_depth
            return chain
    return []
