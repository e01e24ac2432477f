"""Issue 10 (server): poisoned JSON, body size and depth limits, multipart errors in the
envelope, what a deleted vector store leaves behind. Raw HTTP where the SDK cannot send
the bad input (NaN, lone surrogates, broken multipart)."""

from __future__ import annotations

import json
import sqlite3

import httpx2 as httpx
import openai
import pytest

from asstctl.server.embedded import start_server
from asstctl.server.store import Store

BETA = {"OpenAI-Beta": "assistants=v2", "Content-Type": "application/json"}
ENVELOPE = {"message", "type", "param", "code"}


@pytest.fixture
def http(server):
    with httpx.Client(base_url=server.base_url, headers={"Authorization": f"Bearer {server.api_key}"}, timeout=60) as c:
        yield c


def post(http, path: str, raw: str | bytes, headers: dict | None = None):
    return http.post(path, content=raw.encode() if isinstance(raw, str) else raw, headers={**BETA, **(headers or {})})


def assert_envelope(response, status: int, param: str | None = None, code: str | None = None) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    error = response.json()["error"]
    assert set(error) == ENVELOPE and error["type"] == "invalid_request_error"
    if param is not None:
        assert error["param"] == param, error
    if code is not None:
        assert error["code"] == code, error
    return error


FUNCTION = '{"type":"function","function":{"name":"f","parameters":{"type":"object","properties":{"x":{"maximum":%s}}}}}'
POISONED = [
    ("nan", '{"model":"gpt-4o","temperature":NaN}', "temperature"),
    ("infinity", '{"model":"gpt-4o","temperature":Infinity}', "temperature"),
    ("minus-infinity", '{"model":"gpt-4o","top_p":-Infinity}', "top_p"),
    ("overflow", '{"model":"gpt-4o","temperature":1e400}', "temperature"),
    ("in-parameters", '{"model":"gpt-4o","tools":[%s]}' % (FUNCTION % "Infinity"), "tools[0].function.parameters.properties.x.maximum"),
    ("surrogate-name", '{"model":"gpt-4o","name":"\\ud800"}', "name"),
    ("surrogate-low", '{"model":"gpt-4o","instructions":"ok \\udfff ok"}', "instructions"),
    ("surrogate-key", '{"model":"gpt-4o","metadata":{"\\ud800":"v"}}', "metadata.\\ud800"),
    ("surrogate-deep", '{"model":"gpt-4o","tools":[%s]}' % (FUNCTION % '"\\udbff"'), "tools[0].function.parameters.properties.x.maximum"),
]


@pytest.mark.parametrize("raw, param", [case[1:] for case in POISONED], ids=[case[0] for case in POISONED])
def test_a_poisoned_assistant_is_a_400_naming_the_param_and_nothing_is_stored(http, raw, param):
    assert_envelope(post(http, "/assistants", raw), 400, param)
    listed = http.get("/assistants", headers=BETA)
    assert listed.status_code == 200 and listed.json()["data"] == []


def test_a_poisoned_modify_leaves_the_assistant_as_it_was(http, client):
    assistant = client.beta.assistants.create(model="gpt-4o", temperature=0.5)
    assert_envelope(post(http, f"/assistants/{assistant.id}", '{"temperature":NaN}'), 400, "temperature")
    assert_envelope(post(http, f"/assistants/{assistant.id}", '{"name":"\\ud800"}'), 400, "name")
    again = client.beta.assistants.retrieve(assistant.id)
    assert again.temperature == 0.5 and again.name is None
    assert [a.id for a in client.beta.assistants.list()] == [assistant.id]


def test_a_lone_surrogate_in_a_message_is_a_400_and_the_thread_stays_readable(http, client):
    thread = client.beta.threads.create()
    raw = '{"role":"user","content":"hello \\ud83d world"}'
    assert_envelope(post(http, f"/threads/{thread.id}/messages", raw), 400, "content")
    parts = '{"role":"user","content":[{"type":"text","text":"\\udc00"}]}'
    assert_envelope(post(http, f"/threads/{thread.id}/messages", parts), 400, "content[0].text")
    assert client.beta.threads.messages.list(thread.id).data == []
    thread_raw = '{"messages":[{"role":"user","content":"\\ud800"}]}'
    assert_envelope(post(http, "/threads", thread_raw), 400, "messages[0].content")


def test_a_valid_surrogate_pair_is_fine(http, client):
    response = post(http, "/assistants", '{"model":"gpt-4o","name":"\\ud83d\\ude00"}')
    assert response.status_code == 200, response.text
    assert client.beta.assistants.retrieve(response.json()["id"]).name == "\U0001F600"


