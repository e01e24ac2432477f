"""The checker the scripted Agents API rests on (tests/agents/sdk_types.py) refuses what breaks the SDK's types, so
it cannot quietly become permissive: an unknown key, a bad literal, a missing required key, a wrong JSON type in
a request; an extra field, a bad literal, an unknown event type in what the server sends. And it passes what is
right. No network."""

from __future__ import annotations

import types
import typing
from typing import Literal

from tests.agents.scripted import _types, error, error_problems
from tests.agents.scripted_rules import DEFAULTS, materialized, session_tools, tool
from tests.agents.sdk_types import request_problems, response_problems

TYPES = _types()
AGENT = {"id": "agent_1", "object": "agent", "created_at": 1, "updated_at": 1, "model": "gpt-5",
         **{key: value for key, value in DEFAULTS.items()}}


def test_a_valid_request_and_agent_pass():
    body = {"model": "gpt-5", "service_tier": "flex", "compaction": {"async": False},
            "tools": [{"type": "web_search", "location": {"city": "Paris", "country": "FR"}}]}
    assert request_problems(body, TYPES["create"]) == []
    assert response_problems(AGENT, TYPES["agent"], "agent") == []


def test_requests_unknown_keys_bad_literals_missing_keys_and_wrong_types_are_named():
    problems = request_problems({"model": "gpt-5", "temperature": 0.2}, TYPES["create"])
    assert problems == ["body.temperature: not a field of AgentCreateParams"]
    assert request_problems({"model": "gpt-5", "service_tier": "turbo"}, TYPES["create"]) == [
        "body.service_tier: 'turbo' is not one of ('auto', 'default', 'flex', 'priority', 'fast', 'ultrafast')"]
    assert request_problems({"name": "x"}, TYPES["create"]) == ["body.model: required by AgentCreateParams"]
    assert request_problems({"model": 5}, TYPES["create"]) == ["body.model: must be str (got 5)"]
    nested = request_problems({"model": "gpt-5", "tools": [{"type": "web_search", "location": {"street": "x"}}]},
                              TYPES["create"])
    assert nested and all("street" in problem for problem in nested), nested


def test_responses_extra_fields_bad_literals_and_unknown_events_are_named():
    assert response_problems({**AGENT, "temperature": 1.0}, TYPES["agent"], "agent") == [
        "agent.temperature: not a field of Agent"]
    wrong = response_problems({**AGENT, "service_tier": "turbo"}, TYPES["agent"], "agent")
    assert len(wrong) == 1 and "service_tier" in wrong[0], wrong
    unknown = response_problems({"type": "agent.session.teleported", "event_id": "evt_1"}, TYPES["event"], "event")
    assert len(unknown) == 1 and "agent.session.teleported" in unknown[0], unknown
    saved_mcp = tool({"type": "mcp", "server_label": "kb", "transport": {"type": "http", "server_url": "https://x"}})
    session = {"id": "sess_1", "object": "agent.session", "created_at": 1, "last_active_at": 1,
               "environment": {"type": "none"}, "status": "idle", "required_actions": [], "metadata": {},
               "vault_ids": [], "usage": None, "error": None, "spend_control": {"limit": None, "consumed": None},
               "agent": {"id": "agent_1", "model": "gpt-5", "name": None, "instructions": None, "tools": [saved_mcp],
                         "reasoning": DEFAULTS["reasoning"], "text": DEFAULTS["text"], "service_tier": "auto",
                         "multi_agent": DEFAULTS["multi_agent"], "compaction": {"async": False}}}
    headers = response_problems(session, TYPES["session"], "session")
    assert headers == ["session.agent.tools[0].transport.headers: not a field of McpTransportResourceHTTP"]
    session["agent"]["tools"] = session_tools([saved_mcp])
    assert response_problems(session, TYPES["session"], "session") == []


