"""The JSON Schema of the spec fields and tools only OpenAI's beta Agents API has (docs/agents.md).

``AGENT_FIELDS`` (reasoning, text, service_tier, multi_agent, compaction, experimental) and ``AGENT_TOOLS`` (mcp,
web_search, computer_use) are merged into the assistant spec schema (asstctl.spec.schema): one spec format
for both APIs. Which fields a target may use is checked per target (asstctl.spec.agents). Values and
limits are those of the SDK's types (shared/reference/agents-beta.md §3). Imports nothing of asstctl.
"""

from __future__ import annotations

from typing import Any

REASONING_SUMMARIES = ["concise", "detailed", "auto"]
VERBOSITIES = ["low", "medium", "high"]
SERVICE_TIERS = ["auto", "default", "flex", "priority", "fast", "ultrafast"]
CONTEXT_SIZES = ["low", "medium", "high"]
SEARCH_MODES = ["disabled", "cached", "live"]
CONNECTION_ORIGINS = ["service", "environment"]
AGENT_TOOL_TYPES = ["mcp", "web_search", "computer_use"]
# The SDK's agent tools and function options a spec cannot express (docs/agents.md): validate names them, and so
# import and export refuse an agent that uses them (asstctl.spec.schema: tool types, a function's fields).
_MANAGE = "remove it, or keep such an agent outside asstctl (docs/agents.md: what a spec cannot express)"
UNEXPRESSED_TOOLS = {name: f"`{name}` is an Agents API tool asstctl's spec format cannot express: {_MANAGE}"
                     for name in ("tool_search", "programmatic_tool_calling", "automations")}
UNEXPRESSED_FUNCTION_FIELDS = {name: f"`{name}` is an Agents API function option asstctl's spec format cannot "
                                     f"express ({default}): {_MANAGE}"
                               for name, default in (("defer_loading", "functions are always loaded"),
                                                     ("async", "the agent waits for each result"))}
LOCATION = {"city": "The city name.", "country": "The two-letter ISO country code, such as `US`.",
            "region": "The region or state name.", "timezone": "The IANA timezone, such as `America/Los_Angeles`."}


def _object(properties: dict[str, Any], description: str, **extra: Any) -> dict[str, Any]:
    return {"type": "object", "additionalProperties": False, "properties": properties, "description": description,
            **extra}


def _strings(description: str) -> dict[str, Any]:
    return {"type": "array", "items": {"type": "string", "minLength": 1}, "description": description}


_FORMAT = _object({
    "type": {"enum": ["text", "json_schema"], "description": "`text`: ordinary text; `json_schema`: answers follow "
                                                              "`schema`."},
    "schema": {"type": "object", "description": "JSON Schema the final answers follow (`type: json_schema`)."},
}, "`{type: text}` (the default) or `{type: json_schema, schema: {...}}`.", required=["type"], allOf=[
    {"if": {"properties": {"type": {"const": "json_schema"}}}, "then": {"required": ["schema"], "x-messages": {
        "required": "{name} is `type: json_schema` without `schema`: add the JSON Schema the answers follow, e.g. "
                    "`schema: {{type: object, properties: {{answer: {{type: string}}}}}}`, or use `type: text`"}}},
    # The SDK's TextFormatParamText has only `type`: the API would refuse the agent at apply time.
    {"if": {"properties": {"type": {"const": "text"}}}, "then": {"not": {"required": ["schema"]}, "x-messages": {
        "not": "{name} is `type: text` with a `schema`: a text format takes no schema; use `type: json_schema` "
               "for answers that follow it, or remove `schema`"}}}])


