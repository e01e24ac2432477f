"""An API key locks every request; its absence locks the server to loopback; no key is ever echoed or logged."""

from __future__ import annotations

import logging
import signal

import httpx2
import openai
import pytest
from click.testing import CliRunner

from asstctl.cli import cli
from asstctl.errors import ConfigError
from asstctl.server.embedded import check_bind, start_server
from asstctl.server.faults import Faults
from tests.serve_process import ServeProcess

KEY = "sk-asstctl-test-5ecret-k3y"
WRONG = "sk-wrong-k3y-also-private"
ENVELOPE = {"message", "type", "param", "code"}


@pytest.fixture
def locked(caplog):
    caplog.set_level(logging.DEBUG)
    with start_server(api_key=KEY, faults=Faults(rate=1.0, kinds=("lost",))) as server:
        server.faults.rate = 0.0
        yield server


def sdk(base_url: str, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=base_url, api_key=key, max_retries=0, _strict_response_validation=True)


def assert_no_key_in(*texts: str) -> None:
    for text in texts:
        assert KEY not in text and WRONG not in text


def test_wrong_key_is_an_authentication_error_in_the_sdk(locked):
    with sdk(locked.base_url, WRONG) as client, pytest.raises(openai.AuthenticationError) as caught:
        client.beta.assistants.list()
    error = caught.value
    assert error.status_code == 401
    assert set(error.body) == ENVELOPE and error.code == "invalid_api_key"
    assert error.request_id.startswith("req_")
    assert_no_key_in(str(error), error.response.text)


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": ""}, {"Authorization": "Bearer"}, {"Authorization": f"Bearer {WRONG}"},
     {"Authorization": f"Basic {KEY}"}, {"Authorization": f"Bearer {KEY}x"}, {"Authorization": f"Bearer {KEY[:-1]}"}],
    ids=["none", "empty", "no-token", "wrong", "basic-scheme", "longer", "prefix"],
)
@pytest.mark.parametrize("path", ["/v1/assistants", "/v1/files", "/"])
def test_every_request_without_the_key_is_401_in_the_envelope(locked, headers, path):
    url = locked.base_url.removesuffix("/v1") + path
    response = httpx2.get(url, headers={"OpenAI-Beta": "assistants=v2", **headers})
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/json"
    assert response.headers["x-request-id"].startswith("req_")
    assert set(response.json()) == {"error"} and set(response.json()["error"]) == ENVELOPE
    assert_no_key_in(response.text, str(response.headers))


def test_the_right_key_gets_through(locked):
    with sdk(locked.base_url, KEY) as client:
        assert list(client.beta.assistants.list()) == []
    response = httpx2.get(locked.base_url + "/assistants", headers={"Authorization": f"bearer {KEY}", "OpenAI-Beta": "assistants=v2"})
    assert response.status_code == 200


def test_unauthenticated_writes_never_reach_the_store(locked):
    locked.faults.rate = 1.0  # `lost` would commit the write and hide the response, if auth came after faults
    with sdk(locked.base_url, WRONG) as client, pytest.raises(openai.AuthenticationError):
        client.beta.assistants.create(model="gpt-4o", name="intruder")
    assert locked.faults.injected == {}
    assert locked.store.all("assistant") == []


def test_no_key_in_logs_or_output(locked, caplog, capfd):
    for key in (WRONG, KEY, ""):
        with sdk(locked.base_url, key or "x") as client:
            try:
                client.beta.assistants.create(model="gpt-4o", name="probe")
            except openai.APIStatusError:
                pass
    out, err = capfd.readouterr()
    assert_no_key_in(caplog.text, out, err)


def test_serve_process_never_prints_the_key(tmp_path):
    with ServeProcess(tmp_path, "--db", ":memory:", env={"ASSTCTL_SERVER_API_KEY": KEY}) as server:
        assert "API key required" in server.stdout()
        with sdk(server.base_url, WRONG) as client, pytest.raises(openai.AuthenticationError):
            client.beta.assistants.list()
        with sdk(server.base_url, KEY) as client:
            assert list(client.beta.assistants.list()) == []
        assert httpx2.get(server.base_url + "/assistants").status_code == 401
        assert server.stop(signal.SIGTERM) == 0
        assert_no_key_in(server.stdout(), server.stderr())


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.20", "example.com"])
@pytest.mark.parametrize("key", [None, ""])
def test_no_key_means_loopback_only(host, key):
    with pytest.raises(ConfigError, match=f"refusing to listen on {host} without an API key") as caught:
        check_bind(host, key)
    assert "ASSTCTL_SERVER_API_KEY" in caught.value.hint


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "localhost", "::1", "[::1]"])
def test_loopback_needs_no_key(host):
    check_bind(host, None)


def test_a_key_allows_any_interface():
    check_bind("0.0.0.0", KEY)


@pytest.mark.parametrize("env", [{}, {"ASSTCTL_SERVER_API_KEY": ""}])
def test_cli_refuses_a_public_bind_without_a_key(env):
    result = CliRunner().invoke(cli, ["serve", "--host", "0.0.0.0", "--db", ":memory:"], env=env)
    assert result.exit_code == 1
    assert result.output.startswith("Error: refusing to listen on 0.0.0.0 without an API key")
    assert "Traceback" not in result.output
