"""The JSON Schema (draft 2020-12) of an assistant spec, and readable schema errors with positions.

``spec_schema()`` is what ``asstctl schema`` prints for editors; ``schema_problems(doc, schema)``
validates any :class:`~asstctl.spec.yamlpos.Document` (specs, conversation files) and formats each
error as ``path:line:col: message``. A subschema may carry ``x-messages`` (keyword → message, with
``{name}`` and ``{value}`` placeholders) to replace the generic text for that keyword.
The API limits are those of the Assistants API v2 (docs/spec-format.md lists them).
"""

from __future__ import annotations

import copy
import difflib
import functools
import json
import re
from typing import Any

from asstctl.ownership import PREFIX, RESERVED_KEYS, USER_METADATA_LIMIT
from asstctl.spec.agent_schema import (AGENT_TOOL_TYPES, AGENT_TOOLS, UNEXPRESSED_FUNCTION_FIELDS, UNEXPRESSED_TOOLS,
                                       agent_fields)

KEY_PATTERN = r"^[a-z0-9][a-z0-9_.-]{0,63}$"
FUNCTION_NAME_PATTERN = r"^[a-zA-Z0-9_-]+$"
REASONING_EFFORTS = ["none", "minimal", "low", "medium", "high", "xhigh", "max"]
TOOL_TYPES = ["code_interpreter", "file_search", "function", *AGENT_TOOL_TYPES]
_NEVER_NULL = ("model",)  # a target override cannot remove these


def _text(max_length: int | None, description: str) -> dict[str, Any]:
    limit = {"maxLength": max_length} if max_length is not None else {}
    return {"type": ["string", "null"], **limit, "description": description}


def _name(description: str) -> dict[str, Any]:
    return {"type": "string", "minLength": 1, "maxLength": 64, "pattern": FUNCTION_NAME_PATTERN, "description": description}


def _exclusive(first: str, second: str) -> dict[str, Any]:
    message = f"set either `{first}` or `{second}`, not both"
    return {"not": {"type": "object", "required": [first, second]}, "x-messages": {"not": message}}


