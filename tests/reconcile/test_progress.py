"""apply reports progress over many assistant writes (the CLI draws it on a terminal only)."""

import contextlib

from tests.reconcile.helpers import converge, spec


def recording_progress(calls):
    @contextlib.contextmanager
    def progress(length, label):
        bar = type("Bar", (), {"steps": 0, "update": lambda self, n: setattr(self, "steps", self.steps + n)})()
        calls.append((label, length, bar))
        yield bar

    return progress


def test_many_writes_advance_one_bar_per_write(client):
    calls = []
    result = converge(client, [spec(f"bot-{i}") for i in range(12)], parallelism=4, progress=recording_progress(calls))
    assert not result.failed
    assert [(label, length) for label, length, _ in calls] == [("Applying", 12)]
    assert calls[0][2].steps == 12


def test_a_few_writes_draw_no_bar(client):
    calls = []
    converge(client, [spec("solo")], progress=recording_progress(calls))
    assert calls == []
