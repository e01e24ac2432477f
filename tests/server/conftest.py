"""The server suite runs on both stores: every test that uses ``server`` (and so ``client``)
runs once on SQLite (``:memory:``) and once on PostgreSQL (a fresh schema of the session's cluster)."""

from __future__ import annotations

import pytest

from asstctl.server.embedded import start_server


@pytest.fixture(params=["sqlite", "postgres"])
def server(request):
    db = request.getfixturevalue("postgres_url") if request.param == "postgres" else ":memory:"
    with start_server(db) as running:
        yield running
