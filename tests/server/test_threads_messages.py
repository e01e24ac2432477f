"""Threads and messages through the real SDK."""

from __future__ import annotations

import openai
import pytest



def test_thread_create_with_messages_retrieve_modify(client):
    thread = client.beta.threads.create(
        messages=[
            {"role": "user", "content": "first", "metadata": {"n": "1"}},
            {"role": "assistant", "content": [{"type": "text", "text": "second"}]},
        ],
        metadata={"a": "b"},
    )
    assert thread.id.startswith("thread_") and thread.metadata == {"a": "b"}
    assert client.beta.threads.retrieve(thread.id) == thread
    messages = client.beta.threads.messages.list(thread.id, order="asc").data
    assert [(m.role, m.content[0].text.value) for m in messages] == [("user", "first"), ("assistant", "second")]
    assert messages[0].metadata == {"n": "1"} and messages[0].status == "completed"
    assert messages[0].assistant_id is None and messages[0].run_id is None and messages[0].attachments == []
    store = client.vector_stores.create()
    updated = client.beta.threads.update(
        thread.id, metadata={"c": "d"}, tool_resources={"file_search": {"vector_store_ids": [store.id]}}
    )
    assert updated.metadata == {"c": "d"}
    assert updated.tool_resources.file_search.vector_store_ids == [store.id]


def test_thread_vector_stores_helper(client):
    file = client.files.create(file=("t.txt", b"thread knowledge"), purpose="assistants")
    thread = client.beta.threads.create(tool_resources={"file_search": {"vector_stores": [{"file_ids": [file.id]}]}})
    (store_id,) = thread.tool_resources.file_search.vector_store_ids
    assert client.vector_stores.files.retrieve(file.id, vector_store_id=store_id).status == "completed"


def test_thread_delete_removes_messages_runs_and_steps(client, server):
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "x"}])
    assistant = client.beta.assistants.create(model="gpt-4o")
    run = client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=assistant.id, poll_interval_ms=10)
    assert server.store.all("step", run.id)
    result = client.beta.threads.delete(thread.id)
    assert (result.object, result.deleted) == ("thread.deleted", True)
    with pytest.raises(openai.NotFoundError, match=f"No thread found with id '{thread.id}'."):
        client.beta.threads.retrieve(thread.id)
    with pytest.raises(openai.NotFoundError):
        client.beta.threads.messages.list(thread.id)
    assert server.store.all("message", thread.id) == [] and server.store.all("run", thread.id) == []
    assert server.store.all("step", run.id) == []


def test_message_lifecycle(client):
    thread = client.beta.threads.create()
    message = client.beta.threads.messages.create(
        thread.id,
        role="user",
        content=[{"type": "text", "text": "look"}, {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}],
        metadata={"k": "v"},
    )
    assert message.thread_id == thread.id and message.content[1].image_url.url == "https://example.com/a.png"
    assert client.beta.threads.messages.retrieve(message.id, thread_id=thread.id) == message
    updated = client.beta.threads.messages.update(message.id, thread_id=thread.id, metadata={"k": "w"})
    assert updated.metadata == {"k": "w"} and updated.content == message.content
    with pytest.raises(openai.BadRequestError, match="Unknown parameter: 'content'."):
        client.beta.threads.messages.update(message.id, thread_id=thread.id, extra_body={"content": "no"})
    result = client.beta.threads.messages.delete(message.id, thread_id=thread.id)
    assert (result.object, result.deleted) == ("thread.message.deleted", True)
    with pytest.raises(openai.NotFoundError, match=f"No message found with id '{message.id}'."):
        client.beta.threads.messages.retrieve(message.id, thread_id=thread.id)


def test_message_attachments_returned(client):
    file = client.files.create(file=("a.csv", b"1,2"), purpose="assistants")
    thread = client.beta.threads.create()
    message = client.beta.threads.messages.create(
        thread.id, role="user", content="see file", attachments=[{"file_id": file.id, "tools": [{"type": "code_interpreter"}]}]
    )
    assert message.attachments[0].file_id == file.id


def test_message_list_cursors(client):
    thread = client.beta.threads.create()
    ids = [client.beta.threads.messages.create(thread.id, role="user", content=str(i)).id for i in range(7)]
    assert [m.id for m in client.beta.threads.messages.list(thread.id, limit=2, order="asc")] == ids
    assert [m.id for m in client.beta.threads.messages.list(thread.id, limit=3)] == ids[::-1]
    page = client.beta.threads.messages.list(thread.id, limit=2, order="asc", after=ids[2])
    assert [m.id for m in page.data] == ids[3:5] and page.has_more is True
    page = client.beta.threads.messages.list(thread.id, limit=2, order="asc", before=ids[2])
    assert [m.id for m in page.data] == ids[0:2] and page.has_more is False


def test_messages_filtered_by_run(client):
    assistant = client.beta.assistants.create(model="gpt-4o")
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "hi"}])
    run = client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=assistant.id, poll_interval_ms=10)
    produced = client.beta.threads.messages.list(thread.id, run_id=run.id).data
    assert produced and all(m.run_id == run.id and m.role == "assistant" for m in produced)
    assert len(client.beta.threads.messages.list(thread.id).data) == len(produced) + 1


def test_no_messages_while_a_run_is_active(client, server):
    thread = client.beta.threads.create()
    # A run parked in requires_action: stored directly so the test does not depend on engine timing.
    server.store.insert("run", {"id": "run_parked", "created_at": 1, "status": "requires_action"}, thread.id)
    with pytest.raises(openai.BadRequestError) as err:
        client.beta.threads.messages.create(thread.id, role="user", content="wait")
    assert err.value.body["message"] == f"Can't add messages to {thread.id} while a run run_parked is active."
    server.store.update("run", "run_parked", lambda r: r.update(status="completed"), thread.id)
    assert client.beta.threads.messages.create(thread.id, role="user", content="now").role == "user"


def test_unknown_thread_and_message_are_404(client):
    with pytest.raises(openai.NotFoundError, match="No thread found with id 'thread_nope'."):
        client.beta.threads.messages.create("thread_nope", role="user", content="x")
    thread = client.beta.threads.create()
    with pytest.raises(openai.NotFoundError, match="No message found with id 'msg_nope'."):
        client.beta.threads.messages.retrieve("msg_nope", thread_id=thread.id)
    with pytest.raises(openai.NotFoundError):
        client.beta.threads.delete("thread_nope")


def test_empty_message_list(client):
    thread = client.beta.threads.create()
    page = client.beta.threads.messages.list(thread.id)
    assert (page.data, page.has_more, page.first_id, page.last_id) == ([], False, None, None)
