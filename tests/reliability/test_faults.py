"""`asstctl apply` of 100 assistants while 20 % of requests fail (429, 500, 503, dropped connections,
writes committed but their response lost) converges in one run: the specs' end state, no duplicate,
nothing foreign touched, and the next plan has no changes."""

from __future__ import annotations

import pytest

from asstctl.server.embedded import start_server
from asstctl.server.faults import Faults
from tests.reliability.helpers import (assert_matches_specs, assert_untouched, cli, numbered_specs, sdk,
                                      seed_foreign, snapshot, write_project)

N = 100


@pytest.fixture
def faulty():
    with start_server(":memory:", faults=Faults(seed=20240601, retry_after_ms=5)) as server:
        yield server


@pytest.mark.parametrize("phase", ["create", "update"])
def test_one_apply_converges_through_a_20_percent_fault_rate(faulty, tmp_path, phase):
    client = sdk(faulty.base_url, faulty.api_key)
    foreign = seed_foreign(client, ["bot-000", "bot-001"])
    specs = numbered_specs(N)
    root = write_project(tmp_path, specs)
    if phase == "update":
        assert cli(root, faulty.base_url, faulty.api_key, "apply", "--yes").exit_code == 0
        specs = numbered_specs(N, version=2)
        write_project(tmp_path, specs)
    faulty.faults.rate = 0.2
    result = cli(root, faulty.base_url, faulty.api_key, "apply", "--yes")
    injected = dict(faulty.faults.injected)
    faulty.faults.rate = 0
    assert result.exit_code == 0, result.output
    assert sum(injected.values()) >= 10 and len(injected) >= 3, injected  # all five kinds are enabled
    objects = snapshot(client)
    assert_matches_specs(objects, specs)
    assert_untouched(foreign, objects)
    again = cli(root, faulty.base_url, faulty.api_key, "plan", "--detailed-exitcode")
    assert again.exit_code == 0, again.output
