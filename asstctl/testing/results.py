"""The results of ``asstctl test``: per turn, attempt (one run of a conversation on a fresh thread),
conversation (its attempts: pass rate, flaky) and report, with tokens per model and latency.

Imports asstctl.expectations, asstctl.testing.grading (token bookkeeping) and asstctl.conversations (types).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

from asstctl.testing.conversations import Conversation
from asstctl.testing.expectations import Failure, excerpt
from asstctl.testing.grading import Spend


@dataclass
class TurnResult:
    index: int
    user: str
    where: str = ""  # the turn in its file: path:line:col
    reply: str = ""
    failures: list[Failure] = field(default_factory=list)
    error: str | None = None
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    latency_ms: float = 0.0
    engine_ms: float = 0.0
    usage: dict[str, int] = field(default_factory=dict)
    run_id: str | None = None
    cited: list[str] = field(default_factory=list)  # filenames of file_citation annotations
    model: str = ""  # the run's model, as the target reports it
    code: list[dict[str, str]] = field(default_factory=list)  # code_interpreter calls: {input, logs}
    spend: Spend = field(default_factory=Spend)  # the grader's and embeddings' tokens

    @property
    def passed(self) -> bool:
        return self.error is None and not self.failures

    def by_model(self) -> dict[str, dict[str, int]]:
        """Tokens per model: the run's, then the grader's and embeddings'."""
        spent = Spend()
        if self.usage:
            spent.add(self.model or "unknown", self.usage.get("prompt_tokens", 0), self.usage.get("completion_tokens", 0))
        spent.merge(self.spend)
        return spent.by_model

    @property
    def overhead_ms(self) -> float:
        return max(0.0, self.latency_ms - self.engine_ms)

    def problem(self) -> str | None:
        """The first reason this turn failed, for humans."""
        if self.error:
            return self.error
        return str(self.failures[0]) if self.failures else None


@dataclass
class Attempt:
    number: int
    turns: list[TurnResult] = field(default_factory=list)
    thread_id: str | None = None
    error: str | None = None  # outside any turn (thread creation, clean-up)
    seconds: float = 0.0
    expected_turns: int = 0

    @property
    def passed(self) -> bool:
        return self.error is None and len(self.turns) == self.expected_turns and all(t.passed for t in self.turns)

    def failed_turn(self) -> TurnResult | None:
        return next((t for t in self.turns if not t.passed), None)

    def by_model(self) -> dict[str, dict[str, int]]:
        return _summed(t.by_model() for t in self.turns)

    @property
    def latency_ms(self) -> float:
        """The turns' latencies added up (run request to terminal event, tool rounds included)."""
        return sum(t.latency_ms for t in self.turns)

    def problem(self) -> str | None:
        if self.error:
            return self.error
        failed = self.failed_turn()
        return f"turn {failed.index + 1} ({excerpt(failed.user, 60)}): {failed.problem()}" if failed else None


@dataclass
class ConversationResult:
    conversation: Conversation
    attempts: list[Attempt]
    min_pass_rate: float = 1.0

    @property
    def pass_rate(self) -> float:
        return sum(a.passed for a in self.attempts) / len(self.attempts) if self.attempts else 0.0

    @property
    def passed(self) -> bool:
        return bool(self.attempts) and self.pass_rate >= self.min_pass_rate - 1e-9

    @property
    def seconds(self) -> float:
        return sum(a.seconds for a in self.attempts)

    @property
    def flaky(self) -> bool:
        """Passed some attempts and failed others (only with --repeat)."""
        passed = sum(a.passed for a in self.attempts)
        return 0 < passed < len(self.attempts)

    @property
    def latency_ms(self) -> float:
        """The conversation's latency: its turns' latencies added up, the mean over the attempts."""
        return sum(a.latency_ms for a in self.attempts) / len(self.attempts) if self.attempts else 0.0

    def by_model(self) -> dict[str, dict[str, int]]:
        """Tokens per model over every attempt: the assistant's runs, the grader, the embeddings."""
        return _summed(a.by_model() for a in self.attempts)

    def problem(self) -> str | None:
        failed = next((a for a in self.attempts if not a.passed), None)
        return failed.problem() if failed else None

    def where(self) -> str:
        """Where the first failure is written: its turn, else the conversation."""
        failed = next((a.failed_turn() for a in self.attempts if a.failed_turn()), None)
        return failed.where if failed else self.conversation.where


@dataclass
class Report:
    target: str
    results: list[ConversationResult]
    seconds: float = 0.0
    prices: dict[str, dict[str, float]] = field(default_factory=dict)  # test.prices (per 1M tokens)

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.results)

    @property
    def failed(self) -> list[ConversationResult]:
        return [r for r in self.results if not r.passed]


def _summed(parts: Iterable[dict[str, dict[str, int]]]) -> dict[str, dict[str, int]]:
    total = Spend()
    for part in parts:
        for model, usage in part.items():
            total.add(model, usage["prompt_tokens"], usage["completion_tokens"])
    return total.by_model


def tokens(by_model: dict[str, dict[str, int]]) -> dict[str, int]:
    """Prompt, completion and total tokens of all models."""
    prompt = sum(u["prompt_tokens"] for u in by_model.values())
    completion = sum(u["completion_tokens"] for u in by_model.values())
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}