_FUNCTION = {
    "type": "object",
    "required": ["name"],
    "additionalProperties": False,
    "properties": {
        "name": _name("The function's name, as the model calls it: letters, digits, _ and -, at most 64."),
        "description": {"type": "string", "description": "What the function does; the model reads it."},
        "parameters": {"type": "object", "description": "JSON Schema of the arguments (an object schema)."},
        "parameters_file": {"type": "string", "minLength": 1,
                            "description": "A JSON or YAML file holding `parameters`, relative to the spec."},
        "strict": {"type": ["boolean", "null"], "description": "Structured outputs for the arguments."},
    },
    "allOf": [_exclusive("parameters", "parameters_file")],
    "x-misplaced": UNEXPRESSED_FUNCTION_FIELDS,
}
_METADATA = {
    "type": "object",
    "description": f"Your own string tags (at most {USER_METADATA_LIMIT}: asstctl adds {len(RESERVED_KEYS)} of the API's 16).",
    "maxProperties": USER_METADATA_LIMIT,
    "propertyNames": {"maxLength": 64, "not": {"pattern": f"^{PREFIX.replace('.', '[.]')}"}},
    "additionalProperties": {"type": "string", "maxLength": 512, "x-messages": {
        "type": "{name} must be a string (got {value}): metadata values are text; quote it, e.g. \"{value}\""}},
    "x-messages": {
        "maxProperties": f"`metadata` has {{value}} keys; at most {USER_METADATA_LIMIT} are allowed "
                         f"(the API allows 16 and asstctl adds {len(RESERVED_KEYS)} of its own)",
    },
}
_FILES = {
    "type": "array",
    "minItems": 1,
    "items": {"type": "string", "minLength": 1},
    "description": "Files or globs (`data/*.csv`, `docs/**/*.md`), relative to the spec file.",
}
_CHUNKING = {
    "description": "`auto` (800 tokens, 400 overlap) or `{type: static, static: {max_chunk_size_tokens, chunk_overlap_tokens}}`.",
    "anyOf": [
        {"enum": ["auto"]},
        {
            "type": "object",
            "required": ["type"],
            "additionalProperties": False,
            "if": {"properties": {"type": {"const": "static"}}},
            "then": {"required": ["static"]},
            "properties": {
                "type": {"enum": ["auto", "static"]},
                "static": {
                    "type": "object",
                    "required": ["max_chunk_size_tokens", "chunk_overlap_tokens"],
                    "additionalProperties": False,
                    "properties": {
                        "max_chunk_size_tokens": {"type": "integer", "minimum": 100, "maximum": 4096},
                        "chunk_overlap_tokens": {"type": "integer", "minimum": 0},
                    },
                },
            },
        },
    ],
}
_EXPIRES_AFTER = {
    "type": "object",
    "required": ["days"],
    "additionalProperties": False,
    "properties": {"anchor": {"enum": ["last_active_at"]}, "days": {"type": "integer", "minimum": 1, "maximum": 365}},
    "description": "Delete the store after `days` (1-365) without use: `{days: 30}`.",
}
STORE_FIELDS: dict[str, Any] = {
    "name": {"type": "string", "maxLength": 256, "description": "The store's display name (default: its key)."},
    "files": _FILES,
    "chunking_strategy": _CHUNKING,
    "expires_after": _EXPIRES_AFTER,
    "metadata": _METADATA,
}
_CODE_INTERPRETER = {
    "type": "object",
    "additionalProperties": False,
    "properties": {"files": {**_FILES, "description": "At most 20 files or globs, relative to the spec file."}},
}
_FILE_SEARCH = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "vector_store": {
            "description": "The key of a store in vector_stores/, or a store declared here: `{files: [...], ...}`.",
            "anyOf": [
                {"type": "string", "pattern": KEY_PATTERN},
                {"type": "object", "required": ["files"], "additionalProperties": False,
                 "properties": STORE_FIELDS},
            ],
        },
        "max_num_results": {"type": "integer", "minimum": 1, "maximum": 50},
        "ranking_options": {
            "type": "object",
            "required": ["score_threshold"],
            "additionalProperties": False,
            "properties": {
                "ranker": {"enum": ["auto", "default_2024_08_21"]},
                "score_threshold": {"type": "number", "minimum": 0, "maximum": 1},
            },
        },
    },
}
_TOOL = {
    "description": "`code_interpreter`, `file_search`, `{function: {...}}`, `{code_interpreter: {files: [...]}}`, "
                   "`{file_search: {vector_store: ...}}`, or the API form `{type: ..., ...}`.",
    "anyOf": [
        {"enum": ["code_interpreter", "file_search", "web_search", "computer_use"], "x-unexpressed": UNEXPRESSED_TOOLS},
        {
            "type": "object",
            "minProperties": 1,
            "additionalProperties": False,
            "x-misplaced": UNEXPRESSED_TOOLS,
            "properties": {"type": {"enum": TOOL_TYPES, "x-unexpressed": UNEXPRESSED_TOOLS}, "function": _FUNCTION, "file_search": _FILE_SEARCH,
                           "code_interpreter": _CODE_INTERPRETER, **AGENT_TOOLS},
            "x-messages": {"minProperties": "{name} is empty; a tool is `code_interpreter`, `file_search`, "
                                            "`{{function: {{name: ...}}}}` or `{{type: ...}}`"},
        },
    ],
}
_JSON_SCHEMA_FORMAT = {
    "type": "object",
    "required": ["name"],
    "additionalProperties": False,
    "properties": {
        "name": _name("The response format's name: letters, digits, _ and -, at most 64."),
        "description": {"type": "string"},
        "schema": {"type": "object", "description": "JSON Schema the replies follow."},
        "schema_file": {"type": "string", "minLength": 1,
                        "description": "A JSON or YAML file holding `schema`, relative to the spec."},
        "strict": {"type": ["boolean", "null"]},
    },
    "allOf": [_exclusive("schema", "schema_file")],
}
_RESPONSE_FORMAT = {
    "description": "`auto`, `text`, `json_object`, or `{type: json_schema, json_schema: {name, schema}}`.",
    "anyOf": [
        {"enum": ["auto", "text", "json_object"]},
        {
            "type": "object",
            "required": ["type"],
            "additionalProperties": False,
            "properties": {"type": {"enum": ["text", "json_object", "json_schema"]}, "json_schema": _JSON_SCHEMA_FORMAT},
        },
    ],
}
_TOOL_RESOURCES = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "code_interpreter": {
            "type": "object",
            "additionalProperties": False,
            "properties": {"file_ids": {"type": "array", "maxItems": 20, "items": {"type": "string"}}},
        },
        "file_search": {
            "type": "object",
            "additionalProperties": False,
            "properties": {"vector_store_ids": {"type": "array", "maxItems": 1, "items": {"type": "string"}}},
        },
    },
}
FIELDS: dict[str, Any] = {
    "model": {"type": "string", "minLength": 1, "description": "The model, e.g. gpt-4o (required)."},
    # The Assistants API's caps on name, description, instructions and tools are checked per target
    # (asstctl.spec.agents): the Agents API documents none of them.
    "name": _text(None, "Display name; at most 256 characters on an Assistants target."),
    "description": _text(None, "At most 512 characters (Assistants API only)."),
    "instructions": _text(None, "The system instructions; at most 256,000 characters on an Assistants target."),
    "instructions_file": {"type": "string", "minLength": 1,
                          "description": "A text file holding the instructions, relative to the spec."},
    "tools": {"type": "array", "items": _TOOL, "description": "At most 128 tools on an Assistants target; on an "
                                                               "Agents API target, at most 3 MiB as JSON."},
    "tool_resources": _TOOL_RESOURCES,
    "temperature": {"type": ["number", "null"], "minimum": 0, "maximum": 2},
    "top_p": {"type": ["number", "null"], "minimum": 0, "maximum": 1},
    "response_format": _RESPONSE_FORMAT,
    "reasoning_effort": {"enum": [*REASONING_EFFORTS, None]},
    "metadata": _METADATA,
    "prevent_destroy": {"type": "boolean", "description": "Never delete this assistant (plan shows it blocked)."},
    **agent_fields(REASONING_EFFORTS),
}


