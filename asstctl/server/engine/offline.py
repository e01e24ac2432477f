'''The offline engine: deterministic replies without any network, steerable by a rules file.

Rules file (YAML), given by ``asstctl serve --rules`` / ``ServerConfig.rules_path`` or the
environment variable ``ASSTCTL_ENGINE_RULES``::

    rules:
      - match: "weather in (?P<city>[A-Za-z ]+)"   # regex searched (case-insensitive) in the latest user message
        assistant: "weather-bot"                    # optional: only when the assistant's name or metadata["asstctl.key"] equals this
        instructions: "pirate"                      # optional: regex that must match the run's resolved instructions
        tool_calls:                                  # call function tools (only those available in the run's tools) ...
          - name: get_weather
            arguments: {city: "{city}"}              # string values formatted with the named groups
        then: "It is {output} in {city}."            # ... and the reply once tool outputs arrive ({output} = first output, {outputs} = JSON list)
      - match: "3x \\+ 11 = 14"
        code: "from fractions import Fraction; print(Fraction(14 - 11, 3))"  # run by code_interpreter ...
        then: "x = {output}."                        # ... {output}: its logs, whitespace-trimmed
      - match: "flaky"
        replies: ["yes", "yes", "yes", "no", "no"]   # cycled in order, one per matching run (per-rule counter, in memory)
      - match: "^hello"
        reply: "Hello, {name}!"                       # templates may use named groups and {model}, {instructions}, {assistant_name}
        latency_ms: 5

Rules are tried in order; the first match wins. Templates also know ``{message}`` (the latest
user message); an unknown ``{placeholder}`` is left as written. A rule whose ``tool_calls`` name
no tool of the run does not apply (the next rule is tried); a rule may also call an attached
built-in tool by the function name the server offers for it (e.g. ``file_search``). After tool outputs a rule answers with
``then`` (else ``reply``/``replies``, else the default tool-output reply). The file is re-read when
its mtime changes (``replies`` counters restart then). See docs/engine.md for the default replies.
'''

from __future__ import annotations

import json
import os
import re
import threading
from dataclasses import dataclass, field
from typing import Any, AsyncIterator

from asstctl.errors import AsstctlError
from asstctl.server.engine import offline_files
from asstctl.server.engine.base import (
    EngineError,
    EngineEvent,
    EngineReply,
    EngineRequest,
    ToolCall,
    Usage,
    estimate_tokens,
    function_names,
    latest_user_text,
    message_text,
    reply_events,
)

# It answers any model name; GET /v1/models lists these common OpenAI names (docs/engine.md), so that
# `asstctl plan` can say "did you mean `gpt-4o`?" of a misspelt one.
LISTED_MODELS = ("gpt-4o", "gpt-4o-mini", "gpt-4.1", "gpt-4.1-mini", "gpt-4.1-nano", "gpt-4-turbo", "gpt-4",
                 "gpt-3.5-turbo", "gpt-5", "gpt-5-mini", "gpt-5-nano", "o1", "o3", "o3-mini", "o4-mini")
RULE_KEYS = {"match", "assistant", "instructions", "tool_calls", "code", "then", "reply", "replies", "latency_ms"}
CODE_FUNCTION = "python"  # the function the server offers for code_interpreter (asstctl.server.tools.code_interpreter)
PLACEHOLDER = re.compile(r"\{(\w+)\}")
ADDRESS_AS = re.compile(r"address the user as ([^.,;:!?\n]+)", re.IGNORECASE)


class RulesError(AsstctlError):
    """The rules file of the offline engine is missing or invalid."""


@dataclass
class Rule:
    index: int
    pattern: re.Pattern
    assistant: str | None = None
    instructions: re.Pattern | None = None
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    code: str | None = None  # Python for code_interpreter (a template)
    then: str | None = None
    reply: str | None = None
    replies: list[str] = field(default_factory=list)
    latency_ms: float = 0.0