def test_responses_are_checked_strictly_as_json_without_coercion():
    """pydantic's default (lax) mode takes "1" for an integer and 1 for a boolean; the SDK's wire types do not."""
    created = response_problems({**AGENT, "created_at": "1"}, TYPES["agent"], "agent")
    assert len(created) == 1 and "created_at" in created[0] and "valid integer" in created[0], created
    enabled = response_problems({**AGENT, "multi_agent": {"enabled": 1, "max_concurrent_subagents": None}},
                                TYPES["agent"], "agent")
    assert len(enabled) == 1 and "multi_agent.enabled" in enabled[0] and "valid boolean" in enabled[0], enabled
    aware = response_problems({**AGENT, "experimental": {"time_awareness": "yes"}}, TYPES["agent"], "agent")
    assert len(aware) == 1 and "experimental.time_awareness" in aware[0], aware


def test_error_bodies_are_checked_against_the_sdks_error_shape():
    for status, kind, code in ((400, "invalid_request_error", "invalid_request_error"), (404, "invalid_request_error", None),
                               (409, "invalid_request_error", None), (500, "server_error", None)):
        assert error_problems(error(status, "No.", kind, code=code).body, f"{status}") == []
    assert error_problems(b"Internal Server Error", "500") == ["500: the error body is not JSON: b'Internal Server Error'"]
    missing = error_problems(b'{"error": {"type": "server_error"}}', "500")
    assert len(missing) == 1 and "error.message" in missing[0] and "required" in missing[0].lower(), missing
    wrong = error_problems(b'{"error": {"message": "No.", "type": "server_error", "code": 404}}', "404")
    assert len(wrong) == 1 and "error.code" in wrong[0], wrong
    extra = error_problems(b'{"error": {"message": "No.", "type": "x"}, "status": 404}', "404")
    assert extra == ["404.status: not a field of ErrorBody"], extra
    assert error_problems(b'{"message": "No."}', "404") and error_problems(b"[]", "404")


def test_the_scripted_api_stores_experimental_settings_and_merges_them_by_key_on_update():
    """agents-beta.md §3: `experimental` defaults to time_awareness false and an update merges it by key;
    programmatic_tool_calling comes back with enabled true."""
    assert materialized({"model": "gpt-5"})["experimental"] == {"time_awareness": False}
    stored = {"model": "gpt-5", **materialized({"model": "gpt-5", "experimental": {"time_awareness": True}})}
    assert stored["experimental"] == {"time_awareness": True}
    assert "experimental" not in materialized({"name": "x"}, stored)  # not sent: kept
    assert materialized({"experimental": {}}, stored)["experimental"] == {"time_awareness": True}  # merged by key
    assert materialized({"experimental": {"time_awareness": False}}, stored)["experimental"] == {"time_awareness": False}
    assert tool({"type": "programmatic_tool_calling"}) == {"type": "programmatic_tool_calling", "enabled": True}
    assert response_problems({**AGENT, "experimental": {"time_awareness": True}}, TYPES["agent"], "agent") == []


