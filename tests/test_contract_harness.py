"""The contract harness itself must be able to fail."""

from tests.contract import check


def test_valid_error_envelope_passes():
    body = {"error": {"message": "No assistant found with id 'asst_x'.", "type": "invalid_request_error", "param": None, "code": None}}
    assert check("GET", "/v1/assistants/asst_x", 404, body) == []


def test_malformed_assistant_is_reported():
    problems = check("GET", "/v1/assistants/asst_x", 200, {"id": "asst_x", "object": "assistant"})
    assert problems and "required" in problems[0]


def test_literal_path_beats_parameter():
    # /threads/runs is create-thread-and-run (a run), not /threads/{thread_id} (a thread)
    problems = check("POST", "/v1/threads/runs", 200, {"id": "thread_1", "object": "thread", "created_at": 1, "tool_resources": None, "metadata": {}})
    assert problems


def test_empty_list_may_have_null_cursors_but_full_list_may_not():
    empty = {"object": "list", "data": [], "first_id": None, "last_id": None, "has_more": False}
    assert check("GET", "/v1/assistants", 200, empty) == []
    assistant = {"id": "asst_1", "object": "assistant", "created_at": 1, "name": None, "description": None,
                 "model": "gpt-4o", "instructions": None, "tools": [], "metadata": {}}
    full = {"object": "list", "data": [assistant], "first_id": None, "last_id": None, "has_more": False}
    assert any("first_id" in p for p in check("GET", "/v1/assistants", 200, full))
