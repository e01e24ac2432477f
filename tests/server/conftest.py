"""The server suite runs on both stores: every test that uses ``server`` (and so ``client``)
runs once on SQLite (``:memory:``) and once on PostgreSQL (a fresh schema of the session's cluster).

Modules whose tests check request validation, not what is stored (``SQLITE_ONLY``), run on
SQLite only: on PostgreSQL they would repeat the same checks at twice the cost."""

from __future__ import annotations

import pytest

from asstctl.server.embedded import start_server

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
