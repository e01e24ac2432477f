"""The project lock: applies and destroys of one project on one target run one at a time.

Like terraform's state lock, but without a state file: the lock lives on the target, as an empty vector
store (the Assistants API's only listable object with metadata that no assistant listing shows) whose
metadata holds ``asstctl.lock`` = the project, ``asstctl.holder`` (``user@host pid N``),
``asstctl.operation`` (apply / destroy), ``asstctl.since`` (ISO time, UTC) and ``asstctl.expires``
(unix seconds, on the server's clock). Lock objects are never managed objects: ``remote.classify``
skips them, so plan, export, status, prune and destroy never see them.

Acquiring: create a lock object, then list the project's live lock objects, oldest first by
(``created_at``, id). The oldest wins when the next one is more than ``TIE`` seconds younger (``created_at``
has one-second resolution: two objects that close may not have seen each other, so both back off for a
random moment, a longer one each round, and try again). Everyone else deletes their own object and is
refused, naming the holder, or waits (``timeout``). A lock past ``asstctl.expires`` (a crashed apply) is ignored and deleted; the
holder renews it every ``RENEW_EVERY`` seconds while it works, and release deletes it. A lock whose holder
ran on this machine (same boot, same pid namespace: ``asstctl.process``) and no longer runs is stale at once.

    with acquire(client, "support-bots", "apply", timeout=30):
        ...   # plan and apply
"""

from __future__ import annotations

import datetime
import logging
import os
import random
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

from asstctl.errors import AsstctlError
from asstctl.ownership import LOCK
from asstctl.backends import backend_for

HOLDER, OPERATION, SINCE, EXPIRES = "asstctl.holder", "asstctl.operation", "asstctl.since", "asstctl.expires"
PROCESS = "asstctl.process"  # boot id / pid namespace / pid: lets a later run on the same machine see the holder died
TTL = 120  # seconds a lock lives without renewal (a crashed apply blocks others this long at most)
RENEW_EVERY = 30.0
TIE = 1  # created_at values this close (seconds) do not order two lock objects
POLL = 1.0  # seconds between attempts while waiting for a held lock
CONTENTION_PATIENCE = 30.0  # how long simultaneous starters keep backing off before giving up
BACKOFF_CAP = 8.0  # seconds: the longest random pause between two contended attempts
log = logging.getLogger(__name__)


class LockError(AsstctlError):
    """The project is locked by another apply or destroy (or the lock could not be taken)."""


@dataclass
class LockInfo:
    id: str
    project: str
    holder: str
    operation: str
    since: str
    expires: int
    created_at: int
    process: str = ""

    @classmethod
    def from_obj(cls, obj: dict[str, Any]) -> "LockInfo":
        meta = obj.get("metadata") or {}
        return cls(id=obj["id"], project=meta.get(LOCK, ""), holder=meta.get(HOLDER, "unknown"),
                   operation=meta.get(OPERATION, "apply"), since=meta.get(SINCE, ""),
                   expires=_int(meta.get(EXPIRES)), created_at=_int(obj.get("created_at")),
                   process=meta.get(PROCESS, ""))

    def order(self) -> tuple[int, str]:
        return self.created_at, self.id

    def describe(self) -> str:
        return f"{self.holder} ({self.operation}) since {self.since}"

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "holder": self.holder, "operation": self.operation, "since": self.since,
                "expires": iso(self.expires)}


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def iso(seconds: float) -> str:
    return datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def holder_name() -> str:
    try:
        import getpass

        user = getpass.getuser()
    except (KeyError, OSError, ImportError):
        user = "unknown"
    return f"{user}@{socket.gethostname()} pid {os.getpid()}"


def process_identity(pid: int | None = None) -> str:
    """``boot-id/pid-namespace/pid`` of a process of this machine (``""`` where /proc does not tell)."""
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as stream:
            boot = stream.read().strip()
        namespace = os.readlink("/proc/self/ns/pid")
    except OSError:
        return ""
    return f"{boot}/{namespace}/{os.getpid() if pid is None else pid}"