class OfflineEngine:
    name = "offline"

    def __init__(self, rules_path: str | None = None):
        self.rules_path = rules_path
        self._rules: list[Rule] = []
        self._mtime: float | None = None
        self._counters: dict[int, int] = {}
        self._lock = threading.Lock()
        if rules_path:
            self._reload()

    # -- rules file -------------------------------------------------------------------------
    def rules(self) -> list[Rule]:
        """The current rules, re-read when the file's mtime changed."""
        if not self.rules_path:
            return []
        with self._lock:
            try:
                changed = os.stat(self.rules_path).st_mtime != self._mtime
            except OSError as exc:
                raise EngineError(f"offline engine rules file {self.rules_path}: {exc.strerror}") from exc
            if changed:
                try:
                    self._reload()
                except RulesError as exc:
                    raise EngineError(str(exc)) from exc
            return self._rules

    def _reload(self) -> None:
        self._mtime = _mtime(self.rules_path)
        self._rules = load_rules(self.rules_path)
        self._counters = {}

    # -- one turn ---------------------------------------------------------------------------
    async def stream(self, request: EngineRequest) -> AsyncIterator[EngineEvent]:
        """The reply as a streamed turn: the rule's latency (a cancellable sleep), then deltas."""
        async for event in reply_events(self.respond(request), request):
            yield event

    def respond(self, request: EngineRequest) -> EngineReply:
        user_text = latest_user_text(request.messages)
        for rule in self.rules():
            values = _rule_values(rule, request, user_text)
            if values is None:
                continue
            reply = self._apply(rule, request, values)
            if reply is not None:
                return _with_usage(reply, request)
        return _with_usage(default_reply(request, user_text), request)

    def _apply(self, rule: Rule, request: EngineRequest, values: dict[str, Any]) -> EngineReply | None:
        available = set(function_names(request.tools)) | set(function_names(request.offered_tools))
        calls = [c for c in rule.tool_calls if c["name"] in available]
        if rule.code is not None:
            if CODE_FUNCTION not in set(function_names(request.offered_tools)):
                return None  # code_interpreter is not a tool of this run
            calls = [{"name": CODE_FUNCTION, "arguments": {"code": rule.code}}]
        if (rule.tool_calls or rule.code is not None) and not calls:
            return None
        if request.tool_results:
            values = {**values, **_output_values(request.tool_results, strip=rule.code is not None)}
            text = render(rule.then, values) if rule.then is not None else self._text(rule, values)
            return EngineReply(text=text if text is not None else tool_output_text(request), latency_ms=rule.latency_ms)
        if calls:
            tool_calls = [ToolCall(c["name"], json.dumps(render_value(c.get("arguments") or {}, values))) for c in calls]
            return EngineReply(tool_calls=tool_calls, latency_ms=rule.latency_ms)
        return EngineReply(text=self._text(rule, values), latency_ms=rule.latency_ms)

    def rule_code(self) -> frozenset[str]:
        """The ``code:`` of the rules that no template value can change: the project's own code, which
        code_interpreter may run without bubblewrap when it is missing (a model's code never)."""
        return frozenset(r.code for r in self.rules() if r.code is not None and not PLACEHOLDER.search(r.code))

    def _text(self, rule: Rule, values: dict[str, Any]) -> str | None:
        if rule.replies:
            with self._lock:
                count = self._counters.get(rule.index, 0)
                self._counters[rule.index] = count + 1
            return render(rule.replies[count % len(rule.replies)], values)
        return render(rule.reply, values) if rule.reply is not None else None


# -- matching and templates ----------------------------------------------------------------
def _rule_values(rule: Rule, request: EngineRequest, user_text: str | None) -> dict[str, Any] | None:
    """The template values when ``rule`` applies to this request, else None."""
    if user_text is None:
        return None
    found = rule.pattern.search(user_text)
    if found is None:
        return None
    if rule.assistant is not None and rule.assistant not in _assistant_keys(request.assistant):
        return None
    if rule.instructions is not None and not rule.instructions.search(request.instructions or ""):
        return None
    groups = {k: (v or "").strip() for k, v in found.groupdict().items()}
    return {**base_values(request, user_text), **groups}


def base_values(request: EngineRequest, user_text: str | None) -> dict[str, Any]:
    return {
        "model": request.model,
        "instructions": request.instructions or "",
        "assistant_name": request.assistant.get("name") or "",
        "message": user_text or "",
    }


