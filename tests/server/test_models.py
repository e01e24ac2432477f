"""GET /v1/models and /v1/models/{model} through the real SDK, contract-checked: the offline engine lists the
common OpenAI names it answers for; an upstream engine lists the upstream's own models (read once, reused)
plus its --model-map sources; every project's key sees the same list, a missing key gets 401."""

from __future__ import annotations

import openai
import pytest

from asstctl.server.embedded import start_server
from asstctl.server.engine.config import UpstreamConfig
from asstctl.server.engine.offline import LISTED_MODELS
from asstctl.server.engine.upstream import UpstreamEngine
from tests.conftest import make_client
from tests.server.conftest import KEY_ENV
from tests.server.test_projects import ADMIN, DEFAULT_KEY, admin_sdk, new_key
from tests.upstream import ScriptedUpstream


@pytest.fixture(scope="module")
def offline():
    with start_server(api_key=DEFAULT_KEY, admin_key=ADMIN) as server:
        yield server


def test_the_offline_engine_lists_the_common_names_it_answers_for(offline, contract):
    with make_client(offline, contract) as client:
        models = client.models.list().data
        assert [model.id for model in models] == list(LISTED_MODELS) and "gpt-4o" in LISTED_MODELS
        assert {(model.object, model.owned_by) for model in models} == {("model", "asstctl")}
        assert client.models.retrieve("gpt-4o").model_dump() == models[0].model_dump()
        with pytest.raises(openai.NotFoundError) as missing:
            client.models.retrieve("gpt-4oo")
        assert missing.value.code == "model_not_found" and "GET /v1/models" in missing.value.message


def test_every_project_sees_the_list_and_a_caller_without_a_key_none(offline, contract):
    with admin_sdk(offline, contract) as admin:
        project = admin.admin.organization.projects.create(name="models")
        key = new_key(admin, project.id)
        with pytest.raises(openai.PermissionDeniedError):  # the admin key manages projects only
            admin.with_options(api_key=ADMIN).models.list()
    with make_client(offline, contract) as client:
        assert [model.id for model in client.with_options(api_key=key).models.list()] == list(LISTED_MODELS)
        with pytest.raises(openai.AuthenticationError):
            client.with_options(api_key="wrong-" + "w" * 32).models.list()


def upstream_server(scripted: ScriptedUpstream):
    model_map = [("gpt-4*", "llama3.1:8b"), ("my-alias", "qwen2.5:7b")]
    engine = UpstreamEngine(UpstreamConfig(url=scripted.base_url, api_key_env=KEY_ENV, model_map=model_map))
    return start_server(engine=engine)


def test_an_upstream_lists_its_models_and_the_model_map_sources_read_once(upstream, contract):
    upstream.models = {"llama3.1:8b", "qwen2.5:7b", "echo-" + upstream.key}  # the key echoed: scrubbed
    with upstream_server(upstream) as server, make_client(server, contract) as client:
        ids = [model.id for model in client.models.list()]
        assert ids == ["echo-[redacted]", "llama3.1:8b", "qwen2.5:7b", *(m for m in LISTED_MODELS if m.startswith("gpt-4")), "my-alias"]
        assert client.models.retrieve("my-alias").id == "my-alias"
        assert [model.id for model in client.models.list()] == ids
        assert upstream.model_lists == 1  # reused, not asked again
        assert upstream.requests == []  # listing models runs no turn


def test_an_upstream_that_refuses_to_list_leaves_the_model_map_sources(monkeypatch, contract, caplog):
    with ScriptedUpstream(models={"llama3.1:8b"}) as scripted:
        monkeypatch.setenv(KEY_ENV, "not-" + scripted.key)  # the upstream answers 401
        with upstream_server(scripted) as server, make_client(server, contract) as client:
            ids = [model.id for model in client.models.list()]
        assert scripted.model_lists == 0 and not scripted.problems
    assert ids == [*(m for m in LISTED_MODELS if m.startswith("gpt-4")), "my-alias"]
    assert "GET /models failed (HTTP 401)" in caplog.text and scripted.key not in caplog.text


def test_an_upstream_list_over_the_size_limit_is_not_read_past_it(upstream, contract, caplog):
    upstream.models = {f"model-{i:05d}-" + "x" * 150 for i in range(8000)}  # about 1.6 MB: over MODELS_CAP (1 MiB)
    with upstream_server(upstream) as server, make_client(server, contract) as client:
        ids = [model.id for model in client.models.list()]
    assert upstream.model_lists == 1 and ids == [*(m for m in LISTED_MODELS if m.startswith("gpt-4")), "my-alias"]
    assert "over 1048576 bytes (upstream.MODELS_CAP)" in caplog.text
