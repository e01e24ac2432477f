"""What docs/deploy.md and deploy/ tell an operator to run (issue 26), checked against the real code: the
Kubernetes example's probes and tracing settings, the image's extras, the OTLP protocols."""

from __future__ import annotations

from pathlib import Path

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


def test_otlp_over_grpc_needs_its_exporter(monkeypatch):
    """Without a protocol the SDK's default, grpc: its exporter is not what the tests install; the server then
    refuses to start, naming the package and the http/protobuf setting (or, with it installed, traces)."""
    from asstctl.server.app import ServerConfig
    from asstctl.server.observability import tracing

    for name in ("OTEL_TRACES_EXPORTER", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL",
                 "OTEL_SDK_DISABLED"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4317")
    try:
        import opentelemetry.exporter.otlp.proto.grpc  # noqa: F401
    except ImportError:
        with pytest.raises(ConfigError, match="protocol 'grpc' is not installed") as refused:
            tracing.tracer_for(ServerConfig())
        assert "opentelemetry-exporter-otlp-proto-grpc" in refused.value.hint
        assert "OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf" in refused.value.hint
    else:
        tracing._provider_from_env().shutdown()  # (the provider itself: its export thread is stopped)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
    tracing._provider_from_env().shutdown()  # OTLP/HTTP is installed: no error
