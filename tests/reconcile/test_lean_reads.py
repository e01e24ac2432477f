"""A no-op `plan` / `status` never imports the openai SDK: the target's client (LazyClient) reads lists over the
standard library's HTTP, with the SDK's answers, retries and whole-target errors; writes make the SDK client."""

from __future__ import annotations

import subprocess
import sys

import pytest

from asstctl.backends.assistants_v2 import AssistantsV2
from asstctl.backends.lean import LazyClient
from asstctl.backends.targets import NO_KEY, make_client
from asstctl.errors import TargetError
from asstctl.server.embedded import start_server
from asstctl.server.faults import Faults
from benchmarks.startup import EXAMPLE, extra_modules, import_chain, not_importable, plain_optional_dependencies


def lazy(server, key: str | None = None, **options) -> LazyClient:
    return LazyClient(server.base_url, key or server.api_key, **options)


def test_lists_read_without_the_sdk_are_what_the_sdk_reads(server, client):
    for n in range(5):
        client.beta.assistants.create(model="gpt-4o", name=f"bot {n}", metadata={"n": str(n)})
    store = client.vector_stores.create(name="docs")
    client.files.create(file=("a.md", b"# A\n"), purpose="assistants")
    reader, sdk = lazy(server), make_client(server.base_url, server.api_key)
    lean, full = AssistantsV2(reader), AssistantsV2(sdk)
    assert lean.lean and not full.lean
    assert lean.list_assistants()[0] == full.list_assistants()[0] and len(lean.list_assistants()[0]) == 5
    assert lean.list_vector_stores() == full.list_vector_stores() and lean.list_vector_stores()[0]["id"] == store.id
    assert lean.list_uploads() == full.list_uploads()
    assert lean.list_store_files(store.id) == full.list_store_files(store.id) == []
    items, requests = reader.get_list("assistants", {"limit": 2, "order": "asc"})
    assert requests == 3 and [item["name"] for item in items] == [f"bot {n}" for n in range(5)]
    assert reader._made is None  # nothing so far made the SDK client
    assert reader.beta.assistants.retrieve(items[0]["id"]).name == "bot 0"  # a call it has no read for does
    reader.close()
    sdk.close()


def test_whole_target_failures_are_the_sdks_clear_errors():
    with start_server(":memory:", api_key="sk-the-real-one") as keyed:
        with pytest.raises(TargetError, match=r"refused the API key \(401\): check \$OPENAI_API_KEY"):
            AssistantsV2(lazy(keyed, "sk-wrong")).list_assistants()
        with pytest.raises(TargetError, match=r"wants an API key \(401\) and \$OPENAI_API_KEY is not set"):
            AssistantsV2(lazy(keyed, NO_KEY)).list_assistants()
        bare = LazyClient(keyed.base_url.removesuffix("/v1"), "sk-the-real-one")
        with pytest.raises(TargetError, match=r"base URLs usually end in /v1"):
            AssistantsV2(bare).list_assistants()
        assert AssistantsV2(bare).list_models() is None  # advice only: never an error
    with pytest.raises(TargetError, match=r"cannot reach http://127.0.0.1:9/v1 .*is the server running"):
        AssistantsV2(LazyClient("http://127.0.0.1:9/v1", "k")).list_assistants()


def test_transient_faults_are_retried_like_the_sdk_retries():
    faults = Faults(rate=0.5, kinds=("429",), seed=7)  # asks to wait 20 ms (retry-after-ms)
    with start_server(":memory:", faults=faults) as flaky:
        reader = lazy(flaky, max_retries=8)
        for _ in range(5):
            assert reader.get_list("assistants")[0] == []
        assert sum(faults.injected.values()) > 0


# The embedded server's search side: its app is built (ingestion pool and all) but it only answers reads
SEARCH = tuple(f"asstctl.server.retrieval.{name}" for name in ("search", "lexical", "dense", "embeddings", "filter_sql"))
HEAVY = ("openai", "deepdiff", *extra_modules(), *SEARCH)  # what a no-op plan or status must not import
# (docs/benchmarks.md): the SDK, deepdiff, the top-level module of every optional dependency in pyproject.toml,
# whichever is installed, and the retrieval indexes


