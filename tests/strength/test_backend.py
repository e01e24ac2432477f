"""The Assistants v2 backend as the reconciler and its users see it: listing reads every page oldest first in
as few requests as promised; creates are sent once with the SDK's retries off and, after a lost response,
looked for before another attempt (adopted, never duplicated); idempotent calls ride out transient faults
with asstctl's own backoff (0.1 s doubling, 6 attempts) but fail fast on a refused connection or a timeout;
whole-target errors name the target's URL exactly.

Faults are injected by the server (asstctl.server.faults) from a script, so each test knows which request
fails and how. The backoff's waits are recorded instead of slept (the only stand-in: ``time.sleep``)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from asstctl.backends.assistants_v2 import AssistantsV2, RetryPolicy
from asstctl.errors import TargetError
from asstctl.reconcile import lock
from asstctl.reconcile.apply import apply_plan
from asstctl.reconcile.knowledge import read_knowledge
from asstctl.reconcile.remote import read_remote
from asstctl.server.embedded import start_server
from tests.knowledge.helpers import converge, managed_store, plan, project, store_files
from tests.reconcile.helpers import destroy_plan, make_plan, spec
from tests.strength.conftest import FILES, KNOWLEDGE_BOT, Script

PROJECT = "demo"  # tests.reconcile.helpers' project
ADOPTED = "adopted after a lost response"
INJECTED_500 = "Error code: 500 - The server had an error while processing your request. Sorry about that! (injected)"


@pytest.fixture
def faulty():
    with start_server(":memory:", faults=Script(retry_after_ms=1)) as server:
        yield server


@pytest.fixture
def sdk(contract):
    """``sdk(server, ...)``: the real SDK, every response contract-checked, closed at the end of the test."""
    opened = []

    def connect(server, **options):
        opened.append(open_sdk(server, contract, **options))
        return opened[-1]

    yield connect
    for client in opened:
        client.close()


def open_sdk(server, contract, *, guard: int | None = None, base_url: str | None = None, api_key: str | None = None,
             **options):
    """The real SDK (retries as given, default off); ``guard``: fail once more than that many assistant
    listings are sent (an endless pagination loop becomes a failure)."""
    import openai

    listed = []

    def count(request):
        if request.method == "GET" and request.url.path.endswith("/assistants"):
            listed.append(request.url)
            if guard is not None and len(listed) > guard:
                raise RuntimeError(f"more than {guard} assistant listings: {listed}")

    hooks = {"request": [count], "response": [contract] if contract is not None else []}
    options.setdefault("max_retries", 0)
    return openai.OpenAI(base_url=base_url or server.base_url, api_key=api_key or server.api_key,
                         _strict_response_validation=True, http_client=openai.DefaultHttpxClient(event_hooks=hooks),
                         **options)


def url(client) -> str:
    return str(client.base_url).rstrip("/")


def sent(server, route: str) -> int:
    return server.state.stats[route]


def outcomes(result):
    return [(o.key, o.kind, o.ok, o.note, o.error) for o in result.outcomes]


# --- listing -----------------------------------------------------------------------------------------

def test_listing_reads_every_page_oldest_first_in_ceil_n_over_100_requests(server, sdk):
    client, setup = sdk(server, guard=12), open_sdk(server, None)  # (the setup's 101 creates unchecked: faster)
    before = sent(server, "GET /v1/assistants")
    empty = read_remote(client, PROJECT)
    assert empty.requests == 1 == sent(server, "GET /v1/assistants") - before
    made = [setup.beta.assistants.create(model="gpt-4o", name=f"a{i}").id for i in range(3)]
    assert read_remote(client, PROJECT).requests == 1  # one short page: no second request
    made += [setup.beta.assistants.create(model="gpt-4o", name=f"a{i}").id for i in range(3, 101)]
    setup.close()
    before = sent(server, "GET /v1/assistants")
    state = read_remote(client, PROJECT)
    assert [obj["id"] for obj in state.foreign] == made  # every one, once, in creation order
    assert state.requests == 2 == sent(server, "GET /v1/assistants") - before



def test_a_wrong_key_is_named_with_the_targets_url_wherever_it_is_met(sdk):
    expected = "{} refused the API key (401): check $OPENAI_API_KEY (or the variable named by the target's api_key_env)"
    with start_server(":memory:", api_key="right-key") as guarded:
        bad = sdk(guarded, api_key="sk-wrong")
        for call in (lambda: read_remote(bad, PROJECT), lambda: lock.list_locks(bad, PROJECT),
                     lambda: lock.acquire(bad, PROJECT, "apply")):
            with pytest.raises(TargetError) as error:
                call()
            assert str(error.value) == expected.format(url(bad))


def test_a_target_without_vector_stores_is_named_by_its_url_as_given(server, sdk):
    # a base path that ends in "X": only the trailing slash the SDK adds is removed
    elsewhere = sdk(server, base_url=server.base_url.removesuffix("/v1") + "/gatewayX")
    where = url(elsewhere)
    assert where.endswith("/gatewayX")
    with pytest.raises(lock.LockError) as error:
        lock.acquire(elsewhere, PROJECT, "apply")
    assert str(error.value) == f"{where} has no /vector_stores endpoint (404), where asstctl keeps the project lock"
    with pytest.raises(TargetError) as error:
        read_knowledge(elsewhere, PROJECT)
    assert str(error.value) == (f"{where} has no /vector_stores or /files endpoint (404): asstctl reads them to sync "
                                "knowledge; use a target with the full Assistants API")


# --- creates: once, verified after a lost response ------------------------------------------------------

def test_a_create_whose_response_is_lost_is_adopted_not_sent_again(faulty, sdk):
    client = sdk(faulty, max_retries=2)  # the SDK's own retries on, as the CLI has them: creates turn them off
    plan = make_plan(client, [spec("bot", name="Bot")])
    faulty.faults.script["POST /v1/assistants"] = ["lost"]
    before = sent(faulty, "POST /v1/assistants")
    result = apply_plan(plan, client)
    [made] = client.beta.assistants.list().data
    assert outcomes(result) == [("bot", "create", True, ADOPTED, None)]
    assert result.outcomes[0].remote_id == made.id and made.name == "Bot"
    assert sent(faulty, "POST /v1/assistants") - before == 1
    assert not make_plan(client, [spec("bot", name="Bot")]).has_changes()


def test_a_create_refused_for_load_is_sent_again_without_looking_for_it(faulty, sdk, waits):
    client = sdk(faulty, max_retries=2)
    plan = make_plan(client, [spec("bot")])
    faulty.faults.script["POST /v1/assistants"] = ["429", "500"]
    posts, lists = sent(faulty, "POST /v1/assistants"), sent(faulty, "GET /v1/assistants")
    result = apply_plan(plan, client)
    assert sent(faulty, "POST /v1/assistants") - posts == 3
    assert sent(faulty, "GET /v1/assistants") - lists == 1  # looked for after the 500 only: a 429 made nothing
    assert outcomes(result) == [("bot", "create", True, None, None)]
    assert len(client.beta.assistants.list().data) == 1
    assert waits == [0.25, 0.5]


def test_a_create_that_keeps_failing_gives_up_after_the_policys_attempts(faulty, sdk, waits):
    client = sdk(faulty)
    plan = make_plan(client, [spec("bot")])
    faulty.faults.script["POST /v1/assistants"] = ["500"] * 4
    before = sent(faulty, "POST /v1/assistants")
    result = apply_plan(plan, client, retry=RetryPolicy(attempts=4, max_delay=0.5))
    assert outcomes(result) == [("bot", "create", False, None, INJECTED_500)]
    assert sent(faulty, "POST /v1/assistants") - before == 4 and waits == [0.25, 0.5, 0.5]
    assert client.beta.assistants.list().data == []



def test_a_create_lost_on_its_last_attempt_is_still_looked_for(faulty, sdk, waits):
    client = sdk(faulty)
    plan = make_plan(client, [spec("bot")])
    faulty.faults.script["POST /v1/assistants"] = ["500", "lost"]
    result = apply_plan(plan, client, retry=RetryPolicy(attempts=2))
    [made] = client.beta.assistants.list().data
    assert [(o.ok, o.remote_id, o.note) for o in result.outcomes] == [(True, made.id, ADOPTED)] and waits == [0.25]

def test_a_lost_create_whose_check_fails_is_not_sent_again_and_says_why(faulty, sdk, waits):
    client = sdk(faulty)
    plan = make_plan(client, [spec("bot")])
    faulty.faults.script["POST /v1/assistants"] = ["lost"]
    faulty.faults.script["GET /v1/assistants"] = ["drop"] * 6
    posts, lists = sent(faulty, "POST /v1/assistants"), sent(faulty, "GET /v1/assistants")
    [outcome] = apply_plan(plan, client).outcomes
    assert (outcome.key, outcome.ok) == ("bot", False)
    assert outcome.error.startswith(f"create outcome unknown (Connection error.) and the check for it failed: "
                                    f"cannot reach {url(client)} (")
    assert outcome.error.endswith("; not retried, so no duplicate can be made (`asstctl apply` again will find it)")
    assert sent(faulty, "POST /v1/assistants") - posts == 1
    assert sent(faulty, "GET /v1/assistants") - lists == 6 and waits == [0.1, 0.2, 0.4, 0.8, 1.6]
    assert not make_plan(client, [spec("bot")]).has_changes()  # the next apply finds it


def test_a_refused_connection_fails_at_once(sdk, waits):
    dead = AssistantsV2(sdk(SimpleNamespace(base_url="http://127.0.0.1:9/v1", api_key="key")))
    with pytest.raises(TargetError, match="cannot reach http://127.0.0.1:9/v1"):
        read_remote(dead, PROJECT)
    import openai

    with pytest.raises(openai.APIConnectionError):
        dead.update_assistant("asst_1", {"name": "x"})
    with pytest.raises(openai.APIConnectionError):
        dead.create_assistant({"model": "gpt-4o"}, find=lambda: pytest.fail("nothing can have been made"))
    assert waits == []


def test_a_timed_out_update_is_not_sent_again(server, sdk, waits):
    client = sdk(server, timeout=0.2)
    apply_plan(make_plan(client, [spec("bot", name="one")]), client)
    plan = make_plan(client, [spec("bot", name="two")])
    server.faults.latency_ms = 600
    before = sent(server, "POST /v1/assistants/{id}")
    result = apply_plan(plan, client)
    server.faults.latency_ms = 0
    assert outcomes(result) == [("bot", "update", False, None, "Request timed out.")]
    assert sent(server, "POST /v1/assistants/{id}") - before == 1 and waits == []


# --- idempotent calls: retried ----------------------------------------------------------------------------

def test_updates_and_deletes_ride_out_transient_faults(faulty, sdk, waits):
    client = sdk(faulty)
    apply_plan(make_plan(client, [spec("a", name="A"), spec("b")]), client)
    plan = make_plan(client, [spec("a", name="A2")], prune=True)
    faulty.faults.script["POST /v1/assistants/*"] = ["503", "drop"]
    faulty.faults.script["DELETE /v1/assistants/*"] = ["429"]
    result = apply_plan(plan, client, parallelism=1)
    assert sorted(outcomes(result)) == [("a", "update", True, None, None), ("b", "delete", True, None, None)]
    assert [(a.name, a.metadata["asstctl.key"]) for a in client.beta.assistants.list().data] == [("A2", "a")]
    assert sorted(waits) == [0.1, 0.1, 0.2]


def test_a_delete_that_finds_the_object_gone_succeeded(client):
    apply_plan(make_plan(client, [spec("a"), spec("b")]), client)
    plan = destroy_plan(client, [spec("a"), spec("b")])
    gone = read_remote(client, PROJECT).managed["b"]["id"]
    client.beta.assistants.delete(gone)
    result = apply_plan(plan, client)
    assert sorted(outcomes(result)) == [("a", "delete", True, None, None), ("b", "delete", True, "already gone", None)]
    assert client.beta.assistants.list().data == []


# --- knowledge: stores, their files, uploads -------------------------------------------------------------

def test_lost_store_and_upload_creates_are_adopted_once_each(faulty, sdk, root):
    client = sdk(faulty, max_retries=2)
    proj = project(root, {"assistants/bot.yaml": KNOWLEDGE_BOT, **FILES})
    made = plan(client, proj)
    faulty.faults.script.update({"POST /v1/vector_stores": ["lost"], "POST /v1/files": ["lost"]})
    stores, uploads = sent(faulty, "POST /v1/vector_stores"), sent(faulty, "POST /v1/files")
    result = apply_plan(made, client, root=proj.root)
    assert not result.failed
    assert sorted(o.kind for o in result.outcomes if o.note == ADOPTED) == ["create", "upload"]
    assert sent(faulty, "POST /v1/vector_stores") - stores == 1 and sent(faulty, "POST /v1/files") - uploads == 3
    assert len(client.vector_stores.list().data) == 1 and len(client.files.list().data) == 3
    assert not plan(client, proj).has_changes()


def test_store_files_and_settings_sync_through_transient_faults(faulty, sdk, root, waits):
    client = sdk(faulty)
    chunked = KNOWLEDGE_BOT.replace("name: Docs", "name: Docs\n        chunking_strategy: {type: static, "
                                    "static: {max_chunk_size_tokens: 400, chunk_overlap_tokens: 100}}")
    proj = project(root, {"assistants/bot.yaml": chunked, **FILES})
    faulty.faults.script["POST /v1/vector_stores/*/files"] = ["500"]
    _, result = converge(client, proj)
    assert not result.failed and waits == [0.1]
    store = managed_store(client, "bot", "kb")
    files = store_files(client, store.id)
    assert set(files) == {"assistants/knowledge/faq.md", "assistants/knowledge/shipping.md"}
    assert {item["chunking_strategy"]["static"]["max_chunk_size_tokens"] for item in files.values()} == {400}
    assert {item["attributes"]["asstctl.project"] for item in files.values()} == {"kb"}
    shipping = files["assistants/knowledge/shipping.md"]["id"]

    (root / "assistants/knowledge/shipping.md").unlink()
    project(root, {"assistants/bot.yaml": chunked.replace("name: Docs", "name: Manual")})
    faulty.faults.script.update({"POST /v1/vector_stores/*": ["503"], "DELETE /v1/vector_stores/*/files/*": ["drop"],
                                 "DELETE /v1/files/*": ["429"]})
    _, result = converge(client, proj)
    assert not result.failed and sorted(waits) == [0.1] * 4
    assert client.vector_stores.retrieve(store.id).name == "Manual"
    assert set(store_files(client, store.id)) == {"assistants/knowledge/faq.md"}
    assert shipping not in {f.id for f in client.files.list()}
    assert not plan(client, proj).has_changes()


def test_only_the_projects_own_uploads_are_used_the_oldest_first(server, sdk, root):
    import hashlib

    client = sdk(server)
    data = b"x,y\n1,2\n"
    proj = project(root, {"assistants/bot.yaml": "model: gpt-4o\ntools:\n  - code_interpreter: {files: [data/*.csv]}\n",
                          "assistants/data/a.csv": data})
    name = f"asstctl--kb--{hashlib.sha256(data).hexdigest()[:16]}--a.csv"  # the name asstctl gives its upload
    foreign = client.files.create(file=(name, data), purpose="user_data")  # not for assistants: someone else's
    older = client.files.create(file=(name, data), purpose="assistants")
    client.files.create(file=(name, data), purpose="assistants")
    before = sent(server, "POST /v1/files")
    _, result = converge(client, proj)
    assert not result.failed and sent(server, "POST /v1/files") == before  # already uploaded: not sent again
    [bot] = client.beta.assistants.list().data
    assert bot.tool_resources.code_interpreter.file_ids == [older.id]
    assert client.files.retrieve(foreign.id).purpose == "user_data"


def test_the_oldest_store_of_a_key_is_kept_a_newer_one_is_the_duplicate(server, sdk, root):
    client = sdk(server)
    proj = project(root, {"assistants/bot.yaml": KNOWLEDGE_BOT, **FILES})
    converge(client, proj)
    kept = managed_store(client, "bot", "kb")
    duplicate = client.vector_stores.create(name="Docs", metadata=kept.metadata)
    [extra] = [a for a in plan(client, proj).actions if a.duplicate]
    assert (extra.object, extra.remote_id) == ("vector_store", duplicate.id)


def test_reading_knowledge_takes_one_request_per_listing(server, sdk, root):
    client, setup = sdk(server), open_sdk(server, None)
    proj = project(root, {"assistants/bot.yaml": KNOWLEDGE_BOT, **FILES})
    converge(client, proj)
    kept = managed_store(client, "bot", "kb")
    for index in range(21):  # more than a default page of each: 20
        setup.vector_stores.create(name=f"other-{index}")
        extra = setup.files.create(file=(f"extra-{index}.md", b"# extra\n"), purpose="assistants")
        setup.vector_stores.files.create(kept.id, file_id=extra.id)
    setup.close()
    routes = ("GET /v1/vector_stores", "GET /v1/vector_stores/{id}/files", "GET /v1/files")
    before = [sent(server, route) for route in routes]
    knowledge = read_knowledge(client, "kb")
    assert [sent(server, route) - count for route, count in zip(routes, before)] == [1, 1, 1]
    assert len(knowledge.stores.foreign) == 21 and len(knowledge.store_files[kept.id]) == 23


# --- the project lock ---------------------------------------------------------------------------------------

def test_the_lock_is_a_named_store_whose_create_is_retried_by_asstctl_alone(faulty, sdk, waits):
    client = sdk(faulty, max_retries=2)
    faulty.faults.script["POST /v1/vector_stores"] = ["429"] * 6
    before = sent(faulty, "POST /v1/vector_stores")
    with pytest.raises(TargetError) as error:
        lock.acquire(client, PROJECT, "apply")
    assert str(error.value).startswith(f"{url(client)} answered 429 while creating the project's lock: ")
    assert sent(faulty, "POST /v1/vector_stores") - before == 6 and waits == [0.1, 0.2, 0.4, 0.8, 1.6]
    with lock.acquire(client, PROJECT, "apply"):
        [info] = lock.list_locks(client, PROJECT)
        store = client.vector_stores.retrieve(info.id)
        assert (store.name, store.metadata["asstctl.lock"], info.operation) == ("asstctl lock: demo", "demo", "apply")
    assert lock.list_locks(client, PROJECT) == []


def test_a_listing_that_keeps_failing_says_what_asstctl_was_reading(faulty, sdk, waits):
    client = sdk(faulty)
    faulty.faults.script["GET /v1/vector_stores"] = ["500"] * 6
    with pytest.raises(TargetError) as error:
        read_knowledge(client, PROJECT)
    assert str(error.value) == f"{url(client)} answered 500 while reading vector stores and files: {INJECTED_500}"
    faulty.faults.script["GET /v1/vector_stores"] = ["500"] * 6
    with pytest.raises(TargetError) as error:
        lock.list_locks(client, PROJECT)
    assert str(error.value) == f"{url(client)} answered 500 while listing the project's locks: {INJECTED_500}"
