"""Model-graded expectations (`rubric:`, `similar:`) and the figures of `asstctl test` (tokens, latency,
cost, pass rate, flaky), against the embedded server whose `engine:` is the scripted upstream: it
answers the assistant's turns, the grader's verdicts and the embeddings, every request and answer
checked against the official schemas."""

from __future__ import annotations

import json
import threading
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import xmlschema
from click.testing import CliRunner

from asstctl.cli import cli
from tests.upstream import ScriptedUpstream, Text, last_user_text

KEY_ENV = "ASSTCTL_TEST_GRADER_KEY"
XSD = Path(__file__).parent.parent / "data" / "junit.xsd"
SPEC = "name: Echo Bot\nmodel: gpt-4o\ninstructions: Repeat what the user says.\n"
TURN_USAGE, GRADER_USAGE = (100, 20), (50, 5)


@pytest.fixture
def upstream(monkeypatch):
    with ScriptedUpstream() as running:
        monkeypatch.setenv(KEY_ENV, running.key)
        running.default = script
        yield running
    assert not running.problems, "the scripted upstream saw schema violations:\n" + "\n".join(running.problems)


def script(body) -> Text:
    """The assistant echoes; the grader (asked for a JSON verdict) fails replies that mention "rain"."""
    if "response_format" in body:
        reply = body["messages"][-1]["content"].split("<reply>\n", 1)[1].split("\n</reply>", 1)[0]
        verdict = {"pass": "rain" not in reply, "reason": f"the reply {'mentions' if 'rain' in reply else 'avoids'} rain"}
        return Text(json.dumps(verdict), usage=GRADER_USAGE)
    return Text(f"You said: {last_user_text(body)}", usage=TURN_USAGE)


def make_project(root: Path, upstream: ScriptedUpstream, conversations: str, *, engine: str = "", test: str = "",
                 embeddings: bool = True) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    lines = ["project: graded", "engine:", f"  upstream: {upstream.base_url}", f"  api_key_env: {KEY_ENV}",
             '  model_map: {"gpt-4*": "scripted-chat", "judge": "scripted-judge"}']
    if embeddings:
        lines.append("  embeddings: {model: scripted-embed}")
    (root / "asstctl.yaml").write_text("\n".join(lines) + "\n" + engine + (test or "test:\n  grader: {model: judge}\n"))
    (root / "assistants").mkdir(exist_ok=True)
    (root / "assistants" / "echo-bot.yaml").write_text(SPEC)
    (root / "assistants" / "echo-bot.test.yaml").write_text(conversations)
    return root


def run(root: Path, monkeypatch, *args: str, apply: bool = True):
    monkeypatch.chdir(root)
    runner, env = CliRunner(), {"OPENAI_BASE_URL": None}
    if apply:
        applied = runner.invoke(cli, ["apply", "--yes"], env=env)
        assert applied.exit_code == 0, applied.output
    return runner.invoke(cli, ["test", *args], env=env)


RUBRIC = """conversations:
  - name: sunny
    turns:
      - user: The sun is out today
        expect: {rubric: "Does not talk about rain"}
  - name: rainy
    turns:
      - user: It will rain all week
        expect: {rubric: "Does not talk about rain"}
"""


def test_rubric_passes_and_fails_with_the_graders_reason(tmp_path, monkeypatch, upstream):
    result = run(make_project(tmp_path / "p", upstream, RUBRIC), monkeypatch)
    assert result.exit_code == 1, result.output
    assert "PASS  echo-bot/sunny" in result.output and "FAIL  echo-bot/rainy" in result.output
    assert ('rubric: "Does not talk about rain" — the grader says: the reply mentions rain; '
            'reply "You said: It will rain all week"') in result.output
    graded = [r.body for r in upstream.requests if "response_format" in r.body]
    assert len(graded) == 2 and {b["model"] for b in graded} == {"scripted-judge"}  # model_map applies
    assert graded[0]["response_format"]["type"] == "json_schema" and graded[0]["temperature"] == 0
    assert "<criterion>\nDoes not talk about rain\n</criterion>" in graded[0]["messages"][-1]["content"]
    assert upstream.key not in result.output


def bag_of_words(text: str, dims: int = 256) -> list[float]:
    """Word counts hashed into ``dims`` buckets: the similarity of two texts is known by hand."""
    import hashlib
    import re

    vector = [0.0] * dims
    for word in re.findall(r"\w+", text.lower()):
        vector[int.from_bytes(hashlib.blake2b(word.encode(), digest_size=4).digest(), "little") % dims] += 1.0
    return vector


