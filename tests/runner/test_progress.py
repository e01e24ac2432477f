"""`asstctl test` reports progress per finished attempt (drawn only on a terminal by the CLI)."""

import contextlib

from asstctl.testing.conversations import load_conversations
from asstctl.spec.project import load_project
from asstctl.testing.runner import RunOptions, run_conversations
from tests.runner.conftest import deploy, write_conversations


class Bar:
    def __init__(self):
        self.opened_with = None
        self.steps = 0

    def update(self, n_steps):
        self.steps += n_steps


def test_progress_counts_every_attempt(project, target, sdk):
    deploy(sdk, "greeter")
    write_conversations(project, "greeter", """
        conversations:
          - name: one
            turns: [{user: "hello Ann", expect: {contains: "Ann"}}]
          - name: two
            turns: [{user: "hello Bob", expect: {contains: "Bob"}}]
    """)
    bar = Bar()

    @contextlib.contextmanager
    def progress(length, label):
        bar.opened_with = (length, label)
        yield bar

    options = RunOptions(repeat=3, parallel=2, progress=progress)
    conversations = load_conversations(load_project(), None)
    report = run_conversations(sdk, "shop", "local", conversations, options)
    assert report.passed
    assert bar.opened_with == (6, "Running conversations")
    assert bar.steps == 6
