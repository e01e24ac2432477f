"""Which spec fields a target's API takes: the Assistants API or OpenAI's beta Agents API (docs/agents.md).

One spec format serves both. A spec resolved for a target (asstctl.spec.loader) is checked here:

* on an ``api: agents`` target, the Assistants-only fields (``file_search`` and ``code_interpreter`` tools,
  ``tool_resources``, ``temperature``, ``top_p``, and ``description``, ``response_format``,
  ``reasoning_effort``, a function's ``strict``) are refused, each naming what to use instead; MCP servers
  may hold no secret (the API refuses them in a saved agent: no credential-like header, request metadata, stdio
  argument, or user/password, key-like path segment, query or fragment parameter in the server URL); the tools
  fit the API's 3 MiB;
  ``compaction: {async: true}`` is refused (the API ignores it: compaction is always blocking);
* on an Assistants target, its caps (``name`` 256, ``description`` 512, ``instructions`` 256,000 characters, 128
  tools: the Agents API documents none of them) are checked, and the Agents-only fields (``reasoning``, ``text``, ``service_tier``,
  ``multi_agent``, ``compaction``, ``experimental``, ``mcp`` / ``web_search`` / ``computer_use`` tools) are refused.

``api_tools`` gives a spec's tools in the Agents API's own form (the backend sends them). Imports
asstctl.spec.agent_schema only.
"""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from asstctl.spec.agent_schema import AGENT_TOOL_TYPES

ASSISTANTS, AGENTS = "assistants", "agents"
TOOLS_LIMIT = 3 * 1024 * 1024  # the Agents API's limit on an agent's tools, as compact UTF-8 JSON
ASSISTANTS_TEXT_LIMITS = {"name": 256, "description": 512, "instructions": 256_000}  # characters
ASSISTANTS_TOOLS_LIMIT = 128
AGENTS_ONLY = ("reasoning", "text", "service_tier", "multi_agent", "compaction", "experimental")
_OVERRIDE = "or drop it on this target: `targets: {{{target}: {{{field}: null}}}}`"
ASSISTANTS_ONLY = {
    "temperature": "an agent has no sampling settings",
    "top_p": "an agent has no sampling settings",
    "tool_resources": "an agent has no tool resources (no vector stores, no code_interpreter files); "
                      "give it knowledge through an MCP server (`tools: [{mcp: ...}]`)",
    "description": "an agent has no description; keep it as a YAML comment",
    "response_format": "use `text: {format: {type: json_schema, schema: ...}}` instead",
    "reasoning_effort": "use `reasoning: {effort: ...}` instead",
}
ASSISTANTS_ONLY_TOOLS = {
    "file_search": "agents have no file_search or vector stores: give them knowledge through an MCP server "
                   "(`{mcp: {server_label: ..., transport: ...}}`) or `web_search`",
    "code_interpreter": "agents have no code_interpreter tool: code runs in a session's environment "
                        "(`openai_hosted`), not as a tool",
}
NO_ASYNC = ("the Agents API ignores it (context compaction is always blocking; an agent's `compaction.async` is "
            "always false), so it would show as a change on every plan: remove it or set `async: false`")
SECRET_HEADERS = ("authorization", "proxy-authorization", "cookie", "api-key", "x-api-key")
SECRET_WORDS = ("token", "secret", "password", "apikey", "api_key", "api-key")
SECRET_PARTS = {"key", "auth", "sig", "signature", "credential", "credentials", "pwd", "passwd", "pass"}
# A value that is a credential whatever its name: an OpenAI/Stripe-style key, an HTTP auth scheme, a GitHub or
# Slack token, an AWS access key id, a JWT.
SECRET_VALUE = re.compile(r"(?i)^\s*(?:(?:bearer|basic|token|digest)\s+\S|(?:sk|rk|pk)-\S{8,}|gh[pousr]_\w{16,}|"
                          r"xox[abpr]-|AKIA[0-9A-Z]{16}|eyJ[\w-]{8,}\.eyJ)")
NO_SECRETS = ("a saved agent may hold no secrets (the Agents API refuses them there): keep the secret in a vault "
              "credential and name it with `credential_id`")


def api_problems(spec: Any, api: str | None, target: str | None, doc: Any = None) -> list[str]:
    """The fields of ``spec`` (resolved for ``target``) that ``api`` does not take (``None``: not checked); each
    at the line of the nested field it is about when ``doc`` (the spec file's positions, asstctl.spec.yamlpos) is
    given, else at its top-level field's."""
    at = _locator(spec, doc, target)
    if api == AGENTS:
        return agent_problems(spec, target or "NAME", at)
    if api == ASSISTANTS:
        return assistant_problems(spec, target, at)
    return []