def agent_fields(efforts: list[str]) -> dict[str, Any]:
    """The top-level spec fields of an agent (``efforts``: the reasoning efforts both APIs know)."""
    return {
        "reasoning": _object({
            "effort": {"enum": [*efforts, None], "description": "Reasoning effort (null: the model's default)."},
            "summary": {"enum": [*REASONING_SUMMARIES, None], "description": "Reasoning summaries (null: none)."},
        }, "Agents API only: `{effort: low, summary: auto}`."),
        "text": _object({
            "verbosity": {"enum": VERBOSITIES, "description": "How long answers are (default medium)."},
            "format": _FORMAT,
        }, "Agents API only: `{verbosity: low, format: {type: json_schema, schema: {...}}}`."),
        "service_tier": {"enum": SERVICE_TIERS, "description": "Agents API only: the processing tier (default auto)."},
        "multi_agent": _object({
            "enabled": {"type": "boolean", "description": "Whether the agent may create and coordinate subagents."},
            "max_concurrent_subagents": {"type": "integer", "minimum": 1,  # the SDK's param takes no null
                                         "description": "At most this many subagents at once (default 6)."},
        }, "Agents API only: subagents, `{enabled: true, max_concurrent_subagents: 4}`.", required=["enabled"]),
        "compaction": _object({"async": {"type": ["boolean", "null"],
                                         "description": "Only false (or null): the API ignores it, compaction is "
                                                        "always blocking (openai SDK 3.63+); true is refused."}},
                              "Agents API only: context compaction settings, `{async: false}` (the only value)."),
        "experimental": _object({"time_awareness": {"type": "boolean", "description": "Periodic current-time "
                                                    "reminders to the model (default false)."}},
                                "Agents API only: experimental settings, `{time_awareness: true}`."),
    }


_HTTP = _object({
    "type": {"const": "http", "description": "`http`: connect to an MCP server over HTTP."},
    "server_url": {"type": "string", "pattern": "^https?://", "description": "The MCP server's URL."},
    "headers": {"type": "object", "additionalProperties": {"type": "string"},
                "description": "Plain request headers; never a secret (a vault credential holds those)."},
    "authorization": {"description": "Refused: a saved agent holds no secrets (asstctl validate says what to do)."},
}, "`{type: http, server_url: https://...}`.", required=["type", "server_url"])
_STDIO = _object({
    "type": {"const": "stdio", "description": "`stdio`: start the MCP server as a local process."},
    "command": {"type": "string", "minLength": 1, "description": "The command that starts the MCP server."},
    "cwd": {"type": "string", "minLength": 1, "description": "The working directory it starts in."},
    "args": _strings("The command's arguments."),
    "env_vars": _strings("Names of environment variables it inherits from the session's execution environment."),
    "env": {"description": "Refused: a saved agent holds no secrets (asstctl validate says what to do)."},
}, "`{type: stdio, command: ..., cwd: ...}`.", required=["type", "command", "cwd"])
_MCP = _object({
    "server_label": {"type": "string", "minLength": 1, "maxLength": 64, "pattern": "^[a-zA-Z0-9_-]+$",
                     "description": "The server's label: letters, digits, _ and -."},
    "transport": {"anyOf": [_HTTP, _STDIO], "description": "`{type: http, server_url}` or `{type: stdio, command, cwd}`."},
    "allowed_tools": {"type": ["array", "null"], "items": {"type": "string", "minLength": 1},
                      "description": "The server's tools the agent may call (default: all)."},
    "connection_origin": {"enum": CONNECTION_ORIGINS, "description": "Where HTTP connections to the server come "
                          "from: `service` (the Agents service's network, the default) or `environment` (the "
                          "session's execution environment)."},
    "credential_id": {"type": "string", "minLength": 1, "description": "A vault credential (the secret stays in the vault)."},
    "request_metadata": {"type": "object", "additionalProperties": {"type": "string"},
                         "description": "Metadata sent with each request to the server; never a secret."},
    "required": {"type": "boolean", "description": "Whether the server must initialize before the first turn "
                                                   "(default false)."},
}, "Agents API only: an MCP server, `{server_label: docs, transport: {type: http, server_url: ...}}`.",
    required=["server_label", "transport"])
_WEB_SEARCH = _object({
    "allowed_domains": {"type": ["array", "null"], "items": {"type": "string", "minLength": 1},
                        "description": "The domains the search may include (default: any)."},
    "context_size": {"enum": CONTEXT_SIZES, "description": "How much search context the model gets (default medium)."},
    "mode": {"enum": SEARCH_MODES, "description": "`live` (the live web, the default), `cached` (cached results) or "
                                                  "`disabled`."},
    "location": _object({key: {"type": ["string", "null"], "minLength": 1, "description": text}
                         for key, text in LOCATION.items()}, "Approximate location for localized results."),
}, "Agents API only: web search options.")
_COMPUTER_USE = _object({"include_screenshots": {"type": "boolean", "description": "Whether the computer tool's "
                                                 "outputs include screenshots (default false)."}},
                        "Agents API only: computer use options.")
AGENT_TOOLS: dict[str, Any] = {"mcp": _MCP, "web_search": _WEB_SEARCH, "computer_use": _COMPUTER_USE}
