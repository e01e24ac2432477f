"""Scripted replicas of how real OpenAI-compatible servers refuse requests: the status codes and error
bodies they send (quoted from their own code or from their users' bug reports), for ``ScriptedUpstream(refuse=...)``.

Each replica is a function of the request body: the ``Failure`` that server answers, or None when it
accepts the request (then the scripted upstream answers as usual).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Callable

from tests.upstream import Failure


def tool_call_messages(body: dict[str, Any]) -> list[tuple[int, dict[str, Any]]]:
    return [(i, m) for i, m in enumerate(body.get("messages") or [])
            if m.get("role") == "assistant" and m.get("tool_calls")]


def pydantic_lines(errors: list[dict[str, Any]]) -> str:
    """FastAPI's ``RequestValidationError`` as ``str()`` (what llama-cpp-python puts in ``message``)."""
    return f"{len(errors)} validation error{'s' if len(errors) > 1 else ''}:\n" + "\n".join(f"  {e!r}" for e in errors)


LLAMA_ROLES = {"system": "System", "user": "User", "assistant": "Assistant", "tool": "Tool", "function": "Function"}


def llama_union(i: int, message: dict[str, Any], bad: str) -> list[dict[str, Any]]:
    """What pydantic reports for a message that fits no member of llama-cpp-python's message union
    (as its server sends it: one error per member, the member's own complaint for ``bad``)."""
    errors = []
    for role, member in LLAMA_ROLES.items():
        loc = ("body", "messages", i, f"ChatCompletionRequest{member}Message")
        if role == message.get("role"):
            errors.append({"type": "string_type", "loc": (*loc, bad), "msg": "Input should be a valid string",
                           "input": message.get(bad)})
            continue
        errors.append({"type": "literal_error", "loc": (*loc, "role"), "msg": f"Input should be '{role}'",
                       "input": message.get("role"), "ctx": {"expected": f"'{role}'"}})
        if role in ("tool", "function"):
            errors.append({"type": "missing", "loc": (*loc, "tool_call_id" if role == "tool" else "name"),
                           "msg": "Field required", "input": message})
    return errors


def llama_cpp(body: dict[str, Any]) -> Failure | None:
    """llama-cpp-python's server (0.3.x): validation errors become 500 ``internal_server_error`` with the
    pydantic errors as the message (llama_cpp/server/errors.py), as its server sends them. Assistant
    content must be a string, no ``developer`` role, ``response_format.type`` only ``text`` / ``json_object``."""
    errors = []
    for i, message in tool_call_messages(body):
        if message.get("content") is None:
            errors += llama_union(i, message, "content")
    for i, message in enumerate(body["messages"]):
        if message.get("role") == "developer":
            errors += llama_union(i, message, "role")
    fmt = body.get("response_format") or {}
    if fmt.get("type") not in (None, "text", "json_object"):
        errors.append({"type": "literal_error", "loc": ("body", "response_format", "type"),
                       "msg": "Input should be 'text' or 'json_object'", "input": fmt.get("type")})
    if not errors:
        return None
    trace = '\n\n  File "llama_cpp/server/app.py", line 376, in create_chat_completion\n    POST /v1/chat/completions'
    return Failure(500, raw={"error": {"message": pydantic_lines(errors) + trace, "type": "internal_server_error",
                                       "param": None, "code": None}})


def vllm_05(body: dict[str, Any]) -> Failure | None:
    """vLLM 0.5.x: ``extra="forbid"`` on the request: 400 ``BadRequestError`` with pydantic's errors as the
    message ("[{'type': 'extra_forbidden', 'loc': ('body', 'max_completion_tokens'), 'msg': 'Extra inputs
    are not permitted', ...}]", vllm-project/vllm#10078, voideditor/void#128; the same for any field it lacks,
    vllm-project/vllm#6631), and ``tool_choice: required`` refused ("Value error, Currently only named tools
    are supported.", vllm-project/vllm#6631)."""
    extra = [{"type": "extra_forbidden", "loc": ("body", key), "msg": "Extra inputs are not permitted", "input": body[key]}
             for key in ("max_completion_tokens", "parallel_tool_calls") if key in body]
    if not extra and body.get("tool_choice") == "required":
        extra = [{"type": "value_error", "loc": ("body",), "msg": "Value error, Currently only named tools are supported.",
                  "input": {"model": body["model"]}}]
    if not extra:
        return None
    return Failure(400, raw={"object": "error", "message": repr(extra), "type": "BadRequestError", "param": None,
                             "code": 400})


