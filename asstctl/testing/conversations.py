"""Smoke-test conversations: ``assistants/<key>.test.yaml`` files, loaded and validated.

    assistant: weather-bot            # default: the file name without .test.yaml
    conversations:
      - name: asks for the weather
        mocks:                         # for every turn of this conversation (a turn's own mocks win)
          get_weather: {result: {temperature: 21, unit: celsius}}
        turns:
          - user: What is the weather in Paris?
            expect: {tool_called: {name: get_weather, arguments: {city: Paris}}, contains: "21"}
          - user: And in Rome, in fahrenheit?
            instructions: Answer like a pirate.   # per-run overrides: instructions, additional_instructions,
            temperature: 0.2                       #   model, tools, temperature
            mocks:
              get_weather: {template: {city: "{city}", temperature: 70, unit: "{unit}"}}
            expect: {icontains: rome}

Mocks answer function calls: ``result`` (static JSON), ``template`` (a string or JSON value whose
``{argument}`` placeholders are filled from the call's arguments) or ``python: package.module:function``
(called with the arguments as keyword arguments; the project root is importable). The format is a
JSON Schema (:data:`SCHEMA`); every problem is reported as ``path:line:col: message``.
See docs/conversations.md.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from asstctl.errors import SpecError

SUFFIX = ".test.yaml"
OVERRIDES = ("instructions", "additional_instructions", "model", "tools", "temperature")

_STRINGS = {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}, "minItems": 1}]}
_CALL = {
    "anyOf": [
        {"type": "string"},
        {
            "type": "object",
            "required": ["name"],
            "additionalProperties": False,
            "properties": {"name": {"type": "string"}, "arguments": {"type": "object"}},
        },
    ]
}
_EXPECT = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "contains": _STRINGS,
        "icontains": _STRINGS,
        "not_contains": _STRINGS,
        "regex": _STRINGS,
        "equals": {"type": ["string", "number", "boolean"]},
        "json": {
            "anyOf": [
                {"const": True},
                {"type": "object", "required": ["schema"], "additionalProperties": False,
                 "properties": {"schema": {"type": "object"}}},
            ]
        },
        "tool_called": {"anyOf": [_CALL, {"type": "array", "items": _CALL, "minItems": 1}]},
        "no_tool_called": {"anyOf": [{"type": "boolean"}, _STRINGS]},
        "file_cited": {"anyOf": [{"const": True}, _STRINGS]},
        "code_ran": {"type": "boolean"},
        "code_output_contains": _STRINGS,
        "rubric": {"anyOf": [{"type": "string", "minLength": 1},
                             {"type": "array", "items": {"type": "string", "minLength": 1}, "minItems": 1}]},
        "similar": {
            "anyOf": [
                {"type": "string", "minLength": 1},
                {"type": "object", "required": ["text"], "additionalProperties": False,
                 "properties": {"text": {"type": "string", "minLength": 1},
                                "threshold": {"type": "number", "minimum": -1, "maximum": 1}}},
            ]
        },
        "max_latency_ms": {"type": "number", "exclusiveMinimum": 0},
        "max_tokens": {"type": "integer", "minimum": 1},
    },
}
_ONE_MOCK = "{name} needs exactly one of `result`, `template` or `python`"
_MOCK = {
    "type": "object",
    "minProperties": 1,
    "maxProperties": 1,
    "additionalProperties": False,
    "properties": {
        "result": {},
        "template": {},
        "python": {
            "type": "string",
            "pattern": r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$",
            "x-messages": {"pattern": "{name} must be `package.module:function`"},
        },
    },
    "x-messages": {"minProperties": _ONE_MOCK, "maxProperties": _ONE_MOCK},  # asstctl.spec.schema wording
}
_MOCKS = {"type": "object", "additionalProperties": _MOCK}
_ATTACHMENT = {
    "anyOf": [
        {"type": "string", "minLength": 1},
        {
            "type": "object",
            "required": ["path"],
            "additionalProperties": False,
            "properties": {
                "path": {"type": "string", "minLength": 1},
                "tools": {"type": "array", "items": {"enum": ["file_search", "code_interpreter"]}},
            },
        },
    ]
}
_TURN = {
    "type": "object",
    "required": ["user"],
    "additionalProperties": False,
    "properties": {
        "user": {"type": "string", "minLength": 1},
        "attachments": {"type": "array", "items": _ATTACHMENT},
        "instructions": {"type": "string"},
        "additional_instructions": {"type": "string"},
        "model": {"type": "string", "minLength": 1},
        "tools": {"type": "array", "items": {"type": "object", "required": ["type"]}},
        "temperature": {"type": "number", "minimum": 0, "maximum": 2},
        "mocks": _MOCKS,
        "expect": _EXPECT,
    },
}
SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "asstctl conversation file (assistants/<key>.test.yaml)",
    "type": "object",
    "required": ["conversations"],
    "additionalProperties": False,
    "x-messages": {"required": "`conversations` is required: " + "a list of conversations, each with a `name` and `turns`"},
    "properties": {
        "assistant": {"type": "string", "minLength": 1},
        "conversations": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "required": ["name", "turns"],
                "additionalProperties": False,
                "properties": {
                    "name": {"type": "string", "minLength": 1},
                    "mocks": _MOCKS,
                    "turns": {"type": "array", "items": _TURN, "minItems": 1},
                },
            },
        },
    },
}


@dataclass
class Attachment:
    path: Path
    tools: list[str] = field(default_factory=lambda: ["file_search"])


@dataclass
class Turn:
    index: int
    user: str
    where: str
    attachments: list[Attachment] = field(default_factory=list)
    overrides: dict[str, Any] = field(default_factory=dict)
    mocks: dict[str, dict[str, Any]] = field(default_factory=dict)  # the conversation's mocks merged in
    expect: dict[str, Any] = field(default_factory=dict)
    cited_shas: dict[str, str] = field(default_factory=dict)  # file_cited path -> sha256[:16] of the local file


@dataclass
class Conversation:
    assistant: str
    name: str
    path: Path
    where: str
    turns: list[Turn]

    @property
    def id(self) -> str:
        return f"{self.assistant}/{self.name}"


def key_of(path: Path) -> str:
    """The default assistant key of a conversation file: its name without ``.test.yaml``."""
    return path.name[: -len(SUFFIX)]


def shown(path: Path) -> str:
    """``path`` for messages: relative to the working directory when it is below it."""
    relative = os.path.relpath(path)
    return str(path) if relative.startswith("..") else relative


def conversation_files(project) -> list[Path]:
    return sorted(project.specs_dir.glob(f"*{SUFFIX}"))


def validate_conversations(project) -> list[str]:
    """Every problem of the project's conversation files, as ``path:line:col: message``."""
    problems: list[str] = []
    for path in conversation_files(project):
        problems += parse_file(path)[1]
    return problems


