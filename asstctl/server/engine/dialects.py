"""Dialects of OpenAI-compatible Chat Completions servers: the shapes each accepts, learned or named.

Servers disagree on a few fields: llama-cpp-python refuses ``content: null`` on an assistant message
with ``tool_calls`` (500, "Input should be a valid string") where Bedrock refuses ``""``; older vLLM,
Mistral and others refuse fields they do not know (``max_completion_tokens``, ``stream_options``,
``parallel_tool_calls``: "Extra inputs are not permitted"), the ``developer`` role, ``json_schema``
output (then ``json_object`` with the schema stated in the instructions and as the ``schema`` key, which
llama-cpp-python and llama.cpp's server enforce as a grammar; a server that refuses that key is sent
the ``json_object`` alone) or ``tool_choice: required``. :class:`Dialect` is one set of those choices; :func:`shape` turns
the engine's canonical request into it; :func:`learn` reads a refusal (a 400/422, or a 500 whose body
is a validation error naming the field) and returns the dialect that avoids it, or None when the
refusal names nothing it can adapt. The engine remembers what it learned per upstream model for the
life of the process. A named profile (``--upstream-dialect`` / ``engine.dialect``) is ``fixed``:
nothing is learned, its shapes are sent as they are; except ``azure``, whose refusals depend on the
api-version: it starts with OpenAI's shapes and learns.

Imports only the standard library.
"""

from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass, field, replace
from typing import Any

CONTENT_ORDER = ("null", "empty", "absent")  # tool-call message content tried in this order
DROPPABLE = ("stream_options", "parallel_tool_calls", "reasoning_effort", "temperature", "top_p")
_REFUSAL = re.compile(
    r"validation error|value error|input should|extra inputs|extra_forbidden|not permitted|field required|unsupported|"
    r"not supported|does not support|unrecognized|unknown (field|parameter|argument|variant|role)|invalid|"
    r"is not one of|not allowed|\bmust\b|should be|expected|cannot be|can't be|unexpected|unavailable", re.I)
_VALIDATION = re.compile(r"validation error|input should|extra inputs|field required|['\"]loc['\"]", re.I)
_SCHEMA_KEY = re.compile(r"\bschema\b", re.I)  # names a json_object's schema key (not json_schema, JSON Schema's type)
JSON_INSTRUCTION = "Answer with one JSON object, and nothing else, that matches this JSON Schema:\n"


@dataclass(frozen=True)
class Dialect:
    name: str = "learned"
    tool_call_content: str = "null"  # "null" | "empty" ("") | "absent": content of an assistant message with tool_calls
    developer_role: bool = True  # False: the developer message goes as "system"
    max_tokens: str = "max_completion_tokens"  # | "max_tokens" | "both"
    json_schema: bool = True  # False: json_object with the schema stated in the instructions (and as its ``schema``)
    json_object_schema: bool = True  # False: that json_object without its ``schema`` key (a server refused it)
    json_object: bool = True  # False: no response_format at all (the instructions still ask for JSON)
    tool_choice_required: bool = True  # False: "required" goes as "auto"
    tool_choice_named: bool = True  # False: a named function goes as "auto"
    dropped: frozenset[str] = field(default_factory=frozenset)  # top-level fields never sent
    fixed: bool = False  # a named profile: never learned from refusals


