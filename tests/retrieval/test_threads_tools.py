"""Thread vector stores from message attachments, the file_search tool object, and the
FileSearchTool run against a real server's stores."""

from __future__ import annotations

import asyncio

import openai
import pytest

from asstctl.server.tools import builtin_tool
from asstctl.server.tools.base import ToolContext
from asstctl.server.tools.file_search import INCLUDE_CONTENT


def upload(client, name, data):
    return client.files.create(file=(name, data), purpose="assistants")


def test_attachments_create_the_thread_store_once(client):
    first = upload(client, "manual.md", b"The capybara manual says: feed twice a day.")
    other = upload(client, "code.py", b"print('not for search')")
    thread = client.beta.threads.create(messages=[{
        "role": "user", "content": "see attached",
        "attachments": [{"file_id": first.id, "tools": [{"type": "file_search"}]},
                        {"file_id": other.id, "tools": [{"type": "code_interpreter"}]}],
    }])
    (vs_id,) = thread.tool_resources.file_search.vector_store_ids
    store = client.vector_stores.retrieve(vs_id)
    assert store.expires_after.anchor == "last_active_at" and store.expires_after.days == 7
    assert store.expires_at == store.last_active_at + 7 * 86400
    assert [f.id for f in client.vector_stores.files.list(vs_id)] == [first.id]
    second = upload(client, "faq.md", b"Capybaras enjoy warm baths.")
    client.beta.threads.messages.create(thread.id, role="user", content="more",
                                        attachments=[{"file_id": second.id, "tools": [{"type": "file_search"}]},
                                                     {"file_id": first.id, "tools": [{"type": "file_search"}]}])
    again = client.beta.threads.retrieve(thread.id)
    assert again.tool_resources.file_search.vector_store_ids == [vs_id]
    assert {f.id for f in client.vector_stores.files.list(vs_id)} == {first.id, second.id}
    assert client.vector_stores.search(vs_id, query="capybara baths").data[0].filename == "faq.md"


def test_attachments_join_an_existing_thread_store(client):
    vs = client.vector_stores.create(name="mine")
    thread = client.beta.threads.create(tool_resources={"file_search": {"vector_store_ids": [vs.id]}})
    file = upload(client, "a.md", b"axolotl gills")
    client.beta.threads.messages.create(thread.id, role="user", content="x",
                                        attachments=[{"file_id": file.id, "tools": [{"type": "file_search"}]}])
    assert client.beta.threads.retrieve(thread.id).tool_resources.file_search.vector_store_ids == [vs.id]
    assert client.vector_stores.retrieve(vs.id).file_counts.completed == 1


def test_an_unknown_attachment_is_404_and_leaves_nothing(client):
    thread = client.beta.threads.create()
    with pytest.raises(openai.NotFoundError, match="file-missing"):
        client.beta.threads.messages.create(thread.id, role="user", content="x",
                                            attachments=[{"file_id": "file-missing", "tools": [{"type": "file_search"}]}])
    assert client.beta.threads.retrieve(thread.id).tool_resources.file_search is None
    assert client.vector_stores.list().data == []
    assert client.beta.threads.messages.list(thread.id).data == []


def test_the_file_search_tool_carries_its_ranking_options(client):
    assistant = client.beta.assistants.create(model="gpt-4o", tools=[{"type": "file_search"}])
    assert assistant.tools[0].model_dump(exclude_none=True) == {
        "type": "file_search", "file_search": {"ranking_options": {"ranker": "default_2024_08_21", "score_threshold": 0.0}}}
    custom = client.beta.assistants.create(model="gpt-4o", tools=[{"type": "file_search", "file_search": {
        "max_num_results": 3, "ranking_options": {"score_threshold": 0.25}}}])
    assert custom.tools[0].model_dump(exclude_none=True)["file_search"] == {
        "max_num_results": 3, "ranking_options": {"ranker": "default_2024_08_21", "score_threshold": 0.25}}


def tool_context(server, client, assistant_tool, include=()):
    """A ToolContext over the assistant and thread as the API returns them."""
    kb = upload(client, "kb.md", b"# Refunds\nRefunds reach the card within 5 business days.")
    noise = upload(client, "noise.md", b"# Shipping\nParcels leave the warehouse every morning.")
    store = client.vector_stores.create(file_ids=[kb.id])
    assistant = client.beta.assistants.create(model="gpt-4o", tools=[assistant_tool],
                                              tool_resources={"file_search": {"vector_store_ids": [store.id]}})
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "hi", "attachments": [
        {"file_id": noise.id, "tools": [{"type": "file_search"}]}]}])
    ctx = ToolContext(state=server.state, run={"id": "run_x", "model": "gpt-4o"}, assistant=assistant.model_dump(),
                      thread=thread.model_dump(), call_id="call_1", tool=assistant.tools[0].model_dump(), include=include)
    return ctx, kb, noise


def test_the_tool_searches_the_assistant_and_thread_stores(server, client):
    tool = builtin_tool(server.state, "file_search")
    definition = tool.definition({"type": "file_search"})
    assert definition["function"]["name"] == "file_search"
    assert definition["function"]["parameters"]["required"] == ["queries"]
    ctx, kb, noise = tool_context(server, client, {"type": "file_search"})
    outcome = asyncio.run(tool.run(ctx, {"queries": ["refund card", "parcels warehouse"]}))
    search = outcome.call["file_search"]
    assert outcome.call["id"] == "call_1" and outcome.call["type"] == "file_search"
    assert search["ranking_options"] == {"ranker": "default_2024_08_21", "score_threshold": 0.0}
    assert {r["file_id"] for r in search["results"]} == {kb.id, noise.id}
    assert all("content" not in r and 0 < r["score"] <= 1 for r in search["results"])
    assert [s.file_id for s in outcome.sources] == [r["file_id"] for r in search["results"]]
    for n, source in enumerate(outcome.sources):
        assert source.marker == f"【1:{n}†{source.filename}】" and source.marker in outcome.output
    assert "Refunds reach the card within 5 business days." in outcome.output


def test_the_tool_honours_include_max_results_and_threshold(server, client):
    tool = builtin_tool(server.state, "file_search")
    ctx, kb, _ = tool_context(server, client, {"type": "file_search", "file_search": {"max_num_results": 1}},
                              include=(INCLUDE_CONTENT,))
    outcome = asyncio.run(tool.run(ctx, {"query": "refunds card parcels"}))
    (result,) = outcome.call["file_search"]["results"]
    assert result["content"] == [{"type": "text", "text": outcome.sources[0].quote}]
    strict = {"type": "file_search", "file_search": {"ranking_options": {"score_threshold": 1.0}}}
    ctx, _, _ = tool_context(server, client, strict)
    outcome = asyncio.run(tool.run(ctx, {"queries": ["refunds"]}))
    assert outcome.call["file_search"]["results"] == [] and outcome.sources == []
    assert outcome.call["file_search"]["ranking_options"]["score_threshold"] == 1.0
    assert "no result" in outcome.output
    empty = asyncio.run(tool.run(ctx, {"queries": []}))
    assert "needs `queries`" in empty.output and empty.call["file_search"]["results"] == []


def test_the_api_default_max_num_results():
    from asstctl.server.tools.file_search import default_max_results

    assert default_max_results("gpt-4o") == 20 and default_max_results("gpt-4-turbo") == 20
    assert default_max_results("gpt-3.5-turbo") == 5 and default_max_results("gpt-3.5-turbo-0125") == 5
