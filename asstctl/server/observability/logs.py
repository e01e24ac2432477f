"""``--log-format json``: one JSON object per line on stderr, for log shippers.

Besides the server's own messages (warnings, errors) and every other logger's and Python warning (the handler is
the root logger's), one line per HTTP request but the probes (``"event":
"request"``: request id, method, path, status, duration, project, run id when the path names one) and
one per run transition (``"event": "run"``: run id, status, project, the error code of a failed run, and the
request id when a request caused it). Every line names the replica.
No line ever holds a key or a request body: the fields are the ones listed here and the message, and a key in a
request's path (``GET /v1/assistants/sk-...``, a client's mistake) is shown as ``sk-…redacted``, as is anything
key-shaped in any line (``redact``).
"""

from __future__ import annotations

import json
import logging
import re
import time
from contextvars import ContextVar

ACCESS = logging.getLogger("asstctl.server.access")
FIELDS = ("event", "request_id", "method", "path", "status", "duration_ms", "project", "run_id", "thread_id",
          "error", "replica")
# An OpenAI-style key or this server's project key (``sk-asst-`` + hex, asstctl.server.projects), wherever it is.
KEY_SHAPED = re.compile(r"sk-[A-Za-z0-9_-]{8,}")
REDACTED = "sk-…redacted"
REQUEST: ContextVar[str | None] = ContextVar("asstctl_request_id", default=None)  # the request being answered


class JsonFormatter(logging.Formatter):
    def __init__(self, replica: str):
        super().__init__()
        self.replica = replica

    def format(self, record: logging.LogRecord) -> str:
        line = {"time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
                + f".{int(record.msecs):03d}Z", "level": record.levelname.lower(), "logger": record.name,
                "message": record.getMessage(), "replica": self.replica}
        for name in FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                line[name] = value
        if record.exc_info:
            line["error"] = self.formatException(record.exc_info)
        return redact(json.dumps(line, ensure_ascii=False, default=str))


def redact(text: str, keys: tuple[str, ...] = ()) -> str:
    """``text`` with every key-shaped run (``KEY_SHAPED``) and each of ``keys`` (the server's own API and admin
    keys, whatever their shape) shown as ``REDACTED``."""
    for key in keys:
        if key in text:
            text = text.replace(key, REDACTED)
    return KEY_SHAPED.sub(REDACTED, text) if "sk-" in text else text


def use_json(handler: logging.Handler, replica: str) -> None:
    """Format ``handler``'s lines as JSON (the server writes request and run lines only in this format)."""
    handler.setFormatter(JsonFormatter(replica))


def request_line(keys: tuple[str, ...] = (), **fields) -> None:
    """A request's line; its path with any key in it redacted (``redact``: ``keys`` are the server's own)."""
    if ACCESS.isEnabledFor(logging.INFO):
        fields["path"] = redact(fields["path"], keys)
        ACCESS.info("%s %s %s", fields["method"], fields["path"], fields["status"], extra={"event": "request", **fields})


def run_line(run_id: str, status: str, project: str | None, thread_id: str | None, error: str | None) -> None:
    """A run transition; with the request id when a request caused it (a create, a cancel, tool outputs)."""
    if ACCESS.isEnabledFor(logging.INFO):
        ACCESS.info("run %s %s", run_id, status,
                    extra={"event": "run", "run_id": run_id, "status": status, "project": project,
                           "thread_id": thread_id, "request_id": REQUEST.get(), "error": error})
