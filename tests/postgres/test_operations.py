"""Projects and probes across PostgreSQL replicas (issue 26): a key revoked (or a project archived) on
one replica fails at once on the others; `/readyz` turns unhealthy when the database stops, while
`/healthz` still answers; the migration brings an existing database's objects into the default project."""

from __future__ import annotations

import os
import time

import httpx2 as httpx
import openai
import pytest

from asstctl.server.embedded import start_server
from asstctl.server.store import open_store
from asstctl.server.store.pg_schema import MIGRATIONS, migrate
from asstctl.server.store.scope import DEFAULT_PROJECT
from tests import pg_cluster
from tests.server.test_projects import ADMIN, admin_sdk, sdk


def test_a_revoked_key_fails_at_once_on_every_replica(postgres_url, contract):
    """Replica two has seen the keys (it checks them with each request's first statement, not before it):
    each way that check is made fails at once, as does the lookup of a key it has not seen."""
    with start_server(postgres_url, admin_key=ADMIN) as one, start_server(postgres_url, admin_key=ADMIN) as two, \
            admin_sdk(one, contract) as admin, admin_sdk(two, contract) as admin_two:
        projects = admin.admin.organization.projects
        project = projects.create(name="shop").id
        made = projects.service_accounts.create(project, name="web").api_key
        other = projects.service_accounts.create(project, name="cron").api_key
        third, fourth = (projects.service_accounts.create(project, name=name).api_key for name in ("batch", "ops"))
        on_two, cron_on_two, batch_on_two, ops_on_two = (sdk(two, contract, key.value) for key in (made, other, third, fourth))
        assistant = on_two.beta.assistants.create(model="gpt-4o")
        assert cron_on_two.beta.assistants.retrieve(assistant.id).id == assistant.id  # same project, other key
        assert [a.id for a in batch_on_two.beta.assistants.list()] == [assistant.id]
        assert ops_on_two.beta.assistants.retrieve(assistant.id).id == assistant.id
        projects.api_keys.delete(made.id, project_id=project)
        with pytest.raises(openai.AuthenticationError):  # no wait: the next request on the other replica
            on_two.beta.assistants.retrieve(assistant.id)  # (the check and the read: one statement)
        with pytest.raises(openai.AuthenticationError):  # (now looked up first: forgotten on failing)
            on_two.beta.assistants.list()
        assert cron_on_two.beta.assistants.retrieve(assistant.id).id == assistant.id
        admin_two.admin.organization.projects.archive(project)
        with pytest.raises(openai.AuthenticationError):  # (a route that reads nothing: checked as it answers)
            cron_on_two.models.list()
        with pytest.raises(openai.AuthenticationError):  # (a write: checked before its transaction)
            batch_on_two.beta.assistants.create(model="gpt-4o")
        refused = httpx.get(f"{two.base_url}/assistants", headers={"Authorization": f"Bearer {fourth.value}"})
        assert refused.status_code == 401  # (refused anyway, for its missing beta header: the key's 401 first)
        with sdk(one, contract, other.value) as cron_on_one, pytest.raises(openai.AuthenticationError):
            cron_on_one.beta.assistants.list()
        assert [a["id"] for a in two.state.store.all("assistant")] == [assistant.id]  # the refused write stored nothing
        for client in (on_two, cron_on_two, batch_on_two, ops_on_two):
            client.close()


def test_existing_objects_move_to_the_default_project(postgres_url):
    import psycopg

    with psycopg.connect(postgres_url, autocommit=True) as conn:
        for version, script in enumerate(MIGRATIONS[:2], start=1):  # a database from before projects
            conn.execute(script)
        conn.execute("CREATE TABLE asstctl_schema (version integer PRIMARY KEY, applied_at timestamptz "
                     "NOT NULL DEFAULT now())")
        conn.execute("INSERT INTO asstctl_schema (version) VALUES (1), (2)")
        conn.execute("INSERT INTO objects (kind, parent, id, created_at, body) VALUES "
                     "('thread', '', 'thread_old', 1, '{\"id\": \"thread_old\"}')")
        assert migrate(conn) == 2
    store = open_store(postgres_url)
    try:
        assert store.project_of("thread", "thread_old") == DEFAULT_PROJECT
    finally:
        store.close()


@pytest.fixture
def own_cluster():
    """A cluster of this test's own, to stop (the session's cluster serves every other test)."""
    why = pg_cluster.missing()
    if why is not None:
        if os.environ.get(pg_cluster.REQUIRE_ENV) == "1":
            pytest.fail(f"{pg_cluster.REQUIRE_ENV}=1 but {why}")
        pytest.skip(why)
    cluster = pg_cluster.Cluster().start()
    yield cluster
    try:
        cluster.stop()
    except RuntimeError:  # the test stopped it already (stop() removes its files all the same)
        pass


def test_readyz_turns_unhealthy_when_the_database_stops(own_cluster):
    with start_server(own_cluster.create_schema("probe"), api_key="k" * 32) as server:
        root = server.base_url.removesuffix("/v1")
        assert httpx.get(root + "/readyz").status_code == 200
        own_cluster._run(str(own_cluster.bin / "pg_ctl"), "-D", str(own_cluster.data), "-m", "immediate", "-w", "stop")
        started = time.monotonic()
        answer = httpx.get(root + "/readyz", timeout=10)
        assert answer.status_code == 503 and answer.json()["status"] == "unavailable"
        assert "database" in answer.json()["detail"]
        assert time.monotonic() - started < 5  # bounded: a probe never hangs on the database
        assert httpx.get(root + "/healthz").status_code == 200  # the process itself still answers
        started = time.monotonic()  # an API request: one clear, retryable 503, not a 500 and a traceback
        answer = httpx.get(server.base_url + "/assistants", timeout=60,
                           headers={"Authorization": "Bearer " + "k" * 32, "OpenAI-Beta": "assistants=v2"})
        assert answer.status_code == 503 and answer.json()["error"]["code"] == "database_unavailable", answer.text
        assert time.monotonic() - started < 15  # the pool's connection timeout (10 s) at most