def test_a_noop_plan_and_status_of_the_example_project_import_neither_the_sdk_nor_any_extra(tmp_path):
    """On a copy of this repository's example project (knowledge files too), applied first, as the benchmark does;
    the `test` extra is installed (pandas, numpy, psycopg, pytest, ...), so the check can fail."""
    import shutil

    from click.testing import CliRunner

    from asstctl.cli import cli

    assert {"pandas", "numpy", "psycopg", "pytest", "opentelemetry", "sympy"} <= set(HEAVY)
    assert not_importable(extra_modules(("code", "test")), tmp_path) == []  # installed: the check below can fail
    project = tmp_path / "example"
    project.mkdir()
    for name in ("asstctl.yaml", "engine-rules.yaml"):
        shutil.copy(EXAMPLE / name, project / name)
    shutil.copytree(EXAMPLE / "assistants", project / "assistants")
    assert list((project / "assistants" / "knowledge").iterdir()), "the example project has knowledge files"
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(project)
        applied = CliRunner().invoke(cli, ["apply", "--yes"], env={"OPENAI_BASE_URL": None})
    assert applied.exit_code == 0, applied.output
    for command, shown in (("plan", "No changes."), ("status", "in sync")):
        done = subprocess.run([sys.executable, "-X", "importtime", "-m", "asstctl", command], cwd=project,
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr[-2000:]
        assert shown in done.stdout
        assert {module: import_chain(done.stderr, module) for module in HEAVY} == dict.fromkeys(HEAVY, []), command


def test_the_benchmark_says_which_heavy_extras_are_missing(tmp_path):
    """benchmarks/startup.py's plan and status rows name pandas or numpy when they are not importable."""
    assert not_importable(("json", "asstctl_no_such_module"), tmp_path) == ["asstctl_no_such_module"]


def test_the_extras_are_read_the_same_without_tomllib():
    """Python 3.10 has no tomllib (requires-python is >=3.10) and this module reads the extras when it loads:
    there the plain reader stands in, and it reads pyproject.toml as tomllib does (a comment in a list too)."""
    import tomllib

    text = (EXAMPLE / "pyproject.toml").read_text()
    assert plain_optional_dependencies(text) == tomllib.loads(text)["project"]["optional-dependencies"]
    assert plain_optional_dependencies(text)["code"] == ["numpy>=1.26", "pandas>=2.1", "matplotlib>=3.8", "sympy>=1.12"]


def test_azure_and_agents_targets_build_the_sdk_client_a_compatible_server_the_lean_one(tmp_path, monkeypatch):
    """What docs/spec-format.md says of `targets`: only a compatible server's target (and the embedded one) reads a
    no-op plan without the SDK; Azure and `api: agents` build the SDK's client, so their plan costs `import openai`."""
    import openai

    from asstctl.backends.agents import Agents
    from asstctl.backends.targets import open_target
    from asstctl.spec.project import load_project

    (tmp_path / "asstctl.yaml").write_text(
        "project: p\ntargets:\n  compatible: {base_url: 'http://127.0.0.1:9/v1'}\n"
        "  azure: {base_url: 'https://x.openai.azure.com', azure: {api_version: '2024-05-01-preview'}}\n"
        "  agents: {api: agents, base_url: 'http://127.0.0.1:9/v1'}\n")
    monkeypatch.setenv("AZURE_OPENAI_API_KEY", "az-test")
    project = load_project(tmp_path)
    clients = {}
    for name in ("compatible", "azure", "agents"):
        with open_target(project, name) as target:
            clients[name] = target.client
    assert isinstance(clients["compatible"], LazyClient) and clients["compatible"]._made is None
    assert isinstance(clients["azure"], openai.AzureOpenAI)
    assert isinstance(clients["agents"], Agents) and isinstance(clients["agents"].client, openai.OpenAI)