def test_the_spec_schemas_agent_enums_are_the_sdks_literals_and_null_only_where_the_sdk_takes_it():
    """asstctl.spec.agent_schema's values come from the SDK's param types: each enum is exactly the Literal's
    values, and a field takes null only where the SDK's param is Optional (null there is the server's default;
    elsewhere leave the field out), so a valid spec never makes a request the SDK's types refuse."""
    from openai.types.beta import agent_create_params as create
    from openai.types.beta import persisted_agent_tool_param as tools
    from openai.types.beta.agent_reasoning_param import AgentReasoningParam
    from openai.types.beta.agent_text_param import AgentTextParam
    from openai.types.beta.multi_agent_config_param import MultiAgentConfigParam

    from asstctl.spec.agent_schema import AGENT_TOOLS, agent_fields
    from asstctl.spec.schema import REASONING_EFFORTS
    from tests.agents.sdk_types import _fields

    fields = agent_fields(REASONING_EFFORTS)
    pairs = [(fields["reasoning"], AgentReasoningParam), (fields["text"], AgentTextParam),
             ({"properties": {"service_tier": fields["service_tier"]}}, create.AgentCreateParams),
             (fields["multi_agent"], MultiAgentConfigParam), (fields["compaction"], create.Compaction),
             (fields["experimental"], create.Experimental), (AGENT_TOOLS["mcp"], tools.PersistedAgentToolConfigParamMcp),
             (AGENT_TOOLS["web_search"], tools.PersistedAgentToolConfigParamWebSearch),
             (AGENT_TOOLS["web_search"]["properties"]["location"], tools.PersistedAgentToolConfigParamWebSearchLocation),
             (AGENT_TOOLS["computer_use"], tools.PersistedAgentToolConfigParamComputerUse)]

    def leaves(hint):
        while typing.get_origin(hint) in (typing.Annotated, typing.Required, typing.NotRequired):
            hint = typing.get_args(hint)[0]
        if typing.get_origin(hint) in (typing.Union, types.UnionType):
            return [leaf for arg in typing.get_args(hint) for leaf in leaves(arg)]
        return [hint]

    checked = 0
    for node, params in pairs:
        wire = _fields(params)[0]
        for name, prop in node["properties"].items():
            if name == "format":  # text.format: its own object schema (`{type: text}` / json_schema)
                continue
            assert name in wire, f"{params.__name__} has no `{name}`: the spec schema offers a field the SDK lacks"
            sdk = leaves(wire[name])
            literals = {value for leaf in sdk if typing.get_origin(leaf) is Literal for value in typing.get_args(leaf)}
            if "enum" in prop:
                assert set(prop["enum"]) - {None} == literals, (params.__name__, name, prop["enum"], literals)
            nullable = None in prop.get("enum", ()) or "null" in (prop.get("type") if isinstance(prop.get("type"), list)
                                                                  else [prop.get("type")])
            assert not nullable or type(None) in sdk, f"`{name}` takes null in a spec but {params.__name__} does not"
            checked += 1
    assert checked >= 20, checked


VALID_VARIANTS = [  # spec fields an `api: agents` target takes (asstctl validate passes each)
    {},
    {"name": "Bot", "instructions": "Be brief.", "metadata": {"team": "support"}},
    {"text": {"format": {"type": "text"}, "verbosity": "high"}},
    {"text": {"format": {"type": "json_schema", "schema": {"type": "object", "properties": {"a": {"type": "string"}}}}}},
    {"reasoning": {"effort": None, "summary": "auto"}, "service_tier": "priority"},
    {"multi_agent": {"enabled": True, "max_concurrent_subagents": 3}, "compaction": {"async": None},
     "experimental": {"time_awareness": True}},
    {"tools": [{"function": {"name": "f"}}, {"function": {"name": "g", "description": "G.", "parameters": {
        "type": "object", "properties": {"x": {"type": "integer"}}}}}, "web_search", "computer_use"]},
    {"tools": [{"web_search": {"location": {"city": "Paris", "country": None}, "allowed_domains": None, "mode": "cached",
                               "context_size": "high"}},
               {"computer_use": {"include_screenshots": True}},
               {"mcp": {"server_label": "docs", "transport": {"type": "http", "server_url": "https://m.example.com",
                                                              "headers": {"Accept": "json"}},
                        "allowed_tools": ["search"], "connection_origin": "environment", "credential_id": "cred_1",
                        "request_metadata": {"team": "a"}, "required": True}},
               {"mcp": {"server_label": "files", "transport": {"type": "stdio", "command": "srv", "cwd": "/srv",
                                                               "args": ["--ro"], "env_vars": ["HOME"]}}}]},
]


def test_every_valid_spec_variant_makes_requests_the_sdks_types_take(tmp_path):
    """Structural: a spec `asstctl validate` passes on an agents target becomes create and full-update bodies
    (the reconciler's request_body, then agent_body) that AgentCreateParams / AgentUpdateParams take whole."""
    import yaml

    from asstctl.backends.agents import agent_body
    from asstctl.reconcile.kinds.assistant import request_body
    from asstctl.spec.loader import load_specs
    from asstctl.spec.project import parse_project

    (tmp_path / "asstctl.yaml").write_text(yaml.safe_dump({"project": "shapes", "targets": {
        "agents": {"api": "agents", "api_key_env": "NEVER_READ"}}}))
    (tmp_path / "assistants").mkdir()
    for index, fields in enumerate(VALID_VARIANTS):
        (tmp_path / "assistants" / f"v{index}.yaml").write_text(yaml.safe_dump({"model": "gpt-5", **fields}))
    specs = load_specs(parse_project(tmp_path), "agents")  # raises SpecError if a variant were not valid
    assert len(specs) == len(VALID_VARIANTS)
    for spec in specs:
        body = request_body(spec, "shapes")
        assert request_problems(agent_body(body), TYPES["create"]) == [], spec.key
        assert request_problems(agent_body(body, update=True), TYPES["update"]) == [], spec.key


