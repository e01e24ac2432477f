"""Request-body validation shared by every route, written from the official OpenAPI
schemas (Create*/Modify* requests are ``additionalProperties: false``) and the limits
table of the reference (§4). Errors are worded like the real API's validator and carry
the JSON path of the offending value as ``param`` (e.g. ``tools[0].function.name``).

Every ``check_*`` function raises ``APIError`` (400) on bad input and returns nothing
useful; the builders at the end turn validated input into stored/returned objects.
"""

from __future__ import annotations

import re
from typing import Any, Iterable

from asstctl.server.errors import invalid, missing_parameter, unknown_parameter

NAME_PATTERN = "^[a-zA-Z0-9_-]+$"
TOOL_TYPES = ("code_interpreter", "file_search", "function")
REASONING_EFFORTS = ("none", "minimal", "low", "medium", "high", "xhigh", "max")
RESPONSE_FORMAT_TYPES = ("text", "json_object", "json_schema")
IMAGE_DETAILS = ("auto", "low", "high")
AUTO_CHUNKING = {"type": "static", "static": {"max_chunk_size_tokens": 800, "chunk_overlap_tokens": 400}}

_TYPE_NAMES = {
    "string": "a string",
    "integer": "an integer",
    "number": "a decimal",
    "boolean": "a boolean",
    "object": "an object",
    "array": "an array",
}


# --------------------------------------------------------------------------- primitives


def path(prefix: str, name: str | int) -> str:
    """JSON path join: ``path("tools", 0) == "tools[0]"``, ``path("a", "b") == "a.b"``."""
    if isinstance(name, int):
        return f"{prefix}[{name}]"
    return f"{prefix}.{name}" if prefix else name


