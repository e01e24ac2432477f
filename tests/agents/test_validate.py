"""Which fields a target's API takes, at validate time (asstctl.spec.agents): Assistants-only fields are refused on
an `api: agents` target naming what to use instead, MCP servers may hold no secret, and an Assistants target
refuses the Agents-only fields. No network: nothing is reached."""

from __future__ import annotations

import yaml
from click.testing import CliRunner

from asstctl.cli import cli
from tests.agents.conftest import write_spec

SECRET_HEADERS = ("Authorization", "Proxy-Authorization", "Cookie", "X-Api-Key", "Api-Key", "X-Auth-Token",
                  "X-Client-Secret", "X-Password", "X-My-ApiKey")


def validate(root) -> str:
    result = CliRunner().invoke(cli, ["validate"], env={"OPENAI_BASE_URL": None}, catch_exceptions=False)
    assert result.exit_code != 0, result.output
    return result.output


def agents_project(root, monkeypatch, **targets) -> None:
    monkeypatch.chdir(root)
    (root / "asstctl.yaml").write_text(yaml.safe_dump({"project": "checks", "targets": {
        "agents": {"api": "agents", "api_key_env": "NEVER_READ"}, **targets}}))
    (root / "assistants").mkdir()


def test_assistants_only_fields_are_refused_on_an_agents_target(tmp_path, monkeypatch):
    agents_project(tmp_path, monkeypatch)
    write_spec(tmp_path, "bot", temperature=0.2, top_p=0.9, description="A bot.", reasoning_effort="low",
               response_format="json_object", tool_resources={"code_interpreter": {"file_ids": ["file_1"]}},
               tools=["file_search", "code_interpreter", {"function": {"name": "f", "strict": True}}])
    out = validate(tmp_path)
    for field in ("temperature", "top_p", "description", "reasoning_effort", "response_format", "tool_resources"):
        assert f"`{field}` is an Assistants API field and target `agents` is an Agents API target" in out, out
    assert "or drop it on this target: `targets: {agents: {temperature: null}}`" in out
    assert "use `reasoning: {effort: ...}` instead" in out
    assert "`tools[0]` is `file_search`, an Assistants API tool" in out and "MCP server" in out
    assert "`tools[1]` is `code_interpreter`, an Assistants API tool" in out
    assert "`tools[2]`.function.strict: an agent's function tools have no `strict`" in out
    assert "assistants/bot.yaml:2:1: " in out  # where: the field's line


def test_a_target_override_drops_them_for_the_agents_target(tmp_path, monkeypatch):
    agents_project(tmp_path, monkeypatch, staging={"base_url": "http://127.0.0.1:9/v1"})
    write_spec(tmp_path, "bot", temperature=0.2, tools=["code_interpreter"],
               targets={"agents": {"temperature": None, "tools": ["web_search"], "reasoning": {"effort": "low"}}})
    result = CliRunner().invoke(cli, ["validate"], env={"OPENAI_BASE_URL": None}, catch_exceptions=False)
    assert result.exit_code == 0, result.output


def test_mcp_servers_hold_no_secrets(tmp_path, monkeypatch):
    agents_project(tmp_path, monkeypatch)
    write_spec(tmp_path, "bot", tools=[
        {"mcp": {"server_label": "docs", "transport": {"type": "http", "server_url": "https://mcp.example.com",
                                                       "authorization": "Bearer sk-1"}}},
        {"mcp": {"server_label": "files", "transport": {"type": "stdio", "command": "srv", "cwd": "/srv",
                                                        "env": {"TOKEN": "x"}}}},
        {"mcp": {"server_label": "wiki", "transport": {"type": "http", "server_url": "https://wiki.example.com",
                                                       "headers": {**{name: "k" for name in SECRET_HEADERS},
                                                                   "Accept": "json"}}}},
        {"mcp": {"server_label": "docs", "transport": {"type": "http", "server_url": "https://other.example.com"}}}])
    out = validate(tmp_path)
    assert "`tools[0]`.mcp.transport.authorization: a saved agent may hold no secrets (the Agents API refuses them " \
           "there): keep the secret in a vault credential and name it with `credential_id`" in out, out
    assert "`tools[1]`.mcp.transport.env: a saved agent may hold no secrets" in out
    assert "(list the variables' names in `env_vars`)" in out
    for name in SECRET_HEADERS:  # docs/agents.md: Authorization, Cookie, X-Api-Key, names with token, secret...
        assert f"`tools[2]`.mcp.transport.headers.{name}: a header like this carries a secret" in out, (name, out)
    assert "Accept" not in out
    assert "`tools[3]`: a second MCP server labelled `docs`" in out


