"""Spec files → validated :class:`AssistantSpec` objects, every problem reported at once.

One assistant per file ``<specs dir>/<key>.yaml`` (or ``.yml``); conversation files
(``*.test.yaml``) and files starting with ``_`` or ``.`` are skipped. Each file goes through:
read (yamlpos: UTF-8, tabs, YAML syntax, duplicate keys) → ``${VAR}`` interpolation → JSON Schema
(schema.py) → per-target resolution (overrides merged, files read, short forms expanded to the API
form: resolve.py) → semantic checks → cross-file checks (unique keys). Nothing here touches the network.
"""

from __future__ import annotations

import difflib
import os
import re
from pathlib import Path
from typing import Any

from asstctl.errors import SpecError
from asstctl.spec.files import shown  # noqa: F401 (used from here by the CLI and porting)
from asstctl.spec.model import AssistantSpec, VectorStoreSpec

HINT = "Fix the spec files; their format is described in docs/spec-format.md (`asstctl validate` checks them)."
SUFFIXES = (".yaml", ".yml")
CONVERSATION_SUFFIXES = (".test.yaml", ".test.yml")
BUILTIN_TARGETS = ("embedded", "env", "base-url")  # the names asstctl.backends.targets gives targets not in asstctl.yaml
_VARIABLE = re.compile(r"\$(\$?)\{([^}]*)\}")
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def spec_files(project) -> list[Path]:
    """The spec files of a project, sorted by name: every entry named like one, also a dangling symlink or
    something that is not a regular file (reading it then reports the problem: never skipped silently,
    or `apply --prune` would delete its assistant). A missing folder has none (see :func:`folder_problem`)."""
    return _entries(Path(project.specs_dir))


def _entries(directory: Path) -> list[Path]:
    try:
        return sorted(path for path in directory.iterdir() if _is_spec(path))
    except OSError:
        return []


def _is_spec(path: Path) -> bool:
    name = path.name
    return name.endswith(SUFFIXES) and not name.endswith(CONVERSATION_SUFFIXES) and not name.startswith(("_", "."))


def folder_problem(project, directory: Path | None = None, setting: str = "specs", required: bool = True) -> str | None:
    """Why the specs folder (or another folder asstctl.yaml names) cannot be listed; ``None`` when it can.
    A missing specs folder is an error, not "0 specs" (a prune would then delete every assistant)."""
    from asstctl.spec.files import file_problem

    directory = Path(directory if directory is not None else project.specs_dir)
    problem = file_problem(directory)
    if problem == "does not exist" and not required:
        return None
    if problem is None or problem == "is a directory, not a file":
        try:
            next(iter(directory.iterdir()), None)
            return None
        except OSError as error:
            problem = f"cannot be listed ({error.strerror or error})"
    elif problem == "does not exist":
        problem = "does not exist; create it (`mkdir`) or point `" + setting + ":` in asstctl.yaml at your specs"
    else:
        problem = problem.replace("not a file", "not a folder").replace("not a regular file", "not a folder")
    where = setting_where(project, setting)
    return f"{where}: the {setting} folder {shown(directory)} {problem}"


def setting_where(project, setting: str) -> str:
    from asstctl.spec.project import PROJECT_FILE

    path = shown(Path(project.root) / PROJECT_FILE)
    line, col = (getattr(project, "positions", None) or {}).get(setting, (1, 1))
    return f"{path}:{line}:{col}"


def load_specs(project, target: str | None = None) -> list[AssistantSpec]:
    """The project's specs resolved for ``target``; raises SpecError listing every problem."""
    return load_project_specs(project, target)[0]


def load_project_specs(project, target: str | None = None) -> tuple[list[AssistantSpec], list[VectorStoreSpec]]:
    """(assistants, vector stores: shared ones and those declared inline) for ``target``; SpecError on any problem."""
    specs, stores, problems = _load(project, [target])
    if problems:
        raise SpecError(problems, hint=HINT)
    return specs, stores


def validate_project(project) -> list[str]:
    """Every problem of the project's specs, for the base and each target they override (no network)."""
    return _load(project, None)[2]