def holder_died(info: LockInfo) -> bool:
    """The lock's holder ran on this machine, in this pid namespace, since its last boot, and is gone."""
    here, _, pid = process_identity().rpartition("/")
    there, _, their_pid = info.process.rpartition("/")
    if not here or here != there or not their_pid.isdigit() or their_pid == pid:
        return False
    try:
        os.kill(int(their_pid), 0)
    except ProcessLookupError:
        return True
    except OSError:  # it exists (perhaps another user's)
        return False
    return False


# --- listing -----------------------------------------------------------------------------------------------

def list_locks(client: Any, project: str) -> list[LockInfo]:
    """Every lock object of ``project`` on the target (live or expired), oldest first."""
    stores = backend_for(client).list_locks()
    locks = [LockInfo.from_obj(obj) for obj in stores if (obj.get("metadata") or {}).get(LOCK) == project]
    return sorted(locks, key=LockInfo.order)


def live_now(client: Any, project: str) -> list[LockInfo]:
    """The project's unexpired locks (judged by this machine's clock), oldest first; nothing is deleted."""
    now = int(time.time())
    return [info for info in list_locks(client, project) if info.expires >= now]


def live_locks(client: Any, project: str, server_now: int, keep: str | None = None) -> list[LockInfo]:
    """The project's unexpired locks, oldest first; expired ones (other than ``keep``) are deleted."""
    live = []
    for info in list_locks(client, project):
        if info.id == keep or (info.expires >= server_now and not holder_died(info)):
            live.append(info)
        else:
            log.info("removing the lock %s of %s: expired, or its process is gone", info.id, info.describe())
            delete_lock(client, info.id)
    return live


def delete_lock(client: Any, lock_id: str) -> bool:
    """Delete a lock object; False when it was already gone."""
    return backend_for(client).delete_vector_store(lock_id)


# --- acquiring ---------------------------------------------------------------------------------------------

WON, CONTENDED = "won", "contended"


def verdict(mine: str, live: list[LockInfo]) -> Any:
    """WON, CONTENDED, or the LockInfo of the holder."""
    if mine not in {info.id for info in live}:
        return CONTENDED  # our own object is not listed yet: we cannot judge
    if len(live) > 1 and live[1].created_at - live[0].created_at <= TIE:
        return CONTENDED
    return WON if live[0].id == mine else live[0]


def acquire(client: Any, project: str, operation: str, timeout: float = 0.0, *,
            clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep) -> "Lock":
    """Take the project's lock on the target, or raise LockError naming who holds it (after waiting up to
    ``timeout`` seconds for it)."""
    start = clock()
    contended = 0
    while True:
        created, offset = create_lock(client, project, operation)
        try:
            live = live_locks(client, project, created.created_at, keep=created.id)
        except BaseException:
            delete_lock(client, created.id)
            raise
        outcome = verdict(created.id, live)
        if outcome == WON:
            return Lock(client, created, offset)
        delete_lock(client, created.id)
        waited = clock() - start
        others = [info for info in live if info.id != created.id]
        if outcome == CONTENDED and waited < max(timeout, CONTENTION_PATIENCE):
            # Started at the same moment as another: let chance order them. The window doubles each round,
            # so two starters that keep colliding (slow machines, where one attempt takes seconds) part.
            sleep(random.uniform(0.1, min(BACKOFF_CAP, 1.5 * 2 ** contended)))
            contended += 1
            continue
        holder = outcome if isinstance(outcome, LockInfo) else (others[0] if others else None)
        if holder is None:
            raise LockError(f"could not lock project {project}: its lock object was not listed back by the target",
                            hint="Try again; if this persists, the target's listing of vector stores lags behind.")
        if waited >= timeout:
            raise held_error(project, holder, timeout)
        sleep(min(POLL, max(0.05, timeout - waited)))


def held_error(project: str, holder: LockInfo, timeout: float) -> LockError:
    waited = f" (waited {timeout:g} s)" if timeout else ""
    return LockError(
        f"project {project} is locked by {holder.describe()}{waited}; lock id {holder.id}",
        hint=f"Wait for it (or pass --lock-timeout 5m to wait); if that {holder.operation} crashed, its lock expires "
             f"at {iso(holder.expires)}, or remove it now with `asstctl force-unlock {holder.id}`.")


