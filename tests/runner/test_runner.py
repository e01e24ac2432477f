"""`asstctl test` end to end: the real SDK streaming runs from a local server steered by rules."""

from __future__ import annotations

import json

import pytest

from tests.runner.conftest import PROJECT, asstctl_test, deploy, json_report, write_conversations

WEATHER = """
    conversations:
      - name: weather in two cities
        mocks:
          get_weather: {template: "{city}: 21 degrees"}
        turns:
          - user: What is the weather in Paris?
            expect:
              tool_called: {name: get_weather, arguments: {city: Paris}}
              contains: "It is Paris: 21 degrees in Paris."
          - user: And the weather in Rome, please
            mocks:
              get_weather: {result: {temperature: 25, unit: celsius}}
            expect:
              contains: '"temperature": 25'
              icontains: rome
              max_tokens: 1000
          - user: hello Ada
            expect: {equals: "Hello, Ada!", no_tool_called: true}
"""


def test_multi_turn_conversation_with_function_calls_and_mocks_passes(project, target, sdk):
    deploy(sdk, "weather-bot")
    write_conversations(project, "weather-bot", WEATHER)
    result = asstctl_test(target)
    assert result.exit_code == 0, result.output
    assert "PASS  weather-bot/weather in two cities" in result.stdout
    assert "1 passed, 0 failed" in result.stdout


