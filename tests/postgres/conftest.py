"""``store``: an opened store, once on SQLite (a file) and once on PostgreSQL (a fresh schema)."""

from __future__ import annotations

import pytest

from asstctl.server.store import open_store


@pytest.fixture(params=["sqlite", "postgres"])
def store(request, tmp_path):
    db = request.getfixturevalue("postgres_url") if request.param == "postgres" else str(tmp_path / "s.sqlite3")
    opened = open_store(db)
    yield opened
    opened.close()
