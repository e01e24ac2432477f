"""The scripted Agents API's rules (tests/agents/scripted.py): the request limits it enforces and how it stores an
agent (every server-resolved default of shared/reference/agents-beta.md §3 filled in) and shows its tools in a
session."""

from __future__ import annotations

import json
from typing import Any

TOOLS_LIMIT = 3 * 1024 * 1024


def limits(body: dict[str, Any]) -> str | None:
    metadata = body.get("metadata") or {}
    if len(metadata) > 16:
        return f"metadata: {len(metadata)} pairs; at most 16 are allowed"
    for key, value in metadata.items():
        if len(key) > 64 or len(value) > 512:
            return f"metadata: key {key[:70]!r} or its value is too long (64 / 512 characters)"
    size = len(json.dumps(body.get("tools") or [], separators=(",", ":"), ensure_ascii=False).encode())
    if size > TOOLS_LIMIT:
        return f"tools: {size} bytes; at most {TOOLS_LIMIT} are allowed"
    return None


DEFAULTS: dict[str, Any] = {
    "name": None, "instructions": None, "metadata": {}, "tools": [],
    "reasoning": {"effort": None, "summary": None},
    "text": {"format": {"type": "text"}, "verbosity": "medium"},
    "service_tier": "auto",
    "multi_agent": {"enabled": False, "max_concurrent_subagents": None},
    "compaction": {"async": False},
    "experimental": {"time_awareness": False},
}


def materialized(body: dict[str, Any], old: dict[str, Any] | None = None, explicit: bool = False,
                 effort: str | None = None) -> dict[str, Any]:
    """The stored fields after a create (``old`` None: every default) or an update (only the fields sent;
    null resets one; ``metadata`` and ``tools`` replaced whole; ``experimental`` merged by key). ``explicit``: the
    API also returns the defaults its models leave optional (a function's ``async: false``, a web search's
    ``location`` with every field null); ``effort``: the model's default effort, returned for an omitted one (the
    SDK's ``Agent.reasoning``: "including the model default for an omitted effort")."""
    out: dict[str, Any] = {} if old is not None else json.loads(json.dumps(DEFAULTS))
    for name, value in body.items():
        if name == "model":
            out["model"] = value
        elif name in ("name", "instructions"):
            out[name] = value
        elif name == "metadata":
            out["metadata"] = dict(value or {})
        elif name == "tools":
            out["tools"] = [tool(item, explicit) for item in value or []]
        elif name == "reasoning":
            out["reasoning"] = {**DEFAULTS["reasoning"], **(value or {})}
        elif name == "text":
            out["text"] = {"format": (value or {}).get("format") or {"type": "text"},
                           "verbosity": (value or {}).get("verbosity") or "medium"}
        elif name == "service_tier":
            out["service_tier"] = value or "auto"
        elif name == "multi_agent":
            enabled = bool((value or {}).get("enabled"))
            out["multi_agent"] = {"enabled": enabled, "max_concurrent_subagents":
                                  (value or {}).get("max_concurrent_subagents") or (6 if enabled else None)}
        elif name == "compaction":  # "Accepted for compatibility and ignored" (SDK 3.63): always blocking
            out["compaction"] = {"async": False}
        elif name == "experimental":  # "Experimental settings to merge by key. Omitted settings keep their values."
            out["experimental"] = {**((old or {}).get("experimental") or DEFAULTS["experimental"]), **(value or {})}
    if effort is not None and "reasoning" in out and out["reasoning"]["effort"] is None:
        out["reasoning"] = {**out["reasoning"], "effort": effort}
    return out


def session_tools(saved: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A saved agent's tools (``PersistedAgentTool``) as its session shows them (``AgentTool``): an HTTP MCP
    transport without its saved ``headers`` (``McpTransportResourceHTTP`` has none); ``tool_search``, which only
    the saved form has, left out."""
    out = []
    for item in saved:
        if item["type"] == "tool_search":
            continue
        if item["type"] == "mcp" and item["transport"]["type"] == "http":
            item = {**item, "transport": {key: value for key, value in item["transport"].items() if key != "headers"}}
        out.append(item)
    return out


def tool(item: dict[str, Any], explicit: bool = False) -> dict[str, Any]:
    """A tool as the API returns it: its defaults filled in (``explicit``: the optional ones too)."""
    kind = item["type"]
    if kind == "function":
        return {"defer_loading": False, **({"async": False} if explicit else {}), **item}
    if kind == "mcp":
        transport = dict(item["transport"])
        transport.update({"headers": transport.get("headers") or {}} if transport["type"] == "http" else
                         {"args": transport.get("args") or [], "env_vars": transport.get("env_vars") or []})
        return {"allowed_tools": None, "connection_origin": "service", "request_metadata": {}, "required": False,
                **{key: value for key, value in item.items() if value is not None}, "transport": transport}
    if kind == "web_search":
        nowhere = {"location": dict.fromkeys(("city", "country", "region", "timezone"))} if explicit else {}
        return {"allowed_domains": None, "context_size": "medium", "mode": "live", **nowhere,
                **{key: value for key, value in item.items() if value is not None}}
    if kind == "computer_use":
        return {"include_screenshots": False, **item}
    if kind == "programmatic_tool_calling":
        return {"enabled": True, **item}
    return dict(item)