def test_json_output_has_replies_calls_latency_and_usage_per_turn(project, target, sdk):
    deploy(sdk, "weather-bot")
    write_conversations(project, "weather-bot", WEATHER)
    report = json_report(asstctl_test(target, "--output", "json"))
    assert report["passed"] is True and report["target"] == target.base_url
    [conversation] = report["conversations"]
    [attempt] = conversation["attempts"]
    first, second, third = attempt["turns"]
    assert first["reply"] == "It is Paris: 21 degrees in Paris."
    assert first["tool_calls"] == [{"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}}]
    assert json.loads(second["reply"].split("It is ", 1)[1].rsplit(" in ", 1)[0]) == {"temperature": 25,
                                                                                       "unit": "celsius"}
    assert third["tool_calls"] == []
    for turn in (first, second, third):
        assert turn["usage"]["total_tokens"] == turn["usage"]["prompt_tokens"] + turn["usage"]["completion_tokens"] > 0
        assert turn["latency_ms"] > 0 and turn["overhead_ms"] >= 0
        assert turn["latency_ms"] >= turn["engine_ms"]


def test_a_wrong_expectation_fails_with_exit_1_naming_it_and_the_reply(project, target, sdk):
    deploy(sdk, "weather-bot")
    write_conversations(project, "weather-bot", """
        conversations:
          - name: greets
            turns:
              - user: hello Ada
                expect: {contains: Grace}
          - name: still greets
            turns:
              - user: hello Bob
                expect: {contains: Bob}
    """)
    result = asstctl_test(target)
    assert result.exit_code == 1, result.output
    assert "FAIL  weather-bot/greets" in result.stdout
    assert 'turn 1 ("hello Ada"): contains: "Grace" — "Grace" not in reply "Hello, Ada!"' in result.stdout
    assert "at assistants/weather-bot.test.yaml:5:" in result.stdout  # where the failed turn is written
    assert "PASS  weather-bot/still greets" in result.stdout
    assert "1 passed, 1 failed" in result.stdout


def test_a_failed_turn_ends_its_conversation(project, target, sdk):
    deploy(sdk, "weather-bot")
    write_conversations(project, "weather-bot", """
        conversations:
          - name: stops early
            turns:
              - user: hello Ada
                expect: {equals: nope}
              - user: hello Bob
    """)
    report = json_report(asstctl_test(target, "--output", "json"))
    [attempt] = report["conversations"][0]["attempts"]
    assert [t["index"] for t in attempt["turns"]] == [0]
    assert attempt["turns"][0]["failures"] == [{"expectation": 'equals: "nope"',
                                                "reason": 'reply is "Hello, Ada!"'}]


def test_a_call_without_a_mock_fails_clearly(project, target, sdk):
    deploy(sdk, "weather-bot")
    write_conversations(project, "weather-bot", """
        conversations:
          - name: forgot the mock
            turns:
              - user: weather in Oslo
    """)
    result = asstctl_test(target, "--keep-threads")
    assert result.exit_code == 1, result.output
    assert ('no mock for tool `get_weather` called with {"city": "Oslo", "unit": "celsius"}; add it under mocks:'
            in result.stdout)
    [thread] = target.store.all("thread")
    [run] = target.store.all("run", thread["id"])
    assert run["status"] in ("cancelling", "cancelled")  # not left waiting in requires_action


@pytest.mark.parametrize(
    "message, exit_code, line",
    [
        ("three of five", 0, "PASS  weather-bot/flaky  (3/5 attempts passed, 60%, needed 60%, FLAKY; mean latency "),
        ("two of five", 1, "FAIL  weather-bot/flaky  (2/5 attempts passed, 40%, needed 60%, FLAKY; mean latency "),
    ],
)
def test_repeat_with_min_pass_rate(project, target, sdk, message, exit_code, line):
    """The engine cycles its replies yes/no per run: 3 of 5 or 2 of 5 attempts get "yes"."""
    deploy(sdk, "weather-bot")
    write_conversations(project, "weather-bot", f"""
        conversations:
          - name: flaky
            turns: [{{user: {message}, expect: {{equals: "yes"}}}}]
    """)
    result = asstctl_test(target, "--repeat", "5", "--min-pass-rate", "0.6", "--parallel", "2")
    assert result.exit_code == exit_code, result.output
    assert line in result.stdout
    assert "(1 flaky)" in result.stdout and "pass rate" in result.stdout
    assert 'equals: "yes" — reply is "no"' in result.stdout  # a flaky pass shows a failed attempt too


def test_threads_and_uploaded_files_are_deleted_afterwards(project, target, sdk):
    deploy(sdk, "weather-bot")
    (project / "assistants" / "menu.txt").write_text("Soup of the day: tomato.\n")
    write_conversations(project, "weather-bot", """
        conversations:
          - name: one
            turns: [{user: hello Ada, attachments: [menu.txt], expect: {contains: Ada}}]
          - name: two
            turns: [{user: hello Bob, expect: {contains: Nobody}}]
    """)
    result = asstctl_test(target)
    assert result.exit_code == 1, result.output
    assert target.store.all("thread") == []
    assert target.store.all("file") == []


def test_keep_threads_keeps_them_tagged(project, target, sdk):
    deploy(sdk, "weather-bot")
    write_conversations(project, "weather-bot", """
        conversations:
          - name: one
            turns: [{user: hello Ada}]
    """)
    result = asstctl_test(target, "--keep-threads", "--repeat", "2")
    assert result.exit_code == 0, result.output
    threads = target.store.all("thread")
    assert len(threads) == 2
    assert {t["metadata"]["asstctl.test"] for t in threads} == {"weather-bot/one"}
    assert {t["metadata"]["asstctl.project"] for t in threads} == {PROJECT}


def _outcomes(report: dict) -> list:
    return [
        (c["name"], c["passed"], [[(t["reply"], t["error"], t["failures"], t["tool_calls"]) for t in a["turns"]]
                                  for a in c["attempts"]])
        for c in report["conversations"]
    ]


def test_parallel_gives_the_same_results_as_sequential(project, target, sdk):
    deploy(sdk, "weather-bot")
    cities = ["Paris", "Rome", "Oslo", "Lima", "Cairo", "Quito"]
    conversations = "\n".join(
        f"""
      - name: {city}
        mocks: {{get_weather: {{template: "sunny in {{city}}"}}}}
        turns:
          - user: weather in {city}
            expect: {{contains: "sunny in {city}"}}
          - user: hello {city}
            expect: {{contains: {"Nobody" if i % 3 == 0 else city}}}"""
        for i, city in enumerate(cities)
    )
    write_conversations(project, "weather-bot", "conversations:" + conversations)
    sequential = json_report(asstctl_test(target, "--output", "json"))
    parallel = json_report(asstctl_test(target, "--output", "json", "--parallel", "4"))
    assert _outcomes(parallel) == _outcomes(sequential)
    assert [c["passed"] for c in sequential["conversations"]] == [False, True, True, False, True, True]
    assert target.store.all("thread") == []


def test_not_deployed_assistant_is_a_clear_configuration_error(project, target, sdk):
    deploy(sdk, "weather-bot", project="someone-else")
    write_conversations(project, "weather-bot", "conversations: [{name: x, turns: [{user: hi}]}]\n")
    result = asstctl_test(target)
    assert result.exit_code == 2, result.output
    assert (f"Error: assistant `weather-bot` is not deployed on {target.base_url}; run `asstctl apply` first"
            in result.stderr)
    assert target.store.all("thread") == []


def test_k_selects_conversations(project, target, sdk):
    deploy(sdk, "weather-bot")
    write_conversations(project, "weather-bot", """
        conversations:
          - {name: greets ada, turns: [{user: hello Ada}]}
          - {name: greets bob, turns: [{user: hello Bob, expect: {contains: nobody}}]}
    """)
    result = asstctl_test(target, "-k", "ADA")
    assert result.exit_code == 0, result.output
    assert "greets ada" in result.stdout and "greets bob" not in result.stdout
    result = asstctl_test(target, "-k", "carol")
    assert result.exit_code == 2
    assert "no conversation matches -k carol" in result.stderr


def test_per_run_instruction_overrides_reach_the_run(project, target, sdk):
    deploy(sdk, "weather-bot")
    write_conversations(project, "weather-bot", """
        conversations:
          - name: pirate
            turns:
              - user: talk like a pirate
                instructions: You are a pirate.
                temperature: 0.5
                expect: {equals: "Arr, talk like a pirate"}
              - user: talk like a pirate
                expect: {not_contains: Arr}
    """)
    result = asstctl_test(target, "--keep-threads")
    assert result.exit_code == 0, result.output
    runs = sorted(target.store.all("run", target.store.all("thread")[0]["id"]), key=lambda r: r["created_at"])
    assert [r["instructions"] for r in runs] == ["You are a pirate.", "You are weather-bot."]
    assert runs[0]["temperature"] == 0.5


def test_python_mocks_are_called_with_the_arguments(project, target, sdk):
    deploy(sdk, "weather-bot")
    (project / "weather_mocks_for_tests.py").write_text(
        "def forecast(city, unit):\n    return {'city': city.upper(), 'unit': unit}\n"
        "def broken(**arguments):\n    raise ValueError('no forecast today')\n"
    )
    write_conversations(project, "weather-bot", """
        conversations:
          - name: python mock
            mocks: {get_weather: {python: "weather_mocks_for_tests:forecast"}}
            turns: [{user: weather in Lima, expect: {contains: '"city": "LIMA"'}}]
          - name: broken mock
            mocks: {get_weather: {python: "weather_mocks_for_tests:broken"}}
            turns: [{user: weather in Lima}]
    """)
    result = asstctl_test(target)
    assert result.exit_code == 1, result.output
    assert "PASS  weather-bot/python mock" in result.stdout
    assert ("mock for tool `get_weather` (python: weather_mocks_for_tests:broken) raised ValueError: "
            "no forecast today") in result.stdout


def test_a_run_over_the_timeout_fails_and_is_cancelled(project, target, sdk):
    deploy(sdk, "weather-bot")
    write_conversations(project, "weather-bot", "conversations: [{name: slow, turns: [{user: slow please}]}]\n")
    result = asstctl_test(target, "--timeout", "0.2", "--keep-threads")
    assert result.exit_code == 1, result.output
    assert "the run did not finish within 0.2 s (--timeout)" in result.stdout
    [thread] = target.store.all("thread")
    [run] = target.store.all("run", thread["id"])
    assert run["status"] in ("cancelling", "cancelled")


def test_an_unreachable_target_is_exit_2(project, target, sdk):
    write_conversations(project, "weather-bot", "conversations: [{name: x, turns: [{user: hi}]}]\n")
    base_url = target.base_url
    target.stop()
    result = asstctl_test(target, "--base-url", base_url)
    assert result.exit_code == 2, result.output
    assert f"cannot reach {base_url}" in result.stderr


def test_attachments_are_uploaded_and_attached_to_the_message(project, target, sdk):
    deploy(sdk, "weather-bot")
    (project / "assistants" / "data").mkdir()
    (project / "assistants" / "data" / "prices.csv").write_text("item,price\ntea,3\n")
    write_conversations(project, "weather-bot", """
        conversations:
          - name: reads a file
            turns:
              - user: hello Ada
                attachments: [{path: data/prices.csv, tools: [code_interpreter]}]
    """)
    result = asstctl_test(target, "--keep-threads")
    assert result.exit_code == 0, result.output
    [thread] = target.store.all("thread")
    user_message = target.store.all("message", thread["id"])[0]
    [attachment] = user_message["attachments"]
    assert attachment["tools"] == [{"type": "code_interpreter"}]
    [uploaded] = target.store.all("file")
    assert (uploaded["id"], uploaded["filename"], uploaded["purpose"]) == (attachment["file_id"], "prices.csv",
                                                                           "assistants")


def test_files_limit_the_run_to_those_files(project, target, sdk):
    deploy(sdk, "weather-bot")
    deploy(sdk, "greeter")
    write_conversations(project, "weather-bot", "conversations: [{name: w, turns: [{user: hello Ada}]}]\n")
    chosen = write_conversations(project, "greeter", "conversations: [{name: g, turns: [{user: hello Eve}]}]\n")
    report = json_report(asstctl_test(target, "--output", "json", str(chosen)))
    assert [(c["assistant"], c["name"]) for c in report["conversations"]] == [("greeter", "g")]


def test_a_failed_run_fails_the_turn_with_its_last_error(project, target, sdk):
    deploy(sdk, "weather-bot")
    write_conversations(project, "weather-bot", "conversations: [{name: x, turns: [{user: hello Ada}]}]\n")
    rules = target.state.config.rules_path
    with open(rules, "w") as handle:  # broken while the server runs: the runs using it fail
        handle.write("rules: [{match: '(unclosed', reply: x}]\n")
    result = asstctl_test(target)
    assert result.exit_code == 1, result.output
    assert "the run ended `failed`: server_error: offline engine rules file" in result.stdout
    assert "'match' is not a valid regular expression" in result.stdout
