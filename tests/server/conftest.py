"""The server suite runs on both stores: every test that uses ``server`` (and so ``client``)
runs once on SQLite (``:memory:``) and once on PostgreSQL (a fresh schema of the session's cluster).

Tests of the run executor start their own servers with ``scripted``: the real upstream engine
talking over loopback to the scripted Chat Completions upstream (``tests/upstream.py``, the one
stand-in for the model), on ``store_db`` (a SQLite file or a fresh PostgreSQL schema: both outlive
a server, so a restart finds the runs it left).

Modules whose tests check request validation, not what is stored (``SQLITE_ONLY``), run on
SQLite only: on PostgreSQL they would repeat the same checks at twice the cost."""

from __future__ import annotations

import pytest

from asstctl.server.embedded import start_server
from asstctl.server.engine.config import UpstreamConfig
from asstctl.server.engine.upstream import RetryPolicy, UpstreamEngine
from tests.conftest import make_client
from tests.upstream import ScriptedUpstream

KEY_ENV = "ASSTCTL_TEST_UPSTREAM_KEY"
FAST = RetryPolicy(retries=3, backoff=0.01, max_wait=2.0)

SQLITE_ONLY = frozenset({"test_limits", "test_faults"})


@pytest.hookimpl(tryfirst=True)  # the marker must be there before the fixture params are applied
def pytest_generate_tests(metafunc):
    if "server" in metafunc.fixturenames and metafunc.module.__name__.rsplit(".", 1)[-1] in SQLITE_ONLY:
        metafunc.definition.add_marker(pytest.mark.parametrize("server", ["sqlite"], indirect=True))


@pytest.fixture(params=["sqlite", "postgres"])
def server(request):
    db = request.getfixturevalue("postgres_url") if request.param == "postgres" else ":memory:"
    with start_server(db) as running:
        yield running


@pytest.fixture(params=["sqlite", "postgres"])
def store_db(request, tmp_path):
    if request.param == "postgres":
        return request.getfixturevalue("postgres_url")
    return str(tmp_path / "server.sqlite3")


@pytest.fixture
def upstream(monkeypatch):
    with ScriptedUpstream() as running:
        monkeypatch.setenv(KEY_ENV, running.key)
        yield running
    assert not running.problems, "the scripted upstream saw schema violations:\n" + "\n".join(running.problems)


class Servers:
    """Servers on one database whose engine is the upstream engine on the scripted upstream."""

    def __init__(self, db: str, upstream: ScriptedUpstream, contract):
        self.db, self.upstream, self.contract = db, upstream, contract
        self.opened: list = []

    def start(self, **options):
        """``(sdk, server)``; a server started again on the database finds what the earlier ones left."""
        engine = UpstreamEngine(UpstreamConfig(url=self.upstream.base_url, api_key_env=KEY_ENV), retry=FAST)
        server = start_server(self.db, engine=engine, **options)
        sdk = make_client(server, self.contract)
        self.opened.append((server, sdk))
        return sdk, server

    def stop(self, server) -> None:
        for pair in [p for p in self.opened if p[0] is server]:
            self.opened.remove(pair)
            pair[1].close()
            server.stop()

    def close(self) -> None:
        for server, _ in list(self.opened):
            self.stop(server)


@pytest.fixture
def scripted(store_db, upstream, contract):
    """:class:`Servers` on ``store_db`` (queue the model's answers with ``upstream.queue``)."""
    servers = Servers(store_db, upstream, contract)
    yield servers
    servers.close()
