"""``asstctl test`` on an Agents API target: each conversation attempt is one agent session.

The session is created with environment ``none`` and the first user turn as its input, streamed
(``sessions.create(stream=True)``); each later turn opens the session's event stream and then posts the
user message (``agent.session.input.message``). Function calls are answered from the turn's mocks with
``agent.session.input.tool_result`` events as soon as the call's item is done (and for any call the
``agent.session.requires_action`` snapshot still lists); when the session answers 400 with code
``invalid_request_error`` and the message "Unknown pending tool call: <that call's id>" (the item event can
arrive before the server registered the call) the same submission (same Idempotency-Key) is retried after 0.1,
0.3 and 0.6 s: the SDK's own dispatcher's rule (``is_pending_call_race``), so any other 400 is an error at once. A call without
a mock, or a required action of another kind (MCP or computer-use approval), cancels the turn. The calls the API
runs itself (``mcp_call``, ``web_search_call`` items) are recorded with the turn's tool calls; expectations on
file citations or code runs (``file_cited``, ``code_ran``, ``code_output_contains``) fail the turn, as
attachments do: an agent has neither.

A turn ends at ``agent.session.idle`` once the root turn (the first ``turn.created`` without a subagent)
completed, failed or was cancelled, or at ``agent.session.failed`` / ``budget_reached``. The reply is the
root turn's completed assistant messages that are not commentary, by output index (a subagent's are not);
tokens come from the root turn's usage (input → prompt, output → completion), the model from the session's
agent. ``engine_ms`` is the agent's own time, generation included: from ``turn.in_progress`` (or the
session going ``in_progress`` again after a tool result) to the root turn's end or its next
``requires_action``, summed over tool rounds. Sessions are deleted afterwards unless ``keep_threads``.

Imports asstctl.testing.{turns, expectations, results}, asstctl.ownership; the SDK lazily.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from asstctl import ownership
from asstctl.testing.expectations import TurnOutcome, check, compact
from asstctl.testing.results import Attempt, TurnResult
from asstctl.testing.turns import Clock, TurnError, api_problem, mock_output, parse_arguments

TURN_ENDS = {"agent.session.turn.completed": "completed", "agent.session.turn.failed": "failed",
             "agent.session.turn.cancelled": "cancelled"}
SESSION_ENDS = ("agent.session.failed", "agent.session.budget_reached")
# The agent's own time (engine_ms) runs from the turn (or session) going in progress, generation included, to the
# root turn's end or its pending tool call (asstctl.testing.turns.Clock sees these two names).
THINKING, PAUSE = "agent.session.turn.in_progress", "pause"
WORKING = (THINKING, "agent.session.in_progress")  # the latter: working again after a tool result
PAUSES = ("agent.session.requires_action", "agent.session.idle", *SESSION_ENDS)
RACE_DELAYS = (0.1, 0.3, 0.6)  # the SDK's waits before re-submitting a tool result the session did not know yet
DELETE_DELAYS = (0.1, 0.2, 0.4, 0.8, 1.6)  # a cancelled turn must end before its session can be deleted
NONE_ENVIRONMENT = {"type": "none"}
HOSTED_CALLS = ("mcp_call", "web_search_call")  # tool calls the API runs (no tool result from asstctl)
# Expectations on what only an Assistants run has (file_search citations, code_interpreter steps).
ASSISTANTS_EXPECTATIONS = {"file_cited": "an agent has no file_search, so nothing in its replies cites a file",
                           "code_ran": "an agent has no code_interpreter tool, so no code run is recorded",
                           "code_output_contains": "an agent has no code_interpreter tool, so no code output is "
                                                   "recorded"}


@dataclass
class TurnState:
    """What one turn's events said so far."""

    root: str | None = None  # the root turn's id
    status: str | None = None  # how the root turn ended
    problem: str = ""  # the turn's or the session's error
    ended: bool = False
    replies: list[tuple[int, str]] = field(default_factory=list)  # (output index, text)
    answered: set[str] = field(default_factory=set)  # call ids


