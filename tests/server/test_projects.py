"""Projects and keys (issue 26): each project's key sees only its project's objects, on every route and
on each store; the admin key manages projects and keys in the shapes of OpenAI's Administration API
(every answer is checked against the OpenAPI document); `--api-key` is the default project's key;
a database from before projects keeps its objects in the default project.

One server per store for the module (two projects, their objects made once); each test then probes
from the other project's side. The admin side is the SDK's own Administration API client."""

from __future__ import annotations

import sqlite3
import time

import openai
import pytest

from asstctl.server.embedded import start_server
from asstctl.server.projects import key_hash
from asstctl.server.store import SQLiteStore
from asstctl.server.store.scope import DEFAULT_PROJECT, scoped
from asstctl.server.store.sqlite import MIGRATIONS
from tests.conftest import make_client
from tests.contract import ContractRecorder
from tests.retrieval.test_runs import ask, support_assistant

ADMIN = "admin-" + "a" * 32
DEFAULT_KEY = "default-" + "d" * 32


def admin_sdk(server, contract, key: str = ADMIN) -> openai.OpenAI:
    """The SDK as an Administration API client (``client.admin.organization``) with ``key`` as its admin key."""
    return openai.OpenAI(base_url=server.base_url, api_key="unused", admin_api_key=key, max_retries=0,
                         _strict_response_validation=True,
                         http_client=openai.DefaultHttpxClient(event_hooks={"response": [contract]}))


def new_key(admin: openai.OpenAI, project_id: str, name: str = "app") -> str:
    return admin.admin.organization.projects.service_accounts.create(project_id, name=name).api_key.value


def sdk(server, contract, key: str) -> openai.OpenAI:
    server_with_key = type("Keyed", (), {"base_url": server.base_url, "api_key": key})
    return make_client(server_with_key, contract)


class World:
    """Two projects on one server; project A's objects of every type."""

    def __init__(self, server, contract):
        self.server, self.admin = server, admin_sdk(server, contract)
        self.org = self.admin.admin.organization
        self.a_id = self.org.projects.create(name="alpha").id
        self.b_id = self.org.projects.create(name="beta").id
        self.a = sdk(server, contract, new_key(self.admin, self.a_id))
        self.b = sdk(server, contract, new_key(self.admin, self.b_id))
        self.default = sdk(server, contract, DEFAULT_KEY)
        a = self.a
        self.assistant, self.file, _ = support_assistant(a)
        self.store_id = self.assistant.tool_resources.file_search.vector_store_ids[0]
        self.run, self.steps, self.reply = ask(a, self.assistant, "When do I get my refund?", poll_interval_ms=20)
        self.thread_id = self.run.thread_id
        self.batch = a.vector_stores.file_batches.create_and_poll(vector_store_id=self.store_id, file_ids=[self.file.id],
                                                                  poll_interval_ms=20)


@pytest.fixture(scope="module", params=["sqlite", "postgres"])  # the scoping SQL runs on both databases
def world(request):
    contract = ContractRecorder()
    schema = None
    if request.param == "postgres":
        cluster = request.getfixturevalue("postgres_cluster")
        schema = "projects_isolation"
        db = cluster.create_schema(schema)
    else:
        db = ":memory:"
    with start_server(db, api_key=DEFAULT_KEY, admin_key=ADMIN) as server:
        built = World(server, contract)
        yield built
        for client in (built.a, built.b, built.default, built.admin):
            client.close()
    if schema:
        cluster.drop_schema(schema)
    assert not contract.problems, "\n".join(contract.problems)


def missing(call, *args, **kwargs) -> None:
    with pytest.raises(openai.NotFoundError):
        call(*args, **kwargs)


