"""Run events on PostgreSQL: written with their transaction's commit, handed to this process's
subscribers in memory, read from the database only for what another replica wrote.

Every event row carries a global ``seq`` (commit order: event writes hold the write lock). The
statement that writes a transaction's events returns, per event, its ``seq`` and the run's last
``seq`` before it, so each event knows its predecessor in the run (``prev``). A subscription that
has delivered up to ``after`` takes a committed event from memory only when ``prev == after``;
otherwise something came between (another replica, a pruned row, a race with its own read) and it
reads the database (``pull``). A signal of another replica's event marks the run's subscriptions
stale the same way. Nothing is skipped and nothing comes twice: a subscription only moves forward,
one ``seq`` at a time, and every read takes what follows ``after``.
"""

from __future__ import annotations

from typing import Any, Iterable

Event = tuple[str, str, str]  # (run_id, name, payload)


def insert(events: list[Event]) -> tuple[str, tuple]:
    """The statement that writes ``events`` in order, returning (seq, run_id, the run's last seq
    before this statement) per event, oldest first (sub-statements of one WITH share a snapshot)."""
    values = ", ".join(["(%s, %s, %s, %s)"] * len(events))
    return (
        f"WITH t(r, nm, p, i) AS (VALUES {values}), "
        "e AS (INSERT INTO run_events (run_id, name, payload) SELECT r, nm, p FROM t ORDER BY i RETURNING seq, run_id) "
        "SELECT e.seq, e.run_id, (SELECT max(x.seq) FROM run_events x WHERE x.run_id = e.run_id) FROM e ORDER BY e.seq",
        tuple(value for number, event in enumerate(events) for value in (*event, number)),
    )


def chained(events: list[Event], rows: Iterable[tuple]) -> list[tuple[str, int, int, str, str]]:
    """(run_id, seq, prev, name, payload) per event, from ``insert``'s rows."""
    last: dict[str, int] = {}
    out = []
    for (run_id, name, payload), (seq, _, before) in zip(events, rows):
        out.append((run_id, seq, last.get(run_id, before or 0), name, payload))
        last[run_id] = seq
    return out


def deliver(store: Any, committed: list[tuple[str, int, int, str, str]]) -> None:
    """Hand events this process committed to its subscribers, in order; a gap makes them read."""
    woken = []
    with store._sub_lock:
        for run_id, seq, prev, name, payload in committed:
            for sub in store._subscribers.get(run_id, ()):
                if sub.stale or seq <= sub.after:
                    continue
                if prev == sub.after:
                    sub.items.append((name, payload))
                    sub.after = seq
                else:
                    sub.stale = True
                woken.append(sub)
    for sub in dict.fromkeys(woken):
        sub.wake()


def stale(store: Any, run_id: str | None) -> None:
    """Another replica wrote events of ``run_id`` (None: of any run, maybe): read before going on."""
    with store._sub_lock:
        subs = [sub for key, group in store._subscribers.items() if run_id is None or key == run_id for sub in group]
        for sub in subs:
            sub.stale = True
    for sub in subs:
        sub.wake()


def pull(store: Any, sub: Any) -> None:
    """Read what follows ``sub.after`` into ``sub.items``."""
    with store._sub_lock:
        sub.stale, after = False, sub.after
    rows = store._fetch("SELECT seq, name, payload FROM run_events WHERE run_id = ? AND seq > ? ORDER BY seq",
                        (sub.run_id, after))
    with store._sub_lock:
        for seq, name, payload in rows:
            if seq > sub.after:
                sub.items.append((name, payload))
                sub.after = seq
