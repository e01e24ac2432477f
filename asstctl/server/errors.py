"""The real API's error envelope: ``{"error": {"message", "type", "param", "code"}}``."""

from __future__ import annotations

NOUNS = {
    "assistant": "assistant",
    "thread": "thread",
    "message": "message",
    "run": "run",
    "step": "run step",
    "file": "file",
    "vector_store": "vector store",
    "vector_store_file": "vector store file",
    "file_batch": "vector store file batch",
}


class APIError(Exception):
    """Raised anywhere in a handler; the app turns it into the JSON error envelope."""

    def __init__(
        self,
        status: int,
        message: str,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ):
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code
        self.headers = headers or {}

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


def not_found(kind: str, id: str) -> APIError:
    """404 worded like the real API: ``No assistant found with id 'asst_x'.``"""
    return APIError(404, f"No {NOUNS.get(kind, kind)} found with id '{id}'.")


def invalid(param: str | None, message: str, code: str | None = "invalid_value") -> APIError:
    return APIError(400, message, param=param, code=code)


def unknown_parameter(name: str) -> APIError:
    return APIError(400, f"Unknown parameter: '{name}'.", param=name, code="unknown_parameter")


def missing_parameter(name: str) -> APIError:
    return APIError(400, f"Missing required parameter: '{name}'.", param=name, code="missing_required_parameter")
