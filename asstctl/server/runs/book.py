"""The executor's bookkeeping of one run, kept in the store beside it (kind ``run_state``, parent
the run id) so that a restarted server continues where the previous one stopped.

Fields: ``calls`` (model calls made), ``usage`` (summed over those calls), ``steps`` (step id ->
the number of the model call that produced it), ``builtin`` (call id -> the function name,
arguments and output of a built-in tool call, as the model saw them), ``sources`` /
``images`` / ``written`` (what built-in tools gave the final message: citation sources, image
file ids, written files), ``include`` (the run request's ``include[]``) and, with tracing on, ``trace``
(the requests that created the run and queued its turn: ``asstctl.server.observability``, ``trace_book``).
"""

from __future__ import annotations

from typing import Any

KIND = "run_state"


def reading(run_id: str) -> tuple:
    """The read ``load`` makes, as ``store.read_ahead`` names it."""
    return ("get", KIND, run_id, run_id)


def load(store, run_id: str) -> dict[str, Any]:
    return _filled(store.get(KIND, run_id, run_id) or fresh(run_id))


def fresh(run_id: str) -> dict[str, Any]:
    """The book of a run that has none stored yet."""
    return _filled({"id": run_id, "created_at": 0})


def _filled(book: dict[str, Any]) -> dict[str, Any]:
    book.setdefault("calls", 0)
    book.setdefault("usage", {"prompt_tokens": 0, "completion_tokens": 0})
    for key in ("steps", "builtin"):
        book.setdefault(key, {})
    for key in ("sources", "images", "written", "include"):
        book.setdefault(key, [])
    return book


def save(store, book: dict[str, Any]) -> None:
    store.save(KIND, book, book["id"])


def traced(store, hook, run_id: str, book: dict[str, Any] | None = None) -> bool:
    """With tracing on (``hook``: ``state.extra["trace_book"]``), the span context of the request queuing the
    run written into its book (``book``, else the stored one) and saved, in the caller's transaction: True when
    saved. With tracing off, nothing (no read, no write)."""
    if hook is None or not hook(book := book if book is not None else load(store, run_id)):
        return False
    save(store, book)
    return True


def usage(book: dict[str, Any]) -> dict[str, int]:
    prompt, completion = book["usage"]["prompt_tokens"], book["usage"]["completion_tokens"]
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def discard_interrupted(store, run: dict[str, Any]) -> None:
    """What a model call interrupted by a restart left behind goes: the call is made again."""
    book = load(store, run["id"])
    steps = store.all("step", run["id"])
    broken = {book["steps"].get(s["id"]) for s in steps if s["status"] == "in_progress"} - {None}
    for step in steps:
        if step["status"] != "in_progress" and book["steps"].get(step["id"]) not in broken:
            continue
        store.delete("step", step["id"], run["id"])
        if step["type"] == "message_creation":
            store.delete("message", step["step_details"]["message_creation"]["message_id"], run["thread_id"])
