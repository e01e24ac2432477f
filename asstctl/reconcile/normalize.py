"""Normalization: one comparable form for a spec's fields and a remote assistant.

Both sides go through ``content()`` before they are compared or hashed, so that a
server's defaults never show up as a change (reference §7). The rules:

* ``name``/``description``/``instructions``: ``None`` ≡ ``""`` ≡ absent;
* ``temperature``/``top_p``: ``None`` ≡ absent ≡ ``1.0``; numbers rounded to 6 places (``1`` ≡ ``1.0``);
* ``response_format``: ``None`` ≡ absent ≡ ``"auto"``; ``json_schema.strict`` missing ≡ ``false``;
* ``metadata``: ``None`` ≡ ``{}``; only the user's keys (asstctl's tags are compared separately);
* ``tool_resources``: ``None`` ≡ ``{}`` ≡ empty lists; id lists are sets (sorted);
* ``tools``: the API keeps the order but the model does not depend on it, so tools are a
  *mapping* keyed by identity (``function:<name>``, ``file_search``, ``code_interpreter``):
  reordering tools in a spec is not a change, and diffs name the tool instead of an index;
  a function's ``strict`` missing ≡ ``false``, ``parameters`` missing ≡ ``{}`` ≡
  ``{"type": "object", "properties": {}}``, ``description`` missing ≡ ``""``;
  ``file_search``: ranker ``default_2024_08_21`` ≡ ``auto``, ``score_threshold`` missing ≡ 0,
  default ranking options and the model's default ``max_num_results`` (5 for gpt-3.5*, else 20) dropped;
* ``model``: exact;
* the Agents API's fields (docs/agents.md) with its server-resolved defaults left out, so an assistant
  (which has none of them) compares as before: ``reasoning`` ``{effort: null, summary: null}`` (a remote
  agent's ``effort`` compared only when the spec sets one: the API may resolve an omitted one to the model's),
  ``text`` ``{format: {type: text}, verbosity: medium}``, ``service_tier`` ``auto``, ``multi_agent``
  ``{enabled: false}`` (enabled: ``max_concurrent_subagents`` null ≡ 6), ``compaction`` ``{async: false}``;
  tools: a function's ``defer_loading`` and ``async`` false, an MCP server's ``allowed_tools`` null, ``request_metadata``
  ``{}``, ``required`` false, ``connection_origin`` service; web_search's ``context_size`` medium,
  ``mode`` live, ``allowed_domains`` null, a ``location`` whose fields are all null; computer_use's ``include_screenshots`` false.

``reasoning_effort`` is not returned by the API: it is *hidden* and compared through the
spec-hash tag (see ``asstctl.ownership.hash_tag``).
"""

from __future__ import annotations

from typing import Any, Mapping

from asstctl.ownership import spec_hash, user_metadata

TEXT_FIELDS = ("name", "description", "instructions")
SAMPLING_FIELDS = ("temperature", "top_p")
HIDDEN_FIELDS = ("reasoning_effort",)
EMPTY_PARAMETERS = {"type": "object", "properties": {}}


