"""The lean reader reaches a target the way the SDK does: through the proxy of $HTTP(S)_PROXY unless $NO_PROXY
names the host (a CONNECT tunnel for https), trusting $SSL_CERT_FILE's certificates, following redirects with the
key kept to its own origin. Each case is checked against the SDK itself, over loopback (tests/reconcile/network.py)."""

from __future__ import annotations

import shutil

import openai
import pytest
from click.testing import CliRunner

from asstctl.backends.lean import HTTPFailure, LazyClient
from asstctl.backends.targets import make_client
from asstctl.cli import cli
from asstctl.server.embedded import start_server
from tests.reconcile.network import LoggingProxy, Redirector, TLSFront, self_signed

PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "SSL_CERT_FILE", "SSL_CERT_DIR")


@pytest.fixture
def bare_env(monkeypatch):
    """No proxy and no certificate variables, whatever the machine has."""
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    return monkeypatch


def test_plan_reads_through_the_proxy_of_http_proxy_unless_no_proxy_names_the_host(tmp_path, bare_env):
    bare_env.chdir(tmp_path)
    (tmp_path / "asstctl.yaml").write_text("project: proxied\n")
    (tmp_path / "assistants").mkdir()
    (tmp_path / "assistants" / "bot.yaml").write_text("model: gpt-4o\nname: Bot\n")
    with LoggingProxy() as proxy:
        bare_env.setenv("HTTP_PROXY", proxy.url)
        result = CliRunner().invoke(cli, ["plan"], env={"OPENAI_BASE_URL": None})
        assert result.exit_code == 0, result.output
        assert "+ create bot" in result.output
        reads = [line for line in proxy.seen if line.startswith("GET http://127.0.0.1:")]
        assert any("/v1/assistants?" in line for line in reads) and len(reads) == len(proxy.seen), proxy.seen
        bare_env.setenv("no_proxy", "localhost,127.0.0.1")
        result = CliRunner().invoke(cli, ["plan"], env={"OPENAI_BASE_URL": None})
        assert result.exit_code == 0, result.output
        assert len(proxy.seen) == len(reads), "NO_PROXY names the host: nothing goes through the proxy"


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command to make a certificate")
def test_https_tunnels_through_the_proxy_and_trusts_ssl_cert_file_as_the_sdk_does(tmp_path, server, bare_env):
    cert, key = self_signed(tmp_path)
    front = TLSFront(int(server.base_url.rsplit(":", 1)[1].split("/")[0]), cert, key)
    url = f"https://127.0.0.1:{front.port}/v1"
    with make_client(server.base_url, server.api_key) as plain:
        made = plain.beta.assistants.create(model="gpt-4o", name="behind TLS")
    try:
        with LoggingProxy() as proxy:
            bare_env.setenv("HTTPS_PROXY", proxy.url)
            bare_env.setenv("SSL_CERT_FILE", str(cert))
            with LazyClient(url, server.api_key, max_retries=0) as lean, \
                    make_client(url, server.api_key, max_retries=0) as sdk:
                assert [item["id"] for item in lean.get_list("assistants")[0]] == [made.id]
                assert [item.id for item in sdk.beta.assistants.list().data] == [made.id]
            assert proxy.seen == [f"CONNECT 127.0.0.1:{front.port}"] * 2
            bare_env.delenv("SSL_CERT_FILE")  # the system's certificates: not this self-signed one
            with LazyClient(url, server.api_key, max_retries=0) as lean, \
                    make_client(url, server.api_key, max_retries=0) as sdk:
                with pytest.raises(HTTPFailure, match="self.signed certificate") as failed:
                    lean.get_list("assistants")
                assert failed.value.refused, "a certificate that is not trusted is not retried"
                with pytest.raises(openai.APIConnectionError):
                    sdk.beta.assistants.list()
    finally:
        front.close()


def test_redirects_are_followed_as_the_sdk_follows_them_the_key_kept_to_its_origin(bare_env):
    with start_server(":memory:") as keyless, start_server(":memory:", api_key="sk-the-key") as keyed:
        for target, key in ((keyless, "sk-any"), (keyed, "sk-the-key")):
            with Redirector(target.base_url.removesuffix("/v1")) as moved, \
                    LazyClient(moved.url + "/v1", key, max_retries=0) as lean, \
                    make_client(moved.url + "/v1", key, max_retries=0) as sdk:
                if target is keyless:
                    assert lean.get_list("assistants") == ([], 1)
                    assert sdk.beta.assistants.list().data == []
                    continue
                # another origin (its own port): the key is not sent there, by either
                with pytest.raises(HTTPFailure) as failed:
                    lean.get_list("assistants")
                assert failed.value.status == 401
                with pytest.raises(openai.AuthenticationError):
                    sdk.beta.assistants.list()
        with Redirector(None) as loop, LazyClient(loop.url + "/v1", "k", max_retries=0) as lean:
            with pytest.raises(HTTPFailure, match=r"redirected more than 20 times \(MAX_REDIRECTS\)"):
                lean.get_list("assistants")


def test_a_proxy_the_lean_reader_does_not_speak_leaves_the_reads_to_the_sdk(bare_env):
    from asstctl.backends.assistants_v2 import AssistantsV2

    client = LazyClient("http://127.0.0.1:8321/v1", "k")
    assert AssistantsV2(client).lean
    bare_env.setenv("ALL_PROXY", "socks5://127.0.0.1:1080")  # the SDK's HTTP client speaks SOCKS, with socksio
    assert not AssistantsV2(client).lean
    bare_env.setenv("NO_PROXY", "127.0.0.1")
    assert AssistantsV2(client).lean
