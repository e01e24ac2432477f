"""JUnit XML for ``asstctl test --junit-xml``: one ``<testsuite>`` per assistant, one ``<testcase>``
per conversation (``classname`` = the assistant key), a ``<failure>`` with the first failed
expectation and an excerpt of the reply; per-attempt details go to ``<system-out>``.
The shape is the common Ant/Jenkins one (tests/data/junit.xsd checks it).
"""

from __future__ import annotations

import socket
import xml.etree.ElementTree as ET
from datetime import datetime, timezone
from pathlib import Path

from asstctl.testing.runner import ConversationResult, Report


def write_junit(report: Report, path: Path | str) -> None:
    from asstctl.outfile import writing

    tree = ET.ElementTree(junit_element(report))
    ET.indent(tree)
    with writing(path) as target:
        tree.write(str(target), encoding="utf-8", xml_declaration=True)


def junit_element(report: Report) -> ET.Element:
    root = ET.Element("testsuites", name="asstctl test", tests=str(len(report.results)),
                      failures=str(len(report.failed)), errors="0", time=_seconds(report.seconds))
    by_assistant: dict[str, list[ConversationResult]] = {}
    for result in report.results:
        by_assistant.setdefault(result.conversation.assistant, []).append(result)
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    for key, results in by_assistant.items():
        root.append(_suite(key, results, report.target, stamp))
    return root


def _suite(key: str, results: list[ConversationResult], target: str, stamp: str) -> ET.Element:
    suite = ET.Element("testsuite", name=key, tests=str(len(results)),
                       failures=str(sum(not r.passed for r in results)), errors="0", skipped="0",
                       time=_seconds(sum(r.seconds for r in results)), timestamp=stamp,
                       hostname=socket.gethostname(), file=str(results[0].conversation.path))
    properties = ET.SubElement(suite, "properties")
    ET.SubElement(properties, "property", name="target", value=target)
    for result in results:
        suite.append(_case(key, result))
    return suite


def _case(key: str, result: ConversationResult) -> ET.Element:
    case = ET.Element("testcase", classname=key, name=result.conversation.name, time=_seconds(result.seconds))
    if not result.passed:
        problem = result.problem() or "pass rate below the minimum"
        failure = ET.SubElement(case, "failure", message=_one_line(problem), type="ExpectationFailed")
        failure.text = f"{problem}\nat {result.where()}"
    ET.SubElement(case, "system-out").text = "\n".join(_attempt_lines(result))
    return case


def _attempt_lines(result: ConversationResult) -> list[str]:
    lines = [f"pass rate {result.pass_rate:.0%} (needed {result.min_pass_rate:.0%})"]
    for attempt in result.attempts:
        state = "passed" if attempt.passed else f"FAILED: {attempt.problem()}"
        lines.append(f"attempt {attempt.number} (thread {attempt.thread_id}): {state}")
        for turn in attempt.turns:
            lines.append(f"  turn {turn.index + 1}: {turn.latency_ms:.1f} ms, reply: {turn.reply}")
    return lines


def _one_line(text: str, limit: int = 500) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _seconds(value: float) -> str:
    return f"{value:.3f}"
