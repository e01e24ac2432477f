"""`--base-url` mistakes are caught at once with the URL that was meant: no scheme, no `/v1`; a loopback
server needs no OPENAI_API_KEY (real servers on loopback; nothing is mocked)."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from asstctl.cli import cli
from asstctl.server.embedded import start_server

ENV = {"OPENAI_API_KEY": None, "OPENAI_BASE_URL": None, "ASSTCTL_DEBUG": None, "NO_COLOR": "1"}


def run(project, *args, **env):
    return CliRunner().invoke(cli, ["-C", str(project), *args], env={**ENV, **env})


@pytest.fixture(scope="module")
def open_server():
    """`asstctl serve` without --api-key: any key works."""
    with start_server(":memory:") as running:
        yield running


@pytest.mark.timeout(20)  # the old failure took 13.6 s per call (two calls here)
@pytest.mark.parametrize("url, meant", [
    ("127.0.0.1:8321", "http://127.0.0.1:8321/v1"),
    ("localhost:8321/v1", "http://localhost:8321/v1"),
    ("127.0.0.1:8321/", "http://127.0.0.1:8321/v1"),
])
def test_a_base_url_without_a_scheme_is_refused_at_once(project, url, meant):
    for result in (run(project, "plan", "--base-url", url), run(project, "plan", OPENAI_BASE_URL=url)):
        assert result.exit_code == 1 and "Traceback" not in result.output
        assert f"is not a URL: it needs http:// or https:// (did you mean `{meant}`?)" in result.output, result.output


def test_a_base_url_without_v1_suggests_it_not_the_openai_shutdown(project, open_server):
    bare = open_server.base_url.removesuffix("/v1")
    result = run(project, "plan", "--base-url", bare, OPENAI_API_KEY="any")
    assert result.exit_code == 1, result.output
    assert f"did you mean `{bare}/v1`?" in result.output and "shutdown" not in result.output


def test_a_loopback_server_needs_no_openai_api_key(project, open_server):
    (project / "assistants" / "bot.yaml").write_text("model: gpt-4o\n")
    result = run(project, "apply", "--yes", "--base-url", open_server.base_url)
    assert result.exit_code == 0, result.output
    assert "OPENAI_API_KEY" not in result.output


def test_a_remote_server_still_needs_a_key(project):
    result = run(project, "plan", "--base-url", "https://assistants.example.com/v1")
    assert result.exit_code == 1 and "$OPENAI_API_KEY is not set" in result.output


def test_a_loopback_server_that_wants_a_key_says_so(project):
    with start_server(":memory:", api_key="sekret-key-123") as guarded:
        unset = run(project, "plan", "--base-url", guarded.base_url)
        wrong = run(project, "plan", "--base-url", guarded.base_url, OPENAI_API_KEY="sk-wrong-one")
    assert unset.exit_code == 1 and "wants an API key (401) and $OPENAI_API_KEY is not set: export" in unset.output
    assert "check $OPENAI_API_KEY" not in unset.output
    assert wrong.exit_code == 1 and "refused the API key (401): check $OPENAI_API_KEY" in wrong.output
    for result in (unset, wrong):
        assert "sekret-key-123" not in result.output and "asstctl-no-key" not in result.output
        assert "sk-wrong-one" not in result.output


@pytest.mark.parametrize("url", ["https://api.openai.com/v1", "https://eu.api.openai.com/v1"])
def test_openais_own_api_is_said_to_have_shut_down_its_assistants_api(project, url):
    for result in (run(project, "plan", "--base-url", url), run(project, "status", "--base-url", url, OPENAI_API_KEY="sk-x")):
        assert result.exit_code == 1 and "Traceback" not in result.output
        assert f"target `base-url` is {url}, OpenAI's own API, whose Assistants API was shut down on 2026-08-26" \
               in result.output and "asstctl serve" in result.output