def mistral(body: dict[str, Any]) -> Failure | None:
    """Mistral's API: 422 with pydantic's ``detail`` inside ``message`` for ``stream_options`` (loc ``body,
    stream_options, include_usage``: avante-corp/avante.nvim#2347, openai/openai-agents-python#442), and (the
    OpenAI-compatible layer of mistral-common) ``content: null`` on a tool-call message, a pydantic error at
    ``messages.<i>.content`` (mistralai/mistral-common#324; its text here is pydantic's string_type)."""
    detail = []
    if "stream_options" in body:
        detail.append({"type": "extra_forbidden", "loc": ["body", "stream_options", "include_usage"],
                       "msg": "Extra inputs are not permitted", "input": True})
    for i, message in tool_call_messages(body):
        if message.get("content") is None:
            detail.append({"type": "string_type", "loc": ["body", "messages", i, "content"],
                           "msg": "Input should be a valid string", "input": None})
    if not detail:
        return None
    return Failure(422, raw={"object": "error", "message": {"detail": detail}, "type": "invalid_request_error",
                             "param": None, "code": None})


def dashscope(body: dict[str, Any]) -> Failure | None:
    """Alibaba Cloud DashScope's OpenAI-compatible mode (dashscope.aliyuncs.com/compatible-mode/v1, Qwen
    models): 400 naming the role by its position, "developer is not one of ['system', 'assistant', 'user',
    'tool', 'function'] - 'messages.['0].role'" (haru/redmine_ai_helper#242 with that base URL,
    DayuanJiang/next-ai-draw-io#304 on Alibaba's Bailian), in the envelope its 400s come in: OpenAI's, with
    ``code: "invalid_parameter_error"``, ``id`` and ``request_id`` (codexu/note-gen#372)."""
    for i, message in enumerate(body["messages"]):
        if message.get("role") == "developer":
            message = (f"developer is not one of ['system', 'assistant', 'user', 'tool', 'function'] - "
                       f"'messages.['{i}].role'")
            return Failure(400, raw={"error": {"code": "invalid_parameter_error", "param": None, "message": message,
                                               "type": "invalid_request_error"},
                                     "id": "chatcmpl-0d85", "request_id": "145078e8-0d85"})
    return None


OLLAMA_IGNORED = ("tool_choice", "parallel_tool_calls", "max_completion_tokens")  # accepted, never acted on


def ollama(body: dict[str, Any]) -> Failure | None:
    """Ollama's OpenAI-compatible endpoint (``/v1/chat/completions``): 400 in OpenAI's envelope, ``type:
    invalid_request_error``, for ``content: null`` on a tool-call message ("invalid message content type:
    <nil>", pydantic/pydantic-ai#5206, SAIL-Research-Lab/cheetahclaws#71; ``""`` is taken, pydantic/pydantic-ai#5216).
    What it does not refuse it may ignore: ``tool_choice`` (ollama/ollama#8421, #17921: a named tool is not
    forced, ``none`` does not prevent calls), ``max_completion_tokens`` (ollama/ollama#7125: only ``max_tokens``
    bounds the reply) and a ``developer`` message goes to the model's template, whose roles are the model's
    (ollama/ollama-python#453). Hence profile ``ollama``: ``""``, ``max_tokens``, ``system``, a named
    ``tool_choice`` as ``auto`` and no ``parallel_tool_calls`` (what it would ignore is not sent)."""
    for _, message in tool_call_messages(body):
        if message.get("content") is None:
            return Failure(400, raw={"error": {"message": "invalid message content type: <nil>",
                                               "type": "invalid_request_error", "param": None, "code": None}})
    return None