@pytest.mark.parametrize("who", ["b", "default"])
def test_another_project_gets_404_for_every_object(world, who):
    other, w = getattr(world, who), world
    beta = other.beta
    missing(beta.assistants.retrieve, w.assistant.id)
    missing(beta.assistants.update, w.assistant.id, name="taken")
    missing(beta.assistants.delete, w.assistant.id)
    missing(beta.threads.retrieve, w.thread_id)
    missing(beta.threads.update, w.thread_id, metadata={"k": "v"})
    missing(beta.threads.delete, w.thread_id)
    missing(beta.threads.messages.list, thread_id=w.thread_id)
    missing(beta.threads.messages.retrieve, w.reply.id, thread_id=w.thread_id)
    missing(beta.threads.messages.create, thread_id=w.thread_id, role="user", content="hi")
    missing(beta.threads.messages.update, w.reply.id, thread_id=w.thread_id, metadata={"k": "v"})
    missing(beta.threads.messages.delete, w.reply.id, thread_id=w.thread_id)
    missing(beta.threads.runs.list, thread_id=w.thread_id)
    missing(beta.threads.runs.retrieve, w.run.id, thread_id=w.thread_id)
    missing(beta.threads.runs.cancel, w.run.id, thread_id=w.thread_id)
    missing(beta.threads.runs.create, thread_id=w.thread_id, assistant_id=w.assistant.id)
    missing(beta.threads.runs.update, w.run.id, thread_id=w.thread_id, metadata={"k": "v"})
    missing(beta.threads.runs.submit_tool_outputs, w.run.id, thread_id=w.thread_id, tool_outputs=[])
    missing(beta.threads.runs.steps.list, w.run.id, thread_id=w.thread_id)
    missing(beta.threads.runs.steps.retrieve, w.steps[0].id, thread_id=w.thread_id, run_id=w.run.id)
    missing(other.files.retrieve, w.file.id)
    missing(other.files.content, w.file.id)
    missing(other.files.delete, w.file.id)
    missing(other.vector_stores.retrieve, w.store_id)
    missing(other.vector_stores.update, w.store_id, name="taken")
    missing(other.vector_stores.search, w.store_id, query="refund")
    missing(other.vector_stores.files.list, vector_store_id=w.store_id)
    missing(other.vector_stores.files.retrieve, w.file.id, vector_store_id=w.store_id)
    missing(other.vector_stores.file_batches.retrieve, w.batch.id, vector_store_id=w.store_id)
    missing(other.vector_stores.file_batches.list_files, w.batch.id, vector_store_id=w.store_id)
    missing(other.vector_stores.file_batches.cancel, w.batch.id, vector_store_id=w.store_id)
    missing(other.vector_stores.files.update, w.file.id, vector_store_id=w.store_id, attributes={"k": "v"})
    missing(other.vector_stores.files.content, w.file.id, vector_store_id=w.store_id)
    missing(other.vector_stores.file_batches.create, vector_store_id=w.store_id, file_ids=[w.file.id])
    missing(other.vector_stores.files.delete, w.file.id, vector_store_id=w.store_id)
    missing(other.vector_stores.delete, w.store_id)


def test_another_project_cannot_use_the_objects_in_its_own(world):
    b = world.b
    missing(b.beta.threads.create_and_run, assistant_id=world.assistant.id)
    missing(b.vector_stores.create, file_ids=[world.file.id])
    own = b.vector_stores.create(name="own")
    missing(b.vector_stores.files.create, vector_store_id=own.id, file_id=world.file.id)
    refused(b.beta.assistants.create, world.store_id, model="gpt-4o", tools=[{"type": "file_search"}],
            tool_resources={"file_search": {"vector_store_ids": [world.store_id]}})
    thread = b.beta.threads.create()
    missing(b.beta.threads.runs.create, thread_id=thread.id, assistant_id=world.assistant.id)
    for file_id in (world.file.id, "file-nonexistent"):  # code_interpreter's files are checked as file_search's
        code = [{"file_id": file_id, "tools": [{"type": "code_interpreter"}]}]
        missing(b.beta.threads.messages.create, thread_id=thread.id, role="user", content="plot it", attachments=code)
        missing(b.beta.threads.create, messages=[{"role": "user", "content": "plot it", "attachments": code}])
    assert not b.beta.threads.messages.list(thread.id).data
    # a thread's own file_search store, and a batch of files, must be the project's too
    store = {"file_search": {"vector_store_ids": [world.store_id]}}
    refused(b.beta.threads.create, world.store_id, tool_resources=store)
    refused(b.beta.threads.update, world.store_id, thread.id, tool_resources=store)
    missing(b.vector_stores.file_batches.create, vector_store_id=own.id, file_ids=[world.file.id])
    assert b.vector_stores.retrieve(own.id).file_counts.total == 0
    assert b.beta.threads.retrieve(thread.id).tool_resources.file_search is None
    check_references_to_a_file(b, world, thread.id)