class SessionRun:
    """One attempt of one conversation, as one session of the agent (``client``: asstctl.backends.agents.Agents)."""

    def __init__(self, client: Any, project_name: str, agent_id: str, options: Any):
        self.sdk = client.client
        self.project_name, self.agent_id, self.options = project_name, agent_id, options
        self.session_id: str | None = None
        self.seen: set[str] = set()  # event ids: one redelivered (or replayed by a later stream) is skipped

    def attempt(self, conversation: Any, number: int) -> Attempt:
        import openai

        result = Attempt(number, expected_turns=len(conversation.turns))
        started = time.monotonic()
        try:
            for turn in conversation.turns:
                result.turns.append(self.turn(turn, conversation))
                result.thread_id = self.session_id
                if not result.turns[-1].passed:
                    break
        except (openai.APIError, OSError) as error:
            result.error = api_problem(error)
        finally:
            result.error = result.error or self._clean_up()
            result.seconds = time.monotonic() - started
        return result

    def _clean_up(self) -> str | None:
        """Delete the session; one whose cancelled turn is still winding down (409) is tried again a little later."""
        import openai

        if self.options.keep_threads or not self.session_id:
            return None
        for delay in (*DELETE_DELAYS, None):
            try:
                self.sdk.beta.agents.sessions.delete(self.session_id)
                return None
            except openai.ConflictError as error:
                if delay is None:
                    return f"clean-up failed: {api_problem(error)}"
            except Exception as error:  # noqa: BLE001 - reported with the attempt, never raised
                return f"clean-up failed: {api_problem(error)}"
            time.sleep(delay)
        return None

    # -- one turn ----------------------------------------------------------------------------------
    def turn(self, turn: Any, conversation: Any) -> TurnResult:
        import openai

        result = TurnResult(turn.index, turn.user, turn.where)
        try:
            unsupported(turn)
            self._run(turn, conversation, result)
        except (TurnError, openai.APIError) as error:
            result.error = str(error) if isinstance(error, TurnError) else api_problem(error)
            return result
        outcome = TurnOutcome(result.reply, result.tool_calls, result.latency_ms, result.usage.get("total_tokens", 0),
                              [], question=turn.user, code=[], cited_shas=turn.cited_shas, grader=self.options.grader,
                              spend=result.spend)
        result.failures = check(turn.expect, outcome)
        return result

    def _run(self, turn: Any, conversation: Any, result: TurnResult) -> None:
        clock = Clock(time.monotonic() + self.options.timeout, THINKING, (PAUSE,))
        sessions = self.sdk.beta.agents.sessions
        if self.session_id is None:
            metadata = {ownership.MANAGED_BY: ownership.MANAGER, ownership.PROJECT: self.project_name,
                        "asstctl.test": conversation.id[:512]}
            stream = sessions.create(agent_id=self.agent_id, environment=NONE_ENVIRONMENT, input=turn.user, stream=True,
                                     metadata=metadata, timeout=clock.remaining())
        else:
            stream = sessions.events.stream(self.session_id, timeout=clock.remaining())
            self._submit([message(turn.user)])
        state = TurnState()
        self._consume(stream, turn, clock, state, result)
        result.latency_ms, result.engine_ms = clock.latency_ms(), clock.engine_ms
        result.reply = "\n".join(text for _, text in sorted(state.replies, key=lambda reply: reply[0]))
        if not state.ended:
            self._cancel()
            if clock.expired():
                raise TurnError(f"the turn did not finish within {self.options.timeout:g} s (--timeout)")
            raise TurnError("the session's event stream ended before the turn did")
        if state.status != "completed":
            raise TurnError(f"the turn ended `{state.status}`" + (f": {state.problem}" if state.problem else ""))

    def _consume(self, stream: Any, turn: Any, clock: Clock, state: TurnState, result: TurnResult) -> None:
        try:
            with stream:
                for event in stream:
                    if event.event_id in self.seen:
                        continue
                    self.seen.add(event.event_id)
                    clock.see(clock_event(event, state))
                    self._see(event, turn, state, result)
                    if state.ended or clock.expired():
                        return
        except TurnError:
            self._cancel()
            raise
        except Exception:  # a read timeout (the request's timeout is the time left), a broken stream, a refused post
            if not clock.expired():
                self._cancel()  # the turn would wait for the refused tool result: it ends before its session goes
                raise

    def _see(self, event: Any, turn: Any, state: TurnState, result: TurnResult) -> None:
        kind = event.type
        session = getattr(event, "session", None)
        if session is not None and getattr(session, "object", None) == "agent.session":
            self.session_id = session.id
            result.model = session.agent.model or result.model
        if kind == "agent.session.turn.created" and state.root is None and event.turn.subagent_id is None:
            state.root = result.run_id = event.turn_id
        elif kind == "agent.session.turn.item.done":
            item = event.item
            if item.type == "message" and item.role == "assistant" and item.status == "completed" \
                    and item.phase != "commentary" and event.turn_id == state.root:  # a subagent's: not the reply
                state.replies.append((event.output_index, text_of(item)))
            elif item.type == "function_call":
                self._answer(item.call_id, item.name, item.arguments, item.turn_id, turn, state, result)
            elif item.type in HOSTED_CALLS:  # run by the API itself: recorded for tool_called / no_tool_called
                result.tool_calls.append(hosted_call(item))
        elif kind == "agent.session.requires_action":
            for action in session.required_actions:
                if action.type != "function_call":
                    raise TurnError(f"the agent asked for `{action.type}`, which asstctl test cannot answer")
                self._answer(action.call_id, action.name, action.arguments, action.turn_id, turn, state, result)
        elif kind in TURN_ENDS and event.turn_id == state.root:
            state.status = TURN_ENDS[kind]
            usage = event.usage or getattr(event.turn, "usage", None)
            if usage is not None:
                result.usage = {"prompt_tokens": usage.input_tokens, "completion_tokens": usage.output_tokens,
                                "total_tokens": usage.total_tokens}
            error = getattr(event.turn, "error", None)
            if error is not None:
                state.problem = f"{error.code}: {error.message}"
        elif kind == "agent.session.idle" and state.status is not None:
            state.ended = True
        elif kind in SESSION_ENDS:
            state.status, state.ended = kind.rsplit(".", 1)[1], True
            state.problem = state.problem or session_problem(kind, session)
        elif kind == "error":
            state.problem = f"{event.error.code or event.error.type}: {event.error.message}"

    # -- tool calls --------------------------------------------------------------------------------
    def _answer(self, call_id: str, name: str, raw: Any, turn_id: str, turn: Any, state: TurnState,
                result: TurnResult) -> None:
        if call_id in state.answered:
            return
        state.answered.add(call_id)
        arguments = parse_arguments(raw) if isinstance(raw, str) else raw
        result.tool_calls.append({"name": name, "arguments": arguments})
        mock = turn.mocks.get(name)
        if mock is None:
            raise TurnError(f"no mock for tool `{name}` called with {compact(arguments)}; add it under mocks:")
        output = mock_output(name, mock, arguments, self.options.root)
        self._submit([{"type": "agent.session.input.tool_result", "turn_id": turn_id, "call_id": call_id,
                       "success": True, "output": output}], call_id)

    def _submit(self, events: list[dict[str, Any]], call_id: str | None = None) -> None:
        """Post input events; the tool result of ``call_id``, when the session does not know that call yet, is
        posted again (same key)."""
        import openai

        key = str(uuid.uuid4())
        for delay in (*RACE_DELAYS, None):
            try:
                self.sdk.beta.agents.sessions.events.create(self.session_id, events=events, idempotency_key=key)
                return
            except openai.BadRequestError as error:
                if delay is None or call_id is None or not pending_call_race(error, call_id):
                    raise
            time.sleep(delay)

    def _cancel(self) -> None:
        if self.session_id:
            try:
                self._submit([{"type": "agent.session.input.cancel"}])
            except Exception:  # noqa: BLE001 - already over: nothing to cancel
                pass


