"""Projects and their API keys: who a request comes from, and which project's objects it sees.

Every stored object belongs to one project (``asstctl.server.store.scope``). A caller is one of:

- a **project key** (``sk-asst-...``, made by ``POST /v1/organization/projects/{id}/service_accounts`` or
  ``asstctl serve keys create``): sees only its project's objects, a 404 for anything else;
- the server's ``--api-key``: the single key of the default project (``proj_default``, which also holds
  everything stored before projects existed);
- the **admin key** (``--admin-key-env VAR``): manages projects and keys through the shapes of OpenAI's
  Administration API (``/v1/organization/...``) and reads ``/metrics``; it sees no assistant or thread.

Keys are stored hashed (SHA-256 of a 192-bit random key); a key's id is derived from its hash, so a
request costs one indexed read, and a revoked key fails on the next request on every replica. On
PostgreSQL a key this replica has seen before (its id and project: facts that never change) is not
looked up before the request: whether it is still live is checked with the request's first statement
(``KeyCheck``, ``asstctl.server.store.pg_guard``), still on every request, at no round trip of its own.
``last_used_at`` is written after the response, at most once a minute per key and replica. Nothing
here prints or logs a key, or any part of one. Projects, service accounts and keys are documents of the
store (kinds ``project``, ``service_account``, ``api_key``; the last two under their project).
"""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
import weakref
from dataclasses import dataclass, field
from typing import Any

from asstctl.server.errors import APIError, invalid
from asstctl.server.http import now
from asstctl.server.store.scope import DEFAULT_PROJECT, KEY_CHECK, scoped

log = logging.getLogger("asstctl.server")

KEY_PREFIX = "sk-asst-"
REDACTED = KEY_PREFIX + "****"  # what the API shows of a key: never a fragment of it
MAX_NAME = 256
LAST_USED_EVERY = 60  # seconds between two writes of a key's last_used_at
MAX_KNOWN = 10_000  # keys a replica remembers (hash -> project); forgotten all at once beyond
DEFAULT_NAME = "Default project"


@dataclass(frozen=True)
class Caller:
    """Who sent a request: a project's key (``project``) or the admin key (``admin``)."""

    project: str | None
    admin: bool = False
    key_id: str | None = None
    check: "KeyCheck | None" = field(default=None, compare=False)  # a project key's: whether it is live


ADMIN = Caller(None, admin=True)
DEFAULT = Caller(DEFAULT_PROJECT)
LOOKUP: Any = object()  # ``authenticate(lookup=False)``: a project key this replica must look up first
# (not a Caller: a Caller of project None would read every project's objects)
_KNOWN: "weakref.WeakKeyDictionary[Any, dict[str, str]]" = weakref.WeakKeyDictionary()  # store -> {hash: project}
_TOUCHED: "weakref.WeakKeyDictionary[Any, dict[str, float]]" = weakref.WeakKeyDictionary()  # store -> {key id: when}


class KeyCheck:
    """A project key of a request: ``statement`` reads its row, ``judge(rows)`` raises the request's 401
    unless it is live. Run by the store with the request's first statement (``pg_guard``), or by
    ``project_key`` (passed at once)."""

    def __init__(self, store, hashed: str, project: str, record: dict[str, Any] | None = None):
        self.store, self.hashed, self.record, self.passed = store, hashed, record, record is not None
        self.statement = ("SELECT body FROM objects WHERE kind = 'api_key' AND parent = %s AND id = %s",
                          (project, key_id_of(hashed)))

    def judge(self, rows: list[tuple]) -> None:
        record = json.loads(rows[0][0]) if rows else None
        if not _live(record, self.hashed):
            _KNOWN.get(self.store, {}).pop(self.hashed, None)
            raise refused()
        self.record, self.passed = record, True

    def touch_due(self) -> bool:
        """Its ``last_used_at`` is a minute old and no write of it started here since: the caller writes it."""
        if self.record is None:
            return False
        touched = _TOUCHED.setdefault(self.store, {})
        if now() - max(self.record.get("last_used_at") or 0, touched.get(self.record["id"], 0)) < LAST_USED_EVERY:
            return False
        if len(touched) >= MAX_KNOWN:
            touched.clear()
        touched[self.record["id"]] = now()
        return True


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def key_id_of(hashed: str) -> str:
    return "key_" + hashed[:24]