def refused(call, foreign: str, *args, **kwargs) -> None:
    """``call`` naming another project's object (``foreign``, an id somewhere in its arguments) is a 404 with
    the very message of the same call naming an id that exists nowhere: nothing tells the two apart."""
    fake = foreign[:foreign.index("_" if foreign.startswith(("asst_", "thread_", "vs_")) else "-") + 1] + "0" * 24

    def swapped(value):
        if isinstance(value, dict):
            return {k: swapped(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return type(value)(swapped(v) for v in value)
        return fake if value == foreign else value

    with pytest.raises(openai.NotFoundError) as other:
        call(*args, **kwargs)
    with pytest.raises(openai.NotFoundError) as nowhere:
        call(*swapped(args), **swapped(kwargs))
    assert other.value.message.replace(foreign, fake) == nowhere.value.message


def check_references_to_a_file(b, world, thread_id: str) -> None:
    """Every other place a request names a file or a vector store: the other project's is never taken."""
    mine = b.files.create(file=("notes.txt", b"beta's notes"), purpose="assistants")
    missing(b.vector_stores.files.create, vector_store_id=world.store_id, file_id=mine.id)  # into A's store
    code = {"code_interpreter": {"file_ids": [world.file.id]}}
    helper = {"file_search": {"vector_stores": [{"file_ids": [world.file.id]}]}}  # a store made from A's file
    for resources in (code, helper):
        refused(b.beta.assistants.create, world.file.id, model="gpt-4o",
                tools=[{"type": "code_interpreter"}, {"type": "file_search"}], tool_resources=resources)
        refused(b.beta.threads.create, world.file.id, tool_resources=resources)
    assistant = b.beta.assistants.create(model="gpt-4o", tools=[{"type": "code_interpreter"}])
    refused(b.beta.assistants.update, world.file.id, assistant.id, tool_resources=code)
    refused(b.beta.threads.create_and_run, world.file.id, assistant_id=assistant.id, tool_resources=code)
    searched = [{"file_id": world.file.id, "tools": [{"type": "file_search"}]}]
    refused(b.beta.threads.messages.create, world.file.id, thread_id=thread_id, role="user", content="find it",
            attachments=searched)
    refused(b.beta.threads.runs.create, world.file.id, thread_id=thread_id, assistant_id=assistant.id,
            additional_messages=[{"role": "user", "content": "find it", "attachments": searched}])
    assert world.file.id not in b.beta.assistants.retrieve(assistant.id).model_dump_json()
    b.beta.assistants.delete(assistant.id)
    b.files.delete(mine.id)
    assert b.beta.assistants.list(limit=100).data == []  # none of the refused creates made one
    assert not b.beta.threads.messages.list(thread_id).data and not b.beta.threads.runs.list(thread_id).data
    assert {s.name for s in b.vector_stores.list(limit=100)} == {"own"}  # no store made from A's file


def test_lists_and_their_filters_show_only_the_own_project(world):
    b, a = world.b, world.a
    mine = b.beta.assistants.create(model="gpt-4o", name="beta's")
    assert [x.id for x in b.beta.assistants.list(limit=100)] == [mine.id]
    assert world.assistant.id not in {x.id for x in world.default.beta.assistants.list(limit=100)}
    assert [f.id for f in b.files.list(purpose="assistants")] == []
    assert world.file.id in {f.id for f in a.files.list(purpose="assistants")}
    assert world.store_id not in {s.id for s in b.vector_stores.list(limit=100)}
    # a cursor from the other project is unknown here: an empty page, not the other project's objects
    assert b.beta.assistants.list(after=world.assistant.id).data == []
    assert [m.id for m in a.beta.threads.messages.list(world.thread_id, run_id=world.run.id)] == [world.reply.id]


def test_the_owner_still_sees_everything(world):
    a = world.a
    assert a.beta.assistants.retrieve(world.assistant.id).id == world.assistant.id
    assert a.files.content(world.file.id).read().startswith(b"# Returns")
    assert a.vector_stores.search(world.store_id, query="refund").data
    assert len(a.beta.threads.runs.steps.list(world.run.id, thread_id=world.thread_id).data) == 2


def test_the_admin_api_manages_projects_and_keys(world):
    org = world.org
    names = {p.id: p.name for p in org.projects.list(limit=100)}
    assert names[world.a_id] == "alpha" and names[DEFAULT_PROJECT] == "Default project"
    made = org.projects.service_accounts.create(world.a_id, name="cron")
    value, key_id = made.api_key.value, made.api_key.id
    stored = "\n".join(body for (body,) in world.server.state.store._fetch("SELECT body FROM objects"))
    assert key_hash(value) in stored and value not in stored and value[-12:] not in stored  # stored hashed only
    keys = org.projects.api_keys.list(world.a_id).data
    shown = next(k for k in keys if k.id == key_id)
    assert shown.name == "cron" and shown.owner.service_account.id == made.id
    assert value not in str(keys) and value[-4:] not in shown.redacted_value
    assert "hash" not in shown.model_dump() and "project_id" not in shown.model_dump()
    assert shown.last_used_at is None
    with sdk(world.server, ContractRecorder(), value) as cron:
        assert cron.beta.assistants.retrieve(world.assistant.id).id == world.assistant.id
        deadline = time.monotonic() + 10  # written after the response (approximate, as OpenAI's is)
        while (used := org.projects.api_keys.retrieve(key_id, project_id=world.a_id).last_used_at) is None:
            assert time.monotonic() < deadline, "last_used_at was never written"
            time.sleep(0.02)
        with scoped(None):  # as if written 30 s ago: a second request within the minute writes nothing
            world.server.state.store.update("api_key", key_id, lambda k: k.update(last_used_at=used - 30), world.a_id)
        assert cron.beta.assistants.retrieve(world.assistant.id).id == world.assistant.id
        time.sleep(0.3)  # (a write would come right after the response)
        assert org.projects.api_keys.retrieve(key_id, project_id=world.a_id).last_used_at == used - 30
        deleted = org.projects.api_keys.delete(key_id, project_id=world.a_id)
        assert (deleted.id, deleted.deleted) == (key_id, True)
        with pytest.raises(openai.AuthenticationError):
            cron.beta.assistants.retrieve(world.assistant.id)
    with pytest.raises(openai.NotFoundError):
        org.projects.api_keys.retrieve(key_id, project_id=world.a_id)
    assert org.projects.update(world.a_id, name="alpha 2").name == "alpha 2"
    assert made.id in {a.id for a in org.projects.service_accounts.list(world.a_id)}
    other = org.projects.service_accounts.create(world.a_id, name="batch")
    assert org.projects.service_accounts.retrieve(other.id, project_id=world.a_id).name == "batch"
    renamed = org.projects.service_accounts.update(other.id, project_id=world.a_id, name="batch 2", role="owner")
    assert (renamed.name, renamed.role) == ("batch 2", "owner")
    second = org.projects.service_accounts.api_keys.create(other.id, project_id=world.a_id, name="second")
    assert second.name == "second" and second.value.startswith("sk-asst-") and second.value != other.api_key.value
    owned = [k for k in org.projects.api_keys.list(world.a_id, limit=100) if k.owner.service_account.id == other.id]
    assert {(k.name, k.owner.service_account.name, k.owner.service_account.role) for k in owned} == {
        ("batch", "batch 2", "owner"), ("second", "batch 2", "owner")}
    for bad in ({"role": "admin"}, {"name": ""}, {"bogus": 1}):
        with pytest.raises(openai.BadRequestError):
            org.projects.service_accounts.update(other.id, project_id=world.a_id, extra_body=bad)
    with pytest.raises(openai.BadRequestError, match="scopes"):
        org.projects.service_accounts.api_keys.create(other.id, project_id=world.a_id, scopes=["api.model.read"])
    missing(org.projects.service_accounts.api_keys.create, "svc_acct_nope", project_id=world.a_id)
    with sdk(world.server, ContractRecorder(), other.api_key.value) as batch, \
            sdk(world.server, ContractRecorder(), second.value) as batch2:
        batch.beta.assistants.list()
        assert batch2.beta.assistants.retrieve(world.assistant.id).id == world.assistant.id  # the same project
        assert org.projects.service_accounts.delete(other.id, project_id=world.a_id).deleted
        for client in (batch, batch2):
            with pytest.raises(openai.AuthenticationError):  # its keys went with it
                client.beta.assistants.list()


def test_archiving_a_project_stops_its_keys(world):
    org = world.org
    gamma = org.projects.create(name="gamma").id
    with sdk(world.server, ContractRecorder(), new_key(world.admin, gamma)) as client:
        client.beta.assistants.create(model="gpt-4o")
        archived = org.projects.archive(gamma)
        assert archived.status == "archived" and archived.archived_at
        with pytest.raises(openai.AuthenticationError):
            client.beta.assistants.list()
    with pytest.raises(openai.BadRequestError):
        org.projects.service_accounts.create(gamma, name="x")
    assert gamma not in {p.id for p in org.projects.list(limit=100)}
    assert gamma in {p.id for p in org.projects.list(limit=100, include_archived=True)}
    with pytest.raises(openai.BadRequestError, match="'maybe'") as refused:
        org.projects.list(extra_query={"include_archived": "maybe"})
    assert refused.value.param == "include_archived"
    assert {k.owner_project_access for k in org.projects.api_keys.list(gamma)} == {"inactive"}
    assert not org.projects.api_keys.list(gamma, owner_project_access="active").data
    assert len(org.projects.api_keys.list(gamma, owner_project_access="inactive").data) == 1
    assert len(org.projects.api_keys.list(gamma, owner_project_access="any").data) == 1
    with pytest.raises(openai.BadRequestError, match="'all'") as refused:
        org.projects.api_keys.list(gamma, extra_query={"owner_project_access": "all"})
    assert refused.value.param == "owner_project_access"


def test_keys_stay_in_their_lane(world, contract):
    with admin_sdk(world.server, contract, key=world.a.api_key) as project_key:
        with pytest.raises(openai.PermissionDeniedError, match="admin key"):
            project_key.admin.organization.projects.list()
    with sdk(world.server, contract, ADMIN) as admin_as_app, pytest.raises(openai.PermissionDeniedError):
        admin_as_app.beta.assistants.list()
    with admin_sdk(world.server, contract, key="sk-asst-" + "0" * 48) as wrong, pytest.raises(openai.AuthenticationError):
        wrong.admin.organization.projects.list()
    with pytest.raises(openai.BadRequestError, match="256"):
        world.org.projects.create(name="x" * 300)
    with pytest.raises(openai.BadRequestError, match="title"):
        world.org.projects.create(name="x", extra_body={"title": "x"})
    with pytest.raises(openai.BadRequestError, match="its own database") as residency:  # never silently dropped
        world.org.projects.create(name="eu", residency="EU_STORAGE_PROCESSING")
    assert residency.value.body["param"] == "residency"
    assert "eu" not in {p.name for p in world.org.projects.list(limit=100)}
    delta = world.org.projects.create(name="delta", external_key_id="kms-1")
    assert world.org.projects.retrieve(delta.id).external_key_id == "kms-1"
    updated = world.org.projects.update(delta.id, external_key_id="kms-2")  # no name: it stays
    assert (updated.name, updated.external_key_id) == ("delta", "kms-2")
    cleared = world.org.projects.update(delta.id, external_key_id=None, name="delta 2")
    assert (cleared.name, cleared.external_key_id) == ("delta 2", None)
    with pytest.raises(openai.BadRequestError, match="external_key_id"):
        world.org.projects.update(delta.id, external_key_id="k" * 300)
    with pytest.raises(openai.NotFoundError):
        world.org.projects.retrieve("proj_nope")


def test_a_database_from_before_projects_keeps_its_objects_in_the_default_project(tmp_path, contract):
    path = tmp_path / "old.sqlite3"
    db = sqlite3.connect(path)
    for number, script in enumerate(MIGRATIONS[:2], start=1):  # the schema before projects
        db.executescript(script)
        db.execute(f"PRAGMA user_version = {number}")
    db.execute("INSERT INTO objects (kind, parent, id, created_at, body) VALUES ('assistant', '', 'asst_old', 1, "
               "'{\"id\": \"asst_old\", \"object\": \"assistant\", \"created_at\": 1, \"name\": \"old\", \"model\": "
               "\"gpt-4o\", \"description\": null, \"instructions\": null, \"tools\": [], \"metadata\": {}, "
               "\"top_p\": 1.0, \"temperature\": 1.0, \"response_format\": \"auto\", \"tool_resources\": {}}')")
    db.commit()
    db.close()
    store = SQLiteStore(path)  # migrates
    assert store.project_of("assistant", "asst_old") == DEFAULT_PROJECT
    store.close()
    with start_server(str(path), api_key=DEFAULT_KEY, admin_key=ADMIN) as server, admin_sdk(server, contract) as admin:
        with sdk(server, contract, DEFAULT_KEY) as default:
            assert default.beta.assistants.retrieve("asst_old").name == "old"
        key = new_key(admin, admin.admin.organization.projects.create(name="new").id)
        with sdk(server, contract, key) as other:
            missing(other.beta.assistants.retrieve, "asst_old")
