"""Routes: runs and run steps (``/v1/threads/{thread_id}/runs...``) and create-thread-and-run.

Handlers validate, store the run and hand it to the :class:`~asstctl.server.executor.RunExecutor`
(``state.extra["runs"]``), which queues it for a replica to run as an asyncio task. ``stream: true``
answers with the run's events (``store.subscribe``: from whichever replica runs it) as
``text/event-stream``; otherwise the run is returned as JSON
with ``openai-poll-after-ms`` so the SDK's ``*_and_poll`` helpers poll quickly.
"""

from __future__ import annotations

from typing import Any, Callable

from starlette.requests import Request
from starlette.responses import StreamingResponse
from starlette.routing import Route

from asstctl.server import validation as v
from asstctl.server.app import ServerState, state_of, stored, stored_with_body
from asstctl.server.errors import APIError, invalid, not_found
from asstctl.server.runs import EXPIRY_SECONDS, TERMINAL, RunExecutor, public
from asstctl.server.http import json_body, list_envelope, list_params, new_id, now, ok, require
from asstctl.server.routes.messages import create_message
from asstctl.server.routes.threads import active_run, create_thread, require_thread

POLL_HEADERS = {"openai-poll-after-ms": "10"}
INCLUDE_VALUES = ("step_details.tool_calls[*].file_search.results[*].content",)
COMMON_FIELDS = (
    "assistant_id", "model", "instructions", "tools", "metadata", "temperature", "top_p", "stream",
    "max_prompt_tokens", "max_completion_tokens", "truncation_strategy", "tool_choice",
    "parallel_tool_calls", "response_format",
)
RUN_FIELDS = COMMON_FIELDS + ("reasoning_effort", "additional_instructions", "additional_messages")
THREAD_AND_RUN_FIELDS = COMMON_FIELDS + ("thread", "tool_resources")
OPTION_CHECKS = {
    "model": lambda value, param: v.check_string(value, param, nullable=True),
    "instructions": lambda value, param: v.check_string(value, param, 256_000, nullable=True),
    "additional_instructions": lambda value, param: v.check_string(value, param, nullable=True),
    "additional_messages": v.check_messages,
    "tools": lambda value, param: value is None or v.check_tools(value, param, 20),
    "metadata": v.check_metadata,
    "temperature": v.check_temperature,
    "top_p": v.check_top_p,
    "stream": lambda value, param: v.check_boolean(value, param, nullable=True),
    "max_prompt_tokens": v.check_token_limit,
    "max_completion_tokens": v.check_token_limit,
    "truncation_strategy": v.check_truncation_strategy,
    "tool_choice": v.check_tool_choice,
    "parallel_tool_calls": lambda value, param: v.check_boolean(value, param, nullable=True),
    "response_format": v.check_response_format,
    "reasoning_effort": v.check_reasoning_effort,
    "tool_resources": v.check_tool_resources,
}


def setup(state: ServerState) -> None:
    executor = RunExecutor(state)
    state.extra["runs"] = executor
    state.extra["stop"] = _chain(state.extra.get("stop"), executor.stop)
    state.extra.setdefault("startup", []).append(executor.startup)  # recovery + expiry task, on the loop
    state.extra.setdefault("shutdown", []).append(executor.shutdown)


def _chain(previous, stop):
    if previous is None:
        return stop
    return lambda: (stop(), previous())


def executor_of(state: ServerState) -> RunExecutor:
    return state.extra["runs"]


# -- create ---------------------------------------------------------------------------------
async def create_run(request: Request):
    state, thread_id = state_of(request), request.path_params["thread_id"]
    body = await json_body(request)
    include = _include(request)
    _check_run_body(body, RUN_FIELDS)

    def stored(run_id: str) -> tuple[None, dict[str, Any]]:
        # (in ``_start``'s transaction: these reads go with its BEGIN, in one round trip on PostgreSQL)
        state.store.read_ahead([("get", "thread", thread_id, ""), ("get", "assistant", body["assistant_id"], None),
                                ("all", "run", thread_id)])
        require_thread(state, thread_id)
        assistant = _assistant(state, body["assistant_id"])
        with state.store.transaction():
            _ensure_idle(state, thread_id)
            for message in body.get("additional_messages") or []:
                create_message(state, thread_id, message)
            return None, state.store.insert("run", new_run(thread_id, assistant, body, run_id), thread_id)

    return await _start(state, stored, body.get("stream"), include=include)


async def create_thread_and_run(request: Request):
    state = state_of(request)
    body = await json_body(request)
    _check_run_body(body, THREAD_AND_RUN_FIELDS)
    thread_body = body.get("thread") or {}
    if body.get("tool_resources") is not None and thread_body.get("tool_resources") is None:
        thread_body = {**thread_body, "tool_resources": body["tool_resources"]}

    def stored(run_id: str) -> tuple[dict[str, Any], dict[str, Any]]:
        assistant = _assistant(state, body["assistant_id"])
        with state.store.transaction():
            thread = create_thread(state, thread_body, "thread")
            return thread, state.store.insert("run", new_run(thread["id"], assistant, body, run_id), thread["id"])

    return await _start(state, stored, body.get("stream"))


