"""Expectations of a conversation turn: what the assistant's reply and behaviour must satisfy.

A turn's ``expect:`` mapping is checked against a :class:`TurnOutcome` (the reply text, the
function calls the run made, its latency and token usage). Every key is one expectation; each
failed one becomes a :class:`Failure` naming it, e.g. ``contains: "Paris"`` with the reason.

    expect:
      contains: Paris                 # or a list; all must occur (case-sensitive)
      icontains: [paris, sunny]       # case-insensitive
      not_contains: "I cannot"
      regex: "\\d+ ?°C"               # searched (re.search); a list: all must match
      equals: "4"                     # the whole reply, surrounding whitespace ignored
      json: true                      # or {schema: {...}}: the reply is JSON (a ```json fence is unwrapped)
      tool_called: {name: get_weather, arguments: {city: Paris}}   # arguments: a subset; a list: all
      no_tool_called: true            # or a tool name / list of names that must not be called
      file_cited: returns.md          # file_search cited this file (a list: all); true: any file
      code_ran: true                  # a code_interpreter call ran in the turn's run steps (false: none did)
      code_output_contains: "x = 1"   # ... and its logs hold the text (a list: all)
      rubric: "Answers in French"     # a grader model judges the reply (a list: all); see asstctl.testing.grading
      similar: {text: "It is sunny in Paris", threshold: 0.8}   # cosine similarity of embeddings
      max_latency_ms: 5000
      max_tokens: 800                 # total tokens of the turn's run(s)

``rubric`` and ``similar`` call the grader (``outcome.grader``, an :class:`asstctl.testing.grading.Grader`) and
add the tokens they spend to ``outcome.spend``.
"""

from __future__ import annotations

import json
import posixpath
import re
from dataclasses import dataclass, field
from typing import Any, Callable

from asstctl.ownership import UPLOAD_NAME

EXCERPT_CHARS = 160
UPLOAD = UPLOAD_NAME  # asstctl.reconcile.knowledge.upload_name


@dataclass
class TurnOutcome:
    """What the assistant did in one turn."""

    reply: str = ""
    tool_calls: list[dict[str, Any]] = field(default_factory=list)  # {name, arguments (dict or raw str)}
    latency_ms: float = 0.0
    total_tokens: int = 0
    cited: list[str] = field(default_factory=list)  # filenames of the reply's file_citation annotations
    question: str = ""  # the turn's user message (for the grader)
    code: list[dict[str, str]] = field(default_factory=list)  # code_interpreter calls: {input, logs}
    cited_shas: dict[str, str] = field(default_factory=dict)  # file_cited value -> sha256[:16] of the local file
    grader: Any = None  # asstctl.testing.grading.Grader when rubric/similar are used
    spend: Any = None  # asstctl.testing.grading.Spend: the grader's tokens


@dataclass
class Failure:
    expectation: str  # the expectation as written, e.g. 'contains: "Paris"'
    reason: str

    def __str__(self) -> str:
        return f"{self.expectation} — {self.reason}"


def check(expect: dict[str, Any], outcome: TurnOutcome) -> list[Failure]:
    """The failed expectations of ``expect`` (empty when all hold)."""
    failures = []
    for key, value in expect.items():
        for reason in CHECKS[key](value, outcome):
            failures.append(Failure(f"{key}: {compact(value)}", reason))
    return failures


def compact(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(", ", ": "))


def excerpt(text: str, limit: int = EXCERPT_CHARS) -> str:
    """A one-line excerpt of a reply for messages."""
    flat = " ".join(text.split())
    return compact(flat if len(flat) <= limit else flat[: limit - 1] + "…")