def test_mcp_server_urls_request_metadata_and_stdio_args_hold_no_credentials(tmp_path, monkeypatch):
    agents_project(tmp_path, monkeypatch)

    def http(label: str, url: str, **more) -> dict:
        return {"mcp": {"server_label": label, "transport": {"type": "http", "server_url": url}, **more}}

    def stdio(label: str, *args: str) -> dict:
        return {"mcp": {"server_label": label, "transport": {"type": "stdio", "command": "srv", "cwd": "/srv",
                                                             "args": list(args)}}}

    key = "sk-proj-" + "a1b2c3d4" * 4
    write_spec(tmp_path, "bot", tools=[
        http("userinfo", "https://u:p@mcp.example.com/mcp"),
        http("query", f"https://mcp.example.com/mcp?api_key={key}&page=2"),
        http("value", f"https://mcp.example.com/mcp?q={key}"),
        http("meta", "https://mcp.example.com/mcp", request_metadata={"authorization": "Bearer abc", "tenant": "acme"}),
        http("metavalue", "https://mcp.example.com/mcp", request_metadata={"note": key}),
        stdio("flag", "--port", "8080", "--api-key", "abc"),
        stdio("inline", "--token=abc"),
        stdio("bare", key),
        {"mcp": {"server_label": "hdr", "transport": {"type": "http", "server_url": "https://mcp.example.com",
                                                      "headers": {"X-Custom": "Bearer abc"}}}},
        http("clean", "https://mcp.example.com/mcp?page=2&lang=en", request_metadata={"tenant": "acme"}),
        stdio("cleanargs", "--port", "8080", "--verbose"),
        http("path", f"https://hooks.example.com/mcp/{key}"),
        http("fragment", f"https://mcp.example.com/mcp#access_token=abc"),
        http("pathparam", f"https://mcp.example.com/v1;k={key}/mcp?page=2"),
        http("cleanpath", "https://mcp.example.com/sk-docs/mcp/task-manager")])
    out = validate(tmp_path)
    assert key not in out and "Bearer abc" not in out and "u:p" not in out, out  # never the secret itself
    tail = "a saved agent may hold no secrets (the Agents API refuses them there)"
    assert f"`tools[0]`.mcp.transport.server_url: the URL carries a credential (a user name or password before the " \
           f"host); {tail}" in out, out
    assert f"`tools[1]`.mcp.transport.server_url: the URL carries a credential (query parameter `api_key`); {tail}" in out
    assert "`tools[2]`.mcp.transport.server_url: the URL carries a credential (query parameter `q`)" in out
    assert f"`tools[3]`.mcp.request_metadata.authorization: request metadata like this carries a secret; {tail}" in out
    assert "`tools[4]`.mcp.request_metadata.note: request metadata like this" in out
    assert f"`tools[5]`.mcp.transport.args[2]: a command argument like this carries a secret; {tail}" in out
    assert "`tools[6]`.mcp.transport.args[0]: a command argument" in out
    assert "`tools[7]`.mcp.transport.args[0]: a command argument" in out
    assert "`tools[8]`.mcp.transport.headers.X-Custom: a header like this carries a secret" in out
    assert "tenant" not in out and "`tools[5]`.mcp.transport.args[0]" not in out and "args[3]" not in out
    assert "`tools[9]`" not in out and "`tools[10]`" not in out
    assert f"`tools[11]`.mcp.transport.server_url: the URL carries a credential (path segment 2); {tail}" in out
    assert "`tools[12]`.mcp.transport.server_url: the URL carries a credential (fragment parameter `access_token`)" in out
    assert "`tools[13]`.mcp.transport.server_url: the URL carries a credential (path segment 1)" in out
    assert "`tools[14]`" not in out