def create_lock(client: Any, project: str, operation: str) -> tuple[LockInfo, float]:
    """A new lock object of ours, and the server clock's offset from ours (seconds)."""
    backend = backend_for(client)
    before = time.time()
    metadata = {LOCK: project, HOLDER: holder_name()[:512], OPERATION: operation, SINCE: iso(before),
                EXPIRES: str(int(before) + TTL), PROCESS: process_identity()[:512]}
    with backend.target_errors("creating the project's lock"):
        try:
            obj = backend.create_lock(f"asstctl lock: {project}"[:256], metadata)
        except backend.not_found:
            raise LockError(f"{backend.where()} has no /vector_stores endpoint (404), where asstctl "
                            "keeps the project lock", hint="Pass --no-lock if you make sure nothing else applies "
                                                          "this project at the same time.") from None
    offset = obj["created_at"] - time.time()
    expires = obj["created_at"] + TTL
    if abs(offset) > 2:  # our clock differs from the server's: record times on the server's clock
        metadata = {**metadata, SINCE: iso(obj["created_at"]), EXPIRES: str(expires)}
        backend.update_vector_store(obj["id"], {"metadata": metadata})
    info = LockInfo(obj["id"], project, metadata[HOLDER], operation, metadata[SINCE], _int(metadata[EXPIRES]),
                    obj["created_at"], metadata[PROCESS])
    return info, offset


# --- holding -----------------------------------------------------------------------------------------------

class Lock:
    """A held lock: renewed in the background until ``release`` (or the end of a ``with`` block)."""

    def __init__(self, client: Any, info: LockInfo, offset: float):
        self.client, self.info, self.offset = client, info, offset
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._renew_loop, name="asstctl-lock-renewal", daemon=True)
        self.thread.start()

    def __enter__(self) -> "Lock":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()

    def _renew_loop(self) -> None:
        while not self.stopped.wait(RENEW_EVERY):
            try:
                self.renew()
            except Exception as error:  # noqa: BLE001 - a failed renewal must not stop the apply
                log.warning("could not renew the lock %s: %s", self.info.id, error)

    def renew(self) -> None:
        expires = int(time.time() + self.offset) + TTL
        metadata = {LOCK: self.info.project, HOLDER: self.info.holder, OPERATION: self.info.operation,
                    SINCE: self.info.since, EXPIRES: str(expires), PROCESS: self.info.process}
        backend_for(self.client).update_vector_store(self.info.id, {"metadata": metadata})
        self.info.expires = expires

    def release(self) -> None:
        if self.stopped.is_set():
            return
        self.stopped.set()
        self.thread.join(timeout=5)
        try:
            delete_lock(self.client, self.info.id)
        except Exception as error:  # noqa: BLE001 - it expires by itself
            log.warning("could not remove the lock %s (it expires at %s): %s", self.info.id, iso(self.info.expires), error)


# --- force-unlock ------------------------------------------------------------------------------------------

def find_locks(client: Any, project: str, lock_id: str | None = None) -> list[LockInfo]:
    """The project's locks to remove: the one named ``lock_id`` (an error if it is not one), or all."""
    locks = list_locks(client, project)
    if lock_id is None:
        return locks
    found = [info for info in locks if info.id == lock_id]
    if not found:
        known = ", ".join(info.id for info in locks) or "there is none"
        raise LockError(f"{lock_id} is not a lock of project {project} on this target (its locks: {known})",
                        hint="Run `asstctl force-unlock` without an id to see them.")
    return found


def parse_duration(text: str) -> float:
    """``30s``, ``2m``, ``1h``, ``1m30s`` or plain seconds (``45``, ``0.5``) → seconds."""
    import re

    text = text.strip().lower()
    try:
        return float(text)
    except ValueError:
        pass
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h)", text)
    if not parts or "".join(number + unit for number, unit in parts) != text:
        raise ValueError(f"`{text}` is not a duration: use e.g. 30s, 2m, 1h or 1m30s")
    scale = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    return sum(float(number) * scale[unit] for number, unit in parts)