def test_similar_above_and_below_the_threshold(tmp_path, monkeypatch, upstream):
    upstream.embed = lambda texts: [bag_of_words(text) for text in texts]
    conversations = """conversations:
  - name: close
    turns:
      - user: sunny weather in Paris
        expect: {similar: {text: "You said: sunny weather in Paris, today", threshold: 0.9}}
  - name: far
    turns:
      - user: sunny weather in Paris
        expect: {similar: "rain in Oslo"}
"""
    result = run(make_project(tmp_path / "p", upstream, conversations), monkeypatch, "--output", "json")
    assert result.exit_code == 1, result.output
    report = {c["name"]: c for c in json.loads(result.stdout)["conversations"]}
    assert report["close"]["passed"] and not report["far"]["passed"]
    reason = report["far"]["attempts"][0]["turns"][0]["failures"][0]["reason"]
    assert reason == 'similarity 0.236 < 0.8; reply "You said: sunny weather in Paris"'  # "in": 1/sqrt(6*3)
    embedded = [r.body for r in upstream.requests if r.path == "/v1/embeddings"]
    assert embedded and {b["model"] for b in embedded} == {"scripted-embed"}
    assert report["close"]["tokens_by_model"]["scripted-embed"]["prompt_tokens"] > 0


def test_tokens_latency_and_cost_in_console_json_and_junit(tmp_path, monkeypatch, upstream):
    prices = "test:\n  grader: {model: judge}\n  prices:\n    gpt-4o: {prompt: 2.5, completion: 10}\n    judge: {prompt: 1, completion: 4}\n"
    root = make_project(tmp_path / "p", upstream, RUBRIC, test=prices)
    junit = tmp_path / "junit.xml"
    result = run(root, monkeypatch, "--output", "json", "--junit-xml", str(junit))
    report = json.loads(result.stdout)
    sunny = next(c for c in report["conversations"] if c["name"] == "sunny")
    # one turn: the run (100 + 20 tokens on gpt-4o) and one verdict (50 + 5 on the grader)
    assert sunny["usage"] == {"prompt_tokens": 150, "completion_tokens": 25, "total_tokens": 175}
    assert sunny["tokens_by_model"] == {"gpt-4o": {"prompt_tokens": 100, "completion_tokens": 20},
                                        "judge": {"prompt_tokens": 50, "completion_tokens": 5}}
    expected = (100 * 2.5 + 20 * 10 + 50 * 1 + 5 * 4) / 1_000_000
    assert sunny["cost"] == pytest.approx(expected) and report["cost"] == pytest.approx(2 * expected)
    assert sunny["latency_ms"] == pytest.approx(sunny["attempts"][0]["turns"][0]["latency_ms"]) and sunny["latency_ms"] > 0
    assert report["usage"]["total_tokens"] == 350 and report["unpriced_models"] == []

    console = run(root, monkeypatch, apply=False)
    assert "tokens 150 prompt + 25 completion, cost 0.000520)" in console.output
    assert "tokens: 300 prompt + 50 completion; cost 0.001040 (test.prices, per 1M tokens)" in console.output
    assert " ms, tokens " in console.output

    xmlschema.XMLSchema(str(XSD)).validate(str(junit))
    cases = {c.get("name"): c for c in ET.parse(junit).getroot().iter("testcase")}
    props = {p.get("name"): p.get("value") for p in cases["sunny"].find("properties")}
    assert props["prompt_tokens"] == "150" and props["completion_tokens"] == "25" and props["cost"] == "0.000520"
    assert props["flaky"] == "false" and props["pass_rate"] == "1" and float(props["latency_ms"]) > 0
    suite = {p.get("name"): p.get("value") for p in ET.parse(junit).getroot().find("testsuite/properties")}
    assert suite["prompt_tokens"] == "300" and suite["cost"] == "0.001040"


def test_generation_time_counts_as_engine_time_not_overhead(tmp_path, monkeypatch, upstream):
    slow = Text("one two three four five six", deltas=["one", " two", " three", " four", " five", " six"], delay=0.08)
    upstream.default = lambda body: slow  # 0.4 s of generation after the first token
    conversation = "conversations:\n  - name: slow\n    turns:\n      - user: count\n        expect: {contains: six}\n"
    result = run(make_project(tmp_path / "p", upstream, conversation, test="\n"), monkeypatch, "--output", "json")
    assert result.exit_code == 0, result.output
    turn = json.loads(result.stdout)["conversations"][0]["attempts"][0]["turns"][0]
    assert turn["engine_ms"] >= 400 and turn["latency_ms"] >= turn["engine_ms"]
    assert turn["overhead_ms"] == pytest.approx(turn["latency_ms"] - turn["engine_ms"], abs=0.01)


def test_no_price_table_no_cost_and_a_model_without_a_price_is_named(tmp_path, monkeypatch, upstream):
    root = make_project(tmp_path / "p", upstream, RUBRIC)
    result = run(root, monkeypatch, "--output", "json")
    report = json.loads(result.stdout)
    assert report["cost"] is None and all(c["cost"] is None for c in report["conversations"])
    root = make_project(tmp_path / "p", upstream, RUBRIC,
                        test="test:\n  grader: {model: judge}\n  prices: {'gpt-4*': {prompt: 1, completion: 1}}\n")
    console = run(root, monkeypatch, apply=False)
    assert "no price for judge: not in the cost (add them under test.prices in asstctl.yaml)" in console.output
    assert "cost 0.0002" in console.output  # 120 tokens of gpt-4o (by pattern) at 1 per 1M, per conversation