def _assistant_keys(assistant: dict[str, Any]) -> set[str]:
    keys = {assistant.get("name"), (assistant.get("metadata") or {}).get("asstctl.key")}
    return {k for k in keys if k}


def _output_values(results: list[dict[str, Any]], strip: bool = False) -> dict[str, str]:
    outputs = [r["output"].strip() if strip else r["output"] for r in results]
    return {"output": outputs[0] if outputs else "", "outputs": json.dumps(outputs)}


def render(template: str | None, values: dict[str, Any]) -> str | None:
    """Replace ``{name}`` placeholders that have a value; leave every other brace alone."""
    if template is None:
        return None
    return PLACEHOLDER.sub(lambda m: str(values[m.group(1)]) if m.group(1) in values else m.group(0), template)


def render_value(value: Any, values: dict[str, Any]) -> Any:
    if isinstance(value, str):
        return render(value, values)
    if isinstance(value, dict):
        return {k: render_value(v, values) for k, v in value.items()}
    if isinstance(value, list):
        return [render_value(v, values) for v in value]
    return value


# -- default behaviour ---------------------------------------------------------------------
def default_reply(request: EngineRequest, user_text: str | None) -> EngineReply:
    if request.tool_results:
        if offline_files.only_file_search(request.tool_results):
            return EngineReply(text=_json_if_asked(request, offline_files.answer(request, request.tool_results, user_text)))
        return EngineReply(text=tool_output_text(request))
    calls = default_tool_calls(request, user_text or "")
    search = offline_files.search_call(request, user_text)
    if calls or search:
        return EngineReply(tool_calls=calls or [search])
    return EngineReply(text=_json_if_asked(request, echo_text(request, user_text)))


def echo_text(request: EngineRequest, user_text: str | None) -> str:
    """``[offline gpt-4o] Jane Doe, you said: "..." (instructions: "...")``."""
    prefix = f"[offline {request.model}]"
    if user_text is None:
        return f"{prefix} There is no user message to answer.{_instructions_marker(request)}"
    address = ADDRESS_AS.search(request.instructions or "")
    said = f'{address.group(1).strip()}, you said' if address else "You said"
    return f'{prefix} {said}: "{user_text}"{_instructions_marker(request)}'


def _instructions_marker(request: EngineRequest) -> str:
    instructions = " ".join((request.instructions or "").split())
    if not instructions:
        return ""
    if len(instructions) > 120:
        instructions = instructions[:117] + "..."
    return f' (instructions: "{instructions}")'


def tool_output_text(request: EngineRequest) -> str:
    parts = [f"{r['name']} returned {r['output']}" for r in request.tool_results]
    return _json_if_asked(request, f"[offline {request.model}] " + "; ".join(parts) + ".")


def default_tool_calls(request: EngineRequest, user_text: str) -> list[ToolCall]:
    """Call the function tools named in the message (``tool_choice`` honoured), with ``{}``."""
    names = function_names(request.tools)
    choice = request.run.get("tool_choice", "auto")
    if choice == "none" or not names:
        return []
    if isinstance(choice, dict) and choice.get("type") == "function":
        wanted = [n for n in names if n == choice["function"]["name"]]
    else:
        wanted = [n for n in names if re.search(rf"(?<![\w-]){re.escape(n)}(?![\w-])", user_text)]
        if not wanted and choice == "required":
            wanted = names[:1]
    if request.run.get("parallel_tool_calls") is False:
        wanted = wanted[:1]
    return [ToolCall(name, "{}") for name in wanted]


def _json_if_asked(request: EngineRequest, text: str) -> str:
    response_format = request.response_format
    if isinstance(response_format, dict) and response_format.get("type") in ("json_object", "json_schema"):
        return json.dumps({"reply": text})
    return text


def _with_usage(reply: EngineReply, request: EngineRequest) -> EngineReply:
    prompt = request.instructions + "".join(message_text(m) for m in request.messages)
    prompt += "".join(str(r["output"]) for r in request.tool_results)
    completion = reply.text or "".join(c.name + c.arguments for c in reply.tool_calls)
    reply.usage = Usage(max(1, estimate_tokens(prompt)), max(1, estimate_tokens(completion)))
    return reply


