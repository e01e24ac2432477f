"""Shared fixtures: a real asstctl server on loopback and the real openai SDK pointed at it.

Every response the ``client`` fixture receives is validated against the official
OpenAPI document (tests/contract.py); a test fails at teardown on any violation.
"""

from __future__ import annotations

import pytest

from asstctl.server.embedded import start_server
from tests.contract import ContractRecorder


@pytest.fixture
def server():
    with start_server(":memory:") as running:
        yield running


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
