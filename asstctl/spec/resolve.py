"""One schema-valid spec document → an :class:`AssistantSpec` for one target.

Target overrides replace the base's fields one by one (``null`` removes one; setting
``instructions`` or ``instructions_file`` replaces both). Short forms become the API form:
``code_interpreter`` → ``{"type": "code_interpreter"}``, ``{function: {...}}`` →
``{"type": "function", "function": {...}}``, ``response_format: text`` → ``{"type": "text"}``;
``instructions_file``, ``parameters_file`` and ``schema_file`` (paths relative to the spec) are
read in. Fields the spec does not set stay absent.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from asstctl.errors import SpecError
from asstctl.spec.model import AssistantSpec, LocalFile, VectorStoreSpec

API_FIELDS = ("model", "name", "description", "instructions", "tools", "tool_resources", "temperature", "top_p",
              "response_format", "reasoning_effort", "metadata",
              "reasoning", "text", "service_tier", "multi_agent", "compaction", "experimental")  # the last six: Agents API only
_PAIRS = {"instructions": "instructions_file", "instructions_file": "instructions"}
_TOOL_KEYS = ("function", "file_search", "code_interpreter", "mcp", "web_search", "computer_use")


class _Context:
    """The document being resolved, where each merged field came from, and the problems so far."""

    def __init__(self, doc, origins: dict[str, tuple], key: str = "", roots=None):
        self.doc = doc
        self._roots = roots
        self.origins = origins
        self.key = key
        self.base = Path(str(doc.path)).parent
        self.problems: list[str] = []
        self.code_files: tuple[LocalFile, ...] = ()
        self.vector_store: str | None = None
        self.inline_store: VectorStoreSpec | None = None

    @property
    def roots(self):
        """The folders files may come from (the project's root and ``allow_paths``), found once."""
        if self._roots is None:
            from asstctl.spec.files import project_roots

            self._roots = project_roots(self.base) or ()
        return self._roots

    def where(self, field: str, *rest: Any) -> str:
        return self.doc.where(self.origins.get(field, (field,)) + rest)

    def problem(self, field: str, rest: tuple, message: str) -> None:
        self.problems.append(f"{self.where(field, *rest)}: {message}")


def resolve(doc, key: str, target: str | None, roots=None) -> tuple[AssistantSpec | None, list[str]]:
    """(spec, problems) of ``doc`` for ``target`` (``None``: the base fields only); files the spec names must
    be below one of ``roots`` (default: the project root of the spec and its ``allow_paths``)."""
    merged, origins = merge(doc.data, target)
    ctx = _Context(doc, origins, key, roots)
    fields = {name: value for name, value in merged.items() if name in API_FIELDS and value is not None}
    if merged.get("instructions_file"):
        fields["instructions"] = _instructions_file(ctx, merged["instructions_file"])
    if "tools" in fields:
        fields["tools"] = [_tool(ctx, index, tool) for index, tool in enumerate(fields["tools"])]
        _duplicate_functions(ctx, fields["tools"])
        _knowledge_with_resources(ctx, fields.get("tool_resources") or {})
    if "response_format" in fields:
        fields["response_format"] = _response_format(ctx, fields["response_format"])
    if ctx.problems:
        return None, ctx.problems
    positions = {name: doc.position(path) for name, path in origins.items() if name in merged or name == "key"}
    if "instructions_file" in positions:
        positions["instructions"] = positions["instructions_file"]
    spec = AssistantSpec(key=key, path=Path(str(doc.path)), fields=fields,
                         prevent_destroy=bool(merged.get("prevent_destroy")), positions=positions,
                         code_files=ctx.code_files, vector_store=ctx.vector_store, inline_store=ctx.inline_store)
    return spec, []


def merge(data: dict[str, Any], target: str | None) -> tuple[dict[str, Any], dict[str, tuple]]:
    """The base fields with ``target``'s overrides on top, and each field's JSON path."""
    merged = {k: v for k, v in data.items() if k not in ("targets", "$schema")}
    origins = {name: (name,) for name in data}
    overrides = ((data.get("targets") or {}).get(target) or {}) if target is not None else {}
    for name, value in overrides.items():
        merged.pop(_PAIRS.get(name, ""), None)
        merged[name] = value
        origins[name] = ("targets", target, name)
    return {k: v for k, v in merged.items() if v is not None}, origins


def _instructions_file(ctx: _Context, relative: str) -> str | None:
    return read_text(ctx, "instructions_file", (), relative)  # its length: a per-target limit (asstctl.spec.agents)


def read_text(ctx: _Context, field: str, rest: tuple, relative: str) -> str | None:
    """The text of a file the spec names: a regular file below the project root, at most 16 MB, UTF-8."""
    from asstctl.spec.files import FileProblem, outside_problem, read_bytes
    from asstctl.spec.yamlpos import decode

    path = ctx.base / relative
    try:
        problem = outside_problem(path, ctx.roots)
        if problem:
            raise FileProblem(problem)
        return decode(read_bytes(path), _display(path))
    except FileProblem as problem:
        hint = " (paths are relative to the spec file)" if str(problem) == "does not exist" else ""
        ctx.problem(field, rest, f"`{_last(field, rest)}` points to {_display(path)}, which {problem}{hint}")
    except SpecError as error:
        ctx.problems += error.problems
    return None


def read_object(ctx: _Context, field: str, rest: tuple, relative: str) -> dict[str, Any] | None:
    """A JSON or YAML file holding one JSON Schema object (``parameters_file``, ``schema_file``)."""
    doc = read_document(ctx, field, rest, relative)
    return None if doc is None else doc.data


def read_document(ctx: _Context, field: str, rest: tuple, relative: str):
    """:func:`read_object`'s file as a Document (its data and positions), ``None`` after a problem."""
    from asstctl.spec.yamlpos import parse_yaml

    text = read_text(ctx, field, rest, relative)
    if text is None:
        return None
    try:
        doc = parse_yaml(text, _display(ctx.base / relative))
    except SpecError as error:
        ctx.problems += error.problems
        return None
    if not isinstance(doc.data, dict):
        ctx.problem(field, rest, f"{_display(ctx.base / relative)} must hold a JSON Schema object (a mapping)")
        return None
    return doc


def _display(path: Path) -> str:
    from asstctl.spec.files import shown

    return shown(path)


def _last(field: str, rest: tuple) -> str:
    return str(rest[-1]) if rest else field


def _tool(ctx: _Context, index: int, tool: Any) -> dict[str, Any]:
    if isinstance(tool, str):
        return {"type": tool}
    kind = tool.get("type") or next((k for k in _TOOL_KEYS if k in tool), None)
    if kind is None:
        ctx.problem("tools", (index,), f"a tool needs `type`: {', '.join(_TOOL_KEYS)}")
        return dict(tool)
    for other in _TOOL_KEYS:
        if other in tool and other != kind:
            ctx.problem("tools", (index, other), f"a `{kind}` tool takes no `{other}` (its `type` is `{kind}`)")
    if kind == "function":
        return {"type": "function", "function": _function(ctx, index, tool.get("function"))}
    out = {"type": kind}
    if kind in ("mcp", "web_search", "computer_use") and tool.get(kind):
        out[kind] = dict(tool[kind])  # Agents API tools (asstctl.spec.agents checks them per target)
    if kind == "code_interpreter" and tool.get("code_interpreter"):
        _code_files(ctx, index, tool["code_interpreter"]["files"])
    if kind == "file_search" and tool.get("file_search"):
        options = {k: v for k, v in tool["file_search"].items() if k != "vector_store"}
        if options:
            out["file_search"] = options
        if "vector_store" in tool["file_search"]:
            _vector_store(ctx, index, tool["file_search"]["vector_store"])
    return out


def _code_files(ctx: _Context, index: int, patterns: list[str]) -> None:
    from asstctl.spec.knowledge import local_files, too_many_code_files

    at = (index, "code_interpreter", "files")
    files, problems = local_files(ctx.base, patterns, lambda i: ctx.where("tools", *at, i), search=False,
                                  roots=ctx.roots)
    ctx.problems += problems
    ctx.code_files = tuple(dict.fromkeys(ctx.code_files + files))
    if too_many_code_files(ctx.code_files):
        ctx.problem("tools", at, too_many_code_files(ctx.code_files))


def _vector_store(ctx: _Context, index: int, value: Any) -> None:
    """``file_search.vector_store``: a shared store's key, or a store declared inline (key: the assistant's)."""
    from asstctl.spec.knowledge import store_spec

    at = (index, "file_search", "vector_store")
    if ctx.vector_store is not None:
        ctx.problem("tools", at, "a second vector store; an assistant has at most 1 (an API limit)")
        return
    ctx.vector_store = value if isinstance(value, str) else ctx.key
    if isinstance(value, dict):
        store, problems = store_spec(ctx.key, Path(str(ctx.doc.path)), value, lambda *rest: ctx.where("tools", *at, *rest),
                                     roots=ctx.roots)
        ctx.inline_store = store
        ctx.problems += problems


def _knowledge_with_resources(ctx: _Context, resources: dict[str, Any]) -> None:
    """Declared knowledge makes ``tool_resources``: the same resource cannot also be given by id."""
    for name, declared, word in (("code_interpreter", ctx.code_files, "files"),
                                 ("file_search", ctx.vector_store, "vector_store")):
        if declared and name in resources:
            ctx.problem("tool_resources", (name,), f"`tool_resources.{name}` and the {name} tool's `{word}` "
                        "both give it resources; keep one (asstctl derives tool_resources from the tool)")


def _function(ctx: _Context, index: int, function: dict[str, Any] | None) -> dict[str, Any]:
    if not function:
        ctx.problem("tools", (index,), "a `function` tool needs `function: {name: ..., parameters: ...}`")
        return {}
    from asstctl.spec.toolschema import parameters_problems

    out = {k: v for k, v in function.items() if k != "parameters_file" and v is not None}
    where = lambda path: ctx.where("tools", index, "function", "parameters", *path)  # noqa: E731
    if function.get("parameters_file"):
        doc = read_document(ctx, "tools", (index, "function", "parameters_file"), function["parameters_file"])
        out["parameters"], where = (None, where) if doc is None else (doc.data, doc.where)
    ctx.problems += parameters_problems(out.get("parameters"), out.get("strict") is True, where)
    return out


def _duplicate_functions(ctx: _Context, tools: list[dict[str, Any]]) -> None:
    seen: set[str] = set()
    for index, tool in enumerate(tools):
        name = (tool.get("function") or {}).get("name")
        if name in seen:
            ctx.problem("tools", (index, "function", "name"),
                        f"a second function named `{name}`; function names must be unique within an assistant")
        if name:
            seen.add(name)


def _response_format(ctx: _Context, value: Any) -> Any:
    if value == "auto":
        return "auto"
    if isinstance(value, str):
        return {"type": value}
    if value["type"] != "json_schema":
        if "json_schema" in value:
            ctx.problem("response_format", ("json_schema",), f"`json_schema` needs `type: json_schema` (not `{value['type']}`)")
        return {"type": value["type"]}
    if not value.get("json_schema"):
        ctx.problem("response_format", (), "`type: json_schema` needs `json_schema: {name: ..., schema: ...}`")
        return dict(value)
    return {"type": "json_schema", "json_schema": _json_schema(ctx, value["json_schema"])}


def _json_schema(ctx: _Context, spec: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in spec.items() if k != "schema_file" and v is not None}
    if spec.get("schema_file"):
        out["schema"] = read_object(ctx, "response_format", ("json_schema", "schema_file"), spec["schema_file"])
    return out