def pending_call_race(error: Any, call_id: str) -> bool:
    """The SDK's rule (openai.lib.streaming.agents._tools.is_pending_call_race, private): the 400 of the known
    registration race, for exactly this call; a private helper of the SDK is not imported."""
    body = error.body if isinstance(error.body, dict) else {}
    return body.get("code") == "invalid_request_error" and body.get("message") == f"Unknown pending tool call: {call_id}"


def clock_event(event: Any, state: TurnState) -> str:
    """An event as the turn's Clock counts it: THINKING, PAUSE (the root turn's end, a pending call) or neither."""
    if event.type in WORKING:
        return THINKING
    if event.type in PAUSES or (event.type in TURN_ENDS and event.turn_id == state.root):
        return PAUSE
    return event.type


def session_problem(kind: str, session: Any) -> str:
    """Why the session ended the turn: its error, or the spending limit it paused at (``budget_reached``)."""
    if session is None:
        return ""
    if kind == "agent.session.budget_reached":
        spend = session.spend_control
        return f"the session paused at its spending limit ({spend.consumed} of {spend.limit} US cents spent)"
    return session.error or ""


def message(text: str) -> dict[str, Any]:
    return {"type": "agent.session.input.message",
            "input": [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}]}


def text_of(item: Any) -> str:
    return "".join(part.text for part in item.content if getattr(part, "type", "") == "output_text")


def hosted_call(item: Any) -> dict[str, Any]:
    """An MCP or web search call as a recorded tool call: ``{name, arguments}`` (an MCP call under the server's
    tool name; a web search as ``web_search`` with its action's fields, e.g. ``query``)."""
    if item.type == "mcp_call":
        arguments = parse_arguments(item.arguments) if isinstance(item.arguments, str) else item.arguments
        return {"name": item.name, "arguments": arguments if arguments is not None else {}}
    action = item.action.to_dict() if item.action is not None else {}
    return {"name": "web_search", "arguments": {key: value for key, value in action.items() if key != "type"}}


def unsupported(turn: Any) -> None:
    """What a conversation asks that a session cannot do: per-turn run overrides, attachments, expectations on
    file citations or code runs."""
    for name, why in ASSISTANTS_EXPECTATIONS.items():
        if name in turn.expect:
            raise TurnError(f"`{name}` needs an Assistants target: {why}; remove it from this conversation, or run "
                            "it on an Assistants target")
    if turn.attachments:
        raise TurnError("attachments need an Assistants target: an agent session has no file uploads; "
                        "remove `attachments:` from this conversation, or run it on an Assistants target")
    if turn.overrides:
        names = ", ".join(sorted(turn.overrides))
        raise TurnError(f"per-turn overrides ({names}) need an Assistants target: an agent session runs the saved "
                        "agent; remove them from this conversation, or run it on an Assistants target")