def test_the_3_mib_check_runs_through_asstctl_validate(tmp_path, monkeypatch):
    """Through the CLI: the parameters come from a JSON file (fast to read), so the spec's tools pass 3 MiB."""
    import json

    agents_project(tmp_path, monkeypatch)
    (tmp_path / "assistants" / "big.json").write_text(json.dumps({"type": "object", "properties": {}, "description": "x" * 3_200_000}))
    write_spec(tmp_path, "bot", tools=[{"function": {"name": "huge", "parameters_file": "big.json"}}])
    out = validate(tmp_path)
    assert "assistants/bot.yaml:2:1: the tools are 3,200," in out and "an agent's tools may be at most 3,145,728 " \
           "bytes (3 MiB, an API limit)" in out, out


def test_the_tools_must_fit_in_3_mib():
    """On the resolved spec (a 3 MiB YAML file takes seconds to parse; the check runs after it)."""
    from pathlib import Path

    from asstctl.spec.agents import TOOLS_LIMIT, agent_problems
    from asstctl.spec.model import AssistantSpec

    def spec(size: int) -> AssistantSpec:
        function = {"name": "huge", "description": "x" * size}
        return AssistantSpec("bot", Path("assistants/bot.yaml"), {"model": "gpt-5", "tools": [
            {"type": "function", "function": function}]}, positions={"tools": (3, 1)})

    overhead = len('[{"type":"function","name":"huge","description":"","parameters":{"type":"object","properties":{}}}]')
    assert agent_problems(spec(TOOLS_LIMIT - overhead), "agents") == []
    problems = agent_problems(spec(TOOLS_LIMIT - overhead + 1), "agents")
    assert problems == ["assistants/bot.yaml:3:1: the tools are 3,145,729 bytes as JSON; an agent's tools may be at most "
                        "3,145,728 bytes (3 MiB, an API limit): shorten descriptions or parameter schemas"]


def test_an_assistants_target_refuses_the_agents_only_fields(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "asstctl.yaml").write_text("project: checks\n")
    (tmp_path / "assistants").mkdir()
    write_spec(tmp_path, "bot", reasoning={"effort": "low"}, service_tier="flex", experimental={"time_awareness": True},
               tools=["web_search", {"mcp": {"server_label": "kb", "transport": {
                   "type": "http", "server_url": "https://mcp.example.com"}}}, {"computer_use": {}}])
    out = validate(tmp_path)
    assert "`tools[1]` is `mcp`, an Agents API tool, and the default target serves the Assistants API" in out, out
    assert "`tools[2]` is `computer_use`, an Agents API tool" in out
    assert "`experimental` is an Agents API field and the default target serves the Assistants API" in out, out
    assert "`reasoning` is an Agents API field and the default target serves the Assistants API" in out, out
    assert "`service_tier` is an Agents API field" in out
    assert "`tools[0]` is `web_search`, an Agents API tool" in out


def test_an_agents_target_cannot_be_embedded(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "asstctl.yaml").write_text("project: checks\ntargets: {agents: {api: agents, embedded: true}}\n")
    (tmp_path / "assistants").mkdir()
    out = validate(tmp_path)
    assert "the embedded server serves the Assistants API, not the Agents API" in out, out


def test_compaction_async_true_is_refused_because_the_api_ignores_it(tmp_path, monkeypatch):
    agents_project(tmp_path, monkeypatch)
    write_spec(tmp_path, "bot", compaction={"async": True})
    out = validate(tmp_path)
    assert "assistants/bot.yaml:3:3: `compaction.async: true` on target `agents`: the Agents API ignores it " \
           "(context compaction is always blocking" in out, out
    write_spec(tmp_path, "bot", compaction={"async": False})
    result = CliRunner().invoke(cli, ["validate"], env={"OPENAI_BASE_URL": None}, catch_exceptions=False)
    assert result.exit_code == 0, result.output


