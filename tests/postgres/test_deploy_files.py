"""The deployment files (deploy/, docs/deploy.md) name only settings asstctl reads."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def source_text() -> str:
    return "\n".join(p.read_text() for p in (ROOT / "asstctl").rglob("*.py"))


def test_compose_runs_postgres_two_replicas_and_a_load_balancer():
    compose = yaml.safe_load((ROOT / "deploy" / "compose.yaml").read_text())
    services = compose["services"]
    assert set(services) == {"postgres", "asstctl-1", "asstctl-2", "lb"}
    replica = services["asstctl-1"]
    assert replica == services["asstctl-2"] and replica["environment"]["ASSTCTL_DB"].startswith("postgresql://")
    assert "password" not in replica["environment"]["ASSTCTL_DB"].split("@")[0].split("//")[1]  # PGPASSWORD instead
    nginx = (ROOT / "deploy" / "nginx.conf").read_text()
    assert "server asstctl-1:8321" in nginx and "server asstctl-2:8321" in nginx and "proxy_buffering off" in nginx
    assert (ROOT / "deploy" / compose["services"]["asstctl-1"]["build"]["dockerfile"].split("/")[-1]).exists()


def test_every_asstctl_variable_in_the_deploy_docs_is_read_by_asstctl():
    text = (ROOT / "docs" / "deploy.md").read_text() + (ROOT / "deploy" / "compose.yaml").read_text()
    names = set(re.findall(r"\bASSTCTL_[A-Z_]+\b", text))
    assert {"ASSTCTL_DB", "ASSTCTL_RUN_LEASE_SECONDS", "ASSTCTL_RUN_CAPACITY", "ASSTCTL_PG_POOL_SIZE"} <= names
    code = source_text()
    assert sorted(n for n in names if f'"{n}"' not in code and n != "ASSTCTL_REQUIRE_POSTGRES") == []
