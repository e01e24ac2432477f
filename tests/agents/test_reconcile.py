"""The reconciler on an Agents API target (`api: agents`): the full cycle through the CLI and the real SDK on
the scripted Agents API — create, a clean re-plan over the server's defaults, a change (update replaces the
metadata map, a dropped field goes back to its default), prune of this project's agents only, destroy; a lost
create adopted without a duplicate; stale saved plans; the project lock; import and export."""

from __future__ import annotations

import json
import time

import openai
import pytest
import yaml

from asstctl.ownership import KEY, LOCK, MANAGED_BY, PROJECT, SPEC_HASH
from tests.agents.conftest import run, sdk, write_spec

TRIAGE = {
    "name": "Triage",
    "instructions": "Sort the tickets by urgency.",
    "reasoning": {"effort": "low"},
    "text": {"verbosity": "low"},
    "service_tier": "flex",
    "tools": [
        {"function": {"name": "get_weather", "description": "The weather in a city.",
                      "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}},
        {"mcp": {"server_label": "docs", "transport": {"type": "http", "server_url": "https://mcp.example.com/mcp"},
                 "allowed_tools": ["search"]}},
        "web_search",
    ],
    "metadata": {"team": "support"},
}


def agents_of(api, project_name: str) -> dict[str, dict]:
    return {obj["metadata"][KEY]: obj for obj in api.agents.values() if obj["metadata"].get(PROJECT) == project_name}


def project_name(root) -> str:
    return yaml.safe_load((root / "asstctl.yaml").read_text())["project"]


def test_full_cycle_create_replan_change_prune_destroy(api, project):
    name = project_name(project)
    write_spec(project, "triage", **TRIAGE)
    write_spec(project, "faq", instructions="Answer from the FAQ.")
    with sdk(api) as client:
        foreign = client.beta.agents.create(model="gpt-5", name="Someone else's", metadata={"owner": "ops"})
        other = client.beta.agents.create(model="gpt-5", metadata={MANAGED_BY: "asstctl", PROJECT: "another",
                                                                   KEY: "faq"})

    created = run(api, "apply", "--yes")
    assert created.exit_code == 0, created.output
    assert "Apply complete: 2 created, 0 updated, 0 deleted, 0 failed." in created.output
    stored = agents_of(api, name)
    assert set(stored) == {"triage", "faq"}
    triage = stored["triage"]
    assert len(triage["metadata"]) == 5 and triage["metadata"]["team"] == "support" and triage["metadata"][SPEC_HASH]
    assert triage["tools"][0] == {"type": "function", "name": "get_weather", "description": "The weather in a city.",
                                  "parameters": TRIAGE["tools"][0]["function"]["parameters"], "defer_loading": False}
    assert triage["tools"][1]["required"] is False and triage["tools"][2]["context_size"] == "medium"
    assert triage["reasoning"] == {"effort": "low", "summary": None} and triage["text"]["verbosity"] == "low"

    clean = run(api, "plan", "--detailed-exitcode")  # every server-resolved default normalized away
    assert clean.exit_code == 0, clean.output
    assert "No changes." in clean.output

    changed = {**TRIAGE, "instructions": "Sort the tickets.", "metadata": {"queue": "eu"}}
    del changed["reasoning"]
    write_spec(project, "triage", **changed)
    planned = run(api, "plan", "--output", "json")
    assert planned.exit_code == 0, planned.output
    plan = json.loads(planned.output)
    update = next(action for action in plan["actions"] if action["key"] == "triage")
    assert update["kind"] == "update"
    fields = {change["path"].split(".")[0].split("[")[0] for change in update["changes"]}  # metadata: one per key
    assert fields >= {"instructions", "reasoning", "metadata"}, update
    updated = run(api, "apply", "--yes", "--output", "json")
    report = json.loads(updated.stdout)
    assert (report["kind"], report["status"], report["totals"]["updated"]) == ("apply-report", "applied", 1), report
    assert [(done["object"], done["key"], done["action"], done["ok"]) for done in report["outcomes"]] == [
        ("assistant", "triage", "update", True)]
    triage = agents_of(api, name)["triage"]
    assert "team" not in triage["metadata"] and triage["metadata"]["queue"] == "eu"  # the whole map replaced
    assert triage["reasoning"] == {"effort": None, "summary": None}  # reset: the spec dropped it
    assert run(api, "plan", "--detailed-exitcode").exit_code == 0

    (project / "assistants" / "faq.yaml").unlink()
    kept = run(api, "plan", "--detailed-exitcode")
    assert kept.exit_code == 0 and "--prune" in kept.output, kept.output
    pruned = run(api, "apply", "--yes", "--prune")
    assert "0 created, 0 updated, 1 deleted" in pruned.output, pruned.output
    assert set(agents_of(api, name)) == {"triage"}
    assert foreign.id in api.agents and other.id in api.agents  # not ours: never touched

    status = run(api, "status", "--output", "json")
    assert json.loads(status.output)["in_sync"] is True, status.output
    with sdk(api) as client:  # edited outside asstctl (its tags kept): status shows the drift
        client.beta.agents.update(triage["id"], instructions="Edited in the dashboard.", metadata=triage["metadata"])
    drifted = json.loads(run(api, "status", "--output", "json").output)
    assert drifted["in_sync"] is False, drifted
    assert [(row["key"], row["state"]) for row in drifted["objects"]] == [("triage", "drift")], drifted

    destroyed = run(api, "destroy", "--yes", "--output", "json")
    assert destroyed.exit_code == 0, destroyed.output
    report = json.loads(destroyed.stdout)
    assert (report["status"], report["totals"]["deleted"]) == ("applied", 1), report
    assert agents_of(api, name) == {}
    assert foreign.id in api.agents and other.id in api.agents
    assert not [obj for obj in api.agents.values() if obj["metadata"].get(LOCK)]  # every lock released
    assert any(method == "POST" and path == "/v1/agents" and (body or {}).get("metadata", {}).get(LOCK) == name
               for method, path, body in api.requests), "apply took the project lock on the target"


def test_a_lost_create_is_adopted_not_duplicated(api, project):
    write_spec(project, "lost", instructions="One of me.")
    api.lose_creates = 1  # committed, answered 500 (--no-lock: the next create is the agent's, not the lock's)
    result = run(api, "apply", "--yes", "--no-lock")
    assert result.exit_code == 0, result.output
    assert "adopted after a lost response" in result.output
    assert len(agents_of(api, project_name(project))) == 1
    write_spec(project, "also", instructions="And me.")
    api.lose_creates = 1  # under the lock: the lock's own create is lost; it is found, not left to block the apply
    locked = run(api, "apply", "--yes")
    assert locked.exit_code == 0 and "1 created" in locked.output, locked.output
    assert len(agents_of(api, project_name(project))) == 2
    assert not [obj for obj in api.agents.values() if LOCK in obj["metadata"]], "a lock agent was left behind"


def test_transient_failures_are_retried_and_a_saved_plan_goes_stale(api, project):
    write_spec(project, "bot", instructions="v1")
    assert run(api, "apply", "--yes").exit_code == 0
    write_spec(project, "bot", instructions="v2")
    saved = project / "plan.json"
    assert run(api, "plan", "--out", str(saved)).exit_code == 0
    agent = agents_of(api, project_name(project))["bot"]
    with sdk(api) as client:
        client.beta.agents.update(agent["id"], metadata={**agent["metadata"], "touched": "yes"})
    stale = run(api, "apply", "--yes", str(saved))
    assert stale.exit_code != 0 and "stale" in stale.output, stale.output

    api.fail_next("GET", 1)  # these two the SDK's own retries ride out
    api.fail_next("DELETE", 1)
    update = f"/v1/agents/{agent['id']}"
    api.fail_next("POST", 4, path=update)  # more than the SDK's 3 attempts: asstctl's own retry is what recovers
    first = len(api.requests)
    assert run(api, "apply", "--yes").exit_code == 0
    assert agents_of(api, project_name(project))["bot"]["instructions"] == "v2"
    posts = [index for index, (method, path, _) in enumerate(api.requests[first:], first)
             if method == "POST" and path == update]
    assert [api.retry_counts[index] for index in posts] == [0, 1, 2, 0, 1]  # 2 SDK calls of up to 3 attempts
    assert [(method, api.retry_counts[index]) for index, (method, path, _) in enumerate(api.requests[first:], first)
            if method in ("GET", "DELETE") and api.retry_counts[index]] == [("GET", 1), ("DELETE", 1)]


def test_import_and_export_write_specs_that_plan_as_no_ops(api, project):
    """On an API that also returns the optional defaults (a function's `async: false`, a web search's all-null
    `location`): imported as usual, and never a change."""
    api.explicit_defaults = True
    with sdk(api) as client:
        made = client.beta.agents.create(model="gpt-5", name="Researcher", instructions="Find sources.",
                                         reasoning={"effort": "high", "summary": "auto"},
                                         multi_agent={"enabled": True}, experimental={"time_awareness": True},
                                         tools=[{"type": "web_search", "context_size": "high"},
                                                {"type": "function", "name": "lookup", "description": "",
                                                 "parameters": {"type": "object", "properties": {}}}])
    imported = run(api, "import", "researcher", made.id)
    assert imported.exit_code == 0, imported.output
    spec = yaml.safe_load((project / "assistants" / "researcher.yaml").read_text())
    assert spec["reasoning"] == {"effort": "high", "summary": "auto"}
    assert spec["multi_agent"] == {"enabled": True, "max_concurrent_subagents": 6}
    assert spec["experimental"] == {"time_awareness": True}  # not silently left out of the spec
    assert spec["tools"][0] == {"web_search": {"context_size": "high"}}
    assert spec["tools"][1] == {"function": {"name": "lookup"}}
    assert run(api, "plan", "--detailed-exitcode").exit_code == 0

    (project / "assistants" / "researcher.yaml").unlink()
    exported = run(api, "export", "--yes")
    assert exported.exit_code == 0, exported.output
    assert run(api, "plan", "--detailed-exitcode").exit_code == 0

    with sdk(api) as client:  # --all: an agent no project manages is exported too, and adopted
        stray = client.beta.agents.create(model="gpt-5-mini", name="Stray Bot", text={"verbosity": "high"})
    everything = run(api, "export", "--all", "--yes")
    assert everything.exit_code == 0, everything.output
    written = yaml.safe_load((project / "assistants" / "stray-bot.yaml").read_text())
    assert written["model"] == "gpt-5-mini" and written["text"]["verbosity"] == "high", written
    assert api.agents[stray.id]["metadata"][KEY] == "stray-bot"
    assert run(api, "plan", "--detailed-exitcode").exit_code == 0
    assert run(api, "destroy", "--yes").exit_code == 0


def test_a_held_lock_refuses_a_second_apply(api, project):
    from asstctl.backends.agents import Agents
    from asstctl.reconcile.lock import acquire

    write_spec(project, "locked", instructions="Wait your turn.")
    with Agents(sdk(api, default_headers={})) as backend, acquire(backend, project_name(project), "apply"):
        refused = run(api, "apply", "--yes")
    assert refused.exit_code != 0 and "is locked by" in refused.output, refused.output
    assert run(api, "apply", "--yes").exit_code == 0


def test_force_unlock_removes_a_crashed_applys_lock_agent(api, project):
    from asstctl.reconcile import lock as locking

    name = project_name(project)
    write_spec(project, "bot", instructions="Hello.")
    with sdk(api) as client:
        stuck = client.beta.agents.create(model="gpt-5-mini", name=f"asstctl lock: {name}", metadata={
            locking.LOCK: name, locking.HOLDER: "ci@runner pid 1", locking.OPERATION: "apply",
            locking.SINCE: "2026-01-01 00:00:00 UTC", locking.EXPIRES: str(int(time.time()) + 600)})
    held = run(api, "apply", "--yes")
    assert held.exit_code != 0 and "ci@runner pid 1" in held.output and f"force-unlock {stuck.id}" in held.output
    unconfirmed = run(api, "force-unlock", stuck.id)
    assert unconfirmed.exit_code == 1 and "re-run with --yes" in unconfirmed.output and stuck.id in api.agents
    removed = run(api, "force-unlock", stuck.id, "--yes")
    assert removed.exit_code == 0 and f"removed lock {stuck.id}" in removed.output, removed.output
    assert stuck.id not in api.agents and run(api, "apply", "--yes").exit_code == 0
    assert "is not locked" in run(api, "force-unlock", "--yes").output


def test_apply_creates_agents_in_parallel(api, project):
    for number in range(4):
        write_spec(project, f"bot-{number}", instructions=f"Bot {number}.")
    api.create_delay = 0.3  # each create takes a while on the server: parallel ones overlap there
    applied = run(api, "apply", "--yes", "--no-lock")
    assert applied.exit_code == 0 and "4 created" in applied.output, applied.output
    assert api.peak_creates >= 2


def test_a_wrong_base_url_or_a_missing_key_is_one_clear_error(api, project):
    from click.testing import CliRunner

    from asstctl.cli import cli

    write_spec(project, "bot")
    config = yaml.safe_load((project / "asstctl.yaml").read_text())
    config["targets"]["agents"]["base_url"] = api.base_url + "/nowhere"
    (project / "asstctl.yaml").write_text(yaml.safe_dump(config))
    wrong = run(api, "plan")
    assert wrong.exit_code != 0 and "does not serve the Agents API (404 on " in wrong.output, wrong.output
    assert "Traceback" not in wrong.output
    missing = CliRunner().invoke(cli, ["plan", "--target", "agents"], env={"SCRIPTED_AGENTS_KEY": None})
    assert missing.exit_code != 0 and "$SCRIPTED_AGENTS_KEY is not set" in missing.output, missing.output
    assert api.key not in wrong.output + missing.output
    both = run(api, "plan", "--base-url", api.base_url)  # never silently the Assistants API at that URL
    assert both.exit_code != 0 and "--base-url and --target agents together: --base-url names an Assistants API " \
                                   "endpoint, and target `agents` is an `api: agents` target" in both.output, both.output
    assert "Drop --base-url, or set `base_url` of target `agents`" in both.output and "Traceback" not in both.output


def test_server_defaults_set_explicitly_are_not_a_change(api, project):
    """On an API that resolves an omitted reasoning effort to the model's default (the SDK's Agent.reasoning says
    it may): the effort is compared only when the spec sets one."""
    api.default_effort = "medium"
    write_spec(project, "explicit", service_tier="auto", text={"verbosity": "medium", "format": {"type": "text"}},
               multi_agent={"enabled": True}, compaction={"async": False}, reasoning={"effort": None},
               tools=[{"web_search": {"context_size": "medium", "mode": "live"}}, {"computer_use": {}},
                      {"mcp": {"server_label": "kb", "required": False, "connection_origin": "service",
                               "transport": {"type": "stdio", "command": "kb-server", "cwd": "/srv", "args": []}}},
                      {"function": {"name": "noop", "description": ""}}])
    assert run(api, "apply", "--yes").exit_code == 0
    stored = agents_of(api, project_name(project))["explicit"]
    assert stored["multi_agent"] == {"enabled": True, "max_concurrent_subagents": 6}
    assert stored["tools"][2]["transport"]["env_vars"] == [] and stored["reasoning"]["effort"] == "medium"
    clean = run(api, "plan", "--detailed-exitcode")
    assert clean.exit_code == 0, clean.output
    write_spec(project, "explicit")  # everything back to the defaults: an update that resets them
    assert run(api, "apply", "--yes").exit_code == 0
    stored = agents_of(api, project_name(project))["explicit"]
    assert stored["multi_agent"]["enabled"] is False and stored["tools"] == []
    replan = run(api, "plan", "--detailed-exitcode")
    assert stored["reasoning"]["effort"] == "medium" and replan.exit_code == 0, replan.output
    write_spec(project, "explicit", reasoning={"effort": "high"})  # one the spec sets is compared
    changed = run(api, "plan", "--detailed-exitcode")
    assert changed.exit_code == 2 and "reasoning" in changed.output, changed.output


def test_listing_pages_through_every_agent_in_ceil_n_over_100_requests(api, project):
    from asstctl.backends.agents import Agents
    from asstctl.reconcile.remote import read_remote
    from tests.agents.scripted_rules import materialized

    name = project_name(project)
    for number in range(150):  # put straight into the stand-in's store: 150 creates over HTTP would be slow
        agent_id = f"agent_page{number:04d}"
        api.agents[agent_id] = {"id": agent_id, "object": "agent", "created_at": 1, "updated_at": 1,
                                **materialized({"model": "gpt-5", "metadata": {
                                    MANAGED_BY: "asstctl", PROJECT: name, KEY: f"bot-{number}"}})}
    try:
        with Agents(sdk(api)) as backend:
            state = read_remote(backend, name)
        assert len(state.managed) == 150 and state.requests == 2
        with sdk(api) as client:  # the stand-in holds list queries to the SDK's AgentListParams
            for bad in ({"limit": 101}, {"order": "newest"}, {"extra_query": {"page": "2"}}):
                with pytest.raises(openai.BadRequestError):
                    client.beta.agents.list(**bad)
        assert len(api.problems) == 3 and "limit: 101 is not between 1 and 100" in api.problems[0], api.problems
        assert "'newest' is not one of ('asc', 'desc')" in api.problems[1] and "page: not a field" in api.problems[2]
        api.problems.clear()
    finally:
        for number in range(150):
            api.agents.pop(f"agent_page{number:04d}")


def test_compaction_the_api_ignores_is_never_a_change(api, project):
    """SDK 3.63: `compaction.async` is "accepted for compatibility and ignored", an agent's is "always false"."""
    write_spec(project, "compact", compaction={"async": False})
    assert run(api, "apply", "--yes").exit_code == 0
    stored = agents_of(api, project_name(project))["compact"]
    assert stored["compaction"] == {"async": False}
    stored["compaction"] = {"async": True}  # what an agent saved before the API ignored the value may still say
    clean = run(api, "plan", "--detailed-exitcode")
    assert clean.exit_code == 0, clean.output
    write_spec(project, "compact", compaction={"async": True})
    refused = run(api, "plan")
    assert refused.exit_code != 0 and "`compaction.async: true` on target `agents`" in refused.output, refused.output
    assert "drift" not in refused.output


def test_shared_vector_stores_are_left_out_of_an_agents_targets_plan_with_a_note(api, project):
    """vector_stores/*.yaml are valid (the project's Assistants targets, the built-in ones included, take them);
    a plan on the agents target leaves them out and says so, and apply creates the agent alone."""
    write_spec(project, "bot", name="Bot")
    (project / "vector_stores" / "kb").mkdir(parents=True)
    (project / "vector_stores" / "kb" / "a.md").write_text("hello")
    (project / "vector_stores" / "kb.yaml").write_text("name: KB\nfiles: [kb/*.md]\n")
    assert run(api, "validate").exit_code == 0
    planned = run(api, "plan")
    assert planned.exit_code == 0 and "vector store" not in planned.stdout, planned.output
    assert "Warning: vector store `kb` (vector_stores/kb.yaml) not planned on " in planned.stderr, planned.stderr
    assert "no vector stores or uploads for agents" in planned.stderr and "MCP server" in planned.stderr
    applied = run(api, "apply", "--yes")
    assert applied.exit_code == 0 and "1 created" in applied.output and "0 failed" in applied.output, applied.output
    assert run(api, "plan", "--detailed-exitcode").exit_code == 0


def test_every_non_default_field_and_12_user_keys_apply_replan_clean_and_reset_when_dropped(api, project):
    """A json_schema answer format, a flex tier, a name... and 12 metadata keys of the user's (+ asstctl's 4 = the
    API's 16 pairs): apply, a clean re-plan; the spec then drops them all: each goes back to the API's default."""
    schema = {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]}
    write_spec(project, "full", name="Full", instructions="Answer in JSON.", service_tier="flex",
               text={"verbosity": "low", "format": {"type": "json_schema", "schema": schema}},
               reasoning={"summary": "auto"}, multi_agent={"enabled": True, "max_concurrent_subagents": 3},
               experimental={"time_awareness": True}, metadata={f"k{number}": "v" for number in range(12)})
    assert run(api, "apply", "--yes").exit_code == 0
    stored = agents_of(api, project_name(project))["full"]
    assert len(stored["metadata"]) == 16 and stored["text"]["format"] == {"type": "json_schema", "schema": schema}
    assert stored["experimental"] == {"time_awareness": True}
    clean = run(api, "plan", "--detailed-exitcode")
    assert clean.exit_code == 0, clean.output
    write_spec(project, "full")
    assert "1 updated" in run(api, "apply", "--yes").output
    stored = agents_of(api, project_name(project))["full"]
    assert (stored["name"], stored["instructions"], stored["service_tier"]) == (None, None, "auto")
    assert stored["text"] == {"format": {"type": "text"}, "verbosity": "medium"}
    assert stored["reasoning"] == {"effort": None, "summary": None} and stored["multi_agent"]["enabled"] is False
    assert stored["experimental"] == {"time_awareness": False}  # merged by key on update: asstctl sends it
    assert sorted(stored["metadata"]) == [KEY, MANAGED_BY, PROJECT, SPEC_HASH]
    assert run(api, "plan", "--detailed-exitcode").exit_code == 0


def test_an_agent_with_tools_a_spec_cannot_express_is_not_imported_and_says_why(api, project):
    """tool_search (and programmatic_tool_calling, automations), a function's defer_loading (and async): named,
    never "did you mean `file_search`?", an Assistants tool; nothing is written."""
    with sdk(api) as client:
        made = client.beta.agents.create(model="gpt-5", tools=[{"type": "tool_search"}, {
            "type": "function", "name": "lookup", "description": "", "defer_loading": True,
            "parameters": {"type": "object", "properties": {}}}, {"type": "programmatic_tool_calling"}])
        refused = run(api, "import", "searcher", made.id)
        client.beta.agents.update(made.id, metadata={MANAGED_BY: "asstctl", PROJECT: project_name(project),
                                                      KEY: "searcher"})
        exported = run(api, "export", "--yes")  # now the project's: export names it too
        client.beta.agents.delete(made.id)
    assert refused.exit_code == 1 and "did you mean" not in refused.output, refused.output
    assert "`tools[0].type`: `tool_search` is an Agents API tool asstctl's spec format cannot express: remove it, " \
           "or keep such an agent outside asstctl" in refused.output
    assert "`defer_loading` is an Agents API function option asstctl's spec format cannot express" in refused.output
    assert "`programmatic_tool_calling` is an Agents API tool asstctl's spec format cannot express" in refused.output
    assert "unknown field" not in refused.output  # the API's `enabled: true` on it is not a second problem
    assert "nothing was written" in refused.output and not (project / "assistants" / "searcher.yaml").exists()
    assert exported.exit_code == 1 and "1 failed" in exported.output, exported.output
    assert f"{made.id} (searcher): " in exported.output and "`tool_search` is an Agents API tool" in exported.output
    assert not (project / "assistants" / "searcher.yaml").exists()


def test_a_model_the_target_does_not_list_is_a_warning_with_a_did_you_mean(api, project):
    """GET /models of the agents target (the SDK's models.list, checked against its types): an unlisted
    `model:` warns at plan and apply, naming the spec and the closest listed model; it never fails them."""
    write_spec(project, "bot", name="Bot", model="gpt-5-mni")
    planned = run(api, "plan")
    assert planned.exit_code == 0, planned.output
    assert "assistants/bot.yaml" in planned.stderr and "gpt-5-mni" in planned.stderr, planned.stderr
    assert "did you mean `gpt-5-mini`?" in planned.stderr, planned.stderr
    applied = run(api, "apply", "--yes")
    assert applied.exit_code == 0 and "gpt-5-mni" in applied.stderr, applied.output
    write_spec(project, "bot", name="Bot", model="gpt-5-mini")
    assert "Warning" not in run(api, "plan").stderr
    assert ("GET", "/v1/models", None) in api.requests and not api.problems, api.problems
