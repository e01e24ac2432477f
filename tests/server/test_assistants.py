"""Assistants through the real SDK: defaults, modify semantics, helper stores, lists, restart."""

from __future__ import annotations

import openai
import pytest

from asstctl.server.embedded import start_server
from tests.conftest import make_client

FUNCTION = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {}}}}


def test_create_fills_server_defaults(client):
    assistant = client.beta.assistants.create(model="gpt-4o")
    assert assistant.id.startswith("asst_") and assistant.object == "assistant"
    assert (assistant.name, assistant.description, assistant.instructions) == (None, None, None)
    assert assistant.metadata == {} and assistant.tools == []
    assert (assistant.temperature, assistant.top_p, assistant.response_format) == (1.0, 1.0, "auto")
    assert assistant.model_extra["reasoning_effort"] is None
    assert client.beta.assistants.retrieve(assistant.id) == assistant


def test_create_with_every_field_round_trips(client):
    assistant = client.beta.assistants.create(
        model="gpt-4o-mini",
        name="helper",
        description="d",
        instructions="Be brief.",
        tools=[FUNCTION, {"type": "code_interpreter"}, {"type": "file_search", "file_search": {"max_num_results": 5}}],
        metadata={"team": "a"},
        temperature=0.2,
        top_p=0.5,
        response_format={"type": "json_schema", "json_schema": {"name": "out", "schema": {"type": "object"}}},
        reasoning_effort="low",
    )
    got = client.beta.assistants.retrieve(assistant.id)
    assert got.name == "helper" and got.instructions == "Be brief." and got.metadata == {"team": "a"}
    assert got.tools[0].function.name == "get_weather" and got.tools[0].function.strict is False
    assert got.tools[2].file_search.max_num_results == 5
    assert (got.temperature, got.top_p) == (0.2, 0.5)
    assert got.response_format.json_schema.name == "out"
    assert got.model_extra["reasoning_effort"] == "low"


def test_modify_replaces_tools_overrides_resources_and_accepts_null(client):
    first = client.vector_stores.create(name="one")
    second = client.vector_stores.create(name="two")
    assistant = client.beta.assistants.create(
        model="gpt-4o", name="x", temperature=0.3, tools=[FUNCTION],
        tool_resources={"file_search": {"vector_store_ids": [first.id]}},
    )
    updated = client.beta.assistants.update(
        assistant.id, tools=[{"type": "code_interpreter"}], name=None, temperature=None,
        tool_resources={"file_search": {"vector_store_ids": [second.id]}}, metadata={"k": "v"},
    )
    assert [t.type for t in updated.tools] == ["code_interpreter"]
    assert updated.name is None and updated.temperature == 1.0 and updated.metadata == {"k": "v"}
    assert updated.tool_resources.file_search.vector_store_ids == [second.id]
    assert updated.model == "gpt-4o"  # untouched fields stay
    assert client.beta.assistants.retrieve(assistant.id) == updated


def test_vector_stores_helper_creates_a_store(client):
    file = client.files.create(file=("notes.txt", b"alpha beta"), purpose="assistants")
    assistant = client.beta.assistants.create(
        model="gpt-4o", tool_resources={"file_search": {"vector_stores": [{"file_ids": [file.id], "metadata": {"m": "1"}}]}}
    )
    (store_id,) = assistant.tool_resources.file_search.vector_store_ids
    store = client.vector_stores.retrieve(store_id)
    assert store.metadata == {"m": "1"} and store.file_counts.completed == 1


def test_unknown_vector_store_reference_is_404(client):
    with pytest.raises(openai.NotFoundError, match="No vector store found with id 'vs_missing'."):
        client.beta.assistants.create(model="gpt-4o", tool_resources={"file_search": {"vector_store_ids": ["vs_missing"]}})


def test_delete_then_404(client):
    assistant = client.beta.assistants.create(model="gpt-4o")
    result = client.beta.assistants.delete(assistant.id)
    assert (result.id, result.object, result.deleted) == (assistant.id, "assistant.deleted", True)
    with pytest.raises(openai.NotFoundError) as err:
        client.beta.assistants.retrieve(assistant.id)
    assert err.value.message == f"Error code: 404 - No assistant found with id '{assistant.id}'."
    with pytest.raises(openai.NotFoundError):
        client.beta.assistants.delete(assistant.id)


@pytest.fixture
def many(client):
    """105 assistants created back to back: many share a created_at second."""
    return [client.beta.assistants.create(model="gpt-4o", name=f"a{i}").id for i in range(105)]


def test_auto_pagination_both_orders(client, many):
    listed = list(client.beta.assistants.list(limit=100, order="asc"))
    assert len({a.created_at for a in listed}) < len(listed)  # 105 creates cannot take 105 seconds
    assert [a.id for a in listed] == many  # stable within a second: insertion order
    descending = [a.id for a in client.beta.assistants.list(limit=100, order="desc")]
    assert descending == many[::-1]
    first = client.beta.assistants.list(limit=100)
    assert len(first.data) == 100 and first.has_more is True
    assert first.first_id == many[-1] and first.last_id == many[5]
    rest = client.beta.assistants.list(limit=100, after=first.last_id)
    assert [a.id for a in rest.data] == many[4::-1] and rest.has_more is False


def test_before_cursor(client, many):
    page = client.beta.assistants.list(limit=10, order="asc", before=many[50])
    assert [a.id for a in page.data] == many[40:50] and page.has_more is True
    page = client.beta.assistants.list(limit=10, order="desc", before=many[50])
    assert [a.id for a in page.data] == many[60:50:-1]
    page = client.beta.assistants.list(limit=10, order="asc", after=many[10], before=many[15])
    assert [a.id for a in page.data] == many[11:15]


def test_deleted_assistants_leave_the_list(client, many):
    client.beta.assistants.delete(many[0])
    assert many[0] not in [a.id for a in client.beta.assistants.list(limit=100)]


def test_everything_survives_a_restart(tmp_path):
    db = str(tmp_path / "db.sqlite3")
    with start_server(db=db) as server:
        sdk = make_client(server)
        assistant = sdk.beta.assistants.create(model="gpt-4o", name="kept", metadata={"a": "1"})
        thread = sdk.beta.threads.create(messages=[{"role": "user", "content": "hello"}])
        file = sdk.files.create(file=("k.txt", b"kept bytes"), purpose="assistants")
        store = sdk.vector_stores.create(name="kept", file_ids=[file.id])
        sdk.close()
    with start_server(db=db) as server:
        sdk = make_client(server)
        assert sdk.beta.assistants.retrieve(assistant.id) == assistant
        assert sdk.beta.threads.retrieve(thread.id) == thread
        (message,) = sdk.beta.threads.messages.list(thread.id).data
        assert message.content[0].text.value == "hello"
        assert sdk.files.content(file.id).content == b"kept bytes"
        assert sdk.vector_stores.retrieve(store.id).file_counts.completed == 1
        assert sdk.vector_stores.files.retrieve(file.id, vector_store_id=store.id).status == "completed"
        sdk.close()
