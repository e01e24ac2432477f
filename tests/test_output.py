"""asstctl.cli.output: colour only when wanted, progress drawn only on a terminal."""

from __future__ import annotations

import io

import pytest

from asstctl.cli.output import progress, style, use_color


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        if self.closed:
            raise ValueError("I/O operation on closed file")  # as real files do
        return True


@pytest.fixture(autouse=True)
def plain_env(monkeypatch):
    for name in ("NO_COLOR", "FORCE_COLOR", "TERM"):
        monkeypatch.delenv(name, raising=False)


def test_colour_on_a_terminal_only():
    assert use_color(Terminal()) is True
    assert use_color(io.StringIO()) is False
    assert style("ok", "green", Terminal()) == "\x1b[32mok\x1b[0m"
    assert style("ok", "green", io.StringIO()) == "ok"


def test_no_color_wins_and_force_color_forces(monkeypatch):
    monkeypatch.setenv("FORCE_COLOR", "1")
    assert use_color(io.StringIO()) is True
    monkeypatch.setenv("NO_COLOR", "1")
    assert use_color(Terminal()) is False
    assert style("ok", "red", Terminal()) == "ok"


def test_empty_or_zero_variables_change_nothing(monkeypatch):
    monkeypatch.setenv("NO_COLOR", "")
    monkeypatch.setenv("FORCE_COLOR", "0")
    assert use_color(Terminal()) is True
    assert use_color(io.StringIO()) is False


def test_dumb_terminal_and_closed_stream(monkeypatch):
    closed = Terminal()
    closed.close()
    assert use_color(closed) is False
    monkeypatch.setenv("TERM", "dumb")
    assert use_color(Terminal()) is False


def test_progress_draws_on_a_terminal():
    stream = Terminal()
    seen = []
    with progress([1, 2, 3], label="Applying", stream=stream) as bar:
        for item in bar:
            seen.append(item)
    assert seen == [1, 2, 3]
    assert "Applying" in stream.getvalue() and "100%" in stream.getvalue()


def test_progress_is_silent_elsewhere():
    stream = io.StringIO()
    with progress([1, 2], label="Applying", stream=stream) as bar:
        assert list(bar) == [1, 2]
    with progress(length=5, label="Waiting", stream=stream) as bar:
        bar.update(5)
    assert stream.getvalue() == ""
