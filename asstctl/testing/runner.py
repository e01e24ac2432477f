"""The conversation runner behind ``asstctl test``.

For every selected conversation (and every ``--repeat``), the runner opens a fresh thread on the
target, then for each turn posts the user message (uploading attachments), starts a *streamed*
run on the deployed assistant (so completion is seen the moment it happens), answers function
calls from the turn's mocks until the run is terminal, and checks the turn's expectations.
A conversation stops at its first failed turn. Threads and uploaded files are deleted afterwards
unless ``keep_threads``.

Latency per turn is wall time from the run request to its terminal event; ``engine_ms`` is the
time the run was ``in_progress`` on the target: from ``thread.run.in_progress`` to ``requires_action``
or the run's end, summed over tool rounds (the model's thinking *and* generating, the built-in tools);
``overhead_ms`` is the rest (HTTP, queueing, streaming after the end, answering function calls).
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from asstctl import ownership
from asstctl.testing.conversations import Conversation, Turn
from asstctl.errors import AsstctlError
from asstctl.testing.expectations import TurnOutcome, check, compact
from asstctl.testing.results import Attempt, ConversationResult, Report, TurnResult
from asstctl.progress import progress_bar
from asstctl.testing.turns import Clock, TurnError, api_problem, mock_output, parse_arguments

CODE_EXPECTATIONS = {"code_ran", "code_output_contains"}
TERMINAL = ("completed", "failed", "cancelled", "expired", "incomplete")
PAUSE_EVENTS = ("thread.run.requires_action",) + tuple(f"thread.run.{s}" for s in TERMINAL)  # engine time stops


class NotDeployed(AsstctlError):
    exit_code = 2


@dataclass
class RunOptions:
    timeout: float = 60.0  # seconds per run
    parallel: int = 1
    repeat: int = 1
    min_pass_rate: float = 1.0
    keep_threads: bool = False
    root: Path | None = None  # importable for `python:` mocks
    # A ``cli.output.progress``-like factory: progress(length=N, label=...) -> context with .update(n).
    progress: Any = None
    grader: Any = None  # asstctl.testing.grading.Grader for rubric/similar (grading.check_configured)
    prices: dict[str, dict[str, float]] = field(default_factory=dict)  # test.prices: model -> per 1M tokens


# -- resolving assistants --------------------------------------------------------------------
def deployed_assistants(client, project_name: str) -> dict[str, str]:
    """key -> assistant id of the assistants this project manages on the target."""
    from asstctl.reconcile.remote import read_remote

    return {key: obj["id"] for key, obj in read_remote(client, project_name).managed.items()}


def resolve_assistants(client, project_name: str, keys: set[str], target_label: str) -> dict[str, str]:
    deployed = deployed_assistants(client, project_name)
    missing = sorted(keys - set(deployed))
    if missing:
        names = ", ".join(f"`{k}`" for k in missing)
        noun = "assistant" if len(missing) == 1 else "assistants"
        verb = "is" if len(missing) == 1 else "are"
        raise NotDeployed(f"{noun} {names} {verb} not deployed on {target_label}; run `asstctl apply` first")
    return {k: deployed[k] for k in keys}


# -- running ---------------------------------------------------------------------------------
def run_conversations(client, project_name: str, target_label: str, conversations: list[Conversation],
                      options: RunOptions) -> Report:
    started = time.monotonic()
    ids = resolve_assistants(client, project_name, {c.assistant for c in conversations}, target_label)
    jobs = [(c, n) for c in conversations for n in range(1, options.repeat + 1)]

    session = conversation_run(client)

    def attempt(job: tuple[Conversation, int]) -> Attempt:
        conversation, number = job
        return session(client, project_name, ids[conversation.assistant], options).attempt(conversation, number)

    with progress_bar(options.progress, len(jobs), "Running conversations") as bar, ThreadPoolExecutor(
        max(1, options.parallel), thread_name_prefix="asstctl-test"
    ) as pool:
        attempts = []
        for result in pool.map(attempt, jobs):
            attempts.append(result)
            if bar is not None:
                bar.update(1)
    results = [
        ConversationResult(c, [a for (job_c, _), a in zip(jobs, attempts) if job_c is c], options.min_pass_rate)
        for c in conversations
    ]
    return Report(target_label, results, time.monotonic() - started, options.prices)


def conversation_run(client) -> type:
    """How a conversation runs on this target: a thread and runs, or an Agents API session (asstctl.testing.agents)."""
    from asstctl.backends.agents import Agents

    if isinstance(client, Agents):
        from asstctl.testing.agents import SessionRun

        return SessionRun
    return ConversationRun


class ConversationRun:
    """One attempt of one conversation on its own thread."""

    def __init__(self, client, project_name: str, assistant_id: str, options: RunOptions):
        self.client = client
        self.project_name = project_name
        self.assistant_id = assistant_id
        self.options = options
        self.thread_id: str | None = None
        self.file_ids: list[str] = []

    def attempt(self, conversation: Conversation, number: int) -> Attempt:
        import openai

        result = Attempt(number, expected_turns=len(conversation.turns))
        started = time.monotonic()
        try:
            self.thread_id = result.thread_id = self._new_thread(conversation)
            for turn in conversation.turns:
                result.turns.append(self.turn(turn))
                if not result.turns[-1].passed:
                    break
        except (openai.APIError, OSError) as error:  # outside a run (thread, attachment): report, go on
            result.error = api_problem(error)
        finally:
            result.error = result.error or self._clean_up()
            result.seconds = time.monotonic() - started
        return result

    def _new_thread(self, conversation: Conversation) -> str:
        metadata = {ownership.MANAGED_BY: ownership.MANAGER, ownership.PROJECT: self.project_name,
                    "asstctl.test": conversation.id[:512]}
        return self.client.beta.threads.create(metadata=metadata).id

    def _clean_up(self) -> str | None:
        if self.options.keep_threads:
            return None
        try:
            if self.thread_id:
                self.client.beta.threads.delete(self.thread_id)
            for file_id in self.file_ids:
                self.client.files.delete(file_id)
        except Exception as error:
            return f"clean-up failed: {api_problem(error)}"
        return None

    # -- one turn ----------------------------------------------------------------------------
    def turn(self, turn: Turn) -> TurnResult:
        import openai

        result = TurnResult(turn.index, turn.user, turn.where)
        try:
            self._post_message(turn)
            self._run(turn, result)
        except (TurnError, openai.APIError) as error:
            result.error = str(error) if isinstance(error, TurnError) else api_problem(error)
            return result
        if CODE_EXPECTATIONS & set(turn.expect):
            result.code = self._code_calls(result.run_id)
        outcome = TurnOutcome(result.reply, result.tool_calls, result.latency_ms, result.usage.get("total_tokens", 0),
                              self._filenames(result.cited), question=turn.user, code=result.code,
                              cited_shas=turn.cited_shas, grader=self.options.grader, spend=result.spend)
        result.failures = check(turn.expect, outcome)
        return result

    def _code_calls(self, run_id: str | None) -> list[dict[str, str]]:
        """The code_interpreter calls of the run's steps, oldest first: their code and logs."""
        steps = self.client.beta.threads.runs.steps.list(run_id, thread_id=self.thread_id, order="asc", limit=100)
        calls = []
        for step in steps:
            if step.step_details.type != "tool_calls":
                continue
            for call in step.step_details.tool_calls:
                if call.type == "code_interpreter":
                    logs = [o.logs for o in call.code_interpreter.outputs or [] if o.type == "logs"]
                    calls.append({"input": call.code_interpreter.input, "logs": "\n".join(logs)})
        return calls

    def _post_message(self, turn: Turn) -> None:
        attachments = []
        for attachment in turn.attachments:
            with open(attachment.path, "rb") as handle:
                uploaded = self.client.files.create(file=(attachment.path.name, handle.read()), purpose="assistants")
            self.file_ids.append(uploaded.id)
            attachments.append({"file_id": uploaded.id, "tools": [{"type": t} for t in attachment.tools]})
        extra = {"attachments": attachments} if attachments else {}
        self.client.beta.threads.messages.create(self.thread_id, role="user", content=turn.user, **extra)

    def _run(self, turn: Turn, result: TurnResult) -> None:
        clock = Clock(time.monotonic() + self.options.timeout, outputs=PAUSE_EVENTS)
        runs = self.client.beta.threads.runs
        manager = runs.stream(thread_id=self.thread_id, assistant_id=self.assistant_id,
                              timeout=clock.remaining(), **turn.overrides)
        while True:
            run = self._consume(manager, clock, result)
            if run.status != "requires_action":
                break
            outputs = self._answer(run, turn, result)
            manager = runs.submit_tool_outputs_stream(thread_id=self.thread_id, run_id=run.id,
                                                      tool_outputs=outputs, timeout=clock.remaining())
        result.latency_ms, result.engine_ms = clock.latency_ms(), clock.engine_ms
        result.usage = run.usage.model_dump() if run.usage else {}
        result.model = run.model or ""
        if run.status != "completed":
            raise TurnError(run_problem(run))

    def _consume(self, manager, clock: "Clock", result: TurnResult):
        """Read one stream to its end; the last run object seen."""
        run = None
        try:
            with manager as stream:
                for event in stream:
                    clock.see(event.event)
                    if event.event.startswith("thread.run.") and event.data.object == "thread.run":
                        run = event.data
                        result.run_id = run.id
                    elif event.event == "thread.message.completed":
                        result.reply = "\n".join(filter(None, [result.reply, message_text(event.data)]))
                        result.cited.extend(cited_file_ids(event.data))
                    if clock.expired():
                        break
        except Exception:  # a read timeout (the request's timeout is the time left) or a broken stream
            if not clock.expired():
                raise
        if clock.expired() or run is None or (run.status not in TERMINAL and run.status != "requires_action"):
            self._cancel(result.run_id)
            raise TurnError(f"the run did not finish within {self.options.timeout:g} s (--timeout)")
        return run

    def _answer(self, run, turn: Turn, result: TurnResult) -> list[dict[str, str]]:
        """The outputs of every pending call, from the turn's mocks; without one, the run is cancelled."""
        try:
            return [self._mocked(call, turn, result) for call in run.required_action.submit_tool_outputs.tool_calls]
        except TurnError:
            self._cancel(run.id)
            raise

    def _mocked(self, call, turn: Turn, result: TurnResult) -> dict[str, str]:
        name, arguments = call.function.name, parse_arguments(call.function.arguments)
        result.tool_calls.append({"name": name, "arguments": arguments})
        mock = turn.mocks.get(name)
        if mock is None:
            raise TurnError(f"no mock for tool `{name}` called with {compact(arguments)}; add it under mocks:")
        return {"tool_call_id": call.id, "output": mock_output(name, mock, arguments, self.options.root)}

    def _filenames(self, file_ids: list[str]) -> list[str]:
        """The cited files' names (their ids when they cannot be read), without repeats."""
        names = []
        for file_id in dict.fromkeys(file_ids):
            try:
                names.append(self.client.files.retrieve(file_id).filename)
            except Exception:  # deleted meanwhile: the id still tells which file
                names.append(file_id)
        return names

    def _cancel(self, run_id: str | None) -> None:
        if run_id:
            try:
                self.client.beta.threads.runs.cancel(run_id, thread_id=self.thread_id)
            except Exception:  # already over: nothing to cancel
                pass


