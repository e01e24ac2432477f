"""Streaming ``multipart/form-data`` uploads: the file part goes to the store piece by piece.

The event loop reads the network; a worker thread parses the parts (python-multipart's
streaming parser) and hands the file's bytes to ``Store.write_blob``, so an upload takes
bounded memory (about ``BATCH`` bytes) and the store lock only for one chunk at a time,
while other requests go on being served. Form fields are small, few and checked as they
arrive; any problem is an ``APIError`` in the API's envelope, and nothing is stored.

Imports: starlette/anyio, python-multipart, ``asstctl.server.errors`` and ``http``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Callable, Iterator

import anyio.from_thread
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, MultipartState, parse_options_header
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request

from asstctl.server.errors import APIError, invalid, unknown_parameter
from asstctl.server.http import DRAIN_BYTES, too_large

MAX_FIELDS = 1000  # parts per request
MAX_FIELD_BYTES = 64 << 10  # one non-file field
FRAMING_BYTES = 1 << 20  # what Content-Length may hold beyond the file: boundaries, headers, fields
BATCH = 1 << 20  # bytes taken from the network per hand-over to the worker thread


@dataclass
class Upload:
    """What was received: the form fields (name → text) and the file's name and size."""

    fields: dict[str, str] = field(default_factory=dict)
    filename: str | None = None
    size: int = 0


def boundary_of(request: Request) -> bytes:
    """The multipart boundary, or the 400 the API gives for anything else."""
    content_type = request.headers.get("content-type", "")
    kind, options = parse_options_header(content_type)
    if kind != b"multipart/form-data":
        raise APIError(400, "Invalid request: uploads must be sent as multipart/form-data.", code="invalid_request")
    boundary = options.get(b"boundary")
    if not boundary or len(boundary) > 70:
        raise APIError(
            400,
            "Invalid multipart/form-data body: the Content-Type header has no usable boundary. "
            "Let your HTTP library build the multipart body (e.g. the SDK's files.create).",
            code="invalid_request",
        )
    return boundary


async def receive_upload(
    request: Request,
    store: Any,
    blob_id: str,
    *,
    limit: int,
    allowed: tuple[str, ...],
    check: Callable[[Upload], None],
) -> Upload:
    """Stream the upload's ``file`` part into ``store`` as ``blob_id``; ``check`` vets the
    complete form before the blob is committed. On any error nothing is stored, the rest of
    the body is read and dropped (bounded), and the error propagates."""
    source = _Source(request)
    declared = request.headers.get("content-length", "")
    try:
        boundary = boundary_of(request)
        if declared.isdigit() and int(declared) > limit + FRAMING_BYTES:
            raise too_large(limit, "file", "file_too_large")
        form = _Form(boundary, limit, allowed)
        chunks = form.file_chunks(source.pull_blocking, check)
        form.upload.size = await run_in_threadpool(store.write_blob, blob_id, chunks)
        return form.upload
    except APIError:
        await source.drain()
        raise


class _Source:
    """The request body, batched; ``pull_blocking`` is called from the worker thread."""

    def __init__(self, request: Request):
        self._stream: AsyncIterator[bytes] = request.stream().__aiter__()
        self._ended = False
        self.received = 0

    async def pull(self) -> bytes | None:
        """Up to about ``BATCH`` more bytes, or None at the end of the body."""
        batch = bytearray()
        while len(batch) < BATCH and not self._ended:
            try:
                chunk = await self._stream.__anext__()
            except StopAsyncIteration:
                self._ended = True
                break
            batch += chunk
            self.received += len(chunk)
        return bytes(batch) if batch or not self._ended else None

    def pull_blocking(self) -> bytes | None:
        return anyio.from_thread.run(self.pull)

    async def drain(self) -> None:
        """Read and drop the rest (at most ``DRAIN_BYTES``) so the client sees our answer."""
        start = self.received
        try:
            while not self._ended and self.received - start < DRAIN_BYTES:
                await self.pull()
        except ClientDisconnect:
            pass