def _locator(spec: Any, doc: Any, target: str | None):
    """``at(steps, message)``: ``path:line:col: message`` for the JSON path ``steps`` of the resolved spec (the
    first step a top-level field, taken from ``targets.<target>`` when the target overrides it)."""
    if doc is None or not isinstance(doc.data, dict):
        return lambda steps, message: _at(spec, steps[0], message)
    overrides = ((doc.data.get("targets") or {}).get(target) or {}) if target else {}

    def at(steps: tuple, message: str) -> str:
        origin = ("targets", target, steps[0]) if steps[0] in overrides else (steps[0],)
        line, col = doc.position(origin + tuple(steps[1:]))
        return f"{spec.path}:{line}:{col}: {message}"

    return at


def agent_problems(spec: Any, target: str, at=None) -> list[str]:
    at = at or _locator(spec, None, target)
    fields = spec.fields
    problems = []
    for field, why in ASSISTANTS_ONLY.items():
        if field in fields:
            problems.append(at((field,), f"`{field}` is an Assistants API field and target `{target}` is an "
                                         f"Agents API target: {why}, " + _OVERRIDE.format(target=target, field=field)))
    if (fields.get("compaction") or {}).get("async"):
        problems.append(at(("compaction", "async"), f"`compaction.async: true` on target `{target}`: {NO_ASYNC}"))
    labels: set[str] = set()
    for index, tool in enumerate(fields.get("tools") or []):
        kind = tool.get("type")
        where = f"`tools[{index}]`"
        if kind in ASSISTANTS_ONLY_TOOLS:
            problems.append(at(("tools", index), f"{where} is `{kind}`, an Assistants API tool, and target "
                                                 f"`{target}` is an Agents API target: {ASSISTANTS_ONLY_TOOLS[kind]}"))
        elif kind == "function" and (tool.get("function") or {}).get("strict") is not None:
            problems.append(at(("tools", index, "function", "strict"), f"{where}.function.strict: an agent's "
                                                                       "function tools have no `strict`; remove it"))
        elif kind == "mcp":
            problems += _mcp_problems(at, index, tool.get("mcp") or {}, labels)
    size = len(json.dumps(api_tools(fields.get("tools") or []), separators=(",", ":"), ensure_ascii=False).encode())
    if size > TOOLS_LIMIT:
        problems.append(at(("tools",), f"the tools are {size:,} bytes as JSON; an agent's tools may be at most "
                                       f"{TOOLS_LIMIT:,} bytes (3 MiB, an API limit): shorten descriptions "
                                       "or parameter schemas"))
    return problems


def _mcp_problems(at, index: int, mcp: dict[str, Any], labels: set[str]) -> list[str]:
    where, here = f"`tools[{index}]`.mcp", ("tools", index, "mcp")
    problems = []
    label = mcp.get("server_label")
    if label in labels:
        problems.append(at(here + ("server_label",), f"`tools[{index}]`: a second MCP server labelled `{label}`; "
                                                     "labels must be unique"))
    labels.add(label)
    transport = mcp.get("transport") or {}
    for key in ("authorization", "env"):
        if key in transport:
            hint = " (list the variables' names in `env_vars`)" if key == "env" else ""
            problems.append(at(here + ("transport", key), f"{where}.transport.{key}: {NO_SECRETS}{hint}"))
    for name, value in (transport.get("headers") or {}).items():
        if secret_name(name) or secret_value(value):
            problems.append(at(here + ("transport", "headers", name), f"{where}.transport.headers.{name}: a header "
                                                                       f"like this carries a secret; {NO_SECRETS}"))
    url = transport.get("server_url")
    if isinstance(url, str) and url_credentials(url):
        problems.append(at(here + ("transport", "server_url"), f"{where}.transport.server_url: the URL carries a "
                                                               f"credential ({url_credentials(url)}); {NO_SECRETS}"))
    for name, value in (mcp.get("request_metadata") or {}).items():
        if secret_name(name) or secret_value(value):
            problems.append(at(here + ("request_metadata", name), f"{where}.request_metadata.{name}: request "
                                                                   "metadata like this carries a secret; "
                                                                   + NO_SECRETS))
    args = [str(arg) for arg in transport.get("args") or []]
    for number, arg in enumerate(args):
        flag, _, inline = arg.partition("=")
        named = flag.startswith("-") and secret_name(flag.lstrip("-"))
        if secret_value(arg) or secret_value(inline) or (named and (inline or number + 1 < len(args))):
            problems.append(at(here + ("transport", "args", number), f"{where}.transport.args[{number}]: a command "
                                                                      f"argument like this carries a secret; "
                                                                      f"{NO_SECRETS} (list the variables the command "
                                                                      "reads it from in `env_vars`)"))
    return problems