def type_of(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def _matches(value: Any, expected: str) -> bool:
    actual = type_of(value)
    return actual == expected or (expected == "number" and actual == "integer")


def check_type(value: Any, param: str, expected: str, nullable: bool = False) -> bool:
    """Raise ``invalid_type`` unless ``value`` has the JSON type; False when it is an allowed null."""
    if value is None and nullable:
        return False
    if not _matches(value, expected):
        got = "null" if value is None else _TYPE_NAMES.get(type_of(value), type_of(value))
        raise invalid(
            param, f"Invalid type for '{param}': expected {_TYPE_NAMES[expected]}, but got {got} instead.", "invalid_type"
        )
    return True


def check_fields(body: Any, allowed: Iterable[str], required: Iterable[str] = (), prefix: str = "") -> None:
    """The object has no unknown keys and every required key (``prefix`` = JSON path of ``body``)."""
    if prefix:
        check_type(body, prefix, "object")
    allowed = set(allowed)
    for key in body:
        if key not in allowed:
            raise unknown_parameter(path(prefix, key))
    for key in required:
        if key not in body:
            raise missing_parameter(path(prefix, key))


def check_string(
    value: Any, param: str, max_len: int | None = None, nullable: bool = False, pattern: str | None = None
) -> None:
    if not check_type(value, param, "string", nullable):
        return
    if max_len is not None and len(value) > max_len:
        raise invalid(
            param,
            f"Invalid '{param}': string too long. Expected a string with maximum length {max_len}, "
            f"but got a string with length {len(value)} instead.",
            "string_above_max_length",
        )
    if pattern is not None and not re.match(pattern, value):
        raise invalid(
            param,
            f"Invalid '{param}': string does not match pattern. Expected a string that matches the pattern '{pattern}'.",
        )


def check_enum(value: Any, param: str, choices: Iterable[str], nullable: bool = False) -> None:
    if not check_type(value, param, "string", nullable):
        return
    choices = tuple(choices)
    if value not in choices:
        listed = ", ".join(f"'{c}'" for c in choices[:-1]) + f" and '{choices[-1]}'" if len(choices) > 1 else f"'{choices[0]}'"
        raise invalid(param, f"Invalid value: '{value}'. Supported values are: {listed}.")


def check_number(
    value: Any,
    param: str,
    lo: float | None = None,
    hi: float | None = None,
    *,
    nullable: bool = True,
    integer: bool = False,
) -> None:
    """A number (or integer) within [lo, hi]; codes ``decimal_above_max_value`` / ``integer_below_min_value``..."""
    if not check_type(value, param, "integer" if integer else "number", nullable):
        return
    kind = "integer" if integer else "decimal"
    if lo is not None and value < lo:
        raise invalid(
            param,
            f"Invalid '{param}': {kind} below minimum value. Expected a value >= {lo}, but got {value} instead.",
            f"{kind}_below_min_value",
        )
    if hi is not None and value > hi:
        raise invalid(
            param,
            f"Invalid '{param}': {kind} above maximum value. Expected a value <= {hi}, but got {value} instead.",
            f"{kind}_above_max_value",
        )


def check_boolean(value: Any, param: str, nullable: bool = False) -> None:
    check_type(value, param, "boolean", nullable)


def check_array(
    value: Any, param: str, max_items: int | None = None, min_items: int | None = None, nullable: bool = False
) -> bool:
    """An array within the size limits; False when it is an allowed null."""
    if not check_type(value, param, "array", nullable):
        return False
    if max_items is not None and len(value) > max_items:
        raise invalid(
            param,
            f"Invalid '{param}': array too long. Expected an array with maximum length {max_items}, "
            f"but got an array with length {len(value)} instead.",
            "array_above_max_length",
        )
    if min_items is not None and len(value) < min_items:
        raise invalid(
            param,
            f"Invalid '{param}': array too short. Expected an array with minimum length {min_items}, "
            f"but got an array with length {len(value)} instead.",
            "array_below_min_length",
        )
    return True


def check_string_array(value: Any, param: str, max_items: int | None = None, min_items: int | None = None) -> None:
    if check_array(value, param, max_items, min_items):
        for i, item in enumerate(value):
            check_string(item, path(param, i))


def check_map(value: Any, param: str, max_keys: int, key_len: int = 64) -> bool:
    """An object of at most ``max_keys`` keys, each ≤ ``key_len`` chars; False when null."""
    if not check_type(value, param, "object", nullable=True):
        return False
    if len(value) > max_keys:
        raise invalid(
            param,
            f"Invalid '{param}': too many properties. Expected an object with at most {max_keys} properties, "
            f"but got an object with {len(value)} properties instead.",
            "object_above_max_properties",
        )
    for key in value:
        if len(key) > key_len:
            raise invalid(
                param,
                f"Invalid '{param}': key too long. Expected a key with maximum length {key_len}, "
                f"but got a key with length {len(key)} instead ('{key[:20]}...').",
                "string_above_max_length",
            )
    return True


def check_metadata(value: Any, param: str = "metadata") -> None:
    """Nullable map string→string: ≤16 keys, keys ≤64 chars, values ≤512 chars."""
    if check_map(value, param, 16):
        for key, item in value.items():
            check_string(item, path(param, key), 512)


def check_attributes(value: Any, param: str = "attributes") -> None:
    """Vector-store file attributes: ≤16 keys ≤64 chars; values string ≤512, number or boolean."""
    if not check_map(value, param, 16):
        return
    for key, item in value.items():
        where = path(param, key)
        if isinstance(item, str):
            check_string(item, where, 512)
        elif type_of(item) not in ("integer", "number", "boolean"):
            raise invalid(
                where,
                f"Invalid type for '{where}': expected a string, a decimal or a boolean, "
                f"but got {_TYPE_NAMES.get(type_of(item), 'null')} instead.",
                "invalid_type",
            )


def check_optional(body: dict, checks: dict[str, Any], prefix: str = "") -> None:
    """Run ``checks[key](value, param)`` for each present key of ``body``."""
    for key, check in checks.items():
        if key in body:
            check(body[key], path(prefix, key))


# --------------------------------------------------------------------------- tools


def check_function(value: Any, param: str) -> None:
    check_fields(value, ("name", "description", "parameters", "strict"), ("name",), param)
    check_string(value["name"], path(param, "name"), 64, pattern=NAME_PATTERN)
    check_optional(
        value,
        {
            "description": lambda v, p: check_string(v, p),
            "parameters": lambda v, p: check_type(v, p, "object"),
            "strict": lambda v, p: check_boolean(v, p, nullable=True),
        },
        param,
    )


def check_ranking_options(value: Any, param: str, rankers: tuple[str, ...] = ("auto", "default_2024_08_21")) -> None:
    check_fields(value, ("ranker", "score_threshold"), ("score_threshold",), param)
    check_number(value["score_threshold"], path(param, "score_threshold"), 0, 1, nullable=False)
    if "ranker" in value:
        check_enum(value["ranker"], path(param, "ranker"), rankers)


def check_file_search_options(value: Any, param: str) -> None:
    check_fields(value, ("max_num_results", "ranking_options"), (), param)
    check_optional(
        value,
        {
            "max_num_results": lambda v, p: check_number(v, p, 1, 50, nullable=False, integer=True),
            "ranking_options": check_ranking_options,
        },
        param,
    )


def check_tool(value: Any, param: str) -> None:
    """One tool: ``code_interpreter``, ``file_search`` (options) or ``function`` (name pattern, ≤64)."""
    check_type(value, param, "object")
    if "type" not in value:
        raise missing_parameter(path(param, "type"))
    check_enum(value["type"], path(param, "type"), TOOL_TYPES)
    extra = {"code_interpreter": (), "file_search": ("file_search",), "function": ("function",)}[value["type"]]
    check_fields(value, ("type", *extra), ("function",) if value["type"] == "function" else (), param)
    if value["type"] == "function":
        check_function(value["function"], path(param, "function"))
    elif value.get("file_search") is not None:
        check_file_search_options(value["file_search"], path(param, "file_search"))


def check_tools(value: Any, param: str = "tools", max_items: int = 128) -> None:
    """A tools list: ≤128 on assistants, ≤20 as a run override."""
    check_array(value, param, max_items)
    for i, tool in enumerate(value):
        check_tool(tool, path(param, i))


# --------------------------------------------------------------------------- resources, formats


def check_chunking_strategy(value: Any, param: str = "chunking_strategy") -> None:
    """``{"type":"auto"}`` or ``{"type":"static","static":{max_chunk_size_tokens 100-4096, chunk_overlap_tokens ≤ half}}``."""
    check_type(value, param, "object")
    if "type" not in value:
        raise missing_parameter(path(param, "type"))
    check_enum(value["type"], path(param, "type"), ("auto", "static"))
    if value["type"] == "auto":
        check_fields(value, ("type",), (), param)
        return
    check_fields(value, ("type", "static"), ("static",), param)
    static = path(param, "static")
    check_fields(value["static"], ("max_chunk_size_tokens", "chunk_overlap_tokens"), ("max_chunk_size_tokens", "chunk_overlap_tokens"), static)
    size, overlap = value["static"]["max_chunk_size_tokens"], value["static"]["chunk_overlap_tokens"]
    check_number(size, path(static, "max_chunk_size_tokens"), 100, 4096, nullable=False, integer=True)
    check_number(overlap, path(static, "chunk_overlap_tokens"), 0, nullable=False, integer=True)
    if overlap > size / 2:
        raise invalid(
            path(static, "chunk_overlap_tokens"),
            f"Invalid '{path(static, 'chunk_overlap_tokens')}': chunk_overlap_tokens must not exceed half of "
            f"max_chunk_size_tokens ({size // 2}), but got {overlap}.",
        )


def check_vector_store_helper(value: Any, param: str) -> None:
    check_array(value, param, 1)
    for i, store in enumerate(value):
        where = path(param, i)
        check_fields(store, ("file_ids", "chunking_strategy", "metadata"), (), where)
        check_optional(
            store,
            {
                "file_ids": lambda v, p: check_string_array(v, p, 100_000_000),
                "chunking_strategy": check_chunking_strategy,
                "metadata": check_metadata,
            },
            where,
        )


def check_tool_resources(value: Any, param: str = "tool_resources", *, helper: bool = False) -> None:
    """Nullable ``{code_interpreter: {file_ids ≤20}, file_search: {vector_store_ids ≤1}}``;
    ``helper=True`` (create only) also accepts ``file_search.vector_stores`` (≤1), not together with ids."""
    if not check_type(value, param, "object", nullable=True):
        return
    check_fields(value, ("code_interpreter", "file_search"), (), param)
    if value.get("code_interpreter") is not None:
        where = path(param, "code_interpreter")
        check_fields(value["code_interpreter"], ("file_ids",), (), where)
        check_optional(value["code_interpreter"], {"file_ids": lambda v, p: check_string_array(v, p, 20)}, where)
    if value.get("file_search") is not None:
        _check_file_search_resources(value["file_search"], path(param, "file_search"), helper)


def _check_file_search_resources(value: Any, where: str, helper: bool) -> None:
    allowed = ("vector_store_ids", "vector_stores") if helper else ("vector_store_ids",)
    check_fields(value, allowed, (), where)
    check_optional(
        value,
        {"vector_store_ids": lambda v, p: check_string_array(v, p, 1), "vector_stores": check_vector_store_helper},
        where,
    )
    if len(value.get("vector_store_ids") or []) + len(value.get("vector_stores") or []) > 1:
        raise invalid(
            path(where, "vector_stores"),
            f"Invalid '{where}': only one vector store can be attached; use either 'vector_store_ids' or "
            "'vector_stores', not both.",
        )


def check_response_format(value: Any, param: str = "response_format") -> None:
    """Nullable ``"auto"`` or ``{"type": text|json_object|json_schema, ...}``."""
    if value is None:
        return
    if isinstance(value, str):
        check_enum(value, param, ("auto",))
        return
    check_type(value, param, "object")
    if "type" not in value:
        raise missing_parameter(path(param, "type"))
    check_enum(value["type"], path(param, "type"), RESPONSE_FORMAT_TYPES)
    if value["type"] != "json_schema":
        check_fields(value, ("type",), (), param)
        return
    check_fields(value, ("type", "json_schema"), ("json_schema",), param)
    schema = path(param, "json_schema")
    check_fields(value["json_schema"], ("name", "description", "schema", "strict"), ("name",), schema)
    check_string(value["json_schema"]["name"], path(schema, "name"), 64, pattern=NAME_PATTERN)
    check_optional(
        value["json_schema"],
        {
            "description": lambda v, p: check_string(v, p),
            "schema": lambda v, p: check_type(v, p, "object"),
            "strict": lambda v, p: check_boolean(v, p, nullable=True),
        },
        schema,
    )


def check_reasoning_effort(value: Any, param: str = "reasoning_effort") -> None:
    check_enum(value, param, REASONING_EFFORTS, nullable=True)


def check_temperature(value: Any, param: str = "temperature") -> None:
    check_number(value, param, 0, 2)


def check_top_p(value: Any, param: str = "top_p") -> None:
    check_number(value, param, 0, 1)


def check_truncation_strategy(value: Any, param: str = "truncation_strategy") -> None:
    if not check_type(value, param, "object", nullable=True):
        return
    check_fields(value, ("type", "last_messages"), ("type",), param)
    check_enum(value["type"], path(param, "type"), ("auto", "last_messages"))
    if "last_messages" in value:
        check_number(value["last_messages"], path(param, "last_messages"), 1, integer=True)


def check_tool_choice(value: Any, param: str = "tool_choice") -> None:
    if value is None:
        return
    if isinstance(value, str):
        check_enum(value, param, ("none", "auto", "required"))
        return
    check_fields(value, ("type", "function"), ("type",), param)
    check_enum(value["type"], path(param, "type"), TOOL_TYPES)
    if value["type"] == "function":
        if "function" not in value:
            raise missing_parameter(path(param, "function"))
        check_fields(value["function"], ("name",), ("name",), path(param, "function"))
        check_string(value["function"]["name"], path(param, "function.name"))


def check_token_limit(value: Any, param: str) -> None:
    """``max_prompt_tokens`` / ``max_completion_tokens``: nullable integer ≥ 256."""
    check_number(value, param, 256, integer=True)


# --------------------------------------------------------------------------- messages


def check_content_part(value: Any, param: str) -> None:
    check_type(value, param, "object")
    if "type" not in value:
        raise missing_parameter(path(param, "type"))
    kind = value["type"]
    check_enum(kind, path(param, "type"), ("text", "image_file", "image_url"))
    check_fields(value, ("type", kind), (kind,), param)
    where = path(param, kind)
    if kind == "text":
        check_string(value["text"], where)
        return
    key = "file_id" if kind == "image_file" else "url"
    check_fields(value[kind], (key, "detail"), (key,), where)
    check_string(value[kind][key], path(where, key))
    if "detail" in value[kind]:
        check_enum(value[kind]["detail"], path(where, "detail"), IMAGE_DETAILS)


def check_content(value: Any, param: str = "content") -> None:
    """A string, or a non-empty array of text / image_file / image_url parts."""
    if isinstance(value, str):
        return
    if not _matches(value, "array"):
        raise invalid(
            param,
            f"Invalid type for '{param}': expected one of a string or array of objects, "
            f"but got {_TYPE_NAMES.get(type_of(value), 'null')} instead.",
            "invalid_type",
        )
    check_array(value, param, min_items=1)
    for i, part in enumerate(value):
        check_content_part(part, path(param, i))


def check_attachments(value: Any, param: str = "attachments") -> None:
    """Nullable ``[{file_id, tools: [{type: code_interpreter|file_search}]}]``."""
    if not check_array(value, param, nullable=True):
        return
    for i, item in enumerate(value):
        where = path(param, i)
        check_fields(item, ("file_id", "tools"), ("file_id", "tools"), where)
        check_string(item["file_id"], path(where, "file_id"))
        check_array(item["tools"], path(where, "tools"))
        for j, tool in enumerate(item["tools"]):
            tool_path = path(path(where, "tools"), j)
            check_fields(tool, ("type",), ("type",), tool_path)
            check_enum(tool["type"], path(tool_path, "type"), ("code_interpreter", "file_search"))


def check_message_create(body: Any, param_prefix: str = "") -> None:
    """A ``CreateMessageRequest`` (top level, or e.g. ``messages[0]`` / ``additional_messages[1]``)."""
    if param_prefix:
        check_type(body, param_prefix, "object")
    check_fields(body, ("role", "content", "attachments", "metadata"), ("role", "content"), param_prefix)
    check_enum(body["role"], path(param_prefix, "role"), ("user", "assistant"))
    check_content(body["content"], path(param_prefix, "content"))
    check_optional(body, {"attachments": check_attachments, "metadata": check_metadata}, param_prefix)


def check_messages(value: Any, param: str) -> None:
    """An array of create-message bodies (``messages`` of a thread, ``additional_messages`` of a run)."""
    if check_array(value, param, nullable=True):
        for i, message in enumerate(value):
            check_message_create(message, path(param, i))


# --------------------------------------------------------------------------- builders


def message_content(content: str | list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Request content → returned content blocks (text gets ``annotations: []``)."""
    if isinstance(content, str):
        content = [{"type": "text", "text": content}]
    blocks = []
    for part in content:
        if part["type"] == "text":
            blocks.append({"type": "text", "text": {"value": part["text"], "annotations": []}})
        else:
            blocks.append({"type": part["type"], part["type"]: dict(part[part["type"]])})
    return blocks


def normalize_tool(tool: dict[str, Any]) -> dict[str, Any]:
    """A tool as returned: functions get ``strict: false`` when unset; ``file_search`` gets its
    ``ranking_options`` (ranker ``default_2024_08_21``, ``score_threshold`` 0.0) as the API shows them."""
    tool = {k: v for k, v in tool.items() if v is not None}
    if tool["type"] == "file_search":
        options = {k: v for k, v in (tool.get("file_search") or {}).items() if v is not None}
        ranking = {"ranker": "default_2024_08_21", "score_threshold": 0.0, **(options.get("ranking_options") or {})}
        tool["file_search"] = {**options, "ranking_options": ranking}
    if tool["type"] == "function":
        function = {k: v for k, v in tool["function"].items() if v is not None}
        function.setdefault("strict", False)
        tool["function"] = function
    return tool


def normalize_tools(tools: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    return [normalize_tool(t) for t in tools or []]


def tool_resources_object(value: dict[str, Any] | None) -> dict[str, Any]:
    """Stored/returned tool_resources: only sub-objects that were sent, lists defaulted to ``[]``."""
    result: dict[str, Any] = {}
    value = value or {}
    if value.get("code_interpreter") is not None:
        result["code_interpreter"] = {"file_ids": list(value["code_interpreter"].get("file_ids") or [])}
    if value.get("file_search") is not None:
        result["file_search"] = {"vector_store_ids": list(value["file_search"].get("vector_store_ids") or [])}
    return result


def merge_tool_resources(current: dict[str, Any] | None, change: dict[str, Any] | None) -> dict[str, Any]:
    """Modify semantics: each sent sub-object's lists override the stored ones; null clears everything."""
    if change is None:
        return {}
    merged = dict(current or {})
    merged.update(tool_resources_object(change))
    return merged


def resolve_chunking(value: dict[str, Any] | None) -> dict[str, Any]:
    """``auto`` (or nothing) comes back as static 800/400."""
    if value is None or value.get("type") == "auto":
        return {"type": "static", "static": dict(AUTO_CHUNKING["static"])}
    return {"type": "static", "static": dict(value["static"])}