def _file_schema(title: str, key_description: str, properties: dict[str, Any], required: str,
                 required_message: str, **extra: Any) -> dict[str, Any]:
    """The envelope shared by the spec file kinds (a fresh copy: callers may change it)."""
    return copy.deepcopy({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": title,
        "type": "object",
        "required": [required],
        "additionalProperties": False,
        "properties": {
            "$schema": {"type": "string"},
            "key": {"type": "string", "pattern": KEY_PATTERN, "description": key_description},
            **properties,
        },
        **extra,
        "x-messages": {"required": required_message},
    })


def vector_store_schema() -> dict[str, Any]:
    """The JSON Schema of one shared vector store file (``vector_stores/<key>.yaml``)."""
    return _file_schema(
        "asstctl vector store spec (vector_stores/<key>.yaml)",
        "Identifies the store across applies (default: the file name).",
        {**STORE_FIELDS, "prevent_destroy": {"type": "boolean", "description": "Never delete this store."}},
        "files", "`files` is required: the files of the store, e.g. `files: [docs/*.md]`",
    )


_TOOL_FIX = ("indent it under its item in `tools:`, level with `type`: `tools: [{type: function, function: "
             "{name: ..., parameters: ...}}]`")
# Keys of a tool found at the top of a spec (dedented): say where they belong instead of a look-alike field.
MISPLACED = {
    "function": f"`function` belongs to a tool, not to the assistant: {_TOOL_FIX}",
    "parameters": "`parameters` belongs to a function tool: indent it under `function:` in `tools:`",
    "parameters_file": "`parameters_file` belongs to a function tool: indent it under `function:` in `tools:`",
    "type": "`type` belongs to a tool: indent it under its item in `tools:` (`- type: function`)",
    "file_search": "`file_search` is a tool: list it under `tools:` (`tools: [file_search]`)",
    "code_interpreter": "`code_interpreter` is a tool: list it under `tools:` (`tools: [code_interpreter]`)",
    "vector_store": "`vector_store` belongs to the file_search tool: `tools: [{file_search: {vector_store: ...}}]`",
    "files": "`files` belongs to a tool: `tools: [{code_interpreter: {files: [...]}}]` or a vector store's `files`",
}


def spec_schema() -> dict[str, Any]:
    """The JSON Schema of one spec file (a fresh copy: callers may change it)."""
    overrides = {name: _nullable(name, rule) for name, rule in FIELDS.items()}
    targets = {
        "type": "object",
        "description": "Per-target overrides: `targets: {staging: {model: gpt-4o-mini}}`.",
        "additionalProperties": {"type": "object", "additionalProperties": False, "properties": overrides},
    }
    return _file_schema(
        "asstctl assistant spec (assistants/<key>.yaml)",
        "Identifies the assistant across applies (default: the file name).",
        {**FIELDS, "targets": targets},
        "model", "`model` is required: the model the assistant uses, e.g. `model: gpt-4o`",
        allOf=[_exclusive("instructions", "instructions_file")], **{"x-misplaced": MISPLACED},
    )


@functools.lru_cache(maxsize=None)
def shared_schema(kind: str) -> dict[str, Any]:
    """The schema of ``kind`` (``assistant`` or ``vector_store``) shared by every validation of a process,
    so :func:`validator_for` compiles it once."""
    return spec_schema() if kind == "assistant" else vector_store_schema()