# -- helpers ---------------------------------------------------------------------------------
def message_text(message) -> str:
    return "\n".join(block.text.value for block in message.content if block.type == "text")


def cited_file_ids(message) -> list[str]:
    return [a.file_citation.file_id for block in message.content if block.type == "text"
            for a in block.text.annotations if a.type == "file_citation"]


def run_problem(run) -> str:
    detail = ""
    if run.last_error:
        detail = f": {run.last_error.code}: {run.last_error.message}"
    elif run.incomplete_details:
        detail = f": {run.incomplete_details.reason}"
    return f"the run ended `{run.status}`{detail}"


# -- the `asstctl test` entry point ----------------------------------------------------------
def test_project(project, options: RunOptions, *, files: list[Path] | None = None, patterns=(),
                 target: str | None = None, base_url: str | None = None) -> Report:
    """Load, select and run the project's conversations on a target; configuration errors exit 2."""
    from asstctl.testing.conversations import load_conversations, select
    from asstctl.errors import ConfigError, TargetError
    from asstctl.backends.targets import open_target

    from asstctl.testing.grading import check_configured, price_table

    try:
        conversations = _selected(load_conversations(project, files), patterns, select)
        options.root = options.root or project.root
        options.grader = options.grader or check_configured(project, conversations)  # before any run
        options.prices = options.prices or price_table(project)
        with open_target(project, target, base_url, timeout=options.timeout + 5) as opened:
            return run_conversations(opened.client, project.name, opened.label, conversations, options)
    except (ConfigError, TargetError) as error:
        error.exit_code = 2
        raise
    finally:
        if options.grader is not None:
            options.grader.close()


def _selected(conversations, patterns, select) -> list[Conversation]:
    from asstctl.errors import ConfigError

    if not conversations:
        raise ConfigError("no conversations to run: there is no assistants/<key>.test.yaml file",
                          hint="Write one next to the assistant it tests; see docs/conversations.md.")
    chosen = select(conversations, list(patterns))
    if not chosen:
        raise ConfigError(f"no conversation matches -k {' '.join(patterns)}",
                          hint="Known: " + ", ".join(c.id for c in conversations))
    return chosen

