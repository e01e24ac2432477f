"""What docs/deploy.md and deploy/ tell an operator to run (issue 26), checked against the real code: the
Kubernetes example's probes and tracing settings, the image's extras, the OTLP protocols."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import httpx2 as httpx
import pytest
import yaml

from asstctl.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
DOCS = (ROOT / "docs" / "deploy.md").read_text()


def kubernetes_example() -> dict:
    """The Deployment in docs/deploy.md, parsed."""
    (block,) = [b.split("\n", 1)[1] for b in DOCS.split("```")[1::2] if "kind: Deployment" in b]
    return yaml.safe_load(block)


def test_the_docker_image_can_trace_as_the_kubernetes_example_asks():
    (container,) = kubernetes_example()["spec"]["template"]["spec"]["containers"]
    env = {item["name"]: item.get("value") for item in container["env"]}
    # the protocol the tests exercise (a loopback OTLP/HTTP collector), on the port collectors serve it on
    assert env["OTEL_EXPORTER_OTLP_PROTOCOL"] == "http/protobuf", env
    assert env["OTEL_EXPORTER_OTLP_ENDPOINT"].endswith(":4318"), env
    dockerfile = (ROOT / "deploy" / "Dockerfile").read_text()
    extras = dockerfile.split("pip install --no-cache-dir '.[", 1)[1].split("]", 1)[0].split(",")
    assert "otel" in extras, extras  # else the server exits at start: the variables ask for traces


def test_otlp_defaults_to_http_and_grpc_needs_its_exporter(monkeypatch):
    """Without a protocol, http/protobuf (the OTel spec's default for SDKs; the otel extra's exporter). grpc's
    exporter is not what the extra or the tests install: asked for, the server refuses to start, naming the
    package and the http/protobuf setting (or, with it installed, traces). Any other protocol is refused."""
    from asstctl.server.app import ServerConfig
    from asstctl.server.observability import tracing

    for name in ("OTEL_TRACES_EXPORTER", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL",
                 "OTEL_SDK_DISABLED"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")
    exporter = tracing._otlp()
    assert type(exporter).__module__.startswith("opentelemetry.exporter.otlp.proto.http."), type(exporter)
    exporter.shutdown()
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
    try:
        import opentelemetry.exporter.otlp.proto.grpc  # noqa: F401
    except ImportError:
        with pytest.raises(ConfigError, match="protocol 'grpc' is not installed") as refused:
            tracing.tracer_for(ServerConfig())
        assert "opentelemetry-exporter-otlp-proto-grpc" in refused.value.hint
        assert "OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf" in refused.value.hint
    else:
        tracing._provider_from_env().shutdown()  # (the provider itself: its export thread is stopped)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")
    with pytest.raises(ConfigError, match="OTEL_EXPORTER_OTLP_PROTOCOL='http/json' is not supported"):
        tracing.tracer_for(ServerConfig())
    pyproject = (ROOT / "pyproject.toml").read_text()
    (otel,) = re.findall(r"^otel = \[(.*)\]$", pyproject, re.M)  # the extra has the default protocol's exporter
    assert "opentelemetry-exporter-otlp-proto-http" in otel and "grpc" not in otel, otel


def test_every_section_the_deploy_files_point_to_exists():
    headings = {line.lstrip("#").strip() for line in DOCS.splitlines() if line.startswith("## ")}
    for path in ("deploy/compose.yaml", "deploy/Dockerfile", "pyproject.toml", "asstctl/cli/serve_cmd.py"):
        text = (ROOT / path).read_text().replace('\\"', '"')
        for pointer in re.findall(r'docs/deploy\.md, ((?:"[^"]+"(?:, )?)+)', text):
            assert set(re.findall(r'"([^"]+)"', pointer)) <= headings, (path, pointer)


def serve_options(args: list[str]) -> dict:
    """``asstctl serve`` options as the real CLI parses ``args`` (``asstctl serve ...``), without running it."""
    from asstctl.cli.serve_cmd import serve

    assert args[:2] == ["asstctl", "serve"], args
    return serve.make_context("serve", list(args[2:])).params


def test_compose_and_kubernetes_run_what_the_cli_parses_and_probe_the_real_routes():
    from asstctl.server.embedded import start_server

    replica = yaml.safe_load((ROOT / "deploy" / "compose.yaml").read_text())["services"]["asstctl-1"]
    (container,) = kubernetes_example()["spec"]["template"]["spec"]["containers"]
    for args, environment in ((replica["command"], replica["environment"]), (container["args"], None)):
        options = serve_options(args)
        assert (options["host"], options["port"], options["metrics"], options["log_format"]) == (
            "0.0.0.0", 8321, True, "json")
        assert options["admin_key_env"] == "ADMIN_KEY" and (environment is None or "ADMIN_KEY" in environment)
    assert "ADMIN_KEY" in DOCS.split("envFrom:", 1)[1].split("\n", 1)[0]  # the Kubernetes secret holds it
    assert [port["containerPort"] for port in container["ports"] if port["name"] == "http"] == [8321]
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    check = replica["healthcheck"]["test"]
    assert check[:2] == ["CMD", "python"] and "http://127.0.0.1:8321/readyz" in check[-1]
    with start_server(":memory:", api_key="k" * 32) as server:  # the healthcheck's own code, on a real server
        root = server.base_url.removesuffix("/v1")
        for path in ("/readyz", "/healthz"):
            assert httpx.get(root + path).status_code == 200
        probe = check[-1].replace("http://127.0.0.1:8321", root)
        assert subprocess.run([sys.executable, *check[2:-1], probe], timeout=30).returncode == 0
        missing = probe.replace("/readyz", "/nowhere")  # (it fails on an answer other than 2xx)
        assert subprocess.run([sys.executable, *check[2:-1], missing], timeout=30,
                              capture_output=True).returncode != 0


def test_the_sandbox_override_for_user_namespaces_off_runs_every_replica_as_root_with_the_same_security_opt():
    """docs/deploy.md's compose override (user namespaces off): valid YAML, every replica of deploy/compose.yaml
    as root with CAP_SYS_ADMIN, the base file's security_opt kept; the image's own user is not root."""
    (block,) = [b.split("\n", 1)[1] for b in DOCS.split("```")[1::2] if "&root-sandbox" in b]
    override = yaml.safe_load(block)["services"]
    base = yaml.safe_load((ROOT / "deploy" / "compose.yaml").read_text())["services"]
    replicas = sorted(name for name, service in base.items() if "build" in service)
    assert sorted(override) == replicas == ["asstctl-1", "asstctl-2"], (override, replicas)
    for name in replicas:
        assert override[name]["user"] == "0" and override[name]["cap_add"] == ["SYS_ADMIN"]
        assert override[name]["security_opt"] == base[name]["security_opt"]
    assert re.search(r"^USER asstctl$", (ROOT / "deploy" / "Dockerfile").read_text(), re.M)


def test_the_userns_off_override_the_docs_show_is_shipped():
    """docs/deploy.md's override for hosts without user namespaces is deploy/userns-off.yaml, word for word, and it
    overrides services of deploy/compose.yaml (a name of its own would start a third, unconfigured one)."""
    import textwrap

    (block,) = [b.split("\n", 1)[1] for b in DOCS.split("```")[1::2] if "# deploy/userns-off.yaml" in b]
    shipped = (ROOT / "deploy" / "userns-off.yaml").read_text()
    assert shipped == textwrap.dedent(block).rstrip() + "\n"
    override = yaml.safe_load(shipped)["services"]
    services = yaml.safe_load((ROOT / "deploy" / "compose.yaml").read_text())["services"]
    assert set(override) <= set(services) and len(override) == 2, (override, services)
    for service in override.values():
        assert service["user"] == "0" and service["cap_add"] == ["SYS_ADMIN"], service