def bedrock(body: dict[str, Any]) -> Failure | None:
    """Bedrock's OpenAI-compatible endpoint: a tool-call message must have ``content: null``, never ``""``
    (400 "ValidationException: messages: text content blocks must be non-empty", vercel/ai#13744 and
    #13466, anomalyco/opencode#17395; agentjido/req_llm#966 later saw ``""`` accepted, so null is sent
    first either way)."""
    for _, message in tool_call_messages(body):
        if message.get("content") == "":
            return Failure(400, "messages: text content blocks must be non-empty", "ValidationException", None)
    return None


def absent_content(body: dict[str, Any]) -> Failure | None:
    """A server that takes neither shape of an empty tool-call message: ``null`` refused as llama-cpp-python
    refuses it (500, "Input should be a valid string") and ``""`` as Bedrock does (400 "text content blocks
    must be non-empty"); only a tool-call message without ``content`` goes through."""
    for i, message in tool_call_messages(body):
        if "content" in message and message["content"] is None:
            return llama_cpp({"messages": body["messages"]})
        if message.get("content") == "":
            return bedrock(body)
    return None


def lm_studio(body: dict[str, Any]) -> Failure | None:
    """LM Studio's server (0.3.x): 400 with the message as a bare string in ``error``. It refuses
    ``content: null`` on a tool-call message (lmstudio-ai/lmstudio-bug-tracker#261: "Invalid 'content':
    'content' field must be a string or an array of objects."), the ``developer`` role (#669: "'messages'
    array must only contain objects with a 'role' field that is in [user, assistant, system, tool]. Got
    'developer'") and ``json_object`` output (#189, #169: "'response_format.type' must be 'json_schema' or
    'text'"; the body shape as quoted in LoadShine/tada#16)."""
    for _, message in tool_call_messages(body):
        if message.get("content") is None:
            return Failure(400, raw={"error": "Invalid 'content': 'content' field must be a string or an array of objects."})
    for message in body["messages"]:
        if message.get("role") not in ("user", "assistant", "system", "tool"):
            return Failure(400, raw={"error": "'messages' array must only contain objects with a 'role' field that is "
                                              f"in [user, assistant, system, tool]. Got '{message.get('role')}'"})
    if (body.get("response_format") or {}).get("type") not in (None, "json_schema", "text"):
        return Failure(400, raw={"error": "'response_format.type' must be 'json_schema' or 'text'"})
    return None


def deepseek(body: dict[str, Any]) -> Failure | None:
    """DeepSeek's API: OpenAI's envelope with ``code: "invalid_request_error"``. The request body is
    deserialized strictly, so ``developer`` is an unknown variant (earendil-works/pi#1048, decolua/9router#773:
    400 "Failed to deserialize the JSON body into the target type: messages[0].role: unknown variant
    `developer`, expected one of ..."; eclipse-theia/theia#15144 saw the same as a 422); ``json_schema``
    output is refused (llm-exe/llm-exe#662, UKGovernmentBEIS/inspect_ai#4916: 400 "This response_format type is
    unavailable now"); ``json_object`` wants the word json in the prompt (browserbase/stagehand#1204)."""
    def refused(message: str) -> Failure:
        return Failure(400, raw={"error": {"message": message, "type": "invalid_request_error", "param": None,
                                           "code": "invalid_request_error"}})

    for i, message in enumerate(body["messages"]):
        if message.get("role") not in ("system", "user", "assistant", "tool"):
            column = json.dumps(body).find(f'"{message.get("role")}"') + 1
            return refused(f"Failed to deserialize the JSON body into the target type: messages[{i}].role: unknown "
                           f"variant `{message.get('role')}`, expected one of `system`, `user`, `assistant`, `tool` "
                           f"at line 1 column {column}")
    kind = (body.get("response_format") or {}).get("type")
    if kind not in (None, "text", "json_object"):
        return refused("This response_format type is unavailable now")
    if kind == "json_object" and "json" not in json.dumps(body["messages"]).lower():
        return refused("Prompt must contain the word 'json' in some form to use 'response_format' of type "
                       "'json_object'.")
    return None


