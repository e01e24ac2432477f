"""A corpus of bad spec files through `asstctl plan --base-url <server>`: each gives exactly one
clear `path:line:col` problem, exit 1, no traceback, and not one request reaches the server."""

from __future__ import annotations

import pytest

from asstctl.server.embedded import start_server
from tests.reliability.helpers import cli, write_project

VALID = b"model: gpt-4o\nname: Fine\n"
CORPUS = {
    "malformed YAML": (b"model: gpt-4o\nname: [unclosed\n", 3, 1, "malformed YAML"),
    "tab indentation": (b"model: gpt-4o\ntools:\n\t- type: code_interpreter\n", 3, 1, "tab character"),
    "wrong type": (b"model: gpt-4o\ntemperature: hot\n", 2, 1, "`temperature` must be a number"),
    "unknown field": (b"model: gpt-4o\nnmae: Bot\n", 2, 1, "unknown field `nmae` (did you mean `name`?)"),
    "missing file": (b"model: gpt-4o\ninstructions_file: nowhere.md\n", 2, 1, "does not exist"),
    "unset variable": (b"model: gpt-4o\ninstructions: ${ASSTCTL_RELIABILITY_UNSET}\n", 2, 1,
                       "`ASSTCTL_RELIABILITY_UNSET` is not set"),
    "oversize field": (b"model: gpt-4o\nname: " + b"x" * 300 + b"\n", 2, 1, "it must be at most 256"),
    "binary garbage": (bytes(range(256)) * 4, 1, 1, "binary file"),
    "duplicate key": (b"model: gpt-4o\nname: a\nname: b\n", 3, 1, "duplicate key `name`"),
    "a list": (b"- model: gpt-4o\n- model: gpt-4o-mini\n", 1, 1, "not a list"),
    "a scalar": (b"just a string\n", 1, 1, "not a single value"),
    "empty mapping": (b"{}\n", 1, 1, "model"),
}


@pytest.fixture(scope="module")
def server():
    with start_server(":memory:") as running:
        yield running


@pytest.mark.parametrize("case", sorted(CORPUS))
def test_bad_spec_is_one_clear_error_and_no_request(server, tmp_path, monkeypatch, case):
    monkeypatch.delenv("ASSTCTL_RELIABILITY_UNSET", raising=False)
    data, line, col, words = CORPUS[case]
    root = write_project(tmp_path, {})
    (root / "assistants" / "fine.yaml").write_bytes(VALID)
    (root / "assistants" / "broken.yaml").write_bytes(data)
    server.state.stats.clear()
    result = cli(root, server.base_url, server.api_key, "plan")
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
    assert "Traceback" not in result.output
    problems = [text for text in result.output.splitlines() if "assistants/" in text and ".yaml:" in text]
    assert problems == [problems[0]] and problems[0].startswith(f"Error: assistants/broken.yaml:{line}:{col}: "), \
        result.output
    assert words in problems[0]
    assert "1 problem found" in result.output
    assert server.state.stats["total"] == 0, dict(server.state.stats)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("breakage", ["dangling symlink", "fifo", "symlink loop", "no specs folder"])
def test_an_unreadable_spec_stops_apply_prune_and_nothing_is_deleted(server, tmp_path, breakage):
    import os
    import shutil

    from tests.reliability.helpers import owned_by_key, sdk, snapshot

    root = write_project(tmp_path, {"keep": {"model": "gpt-4o"}, "gone": {"model": "gpt-4o"}})
    assert cli(root, server.base_url, server.api_key, "apply", "--yes").exit_code == 0
    before = snapshot(sdk(server.base_url, server.api_key))
    spec = root / "assistants" / "gone.yaml"
    spec.unlink()
    if breakage == "dangling symlink":
        os.symlink("moved-away.yaml", spec)
    elif breakage == "fifo":
        os.mkfifo(spec)
    elif breakage == "symlink loop":
        os.symlink("gone.yaml", spec)
    else:
        shutil.rmtree(root / "assistants")
    result = cli(root, server.base_url, server.api_key, "apply", "--prune", "--yes")
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    assert "Error: " in result.output and ("gone.yaml:1:1" in result.output or "specs folder" in result.output)
    after = snapshot(sdk(server.base_url, server.api_key))
    assert after == before and sorted(owned_by_key(after)) == ["gone", "keep"]