def test_web_search_location_takes_the_sdk_keys_only(tmp_path, monkeypatch):
    agents_project(tmp_path, monkeypatch)
    location = {"city": "Paris", "country": "FR", "region": "Île-de-France", "timezone": "Europe/Paris"}
    write_spec(tmp_path, "bot", tools=[{"web_search": {"location": location}}])
    result = CliRunner().invoke(cli, ["validate"], env={"OPENAI_BASE_URL": None}, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    write_spec(tmp_path, "bot", tools=[{"web_search": {"location": {**location, "street": "Rue de Rivoli"}}}])
    out = validate(tmp_path)
    assert "street" in out, out
    write_spec(tmp_path, "bot", tools=[{"web_search": {"location": {"city": 75}}}])
    assert "75" in validate(tmp_path)


def test_a_json_schema_format_needs_its_schema_and_metadata_at_most_12_keys(tmp_path, monkeypatch):
    agents_project(tmp_path, monkeypatch)
    write_spec(tmp_path, "bot", text={"format": {"type": "json_schema"}}, metadata={f"k{i}": "v" for i in range(13)})
    write_spec(tmp_path, "texty", text={"format": {"type": "text", "schema": {"type": "object"}}})
    out = validate(tmp_path)
    assert "assistants/texty.yaml:3:3: `text.format` is `type: text` with a `schema`: a text format takes no schema; " \
           "use `type: json_schema` for answers that follow it, or remove `schema`" in out, out
    assert "assistants/bot.yaml:3:3: `text.format` is `type: json_schema` without `schema`: add the JSON Schema the " \
           "answers follow, e.g. `schema: {type: object, properties: {answer: {type: string}}}`, or use `type: text`" \
           in out, out
    assert "`metadata` has 13 keys; at most 12 are allowed (the API allows 16 and asstctl adds 4 of its own)" in out
    assert "required property" not in out


def test_the_tools_and_function_options_a_spec_cannot_express_are_named_in_every_form(tmp_path, monkeypatch):
    """docs/agents.md (what a spec cannot express): each tool as a string, as `{type: ...}` and as `{tool: {...}}`,
    and a function's `async` and `defer_loading`, get the "cannot express" message, never "must be one of" or
    "unknown field"."""
    agents_project(tmp_path, monkeypatch)
    names = ("tool_search", "programmatic_tool_calling", "automations")
    forms = [form for name in names for form in (name, {"type": name}, {name: {"enabled": True}})]
    write_spec(tmp_path, "bot", tools=[*forms, {"function": {"name": "f", "async": True, "defer_loading": True}}])
    lines = validate(tmp_path).splitlines()
    for index, name in enumerate(names):
        said = [text for text in lines if f"`{name}` is an Agents API tool asstctl's spec format cannot express: remove "
                                          "it, or keep such an agent outside asstctl" in text]
        assert len(said) == 3, (name, lines)  # the string, the `{type: ...}` and the `{name: {...}}` form
        assert f"`tools[{3 * index}]`: `{name}`" in said[0] and f"`tools[{3 * index + 1}].type`: `{name}`" in said[1]
    for option in ("async", "defer_loading"):
        assert any(f"`{option}` is an Agents API function option asstctl's spec format cannot express" in text
                   for text in lines), lines
    assert not [text for text in lines if "must be one of" in text or "unknown field" in text], lines


def test_a_project_name_fits_the_asstctl_project_tag(tmp_path, monkeypatch):
    """The name is the `asstctl.project` tag's value on every agent and lock: at most 512 characters (metadata)."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "assistants").mkdir()
    for length, fails in ((512, False), (513, True)):
        (tmp_path / "asstctl.yaml").write_text(yaml.safe_dump({"project": "p" * length, "targets": {
            "agents": {"api": "agents", "api_key_env": "NEVER_READ"}}}))
        result = CliRunner().invoke(cli, ["validate"], env={"OPENAI_BASE_URL": None}, catch_exceptions=False)
        assert (result.exit_code != 0) == fails, result.output
    assert "`project` is 513 characters long; it must be at most 512: it is the value of the `asstctl.project` tag " \
           "on everything asstctl manages" in result.output, result.output


def test_an_agents_target_without_base_url_is_openais_api(tmp_path, monkeypatch):
    """docs/agents.md: `base_url: https://api.openai.com/v1   # the default for an agents target`."""
    from asstctl.spec.project import load_project

    agents_project(tmp_path, monkeypatch, staging={"base_url": "http://127.0.0.1:9/v1"})
    targets = load_project(tmp_path).targets
    assert targets["agents"].base_url == "https://api.openai.com/v1"
    assert targets["staging"].base_url == "http://127.0.0.1:9/v1"


def test_top_level_agents_fields_validate_for_the_agents_target_and_plan_without_target_refuses_them(tmp_path,
                                                                                                      monkeypatch):
    """docs/agents.md: validate checks the targets of asstctl.yaml, not the built-in embedded one; a plan on that
    one (no --target) refuses the Agents-only fields, naming each."""
    agents_project(tmp_path, monkeypatch)
    write_spec(tmp_path, "bot", reasoning={"effort": "low"}, tools=["web_search"], experimental={"time_awareness": True})
    valid = CliRunner().invoke(cli, ["validate"], env={"OPENAI_BASE_URL": None}, catch_exceptions=False)
    assert valid.exit_code == 0, valid.output
    plan = CliRunner().invoke(cli, ["plan"], env={"OPENAI_BASE_URL": None}, catch_exceptions=False)
    assert plan.exit_code != 0, plan.output
    for field in ("`reasoning` is an Agents API field and target `embedded`", "`tools[0]` is `web_search`, an Agents "
                  "API tool, and target `embedded`", "`experimental` is an Agents API field and target `embedded`"):
        assert field in plan.output, plan.output


def test_the_assistants_caps_apply_on_assistants_targets_only(tmp_path, monkeypatch):
    """128 tools, a 256-character name, 256,000 characters of instructions: the Assistants API's caps; the Agents
    API documents none of them, so the agents variant of the same spec is valid."""
    from asstctl.spec.loader import load_specs
    from asstctl.spec.project import parse_project

    agents_project(tmp_path, monkeypatch, staging={"base_url": "http://127.0.0.1:9/v1"})
    write_spec(tmp_path, "big", name="n" * 300, instructions="i" * 256_001,
               tools=[{"function": {"name": f"f{index}"}} for index in range(129)])
    out = validate(tmp_path)
    assert "assistants/big.yaml:2:1: `name` is 300 characters long; it must be at most 256 on an Assistants API " \
           "target" in out, out
    assert "`instructions` is 256,001 characters long; it must be at most 256,000 on an Assistants API target" in out
    assert "`tools` has 129 items; it must have at most 128 on an Assistants API target" in out
    assert len(out.strip().splitlines()) == 4, out  # each once (both Assistants variants: default and staging)
    [spec] = load_specs(parse_project(tmp_path), "agents")
    assert len(spec.fields["tools"]) == 129 and len(spec.fields["name"]) == 300


def test_a_refusal_points_at_the_nested_field_it_is_about(tmp_path, monkeypatch):
    """Not at `tools:`: at the header, the argument, the `strict`, also when a target override holds the tools."""
    agents_project(tmp_path, monkeypatch)
    (tmp_path / "assistants" / "bot.yaml").write_text(
        "model: gpt-5\n"
        "tools:\n"
        "  - mcp:\n"
        "      server_label: docs\n"
        "      transport: {type: http, server_url: 'https://mcp.example.com', headers: {X-Api-Key: k}}\n"
        "  - function: {name: f, strict: true}\n"
        "targets:\n"
        "  agents:\n"
        "    tools:\n"
        "      - mcp:\n"
        "          server_label: files\n"
        "          transport: {type: stdio, command: srv, cwd: /srv, args: [--verbose, --token=abc]}\n")
    out = validate(tmp_path)
    assert "assistants/bot.yaml:12:79: `tools[0]`.mcp.transport.args[1]: a command argument" in out, out
    (tmp_path / "assistants" / "bot.yaml").write_text(
        "model: gpt-5\ntools:\n  - mcp:\n      server_label: docs\n"
        "      transport: {type: http, server_url: 'https://mcp.example.com', headers: {X-Api-Key: k}}\n"
        "  - function: {name: f, strict: true}\n")
    out = validate(tmp_path)
    assert "assistants/bot.yaml:5:80: `tools[0]`.mcp.transport.headers.X-Api-Key: a header like this" in out, out
    assert "assistants/bot.yaml:6:25: `tools[1]`.function.strict: an agent's function tools have no" in out, out


def test_a_stdio_server_without_cwd_is_told_what_to_add(tmp_path, monkeypatch):
    agents_project(tmp_path, monkeypatch)
    (tmp_path / "assistants" / "bot.yaml").write_text(
        "model: gpt-5\ntools:\n  - mcp:\n      server_label: files\n      transport: {type: stdio, command: srv}\n")
    out = validate(tmp_path)
    assert "assistants/bot.yaml:5:7: 'cwd' is a required property of `tools[0].mcp.transport`: add it, e.g. " \
           "`{type: stdio, command: ..., cwd: ...}`" in out, out
