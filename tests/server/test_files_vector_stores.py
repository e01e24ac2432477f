"""Files, vector stores, vector-store files, file batches and search through the real SDK."""

from __future__ import annotations

import openai
import pytest



def upload(client, name="doc.txt", data=b"the quick brown fox", purpose="assistants"):
    return client.files.create(file=(name, data), purpose=purpose)


def test_file_upload_retrieve_list_content(client):
    file = client.files.create(
        file=("notes.md", b"# notes"), purpose="assistants", expires_after={"anchor": "created_at", "seconds": 3600}
    )
    assert file.id.startswith("file-") and file.object == "file"
    assert (file.bytes, file.filename, file.purpose, file.status) == (7, "notes.md", "assistants", "processed")
    assert file.expires_at == file.created_at + 3600
    assert client.files.retrieve(file.id) == file
    assert client.files.content(file.id).content == b"# notes"
    other = upload(client, purpose="user_data")
    assert [f.id for f in client.files.list(order="asc")] == [file.id, other.id]
    assert [f.id for f in client.files.list(purpose="user_data")] == [other.id]
    assert [f.id for f in client.files.list(limit=1, order="asc", after=file.id)] == [other.id]
    assert client.files.wait_for_processing(file.id).status == "processed"


def test_file_delete(client):
    file = upload(client)
    result = client.files.delete(file.id)
    assert (result.id, result.object, result.deleted) == (file.id, "file", True)
    with pytest.raises(openai.NotFoundError, match=f"No file found with id '{file.id}'."):
        client.files.retrieve(file.id)
    with pytest.raises(openai.NotFoundError):
        client.files.content(file.id)


def test_vector_store_lifecycle(client):
    files = [upload(client, data=b"abc"), upload(client, data=b"defgh")]
    store = client.vector_stores.create(
        name="kb", description="not returned", file_ids=[f.id for f in files], metadata={"team": "x"},
        expires_after={"anchor": "last_active_at", "days": 7},
    )
    assert store.id.startswith("vs_") and store.name == "kb" and store.status == "completed"
    assert "description" not in store.model_dump()
    assert (store.file_counts.completed, store.file_counts.total, store.usage_bytes) == (2, 2, 8)
    assert store.expires_after.days == 7 and store.expires_at == store.last_active_at + 7 * 86400
    assert client.vector_stores.retrieve(store.id) == store
    updated = client.vector_stores.update(store.id, name="kb2", expires_after=None, metadata={"team": "y"})
    assert (updated.name, updated.expires_after, updated.expires_at, updated.metadata) == ("kb2", None, None, {"team": "y"})
    assert store.id in [s.id for s in client.vector_stores.list()]
    result = client.vector_stores.delete(store.id)
    assert (result.object, result.deleted) == ("vector_store.deleted", True)
    for call in (client.vector_stores.retrieve, lambda i: client.vector_stores.update(i, name="x"),
                 lambda i: client.vector_stores.search(i, query="fox")):
        with pytest.raises(openai.NotFoundError, match=f"No vector store found with id '{store.id}'."):
            call(store.id)
    assert client.files.retrieve(files[0].id).id == files[0].id  # files are kept


def test_vector_store_files(server, client):
    store = client.vector_stores.create(name="kb")
    file = upload(client, data=b"hello vector world")
    item = client.vector_stores.files.create(vector_store_id=store.id, file_id=file.id, attributes={"lang": "en", "v": 2})
    assert (item.id, item.object, item.vector_store_id, item.status) == (file.id, "vector_store.file", store.id, "completed")
    assert item.chunking_strategy.static.max_chunk_size_tokens == 800
    assert item.chunking_strategy.static.chunk_overlap_tokens == 400
    assert item.usage_bytes == file.bytes and item.attributes == {"lang": "en", "v": 2}
    assert client.vector_stores.files.retrieve(file.id, vector_store_id=store.id) == item
    changed = client.vector_stores.files.update(file.id, vector_store_id=store.id, attributes={"lang": "de"})
    assert changed.attributes == {"lang": "de"}
    content = client.vector_stores.files.content(file.id, vector_store_id=store.id)
    assert [c.text for c in content] == ["hello vector world"]
    server.state.extra["ingestion"].text_chars = 10  # the limit (64M characters) made small
    with pytest.raises(openai.BadRequestError, match="longer than 10 characters, the limit for reading it back whole"):
        client.vector_stores.files.content(file.id, vector_store_id=store.id)  # an error, not the raw bytes
    assert [f.id for f in client.vector_stores.files.list(store.id, filter="completed")] == [file.id]
    result = client.vector_stores.files.delete(file.id, vector_store_id=store.id)
    assert (result.object, result.deleted) == ("vector_store.file.deleted", True)
    assert client.vector_stores.retrieve(store.id).file_counts.total == 0
    assert client.files.retrieve(file.id).id == file.id


def test_static_chunking_is_kept(client):
    store = client.vector_stores.create()
    file = upload(client)
    strategy = {"type": "static", "static": {"max_chunk_size_tokens": 200, "chunk_overlap_tokens": 50}}
    item = client.vector_stores.files.create(vector_store_id=store.id, file_id=file.id, chunking_strategy=strategy)
    assert item.chunking_strategy.static.max_chunk_size_tokens == 200


def test_attaching_a_missing_file_is_404(client):
    store = client.vector_stores.create()
    with pytest.raises(openai.NotFoundError, match="No file found with id 'file-missing'."):
        client.vector_stores.files.create(vector_store_id=store.id, file_id="file-missing")