def authenticate(store, api_key: str | None, admin_key: str | None, authorization: str,
                 lookup: bool = True) -> Caller | APIError:
    """The caller behind an ``Authorization`` header, or the 401 to answer (never echoing a key).

    Without any server key (loopback only) every request is the default project's, except that a
    project key still selects its project. ``lookup=False``: no store access (on the event loop);
    ``LOOKUP`` for a project key that needs one."""
    open_server = not api_key and not admin_key
    scheme, _, presented = authorization.partition(" ")
    presented = presented.strip() if scheme.lower() == "bearer" else ""
    if not authorization and not open_server:
        return APIError(
            401,
            "You didn't provide an API key. You need to provide your API key in an Authorization header "
            "using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
        )
    if api_key and _same(presented, api_key):
        return DEFAULT
    if admin_key and _same(presented, admin_key):
        return ADMIN
    if presented.startswith(KEY_PREFIX) and len(presented) < 200:
        found = project_key(store, presented, lookup)
        if found is not None:
            return found
    elif open_server:
        return DEFAULT
    return refused()


def refused() -> APIError:
    return APIError(
        401,
        "Incorrect API key provided. Use a key of this asstctl server's project (or the key it was started "
        "with: ASSTCTL_SERVER_API_KEY or --api-key); a revoked key or one of an archived project no longer works.",
        code="invalid_api_key",
    )


def _same(presented: str, key: str) -> bool:
    return secrets.compare_digest(presented.encode("utf-8", "surrogatepass"), key.encode())


def project_key(store, presented: str, lookup: bool = True) -> Caller | None:
    """The project of a live project key (one read, unscoped), or None. ``lookup=False``: a key known
    here, on a store that checks keys with the request's first statement (``CHECKS_KEYS``), its caller
    at once, its ``check`` left to that statement; else ``LOOKUP``."""
    hashed = key_hash(presented)
    checks = getattr(store, "CHECKS_KEYS", False)
    if not lookup:
        known = _KNOWN.get(store, {}).get(hashed) if checks else None
        return LOOKUP if known is None else Caller(known, key_id=key_id_of(hashed), check=KeyCheck(store, hashed, known))
    with scoped(None):
        record = store.get("api_key", key_id_of(hashed), None)
    if not _live(record, hashed):
        _KNOWN.get(store, {}).pop(hashed, None)
        return None
    if checks:
        remembered = _KNOWN.setdefault(store, {})
        if len(remembered) >= MAX_KNOWN:
            remembered.clear()
        remembered[hashed] = record["project_id"]
    return Caller(record["project_id"], key_id=record["id"], check=KeyCheck(store, hashed, record["project_id"], record))


def _live(record: dict[str, Any] | None, hashed: str) -> bool:
    return (record is not None and secrets.compare_digest(record.get("hash", ""), hashed)
            and record.get("owner_project_access") == "active")


def settle(store, check: KeyCheck) -> APIError | None:
    """The request's key check if no statement of the request ran it (the 401 to answer instead, or None)."""
    token = KEY_CHECK.set(check)  # (whatever context the response was sent from)
    try:
        with store.sql():  # a connection from the pool: its first statement is the check
            pass
    except APIError as error:
        return error
    finally:
        KEY_CHECK.reset(token)
    return None if check.passed else refused()


def touch(store, record: dict[str, Any]) -> None:
    """``last_used_at``, written after the response (``KeyCheck.touch_due``), never failing anything."""
    def used(key: dict[str, Any]) -> None:
        key["last_used_at"] = now()

    try:
        with scoped(None):
            store.update("api_key", record["id"], used, record["project_id"])
    except Exception as error:  # noqa: BLE001 - a busy or read-only database: nothing else is affected
        log.warning("could not record the use of API key %s (%s)", record["id"], type(error).__name__)


# -- projects ---------------------------------------------------------------------------------------
def ensure_default(store) -> None:
    """The default project exists (it owns ``--api-key`` and everything stored before projects)."""
    with scoped(None), store.transaction():
        if store.get("project", DEFAULT_PROJECT, "") is None:
            store.insert("project", _project(DEFAULT_PROJECT, DEFAULT_NAME))


def _project(project_id: str, name: str) -> dict[str, Any]:
    return {"id": project_id, "object": "organization.project", "name": name, "created_at": now(),
            "archived_at": None, "status": "active"}


