"""Every documented request limit → 400 naming the offending JSON path, plus unknown
fields, wrong types, malformed JSON, the OpenAI-Beta header and 404 wording."""

from __future__ import annotations

import httpx2 as httpx
import openai
import pytest

BETA = {"headers": {"OpenAI-Beta": "assistants=v2"}}
FN = {"type": "function", "function": {"name": "f"}}


@pytest.fixture
def ids(client):
    file = client.files.create(file=("a.txt", b"a"), purpose="assistants")
    return {
        "thread": client.beta.threads.create().id,
        "store": client.vector_stores.create().id,
        "file": file.id,
        "assistant": client.beta.assistants.create(model="gpt-4o").id,
    }


def asst(**kw):
    return lambda c, ids: c.beta.assistants.create(model="gpt-4o", **kw)


def message(**kw):
    return lambda c, ids: c.beta.threads.messages.create(ids["thread"], **{"role": "user", "content": "x", **kw})


def store(**kw):
    return lambda c, ids: c.vector_stores.create(**kw)


def chunking(size, overlap):
    return {"type": "static", "static": {"max_chunk_size_tokens": size, "chunk_overlap_tokens": overlap}}


many_keys = {f"k{i}": "v" for i in range(17)}
CASES = [
    ("name", asst(name="x" * 257), "name", "string_above_max_length"),
    ("description", asst(description="x" * 513), "description", "string_above_max_length"),
    ("instructions", asst(instructions="x" * 256_001), "instructions", "string_above_max_length"),
    ("tools-128", asst(tools=[{"type": "code_interpreter"}] * 129), "tools", "array_above_max_length"),
    ("tool-type", asst(tools=[{"type": "web_search"}]), "tools[0].type", "invalid_value"),
    ("function-missing", asst(tools=[{"type": "function"}]), "tools[0].function", "missing_required_parameter"),
    ("function-pattern", asst(tools=[FN, {"type": "function", "function": {"name": "a b"}}]), "tools[1].function.name", "invalid_value"),
    ("function-64", asst(tools=[{"type": "function", "function": {"name": "f" * 65}}]), "tools[0].function.name", "string_above_max_length"),
    ("max-results-0", asst(tools=[{"type": "file_search", "file_search": {"max_num_results": 0}}]), "tools[0].file_search.max_num_results", "integer_below_min_value"),
    ("max-results-51", asst(tools=[{"type": "file_search", "file_search": {"max_num_results": 51}}]), "tools[0].file_search.max_num_results", "integer_above_max_value"),
    ("score-threshold", asst(tools=[{"type": "file_search", "file_search": {"ranking_options": {"score_threshold": 1.5}}}]), "tools[0].file_search.ranking_options.score_threshold", "decimal_above_max_value"),
    ("ranker", asst(tools=[{"type": "file_search", "file_search": {"ranking_options": {"score_threshold": 0, "ranker": "best"}}}]), "tools[0].file_search.ranking_options.ranker", "invalid_value"),
    ("temperature-high", asst(temperature=2.5), "temperature", "decimal_above_max_value"),
    ("temperature-low", asst(temperature=-0.1), "temperature", "decimal_below_min_value"),
    ("top-p", asst(top_p=1.1), "top_p", "decimal_above_max_value"),
    ("response-format", asst(response_format={"type": "yaml"}), "response_format.type", "invalid_value"),
    ("response-format-str", asst(response_format="json"), "response_format", "invalid_value"),
    ("json-schema-name", asst(response_format={"type": "json_schema", "json_schema": {"name": "a.b"}}), "response_format.json_schema.name", "invalid_value"),
    ("reasoning-effort", asst(reasoning_effort="extreme"), "reasoning_effort", "invalid_value"),
    ("ci-files-20", asst(tool_resources={"code_interpreter": {"file_ids": ["file-x"] * 21}}), "tool_resources.code_interpreter.file_ids", "array_above_max_length"),
    ("vector-store-ids-1", asst(tool_resources={"file_search": {"vector_store_ids": ["vs_a", "vs_b"]}}), "tool_resources.file_search.vector_store_ids", "array_above_max_length"),
    ("metadata-keys", asst(metadata=many_keys), "metadata", "object_above_max_properties"),
    ("metadata-key-64", asst(metadata={"k" * 65: "v"}), "metadata", "string_above_max_length"),
    ("metadata-value-512", asst(metadata={"k": "v" * 513}), "metadata.k", "string_above_max_length"),
    ("metadata-value-type", asst(metadata={"k": 1}), "metadata.k", "invalid_type"),
    ("model-missing", lambda c, ids: c.post("/assistants", body={}, cast_to=object, options=BETA), "model", "missing_required_parameter"),
    ("modify-helper", lambda c, ids: c.beta.assistants.update(ids["assistant"], tool_resources={"file_search": {"vector_stores": []}}), "tool_resources.file_search.vector_stores", "unknown_parameter"),
    ("thread-role", lambda c, ids: c.beta.threads.create(messages=[{"role": "system", "content": "x"}]), "messages[0].role", "invalid_value"),
    ("thread-content", lambda c, ids: c.beta.threads.create(messages=[{"role": "user", "content": "ok"}, {"role": "user", "content": []}]), "messages[1].content", "array_below_min_length"),
    ("thread-metadata", lambda c, ids: c.beta.threads.update(ids["thread"], metadata=many_keys), "metadata", "object_above_max_properties"),
    ("message-content-type", message(content=5), "content", "invalid_type"),
    ("message-part-type", message(content=[{"type": "audio", "audio": {}}]), "content[0].type", "invalid_value"),
    ("attachment-tool", message(attachments=[{"file_id": "file-x", "tools": [{"type": "function"}]}]), "attachments[0].tools[0].type", "invalid_value"),
    ("message-role-missing", lambda c, ids: c.post(f"/threads/{ids['thread']}/messages", body={"content": "x"}, cast_to=object, options=BETA), "role", "missing_required_parameter"),
    ("message-modify-metadata", lambda c, ids: c.beta.threads.messages.update("msg_x", thread_id=ids["thread"], metadata={"k": "v" * 513}), "metadata.k", "string_above_max_length"),
    ("store-file-ids-500", store(file_ids=["file-x"] * 501), "file_ids", "array_above_max_length"),
    ("store-days-366", store(expires_after={"anchor": "last_active_at", "days": 366}), "expires_after.days", "integer_above_max_value"),
    ("store-days-0", store(expires_after={"anchor": "last_active_at", "days": 0}), "expires_after.days", "integer_below_min_value"),
    ("store-anchor", store(expires_after={"anchor": "created_at", "days": 1}), "expires_after.anchor", "invalid_value"),
    ("chunk-size", store(chunking_strategy=chunking(4097, 0)), "chunking_strategy.static.max_chunk_size_tokens", "integer_above_max_value"),
    ("chunk-overlap", store(chunking_strategy=chunking(800, 401)), "chunking_strategy.static.chunk_overlap_tokens", "invalid_value"),
    ("store-name-type", store(name=3), "name", "invalid_type"),
    ("attributes-keys", lambda c, ids: c.vector_stores.files.create(vector_store_id=ids["store"], file_id=ids["file"], attributes=many_keys), "attributes", "object_above_max_properties"),
    ("attribute-value", lambda c, ids: c.vector_stores.files.create(vector_store_id=ids["store"], file_id=ids["file"], attributes={"a": "x" * 513}), "attributes.a", "string_above_max_length"),
    ("attribute-type", lambda c, ids: c.vector_stores.files.create(vector_store_id=ids["store"], file_id=ids["file"], attributes={"a": [1]}), "attributes.a", "invalid_type"),
    ("batch-2000", lambda c, ids: c.vector_stores.file_batches.create(ids["store"], file_ids=["file-x"] * 2001), "file_ids", "array_above_max_length"),
    ("search-results", lambda c, ids: c.vector_stores.search(ids["store"], query="q", max_num_results=51), "max_num_results", "integer_above_max_value"),
    ("search-ranker", lambda c, ids: c.vector_stores.search(ids["store"], query="q", ranking_options={"ranker": "default_2024_08_21"}), "ranking_options.ranker", "invalid_value"),
    ("file-purpose", lambda c, ids: c.files.create(file=("a.txt", b"a"), purpose="training"), "purpose", "invalid_value"),
    ("file-expiry", lambda c, ids: c.files.create(file=("a.txt", b"a"), purpose="assistants", expires_after={"anchor": "created_at", "seconds": 3599}), "expires_after.seconds", "integer_below_min_value"),
    ("list-limit", lambda c, ids: c.beta.assistants.list(limit=101), "limit", "integer_above_max_value"),
    ("list-order", lambda c, ids: c.beta.assistants.list(order="up"), "order", "invalid_value"),
    ("files-limit", lambda c, ids: c.files.list(limit=10_001), "limit", "integer_above_max_value"),
    ("vs-file-filter", lambda c, ids: c.vector_stores.files.list(ids["store"], filter="done"), "filter", "invalid_value"),
]