def test_upload_and_poll_helpers_finish(client):
    store = client.vector_stores.create(name="kb")
    item = client.vector_stores.files.upload_and_poll(vector_store_id=store.id, file=("a.txt", b"alpha"), poll_interval_ms=10)
    assert item.status == "completed"
    batch = client.vector_stores.file_batches.upload_and_poll(
        store.id, files=[("b.txt", b"beta"), ("c.txt", b"gamma")], poll_interval_ms=10
    )
    assert batch.object == "vector_store.files_batch" and batch.status == "completed"
    assert (batch.file_counts.in_progress, batch.file_counts.completed, batch.file_counts.total) == (0, 2, 2)
    assert client.vector_stores.retrieve(store.id).file_counts.completed == 3


def test_file_batches(client):
    store = client.vector_stores.create()
    files = [upload(client, data=b"one"), upload(client, data=b"two")]
    batch = client.vector_stores.file_batches.create(store.id, file_ids=[f.id for f in files], attributes={"src": "b"})
    assert batch.id.startswith("vsfb_") and batch.vector_store_id == store.id
    assert client.vector_stores.file_batches.retrieve(batch.id, vector_store_id=store.id) == batch
    listed = client.vector_stores.file_batches.list_files(batch.id, vector_store_id=store.id, order="asc")
    assert [f.id for f in listed] == [f.id for f in files] and listed.data[0].attributes == {"src": "b"}
    with pytest.raises(openai.BadRequestError, match="status 'completed'"):
        client.vector_stores.file_batches.cancel(batch.id, vector_store_id=store.id)
    per_file = client.vector_stores.file_batches.create(
        store.id, files=[{"file_id": files[0].id, "attributes": {"x": True}}]
    )
    assert per_file.file_counts.total == 1
    assert client.vector_stores.files.retrieve(files[0].id, vector_store_id=store.id).attributes == {"x": True}


def test_batch_rejects_both_file_ids_and_files(client):
    store = client.vector_stores.create()
    file = upload(client)
    with pytest.raises(openai.BadRequestError):
        client.vector_stores.file_batches.create(store.id, file_ids=[file.id], files=[{"file_id": file.id}])
    with pytest.raises(openai.BadRequestError, match="array too short"):
        client.vector_stores.file_batches.create(store.id, file_ids=[])


def test_injected_ingestion_failure(client, server):
    server.faults.ingest_fail_marker = b"ASSTCTL-INGEST-FAIL"  # off unless a test switches it on
    store = client.vector_stores.create()
    good, bad = upload(client, data=b"fine"), upload(client, data=b"x ASSTCTL-INGEST-FAIL y")
    batch = client.vector_stores.file_batches.create_and_poll(store.id, file_ids=[good.id, bad.id], poll_interval_ms=10)
    assert (batch.file_counts.completed, batch.file_counts.failed, batch.file_counts.in_progress) == (1, 1, 0)
    failed = client.vector_stores.files.retrieve(bad.id, vector_store_id=store.id)
    assert failed.status == "failed" and failed.last_error.code == "invalid_file"
    assert [f.id for f in client.vector_stores.files.list(store.id, filter="failed")] == [bad.id]
    store = client.vector_stores.retrieve(store.id)
    assert (store.file_counts.failed, store.usage_bytes) == (1, good.bytes)
    server.faults.ingest_fail_marker = None
    again = client.vector_stores.files.create_and_poll(upload(client, data=b"ASSTCTL-INGEST-FAIL").id,
                                                      vector_store_id=store.id, poll_interval_ms=10)
    assert again.status == "completed"  # a file with those bytes is an ordinary file in production


def test_file_delete_cascades_from_vector_stores(client):
    file, kept = upload(client, data=b"gone"), upload(client, data=b"stays")
    stores = [client.vector_stores.create(file_ids=[file.id, kept.id]) for _ in range(2)]
    client.files.delete(file.id)
    for store in stores:
        store = client.vector_stores.retrieve(store.id)
        assert (store.file_counts.total, store.file_counts.completed, store.usage_bytes) == (1, 1, kept.bytes)
        assert [f.id for f in client.vector_stores.files.list(store.id)] == [kept.id]
        with pytest.raises(openai.NotFoundError):
            client.vector_stores.files.retrieve(file.id, vector_store_id=store.id)


def test_search(client):
    cats = upload(client, "cats.txt", b"Cats purr and sleep all day.")
    dogs = upload(client, "dogs.txt", b"Dogs bark at the mail carrier.")
    store = client.vector_stores.create(file_ids=[cats.id, dogs.id])
    client.vector_stores.files.update(dogs.id, vector_store_id=store.id, attributes={"kind": "dog"})
    results = client.vector_stores.search(store.id, query="why do cats purr")
    assert [r.filename for r in results] == ["cats.txt"] and 0 < results.data[0].score <= 1
    assert "purr" in results.data[0].content[0].text
    filtered = client.vector_stores.search(
        store.id, query=["bark", "purr"], filters={"type": "eq", "key": "kind", "value": "dog"}
    )
    assert [r.file_id for r in filtered] == [dogs.id]
    assert list(client.vector_stores.search(store.id, query="zebra")) == []


def test_empty_lists(client):
    store = client.vector_stores.create()
    assert client.vector_stores.files.list(store.id).data == []
    assert client.files.list().data == []