class _Form:
    """python-multipart callbacks: fields collected (bounded), file bytes queued for the store."""

    def __init__(self, boundary: bytes, limit: int, allowed: tuple[str, ...]):
        self.limit, self.allowed = limit, allowed
        self.upload = Upload()
        self.pending: list[bytes] = []
        self.parts = 0
        self._header_name = self._header_value = b""
        self._disposition = b""
        self._name: str | None = None
        self._is_file = False
        self._value = bytearray()
        callbacks = {
            "on_part_begin": self._part_begin,
            "on_header_field": self._header_field,
            "on_header_value": self._header_value_part,
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
            "on_part_data": self._part_data,
            "on_part_end": self._part_end,
        }
        self.parser = MultipartParser(boundary, callbacks)

    def file_chunks(self, pull: Callable[[], bytes | None], check: Callable[[Upload], None]) -> Iterator[bytes]:
        """The file's bytes as they arrive (runs in the worker thread); ends with ``check``."""
        while (data := pull()) is not None:
            self._feed(data)
            if self.pending:
                pending, self.pending = self.pending, []
                yield b"".join(pending)
        try:
            self.parser.finalize()
        except FormParserError:
            raise _malformed()
        if self.parts == 0 or self.parser.state != MultipartState.END:
            raise _malformed()
        check(self.upload)

    def _feed(self, data: bytes) -> None:
        try:
            self.parser.write(data)
        except FormParserError as error:
            if str(error).startswith("Maximum header size"):  # python-multipart's cap on one header line
                raise _malformed(f"a part's header line is over the limit of "
                                 f"{getattr(self.parser, 'max_header_size', 4224)} bytes (a filename may have at "
                                 f"most {MAX_FILENAME_BYTES} bytes)")
            if str(error).startswith("Maximum header count"):
                raise _malformed(f"a part has more than {getattr(self.parser, 'max_header_count', 8)} header lines")
            raise _malformed()

    def _part_begin(self) -> None:
        self.parts += 1
        if self.parts > MAX_FIELDS:
            raise invalid(None, f"Invalid multipart/form-data body: more than {MAX_FIELDS} fields.", "too_many_fields")
        self._disposition, self._name, self._is_file = b"", None, False
        self._value = bytearray()

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]

    def _header_value_part(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def _header_end(self) -> None:
        if self._header_name.strip().lower() == b"content-disposition":
            self._disposition = self._header_value
        self._header_name = self._header_value = b""

    def _headers_finished(self) -> None:
        _, options = parse_options_header(self._disposition)
        if b"name" not in options:
            raise _malformed('a part has no Content-Disposition "name"')
        name = _text(options[b"name"])
        if name not in self.allowed:
            raise unknown_parameter(name)
        self._name = name
        if b"filename" in options and name == "file":
            if self.upload.filename is not None:
                raise invalid("file", "Invalid 'file': send exactly one file per upload.")
            self._is_file = True
            self.upload.filename = filename_of(options[b"filename"]) or "upload"

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if self._is_file:
            self.upload.size += end - start
            if self.upload.size > self.limit:
                raise too_large(self.limit, "file", "file_too_large")
            self.pending.append(data[start:end])
            return
        if len(self._value) + (end - start) > MAX_FIELD_BYTES:
            raise invalid(self._name, f"Invalid '{self._name}': the field is longer than {MAX_FIELD_BYTES} bytes.")
        self._value += data[start:end]

    def _part_end(self) -> None:
        if not self._is_file and self._name is not None:
            try:
                self.upload.fields[self._name] = self._value.decode("utf-8")
            except UnicodeDecodeError:
                raise invalid(self._name, f"Invalid '{self._name}': the field is not valid UTF-8 text.")


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", "replace")


MAX_FILENAME_BYTES = 255  # a file name on Linux file systems (the name is copied into sandboxes)
BIDI_CONTROLS = frozenset("\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def filename_of(raw: bytes) -> str:
    """The upload's filename, or a 400 naming the rule it breaks: valid UTF-8, no NUL or control
    characters (C0, DEL, C1), no bidirectional controls (they make a name read as another, e.g. in a
    call's ``[file saved: ...]`` line), no ``/``, not ``.`` or ``..``, at most 255 bytes (the file is
    copied by that name into sandboxes)."""
    try:
        name = raw.decode("utf-8")
    except UnicodeDecodeError:
        name = None
    control = next((c for c in name or "" if ord(c) < 32 or 127 <= ord(c) <= 159), None)
    bidi = next((c for c in name or "" if c in BIDI_CONTROLS), None)
    if name is None:
        rule = "is not valid UTF-8"
    elif control is not None:
        rule = f"contains a NUL byte or another control character (U+{ord(control):04X})"
    elif bidi is not None:
        rule = f"contains a bidirectional control character (U+{ord(bidi):04X}), which can make a name read as another"
    elif len(raw) > MAX_FILENAME_BYTES:
        rule = f"is {len(raw)} bytes long in UTF-8, over the limit of {MAX_FILENAME_BYTES} bytes"
    elif "/" in name:
        rule = "contains '/' (send the file's own name, without its directory)"
    elif name in (".", ".."):
        rule = f"is {name!r}"
    else:
        return name
    raise invalid("file", f"Invalid 'file': its filename {rule}. Rename the file and upload it again.")


def _malformed(detail: str = "the body does not follow its boundary") -> APIError:
    return APIError(
        400,
        f"Invalid multipart/form-data body: {detail}. Let your HTTP library build the multipart body.",
        code="invalid_request",
    )