def _listed(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


# -- text ------------------------------------------------------------------------------------
def _contains(value, outcome: TurnOutcome) -> list[str]:
    return [f"{compact(s)} not in reply {excerpt(outcome.reply)}" for s in _listed(value) if s not in outcome.reply]


def _icontains(value, outcome: TurnOutcome) -> list[str]:
    reply = outcome.reply.casefold()
    missing = [s for s in _listed(value) if s.casefold() not in reply]
    return [f"{compact(s)} not in reply (ignoring case) {excerpt(outcome.reply)}" for s in missing]


def _not_contains(value, outcome: TurnOutcome) -> list[str]:
    return [f"{compact(s)} found in reply {excerpt(outcome.reply)}" for s in _listed(value) if s in outcome.reply]


def _regex(value, outcome: TurnOutcome) -> list[str]:
    missing = [p for p in _listed(value) if not re.search(p, outcome.reply)]
    return [f"no match for /{p}/ in reply {excerpt(outcome.reply)}" for p in missing]


def _equals(value, outcome: TurnOutcome) -> list[str]:
    if outcome.reply.strip() == str(value).strip():
        return []
    return [f"reply is {excerpt(outcome.reply)}"]


FENCE = re.compile(r"^```(?:json)?\s*\n(.*)\n```$", re.DOTALL)


def _json(value, outcome: TurnOutcome) -> list[str]:
    text = outcome.reply.strip()
    fenced = FENCE.match(text)
    try:
        document = json.loads(fenced.group(1) if fenced else text)
    except ValueError as error:
        return [f"reply is not JSON ({error}): {excerpt(outcome.reply)}"]
    if isinstance(value, dict) and "schema" in value:
        return _schema_problems(document, value["schema"])
    return []


def _schema_problems(document: Any, schema: dict[str, Any]) -> list[str]:
    from asstctl.spec.schema import validator_for

    problems = []
    for error in sorted(validator_for(schema).iter_errors(document), key=lambda e: list(e.absolute_path)):
        where = "".join(f"[{p!r}]" for p in error.absolute_path) or "(root)"
        problems.append(f"reply JSON at {where}: {error.message}")
    return problems


# -- tools -----------------------------------------------------------------------------------
def is_subset(wanted: Any, actual: Any) -> bool:
    """``wanted`` is contained in ``actual``: mappings by key (recursively), anything else equal."""
    if isinstance(wanted, dict):
        return isinstance(actual, dict) and all(k in actual and is_subset(v, actual[k]) for k, v in wanted.items())
    return wanted == actual


def _call_matches(wanted: Any, call: dict[str, Any]) -> bool:
    wanted = {"name": wanted} if isinstance(wanted, str) else wanted
    return call["name"] == wanted["name"] and is_subset(wanted.get("arguments", {}), call["arguments"])


def called_summary(outcome: TurnOutcome) -> str:
    if not outcome.tool_calls:
        return "no tool was called"
    return "called: " + "; ".join(f"{c['name']}({compact(c['arguments'])})" for c in outcome.tool_calls)


def _tool_called(value, outcome: TurnOutcome) -> list[str]:
    missing = [w for w in _listed(value) if not any(_call_matches(w, c) for c in outcome.tool_calls)]
    return [f"no matching call of {compact(w)}; {called_summary(outcome)}" for w in missing]


def _no_tool_called(value, outcome: TurnOutcome) -> list[str]:
    if value is True:
        return [called_summary(outcome)] if outcome.tool_calls else []
    if value is False:
        return []
    called = {c["name"] for c in outcome.tool_calls}
    return [f"`{name}` was called; {called_summary(outcome)}" for name in _listed(value) if name in called]


def _file_cited(value, outcome: TurnOutcome) -> list[str]:
    cited = "cited: " + ", ".join(_shown(f, outcome.cited_shas) for f in outcome.cited) if outcome.cited \
        else "no file was cited"
    if value is True:
        return [] if outcome.cited else [cited]
    return [f"{compact(name)} was not cited; {cited}" for name in _listed(value)
            if not any(_is_file(f, name, outcome.cited_shas.get(name)) for f in outcome.cited)]


def _shown(filename: str, shas: dict[str, str]) -> str:
    """A cited file as people know it: an upload by its own name (and, when contents are compared, its sha256[:16])."""
    upload = UPLOAD.match(filename)
    if upload is None:
        return filename
    return f"{upload['name']} (content {upload['sha']})" if shas else upload["name"]


def _is_file(filename: str, wanted: str, sha: str | None) -> bool:
    """An upload's filename is the file ``wanted``: the same name (an asstctl upload's own name) and,
    when the local file is known, the same content (the upload's sha256[:16])."""
    name = posixpath.basename(wanted)
    upload = UPLOAD.match(filename)
    if upload is None:  # an attachment (its own name), or another tool's "<prefix>--<name>"
        return filename in (wanted, name) or filename.endswith("--" + name)
    return upload["name"] == name and (sha is None or upload["sha"] == sha)


# -- code_interpreter ------------------------------------------------------------------------
def _code_summary(outcome: TurnOutcome) -> str:
    if not outcome.code:
        return "no code_interpreter call ran"
    return "code output: " + excerpt("\n".join(c["logs"] for c in outcome.code) or "(none)")


def _code_ran(value, outcome: TurnOutcome) -> list[str]:
    if bool(outcome.code) == bool(value):
        return []
    return [_code_summary(outcome)] if value else [f"code ran: {excerpt(outcome.code[0]['input'])}"]


def _code_output_contains(value, outcome: TurnOutcome) -> list[str]:
    logs = "\n".join(c["logs"] for c in outcome.code)
    return [f"{compact(s)} not in the code output; {_code_summary(outcome)}" for s in _listed(value) if s not in logs]


# -- model-graded ----------------------------------------------------------------------------
def _rubric(value, outcome: TurnOutcome) -> list[str]:
    from asstctl.testing.grading import GradingError

    if outcome.grader is None:
        return ["not graded: no grader (set test.grader.model and engine.upstream in asstctl.yaml)"]
    problems = []
    for criterion in _listed(value):
        try:
            verdict = outcome.grader.judge(criterion, outcome.question, outcome.reply, outcome.spend)
        except GradingError as error:
            problems.append(f"not graded: {error}")
            continue
        if not verdict.passed:
            problems.append(f"the grader says: {verdict.reason or '(no reason given)'}; reply {excerpt(outcome.reply)}")
    return problems


def _similar(value, outcome: TurnOutcome) -> list[str]:
    from asstctl.testing.grading import GradingError

    text, threshold = (value, 0.8) if isinstance(value, str) else (value["text"], value.get("threshold", 0.8))
    if outcome.grader is None:
        return ["not compared: no embeddings model (set engine.embeddings.model and engine.upstream in asstctl.yaml)"]
    try:
        score = outcome.grader.similarity(outcome.reply, text, outcome.spend)
    except GradingError as error:
        return [f"not compared: {error}"]
    if score >= threshold:
        return []
    return [f"similarity {score:.3f} < {threshold:g}; reply {excerpt(outcome.reply)}"]


# -- cost ------------------------------------------------------------------------------------
def _max_latency_ms(value, outcome: TurnOutcome) -> list[str]:
    return [] if outcome.latency_ms <= value else [f"took {outcome.latency_ms:.0f} ms"]


def _max_tokens(value, outcome: TurnOutcome) -> list[str]:
    return [] if outcome.total_tokens <= value else [f"used {outcome.total_tokens} tokens"]


CHECKS: dict[str, Callable[[Any, TurnOutcome], list[str]]] = {
    "contains": _contains,
    "icontains": _icontains,
    "not_contains": _not_contains,
    "regex": _regex,
    "equals": _equals,
    "json": _json,
    "tool_called": _tool_called,
    "no_tool_called": _no_tool_called,
    "file_cited": _file_cited,
    "code_ran": _code_ran,
    "code_output_contains": _code_output_contains,
    "rubric": _rubric,
    "similar": _similar,
    "max_latency_ms": _max_latency_ms,
    "max_tokens": _max_tokens,
}