def secret_name(name: Any) -> bool:
    """A header, query parameter or metadata key that names a credential (``Authorization``, ``api_key``...)."""
    lowered = str(name).lower()
    return (lowered in SECRET_HEADERS or any(word in lowered for word in SECRET_WORDS)
            or bool(SECRET_PARTS & set(re.split(r"[^a-z0-9]+", lowered))))


def secret_value(value: Any) -> bool:
    return isinstance(value, str) and bool(SECRET_VALUE.match(value))


def url_credentials(url: str) -> str:
    """What in ``url`` is a credential, in words (never the secret itself); "" if nothing."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return ""
    if parts.username is not None or parts.password is not None:
        return "a user name or password before the host"
    found = [f"path segment {index}" for index, segment in enumerate(parts.path.split("/")[1:], 1)
             if any(secret_value(unquote(piece)) for piece in re.split(r"[;=,]", segment))]
    for where, text in (("query parameter", parts.query), ("fragment parameter", parts.fragment)):
        names = [name for name, value in parse_qsl(text, keep_blank_values=True)
                 if secret_name(name) or secret_value(value)]
        found += [f"{where} {', '.join(f'`{name}`' for name in names)}"] if names else []
    if parts.fragment and "=" not in parts.fragment and secret_value(unquote(parts.fragment)):
        found.append("the fragment")
    return ", ".join(found)


def assistant_problems(spec: Any, target: str | None, at=None) -> list[str]:
    at = at or _locator(spec, None, target)
    name = f"target `{target}`" if target else "the default target"
    problems = assistants_limits(spec)
    problems += [at((field,), f"`{field}` is an Agents API field and {name} serves the Assistants API: set it only "
                              "for an `api: agents` target (`targets: {NAME: {" + field + ": ...}}`), or remove it")
                for field in AGENTS_ONLY if field in spec.fields]
    for index, tool in enumerate(spec.fields.get("tools") or []):
        if tool.get("type") in AGENT_TOOL_TYPES:
            problems.append(at(("tools", index), f"`tools[{index}]` is `{tool['type']}`, an Agents API tool, and "
                                                 f"{name} serves the Assistants API: use it on an `api: agents` "
                                                 "target only"))
    return problems


def assistants_limits(spec: Any) -> list[str]:
    """The Assistants API's caps (its OpenAPI document): 256 / 512 / 256,000 characters, 128 tools. The Agents API
    documents none of them (only metadata's and the tools' 3 MiB), so they are checked on Assistants targets only."""
    problems = []
    for field, limit in ASSISTANTS_TEXT_LIMITS.items():
        value = spec.fields.get(field)
        if isinstance(value, str) and len(value) > limit:
            what = "`instructions_file`" if field == "instructions" and "instructions_file" in spec.positions else \
                f"`{field}`"
            problems.append(_at(spec, field, f"{what} is {len(value):,} characters long; it must be at most {limit:,} "
                                             "on an Assistants API target"))
    tools = spec.fields.get("tools") or []
    if len(tools) > ASSISTANTS_TOOLS_LIMIT:
        problems.append(_at(spec, "tools", f"`tools` has {len(tools)} items; it must have at most "
                                           f"{ASSISTANTS_TOOLS_LIMIT} on an Assistants API target"))
    return problems


def _at(spec: Any, field: str, message: str) -> str:
    line, col = spec.positions.get(field, (1, 1))
    return f"{spec.path}:{line}:{col}: {message}"


def api_tools(tools: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A spec's tools (``{type: function, function: {...}}``, ``{type: mcp, mcp: {...}}``) in the Agents API's
    flat form (``{type: function, name: ..., parameters: ...}``)."""
    out = []
    for tool in tools:
        options = dict(tool.get(tool["type"]) or {})
        if tool["type"] == "function":  # the API wants both (asstctl's normalization: missing ≡ these)
            options.pop("strict", None)
            options.setdefault("description", "")
            options["parameters"] = options.get("parameters") or {"type": "object", "properties": {}}
        out.append({"type": tool["type"], **options})
    return out


def spec_tools(tools: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The Agents API's flat tools in the spec's nested form (``api_tools`` reversed)."""
    out = []
    for tool in tools:
        options = {key: value for key, value in tool.items() if key != "type"}
        out.append({"type": tool["type"], tool["type"]: options} if options else {"type": tool["type"]})
    return out