def sdk_defaults() -> dict[tuple[str, str], object]:
    """Every "Defaults to `x`" of the SDK's agent param types, read from their attribute docstrings (the source: a
    TypedDict keeps none at runtime): (class, field) -> the value."""
    import ast
    import importlib
    import inspect
    import re

    found: dict[tuple[str, str], object] = {}
    words = {"false": False, "true": True}
    for name in ("agent_create_params", "agent_text_param", "multi_agent_config_param", "persisted_agent_tool_param",
                 "agent_reasoning_param"):
        tree = ast.parse(inspect.getsource(importlib.import_module(f"openai.types.beta.{name}")))
        for node in (node for node in tree.body if isinstance(node, ast.ClassDef)):
            for field, doc in zip(node.body, node.body[1:]):
                if isinstance(field, ast.AnnAssign) and isinstance(doc, ast.Expr) and isinstance(doc.value, ast.Constant):
                    match = re.search(r"Defaults to `?([\w.-]+?)`?[.,]", str(doc.value.value))
                    if match:
                        value = match.group(1)
                        found[(node.name, field.target.id)] = words.get(value, int(value) if value.isdigit() else value)
    return found


def test_the_doubles_and_the_normalizers_defaults_are_the_sdks_documented_ones():
    """The scripted API fills in, the normalizer drops and an update resets exactly the SDK's documented defaults;
    a default the SDK documents that this table does not pin fails the test (a new one must be looked at)."""
    from asstctl.backends.agents import RESETS
    from asstctl.reconcile.normalize import AGENT_DEFAULTS, AGENT_TOOL_DEFAULTS, SUBAGENTS

    def stored_tool(kind: str, field: str):
        required = {"function": {"name": "f", "description": "", "parameters": {}},
                    "mcp": {"server_label": "kb", "transport": {"type": "stdio", "command": "c", "cwd": "/"}}}
        return tool({"type": kind, **required.get(kind, {})})[field]

    ours = {  # (class, field) -> the values of the double, the normalizer and the update's resets
        ("AgentCreateParams", "service_tier"): [DEFAULTS["service_tier"], AGENT_DEFAULTS["service_tier"],
                                                RESETS["service_tier"]],
        ("Experimental", "time_awareness"): [DEFAULTS["experimental"]["time_awareness"],
                                             AGENT_DEFAULTS["experimental"]["time_awareness"],
                                             RESETS["experimental"]["time_awareness"]],
        ("AgentTextParam", "verbosity"): [DEFAULTS["text"]["verbosity"], AGENT_DEFAULTS["text"]["verbosity"],
                                          RESETS["text"]["verbosity"]],
        ("MultiAgentConfigParam", "max_concurrent_subagents"): [
            materialized({"multi_agent": {"enabled": True}})["multi_agent"]["max_concurrent_subagents"], SUBAGENTS],
    }
    documented = sdk_defaults()
    kinds = {"Function": "function", "Mcp": "mcp", "WebSearch": "web_search", "ComputerUse": "computer_use",
             "ProgrammaticToolCalling": "programmatic_tool_calling"}
    for suffix, kind in kinds.items():
        for (cls, field) in documented:
            if cls == f"PersistedAgentToolConfigParam{suffix}":
                normalizer = [AGENT_TOOL_DEFAULTS[kind][field]] if kind in AGENT_TOOL_DEFAULTS else []
                ours[(cls, field)] = [stored_tool(kind, field), *normalizer]
    assert len(documented) >= 9, documented
    assert set(documented) == set(ours), set(documented) ^ set(ours)
    for key, value in documented.items():
        assert all(mine == value for mine in ours[key]), (key, value, ours[key])
