"""The package's shape (issue 14): no import circle, no module over 600 lines, click only in asstctl/cli,
every package says what it owns and may import, layers import downwards only, and docs/architecture.md
names exactly the packages there are. Read from the source with ast: nothing is imported."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "asstctl"
MAX_LINES = 600

# Which top-level packages each one must never import (the layers: spec ← reconcile ← cli; backends below
# reconcile; the server and the spec never reach up into the reconciler, the runner or the CLI).
FORBIDDEN = {
    "spec": {"reconcile", "backends", "testing", "cli"},
    "backends": {"reconcile", "testing", "cli"},
    "reconcile": {"testing", "cli", "server"},
    "testing": {"cli"},
    "server": {"reconcile", "backends", "testing", "cli"},
}
LEAVES = {"errors", "ownership", "outfile", "progress"}  # shared modules at the root: they import only each other
# The reconciler's pipeline, bottom first: a module imports only modules of lower layers, so a walk from
# `plan` through apply never climbs back into a module it left.
RECONCILE_LAYERS = [
    {"diff", "normalize"},
    {"model"},
    {"remote"},
    {"knowledge", "lock"},
    {"kinds.base"},
    {"kinds.upload", "kinds.vector_store", "kinds.assistant"},
    {"kinds"},
    {"selection", "porting_knowledge"},
    {"plan", "apply", "porting"},
    {"report", "status"},
]


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(path): path for path in PACKAGE.rglob("*.py")}


def imported(name: str, path: Path, known: set[str]) -> set[str]:
    """Every module of the package ``name`` imports, at any depth (a lazy import inside a function counts)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parent + ([node.module] if node.module else []))
            for alias in node.names:
                out.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base)
    return {target for target in out if target in known and target != name}


def graph() -> dict[str, set[str]]:
    found = modules()
    known = set(found)
    return {name: imported(name, path, known) for name, path in found.items()}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), or a module importing itself."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(edges.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def top(name: str) -> str:
    parts = name.split(".")
    return parts[1] if len(parts) > 1 else ""


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_circle_anywhere_in_the_package():
    edges = graph()
    assert len(edges) > 100 and edges["asstctl.reconcile.plan"], "the graph was not built"
    assert cycles(edges) == []


def test_no_module_over_600_lines():
    long = {str(path.relative_to(ROOT)): n for path in PACKAGE.rglob("*.py")
            if (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert long == {}, f"split these modules (at most {MAX_LINES} lines): {long}"


def test_only_the_cli_imports_click():
    users = []
    for path in PACKAGE.rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        names = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
        names |= {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and not node.level}
        if any(name == "click" or name.startswith("click.") for name in names):
            users.append(path.relative_to(PACKAGE).as_posix())
    assert users and all(user.startswith("cli/") for user in users), users


def test_every_package_says_what_it_owns_and_what_it_may_import():
    missing = []
    for init in sorted(PACKAGE.rglob("__init__.py")):
        doc = ast.get_docstring(ast.parse(init.read_text(encoding="utf-8"))) or ""
        if not doc or "import" not in doc.lower():
            missing.append(init.parent.relative_to(ROOT).as_posix())
    assert missing == [], f"these packages' __init__.py must open with a docstring naming what they own and may import: {missing}"


def test_layers_import_downwards_only():
    wrong = []
    for name, targets in graph().items():
        for target in targets:
            if top(target) in FORBIDDEN.get(top(name), ()):
                wrong.append(f"{name} -> {target}")
            if name.count(".") == 1 and top(name) in LEAVES and top(target) not in LEAVES:
                wrong.append(f"{name} -> {target}")
    assert wrong == []


def test_the_spec_and_backends_reach_into_the_server_only_where_they_must():
    reaches = {(name, target) for name, targets in graph().items() for target in targets
               if top(name) in ("spec", "backends") and top(target) == "server"}
    assert all(target.startswith(("asstctl.server.engine.", "asstctl.server.embedded")) for _, target in reaches), reaches


def test_the_reconciler_never_climbs_back_into_a_module_it_left():
    layer = {f"asstctl.reconcile.{name}": depth for depth, names in enumerate(RECONCILE_LAYERS) for name in names}
    edges = graph()
    ours = {name for name in edges if name.startswith("asstctl.reconcile.")}
    assert ours == set(layer), f"place every reconcile module in RECONCILE_LAYERS: {sorted(ours ^ set(layer))}"
    upward = [f"{name} -> {target}" for name in ours for target in edges[name]
              if target in layer and layer[target] >= layer[name] and not (name == "asstctl.reconcile.kinds")]
    assert upward == []


def test_only_the_backends_call_the_sdk():
    users = []
    for path in PACKAGE.rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        if re.search(r"\.beta\.assistants\.|\.vector_stores\.|\bclient\.files\.", text):
            users.append(path.relative_to(PACKAGE).as_posix())
    reconcile = [user for user in users if user.startswith("reconcile/")]
    assert "backends/assistants_v2.py" in users and reconcile == []


def test_architecture_doc_names_exactly_the_packages_there_are():
    doc = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    named = set(re.findall(r"`(asstctl(?:/[a-z_0-9]+)*)/`", doc))
    packages = {init.parent.relative_to(ROOT).as_posix() for init in PACKAGE.rglob("__init__.py")}
    assert named - packages == set(), f"docs/architecture.md names packages that do not exist: {sorted(named - packages)}"
    assert packages - named == set(), f"docs/architecture.md does not name: {sorted(packages - named)}"
    modules_named = set(re.findall(r"`(asstctl/[a-z_0-9/]+\.py)`", doc))
    assert modules_named and all((ROOT / path).is_file() for path in modules_named), sorted(
        path for path in modules_named if not (ROOT / path).is_file())