PROFILES: dict[str, Dialect] = {
    "openai": Dialect("openai", fixed=True),
    # Azure OpenAI takes OpenAI's shapes from api-version 2024-12-01-preview on; older api-versions answer 400
    # "Unrecognized request argument supplied: parallel_tool_calls" (or max_completion_tokens, stream_options:
    # Azure/azure-sdk-for-net#45719, openai/openai-python#1724, langchain-ai/langchain#23552), and reasoning
    # models refuse max_tokens. No one set of shapes fits every api-version and model: the profile starts
    # with OpenAI's and learns (the only named profile that does).
    "azure": Dialect("azure"),
    "llama.cpp": Dialect("llama.cpp", tool_call_content="empty", developer_role=False, max_tokens="max_tokens",
                         json_schema=False, tool_choice_required=False, fixed=True),
    "vllm": Dialect("vllm", developer_role=False, max_tokens="max_tokens", tool_choice_required=False,
                    dropped=frozenset({"parallel_tool_calls"}), fixed=True),  # what every version since 0.5 takes
    "ollama": Dialect("ollama", tool_call_content="empty", developer_role=False, max_tokens="max_tokens",
                      tool_choice_required=False, tool_choice_named=False,
                      dropped=frozenset({"parallel_tool_calls"}), fixed=True),
    "lmstudio": Dialect("lmstudio", tool_call_content="empty", developer_role=False, max_tokens="max_tokens",
                        fixed=True),
    # A LiteLLM proxy passes each field on to a backend it does not name: what any backend takes through
    # it (``system``, ``max_tokens``, ``json_object`` with the schema stated and checked here) and no
    # ``parallel_tool_calls``, which the proxy itself refuses for providers whose config lacks it (400
    # "litellm.UnsupportedParamsError: <provider> does not support parameters"). A proxy in front of a
    # stricter backend: the backend's own profile, or none (learned).
    "litellm": Dialect("litellm", developer_role=False, max_tokens="max_tokens", json_schema=False, json_object_schema=False,
                       dropped=frozenset({"parallel_tool_calls"}), fixed=True),
    "mistral": Dialect("mistral", tool_call_content="empty", developer_role=False, max_tokens="max_tokens", tool_choice_required=True,
                       dropped=frozenset({"stream_options", "parallel_tool_calls", "reasoning_effort"}), fixed=True),
    "groq": Dialect("groq", developer_role=False, max_tokens="max_completion_tokens", fixed=True),
    "deepseek": Dialect("deepseek", developer_role=False, max_tokens="max_tokens", json_schema=False, json_object_schema=False,
                        dropped=frozenset({"parallel_tool_calls"}), fixed=True),
    "bedrock": Dialect("bedrock", tool_call_content="null", developer_role=False, max_tokens="max_tokens",
                       dropped=frozenset({"parallel_tool_calls"}), fixed=True),
    "gemini": Dialect("gemini", developer_role=False, max_tokens="max_tokens", json_schema=True,
                      dropped=frozenset({"parallel_tool_calls"}), fixed=True),
    # Anthropic's OpenAI SDK compatibility takes developer/system (hoisted), max_completion_tokens,
    # stream_options and parallel_tool_calls, but ignores response_format: the schema goes in the
    # instructions and the answer is checked here (docs.anthropic.com/en/api/openai-sdk).
    "anthropic": Dialect("anthropic", json_schema=False, json_object_schema=False, fixed=True),
}


def profile(name: str) -> Dialect | None:
    return PROFILES.get(name.strip().lower().replace("llamacpp", "llama.cpp").replace("lm-studio", "lmstudio"))


def initial(legacy_max_tokens: bool) -> Dialect:
    """What is sent before anything was learned: OpenAI's shapes (local servers also get ``max_tokens``)."""
    return Dialect(max_tokens="both" if legacy_max_tokens else "max_completion_tokens")


