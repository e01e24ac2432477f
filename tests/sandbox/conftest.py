"""Fixtures of the sandbox tests: real bubblewrap sessions (``bwrap`` must be installed: CI installs
the Debian package ``bubblewrap``), driven directly through ``asstctl.server.sandbox``."""

from __future__ import annotations

import asyncio
import functools
import os
import shutil

import pytest

from asstctl.server.sandbox import InputFile, SandboxConfig, SessionPool

# Small limits so the limit cases end quickly (the wall time is generous: a busy CI machine is slow;
# the tests of the wall-time limit lower it themselves).
TEST_LIMITS = dict(wall_seconds=30, cpu_seconds=1, output_bytes=2000, data_mb=32, file_mb=8, max_processes=16,
                   shm_mb=8, interrupt_grace_seconds=2, max_inodes=2000)
# For tests not about CPU time: importing matplotlib alone may take over 1 CPU second on a busy machine.
ROOMY_CPU = dict(TEST_LIMITS, cpu_seconds=10)


@pytest.fixture(scope="session", autouse=True)
def bwrap_installed():
    assert shutil.which("bwrap"), "these tests need bubblewrap: apt-get install bubblewrap"


def needs(what: str, missing: str | None, required: bool):
    """A test that needs ``what``: skipped when this host lacks it (``missing`` says why), or failed when the run
    requires it (``ASSTCTL_REQUIRE_ROOT`` / ``ASSTCTL_REQUIRE_CGROUPS``, set by .ci/run), so that a skip cannot
    hide a failure there."""
    def mark(test):
        if not missing:
            return test
        if not required:
            return pytest.mark.skip(reason=f"needs {what}: {missing}")(test)

        @functools.wraps(test)
        def fails(*args, **kwargs):
            pytest.fail(f"needs {what}, which this run requires: {missing}")
        return fails
    return mark


def require_root() -> bool:
    return bool(os.environ.get("ASSTCTL_REQUIRE_ROOT"))


def require_cgroup(version: str) -> bool:
    """Whether ``ASSTCTL_REQUIRE_CGROUPS`` (e.g. "v1 v2") lists this cgroup version (its tests must run)."""
    return version in os.environ.get("ASSTCTL_REQUIRE_CGROUPS", "").split()


def input_files(*triples):
    """(file id, name, bytes) → the pool's InputFile, one version per file id."""
    return [InputFile(f"{fid}:1", name, len(data), lambda data=data: [data]) for fid, name, data in triples]


class Driver:
    """Runs pool calls on one event loop (as the server does) from synchronous tests."""

    def __init__(self, **limits):
        self.loop = asyncio.new_event_loop()
        self.pool = SessionPool(SandboxConfig(**{**TEST_LIMITS, **limits}))

    def run(self, key, code, files=()):
        return self.loop.run_until_complete(self.pool.run(key, code, files))

    def close(self):
        self.loop.run_until_complete(self.pool.aclose())
        self.loop.close()


@pytest.fixture
def sandbox():
    driver = Driver()
    yield driver
    driver.close()


@pytest.fixture
def make_sandbox():
    drivers = []

    def make(**limits):
        drivers.append(Driver(**limits))
        return drivers[-1]

    yield make
    for driver in drivers:
        driver.close()