def test_repeat_flags_a_flaky_conversation(tmp_path, monkeypatch, upstream):
    verdicts = iter([True, False, True, True])
    lock = threading.Lock()

    def flaky(body):
        if "response_format" not in body:
            return script(body)
        with lock:
            ok = next(verdicts)
        return Text(json.dumps({"pass": ok, "reason": "fine" if ok else "off topic"}), usage=GRADER_USAGE)

    upstream.default = flaky
    conversations = "conversations:\n  - name: moody\n    turns: [{user: hello, expect: {rubric: On topic}}]\n"
    root = make_project(tmp_path / "p", upstream, conversations)
    result = run(root, monkeypatch, "--repeat", "4", "--min-pass-rate", "0.7")
    assert result.exit_code == 0, result.output
    assert "PASS  echo-bot/moody  (3/4 attempts passed, 75%, needed 70%, FLAKY; mean latency" in result.output
    assert "a failed attempt: turn 1 (\"hello\"): rubric: \"On topic\" — the grader says: off topic" in result.output
    assert "1 passed, 0 failed (1 flaky)" in result.output and "pass rate 75% of 4 attempts" in result.output


def test_a_grader_answer_that_is_no_verdict_fails_the_expectation_and_says_so(tmp_path, monkeypatch, upstream):
    upstream.default = lambda body: Text("I am not sure.") if "response_format" in body else script(body)
    conversations = "conversations:\n  - name: unsure\n    turns: [{user: hello, expect: {rubric: Polite}}]\n"
    result = run(make_project(tmp_path / "p", upstream, conversations), monkeypatch)
    assert result.exit_code == 1
    assert "not graded: the grader's answer is not a verdict: \"I am not sure.\"" in result.output


@pytest.mark.parametrize("expect, config, message", [
    ("{rubric: Polite}", {"test": "test: {}\n"}, "set test.grader.model in asstctl.yaml"),
    ("{similar: hi}", {"embeddings": False}, "set engine.embeddings.model in asstctl.yaml"),
    ("{rubric: Polite, similar: hi}", {"test": "test: {}\n", "embeddings": False},
     "set test.grader.model and engine.embeddings.model in asstctl.yaml"),
])
def test_a_needed_model_that_is_not_configured_is_exit_2_before_any_run(tmp_path, monkeypatch, upstream, expect,
                                                                        config, message):
    conversations = f"conversations:\n  - name: one\n    turns: [{{user: hello}}]\n" \
                    f"  - name: two\n    turns: [{{user: hello, expect: {expect}}}]\n"
    root = make_project(tmp_path / "p", upstream, conversations, **config)
    result = run(root, monkeypatch, apply=False)
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output
    assert upstream.requests == []  # detected before any conversation ran


def test_a_grader_without_an_upstream_names_engine_upstream(tmp_path, monkeypatch):
    root = tmp_path / "p"
    (root / "assistants").mkdir(parents=True)
    (root / "asstctl.yaml").write_text("project: graded\ntest: {grader: {model: judge}}\n")
    (root / "assistants" / "echo-bot.yaml").write_text(SPEC)
    (root / "assistants" / "echo-bot.test.yaml").write_text(
        "conversations:\n  - name: one\n    turns: [{user: hello, expect: {rubric: Polite}}]\n")
    result = run(root, monkeypatch, apply=False)
    assert result.exit_code == 2
    assert "conversations use `rubric:`, so set engine.upstream in asstctl.yaml" in result.output


def test_a_missing_upstream_key_is_exit_2_naming_the_variable(tmp_path, monkeypatch, upstream):
    conversations = "conversations:\n  - name: one\n    turns: [{user: hello, expect: {rubric: Polite}}]\n"
    root = make_project(tmp_path / "p", upstream, conversations)
    text = (root / "asstctl.yaml").read_text().replace(upstream.base_url, "https://grader.example.com/v1")
    (root / "asstctl.yaml").write_text(text)
    monkeypatch.delenv(KEY_ENV)
    result = run(root, monkeypatch, apply=False)
    assert result.exit_code == 2, result.output
    assert f"${KEY_ENV} is not set" in result.output


def test_an_azure_upstream_grades_through_its_deployments(tmp_path, monkeypatch, upstream):
    conversations = ("conversations:\n  - name: both\n    turns: [{user: The sun is out today, "
                     "expect: {rubric: No rain, similar: \"You said: The sun is out today\"}}]\n")
    root = make_project(tmp_path / "p", upstream, conversations,
                        engine='  azure: {api_version: "2024-10-21", deployments: {scripted-judge: judge-eu, '
                               'scripted-embed: embed-eu}}\n')
    text = (root / "asstctl.yaml").read_text().replace(upstream.base_url, upstream.root_url)
    (root / "asstctl.yaml").write_text(text)
    result = run(root, monkeypatch)
    assert result.exit_code == 0, result.output
    paths = {r.path for r in upstream.requests}
    assert {"/openai/deployments/judge-eu/chat/completions", "/openai/deployments/embed-eu/embeddings"} <= paths
    graded = [r for r in upstream.requests if "judge-eu" in r.path]
    assert graded[0].query == {"api-version": "2024-10-21"} and graded[0].headers["api-key"] == upstream.key