# -- shaping -----------------------------------------------------------------------------------
def shape(body: dict[str, Any], dialect: Dialect, reasoning: bool) -> dict[str, Any]:
    """The canonical request (OpenAI's shapes) in ``dialect``; ``body`` itself is left as it is."""
    out = {k: v for k, v in body.items() if k not in dialect.dropped}
    out["messages"] = [_message(m, dialect, reasoning) for m in body["messages"]]
    limit = out.pop("max_completion_tokens", None)
    if limit is not None:
        mode = "max_completion_tokens" if reasoning and dialect.max_tokens == "both" else dialect.max_tokens
        if mode in ("max_completion_tokens", "both"):
            out["max_completion_tokens"] = limit
        if mode in ("max_tokens", "both"):
            out["max_tokens"] = limit
    choice = out.get("tool_choice")
    tools = out.get("tools") or []
    if choice == "required" and len(tools) == 1 and dialect.tool_choice_named:  # the same, and what llama.cpp
        choice = out["tool_choice"] = {"type": "function", "function": {"name": tools[0]["function"]["name"]}}  # enforces
    if (choice == "required" and not dialect.tool_choice_required) or \
            (isinstance(choice, dict) and not dialect.tool_choice_named):
        out["tool_choice"] = "auto"
    fmt = out.get("response_format")
    if isinstance(fmt, dict) and fmt.get("type") == "json_schema" and not dialect.json_schema:
        schema = (fmt.get("json_schema") or {}).get("schema") or {}
        out["messages"] = _with_instruction(out["messages"], JSON_INSTRUCTION + json.dumps(schema))
        # llama-cpp-python (and llama.cpp's server) enforce a json_object's ``schema`` as a grammar
        out["response_format"] = {"type": "json_object"}
        if schema and dialect.json_object_schema:
            out["response_format"]["schema"] = schema
    if isinstance(out.get("response_format"), dict) and not dialect.json_object:
        out.pop("response_format")
        if fmt.get("type") == "json_object":
            out["messages"] = _with_instruction(out["messages"], "Answer with one JSON object and nothing else.")
    return out


def _message(message: dict[str, Any], dialect: Dialect, reasoning: bool) -> dict[str, Any]:
    role = message.get("role")
    if role in ("system", "developer"):
        wanted = "developer" if reasoning and dialect.developer_role else "system"
        return {**message, "role": wanted} if role != wanted else message
    if role == "assistant" and message.get("tool_calls") and not message.get("content"):
        out = {k: v for k, v in message.items() if k != "content"}
        if dialect.tool_call_content == "null":
            out["content"] = None
        elif dialect.tool_call_content == "empty":
            out["content"] = ""
        return out
    return message


def _with_instruction(messages: list[dict[str, Any]], text: str) -> list[dict[str, Any]]:
    messages = copy.copy(messages)
    if messages and messages[0].get("role") in ("system", "developer") and isinstance(messages[0].get("content"), str):
        messages[0] = {**messages[0], "content": f"{messages[0]['content']}\n\n{text}"}
    else:
        messages.insert(0, {"role": "system", "content": text})
    return messages


# -- learning ----------------------------------------------------------------------------------
def is_refusal(status: int, detail: str) -> bool:
    """A refusal of the request's shape: any 400/422, or a 500 whose body is a validation error."""
    return status in (400, 422) or (status >= 500 and bool(_REFUSAL.search(detail)) and bool(_VALIDATION.search(detail)))


def learn(detail: str, sent: dict[str, Any], dialect: Dialect) -> Dialect | None:
    """The dialect that avoids what ``detail`` (the upstream's error text) refused in ``sent``, or None."""
    if dialect.fixed or not _REFUSAL.search(detail):
        return None
    text = detail.lower()
    changes: dict[str, Any] = {}
    if _role_refused(text, sent):
        changes["developer_role"] = False
    if "max_completion_tokens" in text and "max_completion_tokens" in sent:
        changes["max_tokens"] = "max_tokens"
    elif re.search(r"\bmax_tokens\b", text) and "max_tokens" in sent and "max_completion_tokens" in sent:
        changes["max_tokens"] = "max_completion_tokens"
    dropped = {name for name in DROPPABLE if name in sent and _names(text, name)}
    if dropped:
        changes["dropped"] = dialect.dropped | dropped
    fmt = sent.get("response_format")
    if isinstance(fmt, dict) and fmt.get("type") == "json_object" and "schema" in fmt and _SCHEMA_KEY.search(text):
        changes["json_object_schema"] = False  # the json_object goes without its schema first
    elif isinstance(fmt, dict) and ("response_format" in text or "json_schema" in text or "json_object" in text):
        changes["json_schema" if fmt.get("type") == "json_schema" else "json_object"] = False
    choice = sent.get("tool_choice")
    if "tool_choice" in text or (choice == "required" and re.search(r"['\"]required['\"]|named tool", text)):
        if choice == "required":
            changes["tool_choice_required"] = False
        elif isinstance(choice, dict):
            changes["tool_choice_named"] = False
    if _content_refused(text, sent):
        position = CONTENT_ORDER.index(dialect.tool_call_content)
        if position + 1 < len(CONTENT_ORDER):
            changes["tool_call_content"] = CONTENT_ORDER[position + 1]
    learned = replace(dialect, **changes) if changes else None
    return learned if learned != dialect else None