def litellm_proxy(backend: Callable[[dict[str, Any]], Failure | None], provider: str, unsupported: set[str]):
    """A LiteLLM proxy in front of ``backend``: the backend's refusal comes back as a 400 whose message is
    ``litellm.BadRequestError: <Provider>Exception - <the backend's body>`` plus the proxy's model-group
    trailer (BerriAI/litellm#14056, #18539); a parameter the provider's config does not list is refused
    by the proxy itself before anything is sent (BerriAI/litellm#33738, lm-sys/RouteLLM#72: 400
    "litellm.UnsupportedParamsError: <provider> does not support parameters: ..."), ``code`` a string."""
    def refuse(body: dict[str, Any]) -> Failure | None:
        group = body["model"]
        trailer = f". Received Model Group={group}\nAvailable Model Group Fallbacks=None"
        extra = {k: body[k] for k in sorted(unsupported) if k in body}
        if extra:
            message = (f"litellm.UnsupportedParamsError: {provider} does not support parameters: {extra}, for "
                       f"model={group}. To drop these, set `litellm.drop_params=True` or for proxy:\n\n"
                       f"`litellm_settings:\n drop_params: true`\n{trailer}")
            return Failure(400, raw={"error": {"message": message, "type": "invalid_request_error", "param": None,
                                               "code": "400"}})
        inner = backend(body)
        if inner is None:
            return None
        wrapped = json.dumps(inner.raw if inner.raw is not None else {"error": {"message": inner.message}})
        return Failure(400, raw={"error": {"message": f"litellm.BadRequestError: {provider.capitalize()}Exception - "
                                                      f"{wrapped}{trailer}", "type": "invalid_request_error",
                                           "param": None, "code": "400"}})
    return refuse


GROQ_FIELDS = {"model", "messages", "stream", "stream_options", "tools", "tool_choice", "parallel_tool_calls",
               "max_completion_tokens", "max_tokens", "temperature", "top_p", "response_format", "reasoning_effort",
               "reasoning_format", "seed", "stop", "n", "user", "frequency_penalty", "presence_penalty", "service_tier"}
GROQ_MESSAGE_FIELDS = {"system": {"role", "content"}, "user": {"role", "content"}, "tool": {"role", "content", "tool_call_id"},
                       "assistant": {"role", "content", "tool_calls", "reasoning"}}


def groq(body: dict[str, Any]) -> Failure | None:
    """Groq's API validates the body against its own schema: 400 ``invalid_request_error`` (no ``code``)
    naming the path. An unknown field: "property 'store' is unsupported, did you mean 'stop'?"
    (fanenr/chatbot#21); one in a message: "'messages.2' : for 'role:assistant' the following must be
    satisfied[('messages.2' : property 'status' is unsupported ...)]" (run-llama/llama_index#14701,
    chatboxai/chatbox#2081; ``messages[].name`` is documented as refused, console.groq.com/docs/openai); a role
    outside its list: "'messages.1' : discriminator property 'role' has invalid value" (the shape reported
    for unknown roles, e.g. in finflow/Sophia code quoting it; ``developer`` is outside the list here, as the
    ``groq`` profile assumes: the documents found do not say whether Groq takes it today)."""
    def refused(message: str) -> Failure:
        return Failure(400, raw={"error": {"message": message, "type": "invalid_request_error"}})

    for key in body:
        if key not in GROQ_FIELDS:
            return refused(f"property '{key}' is unsupported")
    for i, message in enumerate(body["messages"]):
        role = message.get("role")
        if role not in GROQ_MESSAGE_FIELDS:
            return refused(f"'messages.{i}' : discriminator property 'role' has invalid value")
        for key in message:
            if key not in GROQ_MESSAGE_FIELDS[role]:
                return refused(f"'messages.{i}' : for 'role:{role}' the following must be satisfied"
                               f"[('messages.{i}' : property '{key}' is unsupported)]")
    return None


GEMINI_FIELDS = {"model", "messages", "stream", "stream_options", "tools", "tool_choice", "max_tokens",
                 "max_completion_tokens", "temperature", "top_p", "n", "stop", "response_format", "reasoning_effort",
                 "seed", "presence_penalty", "frequency_penalty", "extra_body"}