def orphan_problems(project) -> list[str]:
    """A conversation file whose assistant has no spec in the project (a renamed or deleted spec)."""
    import difflib

    from asstctl.spec.loader import spec_files
    from asstctl.spec.yamlpos import load_yaml

    conversations = conversation_files(project)
    if not conversations:  # nothing to check: the specs are not read a second time
        return []
    keys = {_spec_key(path) for path in spec_files(project)}
    problems = []
    for path in conversations:
        try:
            doc = load_yaml(path, display=shown(path))
        except SpecError:
            continue  # reported by validate_conversations
        named = doc.data.get("assistant") if isinstance(doc.data, dict) else None
        key = named if isinstance(named, str) else key_of(path)
        if key not in keys:
            close = difflib.get_close_matches(key, sorted(keys), n=1)
            hint = f"did you mean `{close[0]}`?" if close else f"write {shown(Path(project.specs_dir) / (key + '.yaml'))}"
            where = doc.where(("assistant",) if named else ())
            problems.append(f"{where}: these conversations test the assistant `{key}`, which has no spec "
                            f"({hint}); rename the file or set `assistant:` to a spec's key")
    return problems


def _spec_key(path: Path) -> str:
    """A spec's key (``key:`` or the file's stem) without validating it again: validate_project already did,
    so a plain parse is enough; a key with a variable in it is read as the spec loader reads it."""
    import yaml

    from asstctl.spec.loader import key_of, read_spec

    name = path.name
    stem = name[: name.rfind(".")] if "." in name else name  # as the spec loader's key_of
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return stem
    key = data.get("key") if isinstance(data, dict) else None
    if isinstance(key, str) and "${" in key:
        doc = read_spec(path)[0]
        return key_of(doc) if doc is not None and isinstance(doc.data, dict) else stem
    return key if isinstance(key, str) else stem


def load_conversations(project, paths: list[Path] | None = None) -> list[Conversation]:
    """The conversations of ``paths`` (default: all of the project); invalid files raise SpecError (exit 2)."""
    conversations: list[Conversation] = []
    problems: list[str] = []
    for path in paths if paths is not None else conversation_files(project):
        found, file_problems = parse_file(Path(path))
        conversations += found
        problems += file_problems
    if problems:
        error = SpecError(problems, hint="Fix the conversation files; the format is in docs/conversations.md.")
        error.exit_code = 2
        raise error
    return conversations


def parse_file(path: Path) -> tuple[list[Conversation], list[str]]:
    """(conversations, problems) of one file; problems are ``path:line:col: message``."""
    from asstctl.spec.schema import schema_problems
    from asstctl.spec.yamlpos import load_yaml

    try:
        doc = load_yaml(path, display=shown(path))
    except SpecError as error:
        return [], list(error.problems)
    shape = _shape_problem(doc, path)
    if shape:
        return [], [shape]
    problems = schema_problems(doc, SCHEMA)
    if problems:
        return [], problems
    assistant = doc.data.get("assistant") or key_of(path)
    conversations = [_conversation(doc, assistant, i, raw) for i, raw in enumerate(doc.data["conversations"])]
    return conversations, _semantic_problems(doc, conversations)


