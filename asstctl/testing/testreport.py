"""The reports of ``asstctl test``: the console summary and ``--output json`` (asstctl.junit writes JUnit).

Every conversation shows its prompt and completion tokens (the assistant's runs plus the grader's
and embeddings' calls), its latency (its turns' latencies added up; the mean over ``--repeat``
attempts), its cost when asstctl.yaml has a price table (``test.prices``, per 1M tokens), and with
``--repeat`` its pass rate, flagged ``flaky`` when some attempts passed and others failed.

Imports asstctl.testing.results and asstctl.testing.grading (prices).
"""

from __future__ import annotations

from typing import Any

from asstctl.testing.grading import cost
from asstctl.testing.results import Attempt, ConversationResult, Report, TurnResult, tokens


# -- figures ---------------------------------------------------------------------------------
def conversation_figures(result: ConversationResult, prices: dict[str, Any]) -> dict[str, Any]:
    by_model = result.by_model()
    amount, unpriced = cost(prices, by_model)
    return {"usage": tokens(by_model), "latency_ms": round(result.latency_ms, 3), "cost": _rounded(amount),
            "unpriced_models": unpriced, "tokens_by_model": by_model}


def report_figures(report: Report) -> dict[str, Any]:
    by_model: dict[str, dict[str, int]] = {}
    for result in report.results:
        for model, usage in result.by_model().items():
            entry = by_model.setdefault(model, {"prompt_tokens": 0, "completion_tokens": 0})
            entry["prompt_tokens"] += usage["prompt_tokens"]
            entry["completion_tokens"] += usage["completion_tokens"]
    amount, unpriced = cost(report.prices, by_model)
    attempts = [a for r in report.results for a in r.attempts]
    return {
        "usage": tokens(by_model),
        "cost": _rounded(amount),
        "unpriced_models": unpriced,
        "tokens_by_model": by_model,
        "attempts": len(attempts),
        "pass_rate": sum(a.passed for a in attempts) / len(attempts) if attempts else 0.0,
        "flaky": [r.conversation.id for r in report.results if r.flaky],
    }


def _rounded(amount: float | None) -> float | None:
    return None if amount is None else round(amount, 8)


def money(amount: float) -> str:
    """A cost in the price table's currency: 4 decimals, more for fractions of a cent."""
    return f"{amount:.4f}" if amount >= 0.01 or amount == 0 else f"{amount:.6f}"


# -- console ---------------------------------------------------------------------------------
def summary_lines(report: Report) -> list[str]:
    """One line per conversation with its figures, the failure under each failed one, then the totals."""
    lines = [f"Testing on {report.target}"]
    for result in report.results:
        figures = conversation_figures(result, report.prices)
        lines.append(f"  {'PASS' if result.passed else 'FAIL'}  {result.conversation.id}  "
                     f"({_counts(result)}; {_figures(figures, result)})")
        problem = result.problem()
        if problem and (not result.passed or result.flaky):
            lines.append(f"        {'a failed attempt: ' if result.passed else ''}{problem}")
            lines.append(f"        at {result.where()}")
    return lines + _totals(report)


def _counts(result: ConversationResult) -> str:
    if len(result.attempts) > 1:
        passed = sum(a.passed for a in result.attempts)
        flaky = ", FLAKY" if result.flaky else ""
        return (f"{passed}/{len(result.attempts)} attempts passed, {result.pass_rate:.0%}, "
                f"needed {result.min_pass_rate:.0%}{flaky}")
    turns = len(result.conversation.turns)
    return f"{turns} turn{'s' if turns != 1 else ''}, {result.seconds:.2f} s"


def _figures(figures: dict[str, Any], result: ConversationResult) -> str:
    usage = figures["usage"]
    mean = "mean " if len(result.attempts) > 1 else ""
    text = (f"{mean}latency {figures['latency_ms']:.0f} ms, "
            f"tokens {usage['prompt_tokens']} prompt + {usage['completion_tokens']} completion")
    if figures["cost"] is not None:
        text += f", cost {money(figures['cost'])}"
    return text


def _totals(report: Report) -> list[str]:
    figures = report_figures(report)
    failed = len(report.failed)
    flaky = f" ({len(figures['flaky'])} flaky)" if figures["flaky"] else ""
    usage = figures["usage"]
    lines = [f"{len(report.results) - failed} passed, {failed} failed{flaky} in {report.seconds:.2f} s"]
    if figures["attempts"] > len(report.results):
        lines.append(f"pass rate {figures['pass_rate']:.0%} of {figures['attempts']} attempts")
    total = f"tokens: {usage['prompt_tokens']} prompt + {usage['completion_tokens']} completion"
    if figures["cost"] is not None:
        total += f"; cost {money(figures['cost'])} (test.prices, per 1M tokens)"
    lines.append(total)
    if figures["unpriced_models"]:
        lines.append(f"no price for {', '.join(figures['unpriced_models'])}: not in the cost "
                     "(add them under test.prices in asstctl.yaml)")
    return lines


# -- JSON ------------------------------------------------------------------------------------
def report_json(report: Report) -> dict[str, Any]:
    return {
        "target": report.target,
        "passed": report.passed,
        "seconds": round(report.seconds, 4),
        **report_figures(report),
        "conversations": [_result_json(r, report.prices) for r in report.results],
    }


def _result_json(result: ConversationResult, prices: dict[str, Any]) -> dict[str, Any]:
    conversation = result.conversation
    return {
        "assistant": conversation.assistant,
        "name": conversation.name,
        "file": str(conversation.path),
        "passed": result.passed,
        "flaky": result.flaky,
        "pass_rate": result.pass_rate,
        "min_pass_rate": result.min_pass_rate,
        **conversation_figures(result, prices),
        "attempts": [_attempt_json(a) for a in result.attempts],
    }


def _attempt_json(attempt: Attempt) -> dict[str, Any]:
    return {
        "number": attempt.number,
        "passed": attempt.passed,
        "thread_id": attempt.thread_id,
        "error": attempt.error,
        "seconds": round(attempt.seconds, 4),
        "latency_ms": round(attempt.latency_ms, 3),
        "usage": tokens(attempt.by_model()),
        "turns": [_turn_json(t) for t in attempt.turns],
    }


def _turn_json(turn: TurnResult) -> dict[str, Any]:
    return {
        "index": turn.index,
        "where": turn.where,
        "user": turn.user,
        "passed": turn.passed,
        "reply": turn.reply,
        "error": turn.error,
        "failures": [{"expectation": f.expectation, "reason": f.reason} for f in turn.failures],
        "tool_calls": turn.tool_calls,
        "code": turn.code,
        "run_id": turn.run_id,
        "model": turn.model,
        "latency_ms": round(turn.latency_ms, 3),
        "engine_ms": round(turn.engine_ms, 3),
        "overhead_ms": round(turn.overhead_ms, 3),
        "usage": turn.usage,
        "grading_usage": turn.spend.by_model,
    }