def _load(project, targets: list[str | None] | None) -> tuple[list[AssistantSpec], list[VectorStoreSpec], list[str]]:
    """Specs for ``targets[0]``, the vector stores and the problems of all files (``targets=None``: every variant)."""
    specs: list[AssistantSpec] = []
    problems: list[str] = [problem for problem in (folder_problem(project),) if problem]
    keys: list[tuple[str, str]] = []
    roots = project_allowed_roots(project)
    for path in spec_files(project):
        doc, file_problems = read_spec(path, known_targets(project))
        if doc is not None:
            keys.append((key_of(doc), doc.where(("key",) if "key" in doc.data else ())))
            variants = targets if targets is not None else [None, *(doc.data.get("targets") or {}), *project_targets(project)]
            file_problems += _resolve_variants(doc, list(dict.fromkeys(variants)), specs, roots, project) if not file_problems else []
        problems += by_position(file_problems)
    problems += duplicate_keys(keys)
    shared, store_problems = _load_stores(project, roots)
    problems += store_problems + _reference_problems(specs, shared)
    stores = [*shared.values(), *(spec.inline_store for spec in specs if spec.inline_store)]
    return (specs if not problems else []), (stores if not problems else []), problems


def project_allowed_roots(project):
    """The folders files named by specs may come from: the project root and asstctl.yaml's ``allow_paths``."""
    from asstctl.spec.files import allowed_roots

    return allowed_roots(project.root, getattr(project, "allow_paths", ()) or ())


def store_files(project) -> list[Path]:
    """The shared vector store files (``vector_stores/<key>.yaml``), sorted by name."""
    directory = getattr(project, "vector_stores_dir", None)
    return [] if directory is None else _entries(Path(directory))


def _load_stores(project, roots=None) -> tuple[dict[str, VectorStoreSpec], list[str]]:
    from asstctl.spec.knowledge import store_spec

    stores: dict[str, VectorStoreSpec] = {}
    problems: list[str] = []
    directory = getattr(project, "vector_stores_dir", None)
    if directory is not None:
        problems += [p for p in (folder_problem(project, directory, "vector_stores", required=False),) if p]
    keys: list[tuple[str, str]] = []
    for path in store_files(project):
        doc, file_problems = read_spec(path, schema="vector_store")
        if doc is not None and not file_problems:
            keys.append((key_of(doc), doc.where(("key",) if "key" in doc.data else ())))
            protect = bool(doc.data.get("prevent_destroy"))
            store, file_problems = store_spec(key_of(doc), Path(str(doc.path)), doc.data, lambda *at: doc.where(at),
                                              prevent_destroy=protect, roots=roots)
            if store is not None:
                stores.setdefault(store.key, store)
        problems += by_position(file_problems)
    return stores, problems + duplicate_keys(keys, "vector store")


def _reference_problems(specs: list[AssistantSpec], shared: dict[str, VectorStoreSpec]) -> list[str]:
    """A store named by key must be declared; an inline store must not take a shared store's key."""
    problems = []
    for spec in specs:
        line, col = spec.positions.get("tools", (1, 1))
        where = f"{spec.path}:{line}:{col}"
        if spec.inline_store and spec.key in shared:
            problems.append(f"{where}: the inline vector store takes the assistant's key `{spec.key}`, which the shared "
                            f"store {shared[spec.key].path} also has; rename one, or refer to it: `vector_store: {spec.key}`")
        elif spec.vector_store and not spec.inline_store and spec.vector_store not in shared:
            close = difflib.get_close_matches(spec.vector_store, list(shared), n=1)
            hint = f"did you mean `{close[0]}`?" if close else "declare it in vector_stores/<key>.yaml"
            problems.append(f"{where}: `vector_store: {spec.vector_store}` names no shared vector store ({hint})")
    return problems


def _resolve_variants(doc, variants: list[str | None], specs: list[AssistantSpec], roots=None, project=None) -> list[str]:
    """Resolve ``doc`` for each target of ``variants`` (each checked against its API: asstctl.spec.agents);
    the first one's spec goes to ``specs``."""
    from asstctl.spec.agents import api_problems
    from asstctl.spec.resolve import resolve

    problems: list[str] = []
    for target in variants:
        spec, found = resolve(doc, key_of(doc), target, roots=roots)
        found = found or api_problems(spec, target_api(project, target), target, doc)
        problems += [problem for problem in found if problem not in problems]
        if spec is not None and target == variants[0]:
            specs.append(spec)
    return problems


def by_position(problems: list[str]) -> list[str]:
    """``path:line:col: message`` lines of one file in file order (stable for equal positions)."""
    def position(problem: str) -> tuple[int, int]:
        match = re.search(r":(\d+):(\d+): ", problem)
        return (int(match[1]), int(match[2])) if match else (0, 0)

    return sorted(problems, key=position)


