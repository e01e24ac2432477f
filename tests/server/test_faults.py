"""Fault and latency injection: each kind reaches the real SDK as the exception the real API
would cause, the SDK's own retries ride out a 20% fault rate, and a ``lost`` write is committed."""

from __future__ import annotations

import openai
import pytest

from asstctl.errors import ConfigError
from asstctl.server.embedded import start_server
from asstctl.server.faults import ALL_KINDS, Faults
from tests.conftest import make_client


@pytest.fixture
def sdk(server):
    """The real SDK without retries: every injected fault reaches the caller."""
    with make_client(server, max_retries=0) as client:
        yield client


def inject(server, *kinds: str, rate: float = 1.0) -> None:
    server.faults.kinds = kinds
    server.faults.rate = rate


@pytest.mark.parametrize(
    "kind, error, status",
    [
        ("429", openai.RateLimitError, 429),
        ("500", openai.InternalServerError, 500),
        ("503", openai.InternalServerError, 503),
    ],
)
def test_error_faults_surface_as_status_errors(server, sdk, kind, error, status):
    inject(server, kind)
    with pytest.raises(error) as caught:
        sdk.beta.assistants.list()
    assert caught.value.status_code == status
    assert set(caught.value.body) == {"message", "type", "param", "code"}
    assert caught.value.request_id.startswith("req_")
    assert server.faults.injected == {kind: 1}


def test_rate_limit_fault_says_when_to_retry(server, sdk):
    inject(server, "429")
    with pytest.raises(openai.RateLimitError) as caught:
        sdk.beta.assistants.list()
    assert caught.value.code == "rate_limit_exceeded"
    assert caught.value.response.headers["retry-after-ms"] == str(server.faults.retry_after_ms)


@pytest.mark.parametrize("kind", ["drop", "lost"])
def test_dropped_connection_is_a_connection_error(server, sdk, kind):
    inject(server, kind)
    with pytest.raises(openai.APIConnectionError):
        sdk.beta.assistants.create(model="gpt-4o", name="never-acknowledged")
    assert server.faults.injected == {kind: 1}


def test_lost_write_is_committed_though_the_client_saw_an_error(server, sdk):
    inject(server, "lost")
    with pytest.raises(openai.APIConnectionError):
        sdk.beta.assistants.create(model="gpt-4o", name="committed-but-lost")
    names = [a.name for a in sdk.beta.assistants.list()]  # reads are never "lost"
    assert names == ["committed-but-lost"]
    assert server.faults.injected == {"lost": 1}


def test_dropped_write_is_not_committed(server, sdk):
    inject(server, "drop", "500", "503", "429")
    for _ in range(4):
        with pytest.raises((openai.APIConnectionError, openai.APIStatusError)):
            sdk.beta.assistants.create(model="gpt-4o", name="rejected")
    inject(server, rate=0.0)
    assert list(sdk.beta.assistants.list()) == []


def test_default_retries_ride_out_a_20_percent_fault_rate():
    # Seeded, so the sequence of faults (and this test) is reproducible: seed 9 injects 429, drop and lost.
    with start_server(faults=Faults(rate=0.2, seed=9)) as server, make_client(server, max_retries=2) as client:
        created = [client.beta.assistants.create(model="gpt-4o", name=f"bot-{i}").id for i in range(12)]
        injected = dict(server.faults.injected)
        server.faults.rate = 0.0
        listed = {a.id: a.name for a in client.beta.assistants.list(limit=100)}
    assert sum(injected.values()) >= 3, injected
    assert set(created) <= set(listed)
    # a `lost` create that the SDK retried leaves a duplicate: that is what the reconciler must cope with
    assert len(listed) == len(created) + injected.get("lost", 0)


def test_latency_delays_every_request():
    with start_server(faults=Faults(latency_ms=40)) as server, make_client(server) as client:
        response = client.beta.assistants.with_raw_response.list()
    assert int(response.headers["openai-processing-ms"]) >= 40


def test_reads_are_never_lost_and_non_api_paths_never_fail():
    faults = Faults(rate=1.0, kinds=("lost",))
    assert faults.pick("GET", "/v1/assistants") is None
    assert faults.pick("POST", "/v1/assistants") == "lost"
    assert Faults(rate=1.0).pick("GET", "/health") is None


def test_fault_spec_parsing():
    assert Faults.parse(None).rate == 0
    parsed = Faults.parse("0.25:429, drop", latency_ms=5, seed=1)
    assert (parsed.rate, parsed.kinds, parsed.latency_ms, parsed.seed) == (0.25, ("429", "drop"), 5, 1)
    assert Faults.parse("0.1").kinds == ALL_KINDS


@pytest.mark.parametrize("spec, problem", [("2", "between 0 and 1"), ("x:429", "not a number"), ("0.1:418", "unknown")])
def test_bad_fault_spec_is_a_config_error(spec, problem):
    with pytest.raises(ConfigError, match=problem) as caught:
        Faults.parse(spec)
    assert "RATE[:KINDS]" in caught.value.hint


def test_request_counters_count_every_attempt_per_endpoint(server, sdk):
    made = sdk.beta.assistants.create(model="gpt-4o", name="counted")
    for _ in range(2):
        sdk.beta.assistants.retrieve(made.id)
    inject(server, "500")
    with pytest.raises(openai.InternalServerError):
        sdk.beta.assistants.list()
    stats = server.state.stats
    assert (stats["POST /v1/assistants"], stats["GET /v1/assistants/{id}"], stats["GET /v1/assistants"]) == (1, 2, 1)
    assert stats["total"] == 4