# -- loading -------------------------------------------------------------------------------
def _mtime(path: str) -> float:
    try:
        return os.stat(path).st_mtime
    except OSError as exc:
        raise RulesError(
            f"offline engine rules file {path}: {exc.strerror}",
            hint="Pass an existing YAML file (--rules / ASSTCTL_ENGINE_RULES); see docs/engine.md.",
        ) from exc


def load_rules(path: str) -> list[Rule]:
    """Parse and check a rules file; any problem is a RulesError naming the file and rule index."""
    import yaml

    try:
        with open(path, encoding="utf-8") as handle:
            doc = yaml.safe_load(handle)
    except OSError as exc:
        raise RulesError(f"offline engine rules file {path}: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise RulesError(f"offline engine rules file {path}: not valid YAML: {exc}") from exc
    if doc is None:
        return []
    if not isinstance(doc, dict) or set(doc) != {"rules"} or not isinstance(doc["rules"], list):
        raise RulesError(f"offline engine rules file {path}: expected a mapping with one key 'rules' holding a list")
    return [_parse_rule(path, i, raw) for i, raw in enumerate(doc["rules"])]


def _parse_rule(path: str, index: int, raw: Any) -> Rule:
    def fail(problem: str) -> RulesError:
        return RulesError(f"offline engine rules file {path}: rule {index}: {problem}", hint="See docs/engine.md.")

    if not isinstance(raw, dict):
        raise fail("expected a mapping")
    unknown = sorted(set(map(str, raw)) - RULE_KEYS)
    if unknown:
        raise fail(f"unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(RULE_KEYS))}")
    if not isinstance(raw.get("match"), str):
        raise fail("'match' (a regular expression string) is required")
    if not any(k in raw for k in ("reply", "replies", "tool_calls", "code")):
        raise fail("give one of 'reply', 'replies', 'tool_calls' or 'code'")
    if "code" in raw and "tool_calls" in raw:
        raise fail("'code' and 'tool_calls' exclude each other")
    if "reply" in raw and "replies" in raw:
        raise fail("'reply' and 'replies' exclude each other")
    return Rule(
        index=index,
        pattern=_regex(raw["match"], "match", fail),
        assistant=_optional_str(raw, "assistant", fail),
        instructions=_regex(raw["instructions"], "instructions", fail) if "instructions" in raw else None,
        tool_calls=_tool_calls(raw.get("tool_calls", []), fail),
        code=_optional_str(raw, "code", fail),
        then=_optional_str(raw, "then", fail),
        reply=_optional_str(raw, "reply", fail),
        replies=_replies(raw["replies"], fail) if "replies" in raw else [],
        latency_ms=_latency(raw.get("latency_ms", 0), fail),
    )


def _regex(value: Any, key: str, fail) -> re.Pattern:
    if not isinstance(value, str):
        raise fail(f"'{key}' must be a string")
    try:
        return re.compile(value, re.IGNORECASE)
    except re.error as exc:
        raise fail(f"'{key}' is not a valid regular expression: {exc}") from exc


def _optional_str(raw: dict, key: str, fail) -> str | None:
    value = raw.get(key)
    if value is not None and not isinstance(value, str):
        raise fail(f"'{key}' must be a string")
    return value


def _tool_calls(value: Any, fail) -> list[dict[str, Any]]:
    if not isinstance(value, list):
        raise fail("'tool_calls' must be a list of {name, arguments}")
    for i, call in enumerate(value):
        if not isinstance(call, dict) or not isinstance(call.get("name"), str) or set(call) - {"name", "arguments"}:
            raise fail(f"tool_calls[{i}] must be a mapping with 'name' (string) and optional 'arguments'")
        if not isinstance(call.get("arguments", {}), dict):
            raise fail(f"tool_calls[{i}].arguments must be a mapping")
    return value


def _replies(value: Any, fail) -> list[str]:
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise fail("'replies' must be a non-empty list of strings")
    return value


def _latency(value: Any, fail) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise fail("'latency_ms' must be a number >= 0")
    return float(value)