@pytest.mark.parametrize("call, param, code", [pytest.param(*case[1:], id=case[0]) for case in CASES])
def test_limit_is_enforced(client, ids, call, param, code):
    with pytest.raises(openai.BadRequestError) as err:
        call(client, ids)
    assert (err.value.param, err.value.code, err.value.type) == (param, code, "invalid_request_error")
    message = err.value.body["message"]
    # enum errors read like the real API's ("Invalid value: 'x'. Supported values are: ..."): the path is in `param`
    assert param in message or message.startswith("Invalid value: ")


def test_values_at_the_limits_are_accepted(client, ids):
    assistant = client.beta.assistants.create(
        model="gpt-4o", name="x" * 256, description="x" * 512, tools=[FN] + [{"type": "code_interpreter"}] * 127,
        metadata={f"{i:064d}": "v" * 512 for i in range(16)}, temperature=2, top_p=0,
        tool_resources={"file_search": {"vector_store_ids": [ids["store"]]}},
    )
    assert len(assistant.tools) == 128 and len(assistant.metadata) == 16


def test_unknown_field(client):
    with pytest.raises(openai.BadRequestError) as err:
        client.beta.assistants.create(model="gpt-4o", extra_body={"colour": "blue"})
    assert (err.value.param, err.value.code) == ("colour", "unknown_parameter")
    assert err.value.body["message"] == "Unknown parameter: 'colour'."