def _check_run_body(body: dict[str, Any], fields: tuple[str, ...]) -> None:
    v.check_fields(body, fields, ("assistant_id",))
    v.check_string(body["assistant_id"], "assistant_id")
    v.check_optional(body, {k: OPTION_CHECKS[k] for k in fields if k in OPTION_CHECKS})
    if "thread" in body and body["thread"] is not None:
        v.check_type(body["thread"], "thread", "object")


def _assistant(state: ServerState, assistant_id: str) -> dict[str, Any]:
    return require(state, "assistant", assistant_id, parent=None)


def _ensure_idle(state: ServerState, thread_id: str) -> None:
    run = active_run(state, thread_id)
    if run is not None:
        raise APIError(400, f"Thread {thread_id} already has an active run {run['id']}.")


def new_run(thread_id: str, assistant: dict[str, Any], body: dict[str, Any], run_id: str | None = None) -> dict[str, Any]:
    """The stored run: request options over the assistant's settings, API defaults elsewhere."""
    created = now()
    run = {
        "id": run_id or new_id("run"), "object": "thread.run", "created_at": created, "thread_id": thread_id,
        "assistant_id": assistant["id"], "status": "queued", "required_action": None, "last_error": None,
        "expires_at": created + EXPIRY_SECONDS, "started_at": None, "cancelled_at": None, "failed_at": None,
        "completed_at": None, "incomplete_details": None,
        "model": body.get("model") or assistant["model"],
        "instructions": resolve_instructions(assistant, body),
        "tools": v.normalize_tools(body["tools"]) if body.get("tools") is not None else assistant.get("tools", []),
        "metadata": body.get("metadata") or {},
        "usage": None,
        "temperature": _pick(body, assistant, "temperature", 1.0),
        "top_p": _pick(body, assistant, "top_p", 1.0),
        "max_prompt_tokens": body.get("max_prompt_tokens"),
        "max_completion_tokens": body.get("max_completion_tokens"),
        "truncation_strategy": _truncation(body.get("truncation_strategy")),
        "tool_choice": body.get("tool_choice") or "auto",
        "parallel_tool_calls": body.get("parallel_tool_calls") is not False,
        "response_format": _pick(body, assistant, "response_format", "auto"),
    }
    if body.get("reasoning_effort") is not None:
        run["reasoning_effort"] = body["reasoning_effort"]
    return run


def resolve_instructions(assistant: dict[str, Any], body: dict[str, Any]) -> str:
    """``instructions`` replaces the assistant's; ``additional_instructions`` is appended."""
    base = body["instructions"] if body.get("instructions") is not None else assistant.get("instructions") or ""
    extra = body.get("additional_instructions")
    if not extra:
        return base
    return f"{base}\n{extra}" if base else extra


def _pick(body: dict[str, Any], assistant: dict[str, Any], key: str, default: Any) -> Any:
    for source in (body, assistant):
        if source.get(key) is not None:
            return source[key]
    return default


def _truncation(value: dict[str, Any] | None) -> dict[str, Any]:
    value = value or {}
    return {"type": value.get("type", "auto"), "last_messages": value.get("last_messages")}


async def _start(state: ServerState, stored: Callable[[str], tuple[dict | None, dict[str, Any]]],
                 stream: bool | None, include: tuple[str, ...] = ()):
    """Store the run (``stored(run_id)`` -> (its new thread or None, the run)), announce and queue it, in
    one transaction off the loop (``store.call``); stream its events when asked (subscribed first, on the
    loop, with nothing to read: a new run has no events yet)."""
    executor = executor_of(state)
    executor.ensure_started()  # on the loop (its tasks)
    run_id = new_id("run")
    events = state.store.subscribe(run_id, after=0) if stream else None

    def started() -> tuple[dict | None, dict[str, Any]]:
        with state.store.transaction():
            thread, run = stored(run_id)
            executor.start(run, include)
        return thread, run

    try:
        thread, run = await state.store.call(started)
    except BaseException:
        if events is not None:
            state.store.unsubscribe(events)
        raise
    if events is None:
        return ok(run, headers=POLL_HEADERS)
    return _stream(events.sse([("thread.created", thread)] if thread is not None else []))


def _stream(frames) -> StreamingResponse:
    return StreamingResponse(frames, media_type="text/event-stream", headers={"cache-control": "no-cache"})


# -- read / modify --------------------------------------------------------------------------
def require_run(state: ServerState, thread_id: str, run_id: str) -> dict[str, Any]:
    require_thread(state, thread_id)
    return require(state, "run", run_id, thread_id)


async def retrieve_run(request: Request):
    state, params = state_of(request), request.path_params
    return ok(await state.store.call(require_run, state, params["thread_id"], params["run_id"]), headers=POLL_HEADERS)


