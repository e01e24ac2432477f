"""`--junit-xml`: one testcase per conversation, valid against a JUnit XSD."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import xmlschema

from tests.runner.conftest import asstctl_test, deploy, write_conversations

XSD = Path(__file__).parent.parent / "data" / "junit.xsd"


def test_junit_report_validates_and_has_one_testcase_per_conversation(project, target, sdk, tmp_path):
    deploy(sdk, "weather-bot")
    deploy(sdk, "greeter")
    write_conversations(project, "weather-bot", """
        conversations:
          - name: weather <&> "quotes"
            mocks: {get_weather: {result: "rainy"}}
            turns: [{user: weather in Bergen, expect: {contains: rainy}}]
          - name: wrong
            turns: [{user: hello Ada, expect: {regex: "^Bye"}}]
    """)
    write_conversations(project, "greeter", "conversations: [{name: hi, turns: [{user: hello Eve}]}]\n")
    report = tmp_path / "out" / "junit.xml"
    report.parent.mkdir()
    result = asstctl_test(target, "--junit-xml", str(report))
    assert result.exit_code == 1, result.output

    xmlschema.XMLSchema(str(XSD)).validate(str(report))
    root = ET.parse(report).getroot()
    assert (root.tag, root.get("tests"), root.get("failures")) == ("testsuites", "3", "1")
    suites = {s.get("name"): s for s in root.findall("testsuite")}
    assert sorted(suites) == ["greeter", "weather-bot"]
    cases = {c.get("name"): c for c in suites["weather-bot"].findall("testcase")}
    assert sorted(cases) == ['weather <&> "quotes"', "wrong"]
    assert cases['weather <&> "quotes"'].find("failure") is None
    failure = cases["wrong"].find("failure")
    assert failure.get("message") == 'turn 1 ("hello Ada"): regex: "^Bye" — no match for /^Bye/ in reply "Hello, Ada!"'
    assert "weather-bot.test.yaml" in failure.text
    assert cases["wrong"].get("classname") == "weather-bot"
    assert [c.get("name") for c in suites["greeter"].findall("testcase")] == ["hi"]


def test_the_xsd_rejects_what_ci_servers_would(tmp_path):
    """The schema is not a rubber stamp: a testcase without a name or with a bogus count fails."""
    schema = xmlschema.XMLSchema(str(XSD))
    bad = tmp_path / "bad.xml"
    bad.write_text('<testsuites><testsuite name="x" tests="many" failures="0" errors="0">'
                   "<testcase classname='c'/></testsuite></testsuites>")
    errors = list(schema.iter_errors(str(bad)))
    assert len(errors) == 2