def test_wrong_type(client):
    with pytest.raises(openai.BadRequestError) as err:
        client.beta.assistants.create(model="gpt-4o", name=5)
    assert err.value.body["message"] == "Invalid type for 'name': expected a string, but got an integer instead."
    assert (err.value.param, err.value.code) == ("name", "invalid_type")


def raw(server, method, path, beta=True, **kwargs):
    headers = {"Authorization": f"Bearer {server.api_key}", "Content-Type": "application/json"}
    if beta:
        headers["OpenAI-Beta"] = "assistants=v2"
    return httpx.request(method, server.base_url + path, headers=headers, **kwargs)


@pytest.mark.parametrize("body", [b"{not json", b"[1, 2]"])
def test_malformed_json_body(server, body):
    response = raw(server, "POST", "/assistants", content=body)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error" and set(error) == {"message", "type", "param", "code"}
    assert response.headers["x-request-id"].startswith("req_")


def test_empty_body_on_cancel_style_posts_is_accepted(server):
    response = raw(server, "POST", "/vector_stores", content=b"")
    assert response.status_code == 200 and response.json()["object"] == "vector_store"


@pytest.mark.parametrize("path", ["/assistants", "/threads/thread_x", "/vector_stores"])
def test_missing_beta_header(server, path):
    response = raw(server, "GET", path, beta=False)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_beta"


def test_files_need_no_beta_header(server):
    assert raw(server, "GET", "/files", beta=False).status_code == 200


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda c, ids: c.beta.assistants.retrieve("asst_x"), "No assistant found with id 'asst_x'."),
        (lambda c, ids: c.beta.threads.update("thread_x", metadata={}), "No thread found with id 'thread_x'."),
        (lambda c, ids: c.beta.threads.messages.update("msg_x", thread_id=ids["thread"], metadata={}), "No message found with id 'msg_x'."),
        (lambda c, ids: c.vector_stores.update("vs_x", name="n"), "No vector store found with id 'vs_x'."),
        (lambda c, ids: c.vector_stores.files.retrieve("file-x", vector_store_id=ids["store"]), "No vector store file found with id 'file-x'."),
        (lambda c, ids: c.vector_stores.file_batches.retrieve("vsfb_x", vector_store_id=ids["store"]), "No vector store file batch found with id 'vsfb_x'."),
        (lambda c, ids: c.files.delete("file-x"), "No file found with id 'file-x'."),
    ],
)
def test_not_found_wording(client, ids, call, message):
    with pytest.raises(openai.NotFoundError) as err:
        call(client, ids)
    assert err.value.body == {"message": message, "type": "invalid_request_error", "param": None, "code": None}
