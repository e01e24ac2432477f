"""asstctl.yaml problems are one clear error too (the same YAML loader as the specs)."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from asstctl.cli import cli


@pytest.mark.parametrize("content, message", [
    (b"project: a\nproject: b\n", "asstctl.yaml:2:1: duplicate key `project` (first on line 1); remove one of them"),
    (b"project: [a\n", "asstctl.yaml:2:1: malformed YAML: did not find expected ',' or ']'"),
    (b"project: caf\xe9\n", "asstctl.yaml:1:13: not UTF-8 text (byte 0xe9); save the file as UTF-8"),
    (b"- project\n", "asstctl.yaml:1:1: expected a mapping with at least `project: NAME`"),
    (b"project: a\ntargets: [staging]\n", "asstctl.yaml: `targets` must be a mapping of names to settings"),
    (b"", "asstctl.yaml:1:1: `project` is required"),
])
def test_a_bad_project_file_is_one_error(tmp_path, monkeypatch, content, message):
    (tmp_path / "asstctl.yaml").write_bytes(content)
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["validate"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.output.startswith(f"Error: {tmp_path}/{message}"), result.output