def check_name(body: dict[str, Any], what: str) -> str:
    name = body.get("name")
    if not isinstance(name, str) or not name.strip():
        raise invalid("name", f"Invalid 'name': give the {what} a non-empty name.", "invalid_type")
    if len(name) > MAX_NAME:
        raise invalid("name", f"Invalid 'name': at most {MAX_NAME} characters, got {len(name)}.", "string_above_max_length")
    return name


def check_project_body(body: dict[str, Any]) -> dict[str, Any]:
    """The changes a create or update of a project asks for: its ``name`` (on an update, when not null),
    its ``external_key_id`` (kept and shown, a string or null); ``residency`` is refused (this server keeps the
    data where its database is) unless null."""
    if body.get("residency") is not None:
        raise invalid("residency", "Invalid 'residency': this server keeps every project's data in its own database "
                      "(--db), wherever it runs; it sets no residency. Omit 'residency' (or send null).",
                      "unsupported_parameter")
    changes: dict[str, Any] = {}
    if body.get("name") is not None:
        changes["name"] = check_name(body, "project")
    if "external_key_id" in body:
        value = body["external_key_id"]
        if value is not None and not isinstance(value, str):
            raise invalid("external_key_id", "Invalid 'external_key_id': a string or null.", "invalid_type")
        if value is not None and len(value) > MAX_NAME:
            raise invalid("external_key_id", f"Invalid 'external_key_id': at most {MAX_NAME} characters, got "
                          f"{len(value)}.", "string_above_max_length")
        changes["external_key_id"] = value
    return changes


def create_project(store, name: str, external_key_id: str | None = None) -> dict[str, Any]:
    project = _project("proj_" + secrets.token_hex(12), name)
    if external_key_id is not None:
        project["external_key_id"] = external_key_id
    with scoped(None):
        return store.insert("project", project)


def require_project(store, project_id: str) -> dict[str, Any]:
    with scoped(None):
        project = store.get("project", project_id, "")
    if project is None:
        raise APIError(404, f"No project found with id '{project_id}'.")
    return project


def rename_project(store, project_id: str, name: str) -> dict[str, Any]:
    return update_project(store, project_id, {"name": name})


def update_project(store, project_id: str, changes: dict[str, Any]) -> dict[str, Any]:
    """``changes`` (``check_project_body``): a name, an ``external_key_id`` (null: none)."""
    with scoped(None), store.transaction():
        project = require_project(store, project_id)
        project.update(changes)
        if project.get("external_key_id", 0) is None:
            del project["external_key_id"]
        return store.put("project", project) if changes else project


def archive_project(store, project_id: str) -> dict[str, Any]:
    """Archived: its keys stop working at once (objects stay, readable again by no key)."""
    if project_id == DEFAULT_PROJECT:
        raise invalid(None, "The default project cannot be archived: it holds the --api-key's objects.")
    with scoped(None), store.transaction():
        project = require_project(store, project_id)
        if project["status"] != "archived":
            project.update(status="archived", archived_at=now())
            store.put("project", project)
            for key in store.all("api_key", project_id):
                key["owner_project_access"] = "inactive"
                store.put("api_key", key, project_id)
        return project


def list_projects(store, *, limit: int, after: str | None, include_archived: bool):
    keep = None if include_archived else (lambda p: p.get("status") != "archived")
    with scoped(None):
        return store.page("project", "", limit=limit, order="asc", after=after, where=keep)


# -- service accounts and keys ----------------------------------------------------------------------
def create_service_account(store, project_id: str, name: str, with_key: bool = True) -> dict[str, Any]:
    """A service account of the project and (unless ``with_key`` is false) its API key, whose value
    appears in this answer only."""
    with scoped(None), store.transaction():
        project = require_project(store, project_id)
        if project["status"] == "archived":
            raise invalid(None, f"The project {project_id} is archived: it gets no new keys.")
        account = {"object": "organization.project.service_account", "id": "svc_acct_" + secrets.token_hex(12),
                   "name": name, "role": "member" if with_key else "none", "created_at": now()}
        store.insert("service_account", account, project_id)
        return dict(account, api_key=_new_key(store, project_id, account, name) if with_key else None)