def test_the_store_refuses_what_it_could_not_give_back():
    store = Store(":memory:")
    for bad in (float("nan"), float("inf"), "\ud800"):
        with pytest.raises(ValueError):
            store.insert("assistant", {"id": "asst_1", "created_at": 1, "name": bad})
    assert store.all("assistant") == []


def test_objects_poisoned_by_an_older_asstctl_are_still_served(tmp_path):
    """Rows written before these checks (NaN, a lone surrogate) read back with the bad values replaced."""
    db = tmp_path / "old.sqlite3"
    Store(db).close()
    body = '{"id":"asst_old","object":"assistant","created_at":1,"name":"\\ud800","model":"gpt-4o",' \
           '"temperature":NaN,"top_p":1.0,"instructions":null,"description":null,"tools":[],' \
           '"tool_resources":{},"metadata":{},"response_format":"auto"}'
    with sqlite3.connect(db) as raw:
        raw.execute("INSERT INTO objects (kind, parent, id, created_at, body) VALUES ('assistant', '', 'asst_old', 1, ?)", (body,))
    with start_server(str(db)) as server, openai.OpenAI(base_url=server.base_url, api_key="x", max_retries=0) as client:
        [listed] = client.beta.assistants.list().data
        assert listed.id == "asst_old" and listed.temperature is None and listed.name == "\ufffd"
        assert client.beta.assistants.retrieve("asst_old").model == "gpt-4o"
        client.beta.assistants.delete("asst_old")


# --------------------------------------------------------------------------- size and depth


def nested(depth: int) -> str:
    return '{"model":"gpt-4o","metadata":{"k":"v"},"x":' + "[" * depth + "]" * depth + "}"


def test_ten_thousand_levels_of_nesting_are_a_400(http):
    error = assert_envelope(post(http, "/assistants", nested(10_000)), 400, code="nesting_too_deep")
    assert "64" in error["message"]
    assert http.get("/assistants", headers=BETA).json()["data"] == []


def test_brackets_inside_strings_do_not_count_as_nesting(http):
    raw = json.dumps({"model": "gpt-4o", "instructions": "[" * 5000 + '\\"{' * 100})
    assert post(http, "/assistants", raw).status_code == 200


def test_a_deep_but_reasonable_function_schema_is_accepted(client):
    schema: dict = {"type": "string"}
    for _ in range(25):
        schema = {"type": "object", "properties": {"x": schema}}
    tool = {"type": "function", "function": {"name": "f", "parameters": schema}}
    assert client.beta.assistants.create(model="gpt-4o", tools=[tool]).tools[0].function.parameters == schema


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_a_body_past_the_limit_is_a_413_and_nothing_is_stored(server, http, chunked):
    server.state.config.max_body_bytes = 10_000
    raw = json.dumps({"model": "gpt-4o", "instructions": "x" * 20_000}).encode()
    content = iter([raw[:5000], raw[5000:]]) if chunked else raw
    response = http.post("/assistants", content=content, headers=BETA)
    error = assert_envelope(response, 413, code="request_too_large")
    assert "0.00953674 MB" in error["message"] or "MB" in error["message"]
    assert http.get("/assistants", headers=BETA).json()["data"] == []
    assert post(http, "/assistants", '{"model":"gpt-4o"}').status_code == 200  # the connection still works


# --------------------------------------------------------------------------- multipart


def multipart(parts: list[tuple[str, str | None, bytes]], boundary: str = "b0undary") -> bytes:
    out = b""
    for name, filename, data in parts:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        out += f"--{boundary}\r\nContent-Disposition: {disposition}\r\n\r\n".encode() + data + b"\r\n"
    return out + f"--{boundary}--\r\n".encode()


def upload(http, body: bytes, content_type: str = "multipart/form-data; boundary=b0undary"):
    return http.post("/files", content=body, headers={"Content-Type": content_type})


def test_multipart_without_a_boundary_is_the_envelope(http):
    assert_envelope(upload(http, b"--x\r\n", "multipart/form-data"), 400, code="invalid_request")


def test_more_than_a_thousand_fields_is_the_envelope(http):
    body = multipart([("purpose", None, b"assistants")] * 1001)
    error = assert_envelope(upload(http, body), 400, code="too_many_fields")
    assert "1000" in error["message"]


