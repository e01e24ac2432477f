"""Shared fixtures: a real asstctl server on loopback and the real openai SDK pointed at it.

Every response the ``client`` fixture receives is validated against the official
OpenAPI document (tests/contract.py); a test fails at teardown on any violation.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
from pathlib import Path

import pytest

from asstctl.server.embedded import start_server
from tests import pg_cluster
from tests.contract import ContractRecorder

_schemas = itertools.count(1)


def pytest_collection_modifyitems(items):
    """Under mutmut (docs/testing.md), run a mutant's tests fastest first, by the durations mutmut
    recorded, so a killed mutant fails in its first seconds instead of after the slow tests."""
    stats = Path("mutmut-stats.json")
    if "MUTANT_UNDER_TEST" not in os.environ or not stats.is_file():
        return
    durations = json.loads(stats.read_text()).get("duration_by_test", {})
    items.sort(key=lambda item: durations.get(item.nodeid, 0.0))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    """Under mutmut, a test that a mutant makes hang (a wait loop that never ends: mutmut's own limit
    counts CPU time, not sleeps) fails after 20 s; none of its tests takes 4 s unmutated."""
    if "MUTANT_UNDER_TEST" not in os.environ:
        yield
        return

    def hung(signum, frame):
        raise TimeoutError("the test hung under a mutant (20 s)")

    previous = signal.signal(signal.SIGALRM, hung)
    signal.alarm(20)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


@pytest.fixture
def server():
    with start_server(":memory:") as running:
        yield running


@pytest.fixture(scope="session")
def postgres_cluster():
    """One PostgreSQL cluster for the session (see tests/pg_cluster.py); skipped or failed without one."""
    why = pg_cluster.missing()
    if why is not None:
        if os.environ.get(pg_cluster.REQUIRE_ENV) == "1":
            pytest.fail(f"{pg_cluster.REQUIRE_ENV}=1 but {why}")
        pytest.skip(why)
    cluster = pg_cluster.Cluster().start()
    yield cluster
    cluster.stop()


@pytest.fixture
def postgres_url(postgres_cluster):
    """A fresh, empty schema of the session's cluster as a postgresql:// URL."""
    schema = f"t{next(_schemas)}"
    yield postgres_cluster.create_schema(schema)
    postgres_cluster.drop_schema(schema)


@pytest.fixture
def contract():
    recorder = ContractRecorder()
    yield recorder
    assert not recorder.problems, "responses violate the OpenAPI contract:\n" + "\n".join(recorder.problems)


def make_client(server, contract=None, **options):
    """The real SDK, strict response validation on, every JSON response contract-checked."""
    import openai

    hooks = {"response": [contract]} if contract is not None else {}
    options.setdefault("max_retries", 0)
    return openai.OpenAI(
        base_url=server.base_url,
        api_key=server.api_key,
        _strict_response_validation=True,
        http_client=openai.DefaultHttpxClient(event_hooks=hooks),
        **options,
    )


@pytest.fixture
def client(server, contract):
    sdk = make_client(server, contract)
    yield sdk
    sdk.close()