def _nullable(name: str, rule: dict[str, Any]) -> dict[str, Any]:
    """In a target override ``null`` removes the base's value (except for ``model``)."""
    if name in _NEVER_NULL:
        return rule
    return {"anyOf": [{"type": "null"}, rule]}


# --- formatting -------------------------------------------------------------------------------------

_VALIDATORS: dict[int, tuple[dict[str, Any], Any]] = {}


def validator_for(schema: dict[str, Any]):
    """A compiled validator, built once per schema object."""
    cached = _VALIDATORS.get(id(schema))
    if cached is None or cached[0] is not schema:
        from jsonschema import Draft202012Validator

        cached = _VALIDATORS[id(schema)] = (schema, Draft202012Validator(schema))
    return cached[1]


def schema_problems(doc, schema: dict[str, Any]) -> list[str]:
    """Every schema error of ``doc.data`` as ``path:line:col: message``, in file order; a document that plainly fits
    (the usual case) is answered without jsonschema (asstctl.spec.quickvalid)."""
    from asstctl.spec.quickvalid import fits

    if fits(doc.data, schema) is True:
        return []
    found: list[tuple[tuple[int, int], str]] = []
    for error in validator_for(schema).iter_errors(doc.data):
        for leaf in _leaves(error):
            found += [(doc.position(path), message) for path, message in _describe(leaf)]
    return [f"{doc.path}:{line}:{col}: {message}" for (line, col), message in sorted(set(found))]


def _leaves(error) -> list:
    """anyOf/oneOf: the errors of the branch whose type fits the value (all of them if none fits)."""
    if error.validator not in ("anyOf", "oneOf") or not error.context:
        return [error]
    branches: dict[int, list] = {}
    for sub in error.context:
        branches.setdefault(sub.relative_schema_path[0], []).append(sub)
    fitting = [errors for errors in branches.values() if not any(_is_type_miss(e) for e in errors)]
    if not fitting:
        return [error]  # described as the alternatives (see _alternatives)
    return [leaf for sub in min(fitting, key=len) for leaf in _leaves(sub)]


def _is_type_miss(error) -> bool:
    """Whether the value is not even of the kind this branch is about (a list where a mapping goes)."""
    if error.relative_path:
        return False
    if error.validator in ("anyOf", "oneOf"):
        return all(_is_type_miss(sub) for sub in error.context)
    return error.validator == "type" or (
        error.validator in ("enum", "const") and not isinstance(error.instance, (str, type(None))))


def _describe(error) -> list[tuple[tuple, str]]:
    """(JSON path, message) pairs for one leaf error."""
    path = tuple(error.absolute_path)
    custom = (error.schema.get("x-messages") or {}).get(error.validator) if isinstance(error.schema, dict) else None
    if custom:
        return [(path, custom.format(name=field_name(path), value=_count(error.instance)))]
    if error.validator == "additionalProperties":
        return _unknown_fields(error, path)
    if "propertyNames" in error.schema_path:
        return [(path + (error.instance,), _bad_key(path, error))]
    return [(path, _MESSAGES.get(error.validator, _generic)(error, field_name(path)))]


def field_name(path: tuple) -> str:
    """``("tools", 0, "function", "name")`` → ``\\`tools[0].function.name\\```."""
    if not path:
        return "the file"
    text = ""
    for step in path:
        text += f"[{step}]" if isinstance(step, int) else (f".{step}" if text else str(step))
    return f"`{text}`"


def _count(value: Any) -> Any:
    """A message's ``{value}``: the size of a text, list or mapping; a scalar as YAML writes it (true, null)."""
    if isinstance(value, (dict, list, str)):
        return len(value)
    return json.dumps(value) if isinstance(value, bool) or value is None else value


def _unknown_fields(error, path: tuple) -> list[tuple[tuple, str]]:
    known = list((error.schema.get("properties") or {}).keys())
    misplaced = error.schema.get("x-misplaced") or {}
    extra = [key for key in error.instance if key not in known]
    return [(path + (key,), misplaced.get(key) or unknown_field(str(key), known)) for key in extra]


def unknown_field(key: str, known: list[str]) -> str:
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    hint = f" (did you mean `{close[0]}`?)" if close else f" (known fields: {', '.join(known)})"
    return f"unknown field `{key}`{hint}"


def _bad_key(path: tuple, error) -> str:
    if error.validator == "not":
        return f"{field_name(path)} key `{error.instance}` is reserved: keys starting `{PREFIX}` belong to asstctl"
    return f"{field_name(path)} key `{error.instance}` is too long ({len(error.instance)} characters, at most 64)"