def blob_chunks(server) -> int:
    """How many blob chunks the store holds (either store: ``sql()`` is its own connection)."""
    with server.store.sql() as db:
        return db.execute("SELECT count(*) FROM blob_chunks").fetchone()[0]


@pytest.mark.parametrize(
    "parts, param, code",
    [
        ([("purpose", None, b"assistants")], "file", "missing_required_parameter"),
        ([("file", "a.txt", b"a")], "purpose", "missing_required_parameter"),
        ([("file", None, b"a"), ("purpose", None, b"assistants")], "file", "invalid_type"),
        ([("purpose", None, b"nonsense"), ("file", "a.txt", b"a")], "purpose", "invalid_value"),
        ([("purpose", None, b"assistants"), ("colour", None, b"red"), ("file", "a.txt", b"a")], "colour", "unknown_parameter"),
        ([("purpose", None, b"\xff\xfe"), ("file", "a.txt", b"a")], "purpose", "invalid_value"),
    ],
    ids=["no-file", "no-purpose", "file-as-text", "bad-purpose", "unknown-field", "not-utf8"],
)
def test_bad_uploads_are_the_envelope_and_store_nothing(server, http, parts, param, code):
    assert_envelope(upload(http, multipart(parts)), 400, param, code)
    assert http.get("/files").json()["data"] == []
    assert server.store.blob_size("x") is None and not blob_chunks(server)


def test_a_truncated_multipart_body_is_the_envelope(http):
    body = multipart([("purpose", None, b"assistants"), ("file", "a.txt", b"abc")])
    assert_envelope(upload(http, body[:-12]), 400, code="invalid_request")


def test_an_upload_past_the_limit_is_a_413_and_nothing_is_stored(server, client):
    server.state.config.max_upload_bytes = 1 << 20
    with pytest.raises(openai.APIStatusError) as caught:
        client.files.create(file=("big.bin", b"x" * (3 << 20)), purpose="assistants")
    assert caught.value.status_code == 413 and caught.value.code == "file_too_large"
    assert client.files.list().data == []
    assert not blob_chunks(server)
    small = client.files.create(file=("ok.bin", b"y" * (1 << 20)), purpose="assistants")  # exactly the limit
    assert small.bytes == 1 << 20 and client.files.content(small.id).content == b"y" * (1 << 20)


def test_uploads_round_trip_byte_for_byte(client):
    data = bytes(range(256)) * 20_000 + b"\r\n--b0undary\r\n"  # 5 MB, with boundary-like bytes inside
    file = client.files.create(file=("blob.bin", data), purpose="assistants")
    assert file.bytes == len(data) and file.filename == "blob.bin"
    assert client.files.content(file.id).content == data
    empty = client.files.create(file=("empty.txt", b""), purpose="assistants")
    assert empty.bytes == 0 and client.files.content(empty.id).content == b""


# --------------------------------------------------------------------------- deleted vector stores


def test_a_deleted_vector_store_leaves_assistants_and_threads(client):
    doomed, kept = client.vector_stores.create(name="doomed"), client.vector_stores.create(name="kept")
    resources = {"file_search": {"vector_store_ids": [doomed.id]}}
    assistant = client.beta.assistants.create(model="gpt-4o", tools=[{"type": "file_search"}], tool_resources=resources)
    other = client.beta.assistants.create(model="gpt-4o", tool_resources={"file_search": {"vector_store_ids": [kept.id]}})
    thread = client.beta.threads.create(tool_resources=resources)
    client.vector_stores.delete(doomed.id)
    assert client.beta.assistants.retrieve(assistant.id).tool_resources.file_search.vector_store_ids == []
    assert client.beta.threads.retrieve(thread.id).tool_resources.file_search.vector_store_ids == []
    assert client.beta.assistants.retrieve(other.id).tool_resources.file_search.vector_store_ids == [kept.id]
    # and the assistant can be updated and run again without the dead id
    client.beta.assistants.update(assistant.id, name="still fine")


def test_deleting_or_replacing_a_file_frees_its_bytes(server, client):
    chunks = lambda: blob_chunks(server)  # noqa: E731
    file = client.files.create(file=("a.bin", b"a" * (3 << 20)), purpose="assistants")
    assert chunks() == 3
    client.files.delete(file.id)
    assert chunks() == 0 and server.store.blob_size(file.id) is None
    server.store.write_blob("x", [b"1" * (2 << 20)])
    server.store.write_blob("x", [b"2"])
    assert chunks() == 1 and b"".join(server.store.read_blob("x")) == b"2"