@stored
def list_runs(state: ServerState, request: Request):
    thread_id = request.path_params["thread_id"]
    page = list_params(request)
    require_thread(state, thread_id)
    items, has_more = state.store.page("run", thread_id, **page)
    return ok(list_envelope(items, has_more), headers=POLL_HEADERS)


@stored_with_body
def modify_run(state: ServerState, request: Request, body: dict[str, Any]):
    params = request.path_params
    v.check_fields(body, ("metadata",))
    v.check_metadata(body.get("metadata"))
    require_thread(state, params["thread_id"])
    run = state.store.update(
        "run", params["run_id"], lambda r: r.update(metadata=body.get("metadata") or {}), params["thread_id"]
    )
    if run is None:
        raise not_found("run", params["run_id"])
    return ok(run, headers=POLL_HEADERS)


# -- cancel / submit ------------------------------------------------------------------------
@stored
def cancel_run(state: ServerState, request: Request):
    params = request.path_params
    with state.store.transaction():  # checked and cancelled at once
        run = require_run(state, params["thread_id"], params["run_id"])
        if run["status"] in TERMINAL:
            raise invalid(None, f"Cannot cancel run with status '{run['status']}'.", code=None)
        if run["status"] == "cancelling":
            return ok(run, headers=POLL_HEADERS)
        return ok(executor_of(state).cancel(run["id"]), headers=POLL_HEADERS)


async def submit_tool_outputs(request: Request):
    state, params = state_of(request), request.path_params
    body = await json_body(request)
    v.check_fields(body, ("tool_outputs", "stream"), ("tool_outputs",))
    v.check_optional(body, {"stream": OPTION_CHECKS["stream"]})
    outputs = _tool_outputs(body["tool_outputs"])

    def submitted() -> dict[str, Any]:
        with state.store.transaction():  # checked and answered at once
            run = require_run(state, params["thread_id"], params["run_id"])
            if run["status"] != "requires_action":
                raise invalid(None, f'Runs in status "{run["status"]}" do not accept tool outputs.', code=None)
            _check_answers(run, outputs)
            return executor_of(state).submit_outputs(run["id"], outputs)

    events = await state.store.subscribe_off_loop(params["run_id"]) if body.get("stream") else None
    try:
        run = await state.store.call(submitted)
    except BaseException:
        if events is not None:
            state.store.unsubscribe(events)
        raise
    return ok(run, headers=POLL_HEADERS) if events is None else _stream(events.sse())


def _tool_outputs(value: Any) -> dict[str, str]:
    """``[{tool_call_id, output}]`` → {call id: output}."""
    v.check_array(value, "tool_outputs")
    outputs = {}
    for i, item in enumerate(value):
        where = v.path("tool_outputs", i)
        v.check_fields(item, ("tool_call_id", "output"), ("tool_call_id",), where)
        v.check_string(item["tool_call_id"], v.path(where, "tool_call_id"))
        v.check_string(item.get("output", ""), v.path(where, "output"))
        outputs[item["tool_call_id"]] = item.get("output", "")
    return outputs


def _check_answers(run: dict[str, Any], outputs: dict[str, str]) -> None:
    expected = [c["id"] for c in run["required_action"]["submit_tool_outputs"]["tool_calls"]]
    if sorted(expected) != sorted(outputs):
        raise invalid(
            "tool_outputs",
            f"Expected tool outputs for call_ids {expected}, got {list(outputs)}.",
            code=None,
        )


# -- steps ----------------------------------------------------------------------------------
@stored
def list_steps(state: ServerState, request: Request):
    params = request.path_params
    page = list_params(request)
    _include(request)
    require_run(state, params["thread_id"], params["run_id"])
    items, has_more = state.store.page("step", params["run_id"], **page)
    return ok(list_envelope([public(s) for s in items], has_more))


@stored
def retrieve_step(state: ServerState, request: Request):
    params = request.path_params
    _include(request)
    require_run(state, params["thread_id"], params["run_id"])
    return ok(public(require(state, "step", params["step_id"], params["run_id"])))


def _include(request: Request) -> tuple[str, ...]:
    values = tuple(request.query_params.getlist("include[]"))
    for value in values:
        v.check_enum(value, "include", INCLUDE_VALUES)
    return values


RUN = "/v1/threads/{thread_id}/runs/{run_id}"
routes = [
    Route("/v1/threads/runs", create_thread_and_run, methods=["POST"]),
    Route("/v1/threads/{thread_id}/runs", create_run, methods=["POST"]),
    Route("/v1/threads/{thread_id}/runs", list_runs, methods=["GET"]),
    Route(RUN, retrieve_run, methods=["GET"]),
    Route(RUN, modify_run, methods=["POST"]),
    Route(RUN + "/cancel", cancel_run, methods=["POST"]),
    Route(RUN + "/submit_tool_outputs", submit_tool_outputs, methods=["POST"]),
    Route(RUN + "/steps", list_steps, methods=["GET"]),
    Route(RUN + "/steps/{step_id}", retrieve_step, methods=["GET"]),
]