def content(fields: Mapping[str, Any], desired: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The comparable content of an assistant: spec fields or a remote object (as a dict); for a remote object,
    ``desired`` (the spec's fields) says what the server resolves itself (``agent_fields``)."""
    model = fields.get("model")
    out: dict[str, Any] = {"model": model}
    out.update({name: fields[name] for name in TEXT_FIELDS if fields.get(name)})
    out.update({name: number(fields.get(name)) for name in SAMPLING_FIELDS})
    out["response_format"] = response_format(fields.get("response_format"))
    out["tools"] = tools(fields.get("tools"), model)
    out["tool_resources"] = tool_resources(fields.get("tool_resources"))
    out["metadata"] = user_metadata(fields.get("metadata"))
    out.update(agent_fields(fields, desired))
    return out


def remote_content(obj: Mapping[str, Any], desired: Mapping[str, Any], recorded: str | None) -> dict[str, Any]:
    """A remote object's comparable content against the spec's fields ``desired``: with what the server resolved
    for the spec's omissions left out (``agent_fields``), unless the object is exactly as last applied (its
    content hashes to ``recorded``, the spec-hash tag's): then what it holds was asked for, and dropping it from
    the spec is a change."""
    full = content(obj)
    return full if recorded is not None and spec_hash(full) == recorded else content(obj, desired)


AGENT_DEFAULTS: dict[str, Any] = {
    "reasoning": {},
    "text": {"format": {"type": "text"}, "verbosity": "medium"},
    "service_tier": "auto",
    "multi_agent": {"enabled": False},
    "compaction": {"async": False},
    "experimental": {"time_awareness": False},
}
AGENT_TOOL_DEFAULTS: dict[str, dict[str, Any]] = {
    "function": {"defer_loading": False, "async": False},
    "mcp": {"allowed_tools": None, "request_metadata": {}, "required": False, "connection_origin": "service"},
    "web_search": {"allowed_domains": None, "context_size": "medium", "mode": "live"},
    "computer_use": {"include_screenshots": False},
}
SUBAGENTS = 6  # multi_agent.max_concurrent_subagents when enabled and not set


def agent_fields(fields: Mapping[str, Any], desired: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The Agents API's fields of ``fields`` that differ from the server's defaults. With ``desired`` (``fields``
    is then a remote agent), ``reasoning.effort`` counts only when the spec sets it: for an omitted effort the
    API may return the model's default (the SDK's ``Agent.reasoning``), which is not a change."""
    out: dict[str, Any] = {}
    for name, default in AGENT_DEFAULTS.items():
        value = fields.get(name)
        if isinstance(value, Mapping):
            value = without_none(value)
            if isinstance(default, dict):
                value = {**default, **value}
        if name == "reasoning" and desired is not None and isinstance(value, dict) and \
                not (desired.get("reasoning") or {}).get("effort"):
            value.pop("effort", None)
        if name == "multi_agent" and isinstance(value, dict) and value.get("enabled"):
            value.setdefault("max_concurrent_subagents", SUBAGENTS)
        if value is not None and value != default:
            out[name] = value
    return out


def agent_tool(kind: str, options: Mapping[str, Any]) -> dict[str, Any]:
    """An Agents API tool's options without the values the server fills in."""
    defaults = AGENT_TOOL_DEFAULTS.get(kind, {})
    out = {key: value for key, value in options.items()
           if value is not None and not (key in defaults and defaults[key] == value)}
    for nested in ("transport", "location"):  # an MCP transport's empty headers, args, env_vars; a location's nulls
        if isinstance(out.get(nested), Mapping):
            out[nested] = {key: value for key, value in out[nested].items() if value not in (None, {}, [])}
            if not out[nested]:  # a location whose fields are all null is no location
                del out[nested]
    return out


def hidden(fields: Mapping[str, Any]) -> dict[str, Any]:
    """The desired fields a server does not return."""
    return {name: fields.get(name) for name in HIDDEN_FIELDS}


def number(value: Any, default: float = 1.0) -> float:
    return round(float(default if value is None else value), 6)


def response_format(value: Any) -> Any:
    if value is None:
        return "auto"
    if not isinstance(value, Mapping):  # "auto"
        return value
    out = without_none(value)
    if out.get("type") == "json_schema":
        schema = without_none(out.get("json_schema") or {})
        schema["strict"] = bool(schema.get("strict", False))
        if not schema.get("description"):
            schema.pop("description", None)
        out["json_schema"] = schema
    return out


def tools(value: Any, model: str | None) -> dict[str, Any]:
    """Tools as a mapping identity -> normalized tool (order-insensitive)."""
    out: dict[str, Any] = {}
    for tool in value or []:
        normalized = tool_(tool, model)
        identity = tool_identity(normalized)
        while identity in out:  # the API rejects duplicates; keep both visible anyway
            identity += "'"
        out[identity] = normalized
    return out


def tool_identity(tool: Mapping[str, Any]) -> str:
    kind = str(tool.get("type"))
    if kind == "function":
        return f"function:{(tool.get('function') or {}).get('name')}"
    if kind == "mcp":
        return f"mcp:{(tool.get('mcp') or {}).get('server_label')}"
    return kind


def tool_(tool: Mapping[str, Any], model: str | None) -> dict[str, Any]:
    out = without_none(tool)
    kind = out.get("type")
    if kind == "function":
        out["function"] = function(out.get("function") or {})
    elif kind in AGENT_TOOL_DEFAULTS:
        options = agent_tool(kind, out.pop(kind, None) or {})
        if options:
            out[kind] = options
    elif out.get("type") == "file_search":
        search = file_search(out.get("file_search") or {}, model)
        out.pop("file_search", None)
        if search:
            out["file_search"] = search
    return out


def function(value: Mapping[str, Any]) -> dict[str, Any]:
    out = agent_tool("function", value)
    out["strict"] = bool(out.get("strict", False))
    parameters = out.get("parameters") or {}
    out["parameters"] = {} if parameters == EMPTY_PARAMETERS else parameters
    if not out.get("description"):
        out.pop("description", None)
    return out


def file_search(value: Mapping[str, Any], model: str | None) -> dict[str, Any]:
    out = without_none(value)
    ranking = without_none(out.pop("ranking_options", None) or {})
    if ranking.get("ranker") == "default_2024_08_21":
        ranking["ranker"] = "auto"
    ranking["score_threshold"] = number(ranking.get("score_threshold"), 0.0)
    if ranking != {"ranker": "auto", "score_threshold": 0.0} and ranking != {"score_threshold": 0.0}:
        out["ranking_options"] = {"ranker": "auto", **ranking}
    if out.get("max_num_results") == default_max_results(model):
        out.pop("max_num_results")
    return out


def default_max_results(model: str | None) -> int:
    return 5 if (model or "").startswith("gpt-3.5") else 20


def tool_resources(value: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, resource in (value or {}).items():
        lists = {key: as_set(items) for key, items in (resource or {}).items() if items}
        if lists:
            out[name] = lists
    return out


def as_set(items: Any) -> Any:
    if isinstance(items, list) and all(isinstance(item, str) for item in items):
        return sorted(set(items))
    return items


def without_none(value: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in value.items() if v is not None}