def _new_key(store, project_id: str, account: dict[str, Any], name: str) -> dict[str, Any]:
    """A new key of the service account (inside the caller's transaction): the answer showing its value, once."""
    value = KEY_PREFIX + secrets.token_hex(24)
    hashed = key_hash(value)
    owner = {"type": "service_account", "service_account": {
        "id": account["id"], "name": account["name"], "created_at": account["created_at"], "role": account["role"]}}
    record = {"object": "organization.project.api_key", "id": key_id_of(hashed), "name": name,
              "redacted_value": REDACTED, "created_at": now(), "last_used_at": None,
              "owner_project_access": "active", "owner": owner, "project_id": project_id, "hash": hashed}
    store.insert("api_key", record, project_id)
    return {"object": "organization.project.service_account.api_key", "value": value, "name": name,
            "created_at": record["created_at"], "id": record["id"]}


def create_account_key(store, project_id: str, account_id: str, name: str | None) -> dict[str, Any]:
    """Another key of a service account (named after the account unless ``name``), shown once."""
    with scoped(None), store.transaction():
        account = require_service_account(store, project_id, account_id)
        if require_project(store, project_id)["status"] == "archived":
            raise invalid(None, f"The project {project_id} is archived: it gets no new keys.")
        return _new_key(store, project_id, account, name or account["name"])


def update_service_account(store, project_id: str, account_id: str, name: str | None,
                           role: str | None) -> dict[str, Any]:
    """A service account's new name or role; its keys' ``owner`` shows them too."""
    with scoped(None), store.transaction():
        account = require_service_account(store, project_id, account_id)
        account.update({k: v for k, v in (("name", name), ("role", role)) if v is not None})
        store.put("service_account", account, project_id)
        for key in store.all("api_key", project_id):
            if key["owner"].get("service_account", {}).get("id") == account_id:
                key["owner"]["service_account"].update(name=account["name"], role=account["role"])
                store.put("api_key", key, project_id)
        return account


def list_service_accounts(store, project_id: str, *, limit: int, after: str | None):
    require_project(store, project_id)
    with scoped(None):
        return store.page("service_account", project_id, limit=limit, order="asc", after=after)


def _require_in(store, kind: str, noun: str, project_id: str, id: str) -> dict[str, Any]:
    """A service account or key of the project, or the 404 naming both."""
    require_project(store, project_id)
    with scoped(None):
        found = store.get(kind, id, project_id)
    if found is None:
        raise APIError(404, f"No {noun} found with id '{id}' in project '{project_id}'.")
    return found


def require_service_account(store, project_id: str, account_id: str) -> dict[str, Any]:
    return _require_in(store, "service_account", "service account", project_id, account_id)


def delete_service_account(store, project_id: str, account_id: str) -> None:
    """The account and its keys (which stop working at once)."""
    with scoped(None), store.transaction():
        require_service_account(store, project_id, account_id)
        for key in store.all("api_key", project_id):
            if key["owner"].get("service_account", {}).get("id") == account_id:
                store.delete("api_key", key["id"], project_id)
        store.delete("service_account", account_id, project_id)


def shown_key(record: dict[str, Any]) -> dict[str, Any]:
    """The API's view of a stored key: without its hash or our bookkeeping."""
    return {k: v for k, v in record.items() if k not in ("hash", "project_id")}


def list_keys(store, project_id: str, *, limit: int, after: str | None, access: str | None = None):
    """``access``: ``active`` or ``inactive`` (its ``owner_project_access``), ``any`` or None: every key."""
    require_project(store, project_id)
    keep = (lambda k: k.get("owner_project_access") == access) if access in ("active", "inactive") else None
    with scoped(None):
        items, more = store.page("api_key", project_id, limit=limit, order="asc", after=after, where=keep)
    return [shown_key(item) for item in items], more


def require_key(store, project_id: str, key_id: str) -> dict[str, Any]:
    return _require_in(store, "api_key", "API key", project_id, key_id)


def revoke_key(store, project_id: str | None, key_id: str) -> bool:
    """Delete a key (``project_id`` None: whichever project it is in); True if it existed."""
    with scoped(None), store.transaction():
        if project_id is None:
            record = store.get("api_key", key_id, None)
            if record is None:
                return False
            project_id = record["project_id"]
        return store.delete("api_key", key_id, project_id)