def gemini(body: dict[str, Any]) -> Failure | None:
    """Gemini's OpenAI-compatible endpoint (generativelanguage.googleapis.com/v1beta/openai): Google's
    error in a one-element list, ``code`` a number, ``status: INVALID_ARGUMENT``, for any field it does not
    know: 'Invalid JSON payload received. Unknown name "parallel_tool_calls": Cannot find field.'
    (jackmpcollins/magentic#382; the same shape for other names in FuzzAnything/PromptFuzz#42,
    iflow-ai/iflow-cli#238, SuzumiyaAkizuki/ComfyUI-NewBie-LLM-Formatter#3)."""
    for key in body:
        if key not in GEMINI_FIELDS:
            message = f'Invalid JSON payload received. Unknown name "{key}": Cannot find field.'
            return Failure(400, raw=[{"error": {
                "code": 400, "message": message, "status": "INVALID_ARGUMENT",
                "details": [{"@type": "type.googleapis.com/google.rpc.BadRequest",
                             "fieldViolations": [{"description": message}]}]}}])
    return None


def anthropic(body: dict[str, Any]) -> Failure | None:
    """Anthropic's OpenAI SDK compatibility (docs.anthropic.com/en/api/openai-sdk): system and
    ``developer`` messages are hoisted into the system prompt, ``response_format`` and ``reasoning_effort``
    are ignored, ``n`` must be 1; what it refuses is the Messages API's: an empty text block, as
    ``content: ""`` becomes ("messages: text content blocks must be non-empty", anthropics/claude-code#59812,
    arunalabs/mode#9), in OpenAI's envelope with ``code: "invalid_request_error"``
    (yinzara/ha-config-ai-agent#5, from api.anthropic.com/v1/chat/completions)."""
    def refused(message: str) -> Failure:
        return Failure(400, raw={"error": {"code": "invalid_request_error", "message": message,
                                           "type": "invalid_request_error", "param": None}})

    if body.get("n", 1) != 1:
        return refused("n: only n=1 is supported")
    for message in body["messages"]:
        content = message.get("content")
        if isinstance(content, str) and not content.strip():
            return refused("messages: text content blocks must be non-empty" if not content
                           else "messages: text content blocks must contain non-whitespace text")
    return None


AZURE_UNRECOGNIZED = ("max_completion_tokens", "stream_options", "parallel_tool_calls")
AZURE_OLD_API_VERSION = "2024-02-01"  # a GA api-version that predates all three


def azure(body: dict[str, Any]) -> Failure | None:
    """Azure OpenAI on an api-version before 2024-12-01-preview (served on the deployment paths, with the
    ``api-key`` header: ``ScriptedUpstream``'s Azure route): 400 in OpenAI's envelope, one argument at a
    time, "Unrecognized request argument supplied: parallel_tool_calls" (Azure/azure-sdk-for-net#45719,
    microsoft/semantic-kernel#10113), "...: max_completion_tokens" (openai/openai-python#1724),
    "...: stream_options" (langchain-ai/langchain#23552)."""
    for name in AZURE_UNRECOGNIZED:
        if name in body:
            return Failure(400, f"Unrecognized request argument supplied: {name}", "invalid_request_error")
    return None


@dataclass
class Replica:
    name: str
    refuse: Callable[[dict[str, Any]], Failure | None]
    profile: str  # the named dialect that matches it (--upstream-dialect); a proxy's: its backend's
    refusals: int  # what one pass of test_dialects.scenario is refused (once per quirk and upstream model)


REPLICAS = [Replica("llama.cpp", llama_cpp, "llama.cpp", 3), Replica("vllm-0.5", vllm_05, "vllm", 4),
            Replica("mistral", mistral, "mistral", 3), Replica("dashscope", dashscope, "vllm", 1),
            Replica("ollama", ollama, "ollama", 1),
            Replica("bedrock", bedrock, "bedrock", 0), Replica("lm-studio", lm_studio, "lmstudio", 2),
            Replica("litellm-deepseek", litellm_proxy(deepseek, "deepseek", {"parallel_tool_calls"}), "deepseek", 4),
            Replica("groq", groq, "groq", 1), Replica("deepseek", deepseek, "deepseek", 2),
            Replica("gemini", gemini, "gemini", 2), Replica("anthropic", anthropic, "anthropic", 0)]