NEEDS = ("a conversation file needs `conversations:`, a list of conversations, each with a `name` and `turns` "
         "(see docs/conversations.md)")


def _shape_problem(doc, path: Path) -> str | None:
    """An empty file, a spec given where a conversation file goes, or a file that is not a mapping."""
    if doc.data is None:
        return f"{doc.where()}: the file is empty; {NEEDS}"
    if not path.name.endswith((SUFFIX, ".test.yml")) and isinstance(doc.data, dict) and "model" in doc.data:
        return (f"{doc.where()}: this is an assistant spec, not a conversation file: `asstctl test` runs the "
                f"conversations of {path.name.split('.')[0]}.test.yaml next to it (see docs/conversations.md)")
    if not isinstance(doc.data, dict):
        return f"{doc.where()}: the file holds {'a list' if isinstance(doc.data, list) else 'a single value'}; {NEEDS}"
    return None


def _conversation(doc, assistant: str, index: int, raw: dict[str, Any]) -> Conversation:
    at = f"$.conversations[{index}]"
    shared = raw.get("mocks") or {}
    turns = [_turn(doc, f"{at}.turns[{t}]", t, turn, shared) for t, turn in enumerate(raw["turns"])]
    return Conversation(assistant, raw["name"], Path(doc.path), doc.where(at), turns)


def _turn(doc, at: str, index: int, raw: dict[str, Any], shared: dict[str, Any]) -> Turn:
    base = Path(doc.path).parent
    return Turn(
        index=index,
        user=raw["user"],
        where=doc.where(at),
        attachments=[_attachment(base, a) for a in raw.get("attachments") or []],
        overrides={k: raw[k] for k in OVERRIDES if k in raw},
        mocks={**shared, **(raw.get("mocks") or {})},
        expect=raw.get("expect") or {},
        cited_shas=_cited_shas(base, (raw.get("expect") or {}).get("file_cited")),
    )


def _cited_paths(value: Any) -> list[str]:
    """The ``file_cited`` values that are paths (with a folder): they name one local file."""
    return [v for v in (value if isinstance(value, list) else [value]) if isinstance(v, str) and "/" in v]


def _cited_shas(base: Path, value: Any) -> dict[str, str]:
    import hashlib

    shas = {}
    for wanted in _cited_paths(value):
        path = base / wanted
        if path.is_file():
            shas[wanted] = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    return shas


def _attachment(base: Path, raw: Any) -> Attachment:
    if isinstance(raw, str):
        return Attachment(base / raw)
    return Attachment(base / raw["path"], list(raw.get("tools") or ["file_search"]))


def _semantic_problems(doc, conversations: list[Conversation]) -> list[str]:
    """What the schema cannot say: unique names, existing attachments, valid regexes."""
    from asstctl.spec.files import project_roots

    problems, seen = [], set()
    roots = project_roots(Path(str(doc.path)).parent)
    for c_index, conversation in enumerate(conversations):
        if conversation.name in seen:
            problems.append(f"{conversation.where}: a second conversation named `{conversation.name}`; names must be unique")
        seen.add(conversation.name)
        for turn in conversation.turns:
            problems += _turn_problems(doc, f"$.conversations[{c_index}].turns[{turn.index}]", turn, roots)
    return problems


def _turn_problems(doc, at: str, turn: Turn, roots=None) -> list[str]:
    from asstctl.spec.files import file_problem, outside_problem

    problems = []
    for a_index, attachment in enumerate(turn.attachments):
        problem = file_problem(attachment.path) or outside_problem(attachment.path, roots)
        if problem:  # only regular files inside the project are uploaded
            problems.append(f"{doc.where(f'{at}.attachments[{a_index}]')}: attachment {attachment.path} {problem}")
    for wanted in _cited_paths(turn.expect.get("file_cited")):
        if wanted not in turn.cited_shas:
            problems.append(f"{doc.where(f'{at}.expect.file_cited')}: file_cited `{wanted}` is not a file next to "
                            "this test file; give its path relative to the test file (or just its name)")
    patterns = turn.expect.get("regex", [])
    for pattern in patterns if isinstance(patterns, list) else [patterns]:
        try:
            re.compile(pattern)
        except re.error as error:
            problems.append(f"{doc.where(f'{at}.expect.regex')}: invalid regular expression {pattern!r}: {error}")
    return problems


def select(conversations: list[Conversation], patterns: tuple[str, ...] | list[str]) -> list[Conversation]:
    """Conversations whose ``<assistant>/<name>`` contains any of ``patterns`` (case-insensitive); all without."""
    if not patterns:
        return list(conversations)
    lowered = [p.casefold() for p in patterns]
    return [c for c in conversations if any(p in c.id.casefold() for p in lowered)]
