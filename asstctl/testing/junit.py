"""JUnit XML for ``asstctl test --junit-xml``: one ``<testsuite>`` per assistant, one ``<testcase>``
per conversation (``classname`` = the assistant key), a ``<failure>`` with the first failed
expectation and an excerpt of the reply; per-attempt details go to ``<system-out>``.
The figures are ``<properties>``: per testcase (as pytest's ``record_property`` writes them) the
conversation's tokens, latency, cost, pass rate and flakiness; per testsuite the target and totals.
The shape is the common Ant/Jenkins one (tests/data/junit.xsd checks it).
"""

from __future__ import annotations

import socket
import xml.etree.ElementTree as ET
from datetime import datetime, timezone
from pathlib import Path

from asstctl.testing.results import ConversationResult, Report
from asstctl.testing.testreport import conversation_figures, money


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
        root.append(_suite(key, results, report, stamp))
    return root


def _suite(key: str, results: list[ConversationResult], report: Report, stamp: str) -> ET.Element:
    suite = ET.Element("testsuite", name=key, tests=str(len(results)),
                       failures=str(sum(not r.passed for r in results)), errors="0", skipped="0",
                       time=_seconds(sum(r.seconds for r in results)), timestamp=stamp,
                       hostname=socket.gethostname(), file=str(results[0].conversation.path))
    figures = [conversation_figures(r, report.prices) for r in results]
    costs = [f["cost"] for f in figures if f["cost"] is not None]
    _properties(suite, {
        "target": report.target,
        "prompt_tokens": sum(f["usage"]["prompt_tokens"] for f in figures),
        "completion_tokens": sum(f["usage"]["completion_tokens"] for f in figures),
        "cost": money(sum(costs)) if costs else None,
        "flaky": sum(r.flaky for r in results),
    })
    for result, figure in zip(results, figures):
        suite.append(_case(key, result, figure))
    return suite


def _properties(parent: ET.Element, values: dict) -> None:
    properties = ET.SubElement(parent, "properties")
    for name, value in values.items():
        if value is not None:
            ET.SubElement(properties, "property", name=name, value=str(value))


def _case(key: str, result: ConversationResult, figures: dict) -> ET.Element:
    case = ET.Element("testcase", classname=key, name=result.conversation.name, time=_seconds(result.seconds))
    _properties(case, {
        "prompt_tokens": figures["usage"]["prompt_tokens"],
        "completion_tokens": figures["usage"]["completion_tokens"],
        "latency_ms": f"{figures['latency_ms']:.1f}",
        "cost": money(figures["cost"]) if figures["cost"] is not None else None,
        "attempts": len(result.attempts),
        "pass_rate": f"{result.pass_rate:.4g}",
        "flaky": str(result.flaky).lower(),
    })
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