def show(value: Any) -> str:
    """A value as it appears in a message."""
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return json.dumps(value if len(value) <= 40 else value[:37] + "...", ensure_ascii=False)
    try:
        return json.dumps(value)
    except TypeError:
        return f"{type(value).__name__} {value}"


_TYPE_NAMES = {"string": "a string", "number": "a number", "integer": "a whole number", "boolean": "true or false",
               "object": "a mapping", "array": "a list", "null": "null"}


def _type(error, name: str) -> str:
    types = error.validator_value if isinstance(error.validator_value, list) else [error.validator_value]
    shown = [t for t in types if t != "null"] or types
    return f"{name} must be {' or '.join(_TYPE_NAMES.get(t, t) for t in shown)} (got {show(error.instance)})"


def _bounds(error, name: str) -> str:
    low, high = error.schema.get("minimum"), error.schema.get("maximum")
    if low is not None and high is not None:
        return f"{name} must be between {low} and {high} (got {show(error.instance)})"
    word = "at least" if error.validator == "minimum" else "at most"
    return f"{name} must be {word} {error.validator_value} (got {show(error.instance)})"


def _length(error, name: str) -> str:
    if error.validator == "minLength" and error.validator_value == 1:
        return f"{name} must not be empty"
    word = "at least" if error.validator == "minLength" else "at most"
    return f"{name} is {len(error.instance):,} characters long; it must be {word} {error.validator_value:,}"


def _items(error, name: str) -> str:
    word = "at least" if error.validator in ("minItems", "minProperties") else "at most"
    unit = "items" if error.validator.endswith("Items") else "keys"
    return f"{name} has {len(error.instance)} {unit}; it must have {word} {error.validator_value}"


def _enum(error, name: str) -> str:
    unexpressed = (error.schema.get("x-unexpressed") or {}).get(error.instance) if isinstance(error.instance, str) else None
    if unexpressed:
        return f"{name}: {unexpressed}"
    choices = [c for c in error.validator_value if c is not None]
    close = difflib.get_close_matches(str(error.instance), [str(c) for c in choices], n=1, cutoff=0.6)
    hint = f" (did you mean `{close[0]}`?)" if close else ""
    return f"{name} must be one of {', '.join(map(str, choices))} (got {show(error.instance)}){hint}"


def _pattern(error, name: str) -> str:
    return f"{name} must match {error.validator_value} (got {show(error.instance)})"


def _alternatives(error, name: str) -> str:
    options = [option for branch in error.validator_value for option in _expected(branch)]
    if not options:
        return _generic(error, name)
    return f"{name} must be {' or '.join(options)} (got {show(error.instance)})"


def _expected(branch: dict[str, Any]) -> list[str]:
    """What a subschema accepts, in words: ``["one of a, b"]``, ``["a list"]``..."""
    if "enum" in branch:
        return [f"one of {', '.join(str(c) for c in branch['enum'] if c is not None)}"]
    if "const" in branch:
        return [show(branch["const"])]
    if "type" in branch:
        types = branch["type"] if isinstance(branch["type"], list) else [branch["type"]]
        return [_TYPE_NAMES.get(t, t) for t in types]
    return [option for sub in branch.get("anyOf") or branch.get("oneOf") or [] for option in _expected(sub)]


def _generic(error, name: str) -> str:
    return f"{name}: {error.message}"


def _required(error, name: str) -> str:
    """The standard wording ("'cwd' is a required property"), kept for all files, then where and what to add: the
    mapping's own example (the first `{...}` its description shows), else ``key: ...``."""
    missing = re.match(r"'(.+)' is a required property", error.message)
    key = missing[1] if missing else "..."
    where = "" if name == "the file" else f" of {name}"
    description = error.schema.get("description", "") if isinstance(error.schema, dict) else ""
    example = re.search(r"`(\{[^`]*\b" + re.escape(key) + r"\b[^`]*\})`", description)
    return f"{error.message}{where}: add it, e.g. `{example[1] if example else key + ': ...'}`"


_MESSAGES = {
    "type": _type, "minimum": _bounds, "maximum": _bounds, "exclusiveMinimum": _bounds, "exclusiveMaximum": _bounds,
    "minLength": _length, "maxLength": _length, "minItems": _items, "maxItems": _items, "minProperties": _items,
    "maxProperties": _items, "enum": _enum, "anyOf": _alternatives, "oneOf": _alternatives, "pattern": _pattern, "required": _required,
    "const": lambda error, name: f"{name} must be {show(error.validator_value)} (got {show(error.instance)})",
}