def schema_problem(text: str, response_format: Any) -> str | None:
    """Why ``text`` does not answer a ``json_schema`` response format (None: it does). Used when the
    upstream was asked for ``json_object`` instead, so nothing on its side enforced the schema."""
    schema = ((response_format or {}).get("json_schema") or {}).get("schema")
    if not isinstance(schema, dict):
        return None
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import SchemaError

    try:  # strict JSON, as the client's own parser reads it (Python's json, JavaScript's JSON.parse)
        document = json.loads(text)
    except ValueError as error:
        if "control character" in str(error):  # llama-cpp-python's JSON grammar lets raw newlines into strings
            return f"it is not valid JSON: a raw control character inside a string ({error})"
        return f"it is not JSON ({error})"
    try:
        found = next(iter(Draft202012Validator(schema).iter_errors(document)), None)
    except SchemaError:
        return None
    if found is None:
        return None
    where = "/".join(map(str, found.absolute_path))
    return f"{where + ': ' if where else ''}{found.message[:200]}"


def _names(text: str, name: str) -> bool:
    """Whether ``text`` names the field ``name``, also written with spaces or hyphens
    ("Parallel tool calls are not supported.", Gemini's OpenAI-compatible endpoint)."""
    return bool(re.search(r"(?<![a-z0-9])" + name.replace("_", "[ _-]") + r"(?![a-z0-9])", text))


def _role_refused(text: str, sent: dict[str, Any]) -> bool:
    """Whether ``text`` refuses the ``developer`` role: it names it, or names a ``role`` at the position
    of a developer message (Groq: "'messages.0' : discriminator property 'role' has invalid value") or
    at no position at all."""
    positions = [i for i, m in enumerate(sent["messages"]) if m.get("role") == "developer"]
    if not positions or ("developer" not in text and "role" not in text):
        return False
    if "developer" in text or not re.search(r"messages\W{0,6}\d", text):
        return True
    return any(re.search(rf"messages\W{{0,6}}{i}\b[^\n]{{0,80}}?role", text) for i in positions)


def _content_refused(text: str, sent: dict[str, Any]) -> bool:
    """Whether ``text`` refuses the content of a tool-call message: it names ``content`` at the position
    of one (``messages.2.content``, ``('body', 'messages', 2, '...Message', 'content')``), or names no
    position at all; ``content`` elsewhere (another message echoed back) does not count."""
    positions = [i for i, m in enumerate(sent["messages"]) if m.get("role") == "assistant" and m.get("tool_calls")]
    if not positions or "content" not in text:
        return False
    if not re.search(r"messages\W{0,6}\d", text):
        return True
    return any(re.search(rf"messages\W{{0,6}}{i}\b[^\n]{{0,80}}?content", text) for i in positions)


def describe(before: Dialect, after: Dialect) -> str:
    """What changed, for the log: ``tool_call_content=empty, dropped=stream_options``."""
    parts = []
    for name in ("tool_call_content", "developer_role", "max_tokens", "json_schema", "json_object_schema", "json_object",
                 "tool_choice_required", "tool_choice_named"):
        if getattr(before, name) != getattr(after, name):
            parts.append(f"{name}={getattr(after, name)}")
    if after.dropped != before.dropped:
        parts.append("dropped=" + ",".join(sorted(after.dropped - before.dropped)))
    return ", ".join(parts)
