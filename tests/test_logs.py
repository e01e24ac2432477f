"""-v / --debug logging: requests are shown, keys never are."""

import logging

from asstctl.cli.logs import RedactingFormatter, redact


def test_redact_masks_known_keys_and_bearer_tokens():
    text = "key sk-abc123456 header Authorization: Bearer sk-other999 done"
    assert redact(text, ["sk-abc123456"]) == "key *** header Authorization: Bearer *** done"


def test_formatter_redacts_arguments_too():
    record = logging.LogRecord("openai", logging.DEBUG, __file__, 1, "options %s", ({"api_key": "sk-zzz9999"},), None)
    assert "sk-zzz9999" not in RedactingFormatter(["sk-zzz9999"]).format(record)


def test_debug_plan_logs_requests_without_the_key(tmp_path, server):
    from click.testing import CliRunner

    from asstctl.cli import cli

    (tmp_path / "asstctl.yaml").write_text("project: logs\n")
    (tmp_path / "assistants").mkdir()
    (tmp_path / "assistants" / "a.yaml").write_text("model: gpt-4o\nname: A\n")
    key = "sk-test-VERYSECRET-0001"
    result = CliRunner().invoke(
        cli, ["-C", str(tmp_path), "--debug", "plan", "--base-url", server.base_url], env={"OPENAI_API_KEY": key}
    )
    assert result.exit_code == 0, result.output
    assert "HTTP Request: GET" in result.output
    assert key not in result.output