def read_spec(path: Path, targets: list[str] | None = None, schema: str = "assistant"):
    """(Document, problems) of one spec file: syntax, variables, schema, key, target names."""
    from asstctl.spec.schema import schema_problems, shared_schema
    from asstctl.spec.yamlpos import load_yaml

    try:
        doc = load_yaml(path, shown(path))
    except SpecError as error:
        return None, error.problems
    shape = _shape_problem(doc)
    if shape:
        return None, [shape]
    problems = interpolate(doc)
    problems += schema_problems(doc, shared_schema(schema))
    problems += _key_problems(doc)
    if targets is not None:
        problems += _target_problems(doc, targets)
    return doc, problems


def _shape_problem(doc) -> str | None:
    if doc.data is None:
        return f"{doc.where()}: the file is empty; a spec needs at least `model:` (e.g. `model: gpt-4o`)"
    if isinstance(doc.data, list):
        return (f"{doc.where()}: a spec must be a mapping of fields (`model: gpt-4o`, ...), not a list; "
                "write one assistant per file")
    if not isinstance(doc.data, dict):
        return f"{doc.where()}: a spec must be a mapping of fields such as `model: gpt-4o`, not a single value"
    return None


def interpolate(doc) -> list[str]:
    """Replace ``${VAR}`` in every string value of ``doc.data`` in place (``$${`` is a literal ``${``)."""
    problems: list[str] = []

    def walk(value: Any, path: tuple) -> Any:
        if isinstance(value, dict):
            return {k: walk(v, path + (k,)) for k, v in value.items()}
        if isinstance(value, list):
            return [walk(v, path + (i,)) for i, v in enumerate(value)]
        if isinstance(value, str) and "${" in value:
            return _VARIABLE.sub(lambda match: _variable(match, doc.where(path), problems), value)
        return value

    doc.data = walk(doc.data, ())
    return problems


def _variable(match: re.Match, where: str, problems: list[str]) -> str:
    escaped, name = match.groups()
    if escaped:
        return "${" + name + "}"
    if not _IDENTIFIER.match(name):
        problems.append(f"{where}: `${{{name}}}` is not a valid variable name (letters, digits and _); "
                        f"write `$${{{name}}}` for a literal `${{`")
        return match.group(0)
    if name not in os.environ:
        problems.append(f"{where}: environment variable `{name}` is not set; set it, "
                        f"or write `$${{{name}}}` for a literal `${{{name}}}`")
        return match.group(0)
    return os.environ[name]


def key_of(doc) -> str:
    key = doc.data.get("key")
    return key if isinstance(key, str) else _stem(Path(doc.path))


def _stem(path: Path) -> str:
    name = path.name
    return name[: name.rfind(".")] if "." in name else name


def _key_problems(doc) -> list[str]:
    from asstctl.spec.schema import KEY_PATTERN

    if "key" in doc.data or re.match(KEY_PATTERN, key_of(doc)):
        return []
    return [f"{doc.where()}: the file name gives the key `{key_of(doc)}`, which must match {KEY_PATTERN} "
            "(lower-case letters, digits, `_`, `.` and `-`); rename the file or set `key:`"]


def project_targets(project) -> list[str]:
    """The targets asstctl.yaml names (each spec is validated for each of them)."""
    return list(getattr(project, "targets", None) or {})


def target_api(project, target: str | None) -> str | None:
    """The API ``target`` serves: ``agents`` or ``assistants`` (built-in targets); for the base fields
    (``None``) ``assistants`` unless the project has an agents target (then each target is checked on its own)."""
    targets = getattr(project, "targets", None) or {}
    if target is None:
        return None if any(getattr(t, "api", "") == "agents" for t in targets.values()) else "assistants"
    return getattr(targets.get(target), "api", "assistants")


def known_targets(project) -> list[str]:
    return [*getattr(project, "targets", {}), *BUILTIN_TARGETS]


def _target_problems(doc, known: list[str]) -> list[str]:
    problems = []
    for name in doc.data.get("targets") or {}:
        if name not in known:
            close = difflib.get_close_matches(str(name), known, n=1)
            hint = f"did you mean `{close[0]}`?" if close else "define it under `targets:` in asstctl.yaml"
            problems.append(f"{doc.where(('targets', name))}: unknown target `{name}` ({hint})")
    return problems


def duplicate_keys(keys: list[tuple[str, str]], what: str = "assistant") -> list[str]:
    """A problem for every file whose key an earlier file already uses, naming both places."""
    first: dict[str, str] = {}
    problems = []
    for key, where in keys:
        if key in first:
            problems.append(f"{where}: the key `{key}` is also used by {first[key]}; "
                            f"every {what} needs its own key (rename a file or change `key:`)")
        first.setdefault(key, where)
    return problems
