"""Issue 10 (server) against a real ``asstctl serve`` process: bounded memory for big uploads
and downloads, the upload limit flag, other requests served during an upload, restarts
after poisoned requests, a header timeout, and API keys that could never match."""

from __future__ import annotations

import os
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Callable, Iterator

import httpx2 as httpx
import pytest

from tests.serve_process import ServeProcess

BOUNDARY = "asstctl-test-boundary"
MB = 1 << 20
BETA = {"OpenAI-Beta": "assistants=v2", "Content-Type": "application/json"}


def peak_rss(pid: int) -> int:
    """The process's peak resident set size so far (VmHWM), in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM in /proc/<pid>/status")


def multipart_stream(size: int, during: Callable[[], None] | None = None) -> Iterator[bytes]:
    """A multipart upload of ``size`` bytes, produced piece by piece (never whole in memory);
    ``during`` runs once a third of the file has been sent, while the upload is still open."""
    yield (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nassistants\r\n'
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="big.bin"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    block, sent = b"\xab" * MB, 0
    while sent < size:
        if during is not None and sent >= size // 3:
            during()
            during = None
        piece = block[: min(MB, size - sent)]
        yield piece
        sent += len(piece)
    yield f"\r\n--{BOUNDARY}--\r\n".encode()


def upload(base_url: str, size: int, during: Callable[[], None] | None = None) -> httpx.Response:
    headers = {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}
    with httpx.Client(timeout=300) as http:
        return http.post(f"{base_url}/files", content=multipart_stream(size, during), headers=headers)


@pytest.fixture(scope="module")
def serve(tmp_path_factory):
    work = tmp_path_factory.mktemp("serve")
    with ServeProcess(work, "--db", str(work / "server.sqlite3")) as process:
        yield process


def test_a_150_mb_upload_and_download_stay_in_bounded_memory(serve):
    with httpx.Client(base_url=serve.base_url, timeout=300) as http:
        assert http.get("/files").status_code == 200  # warm: everything imported, first request served
        baseline = peak_rss(serve.proc.pid)
        size = 150 * MB
        response = upload(serve.base_url, size)
        assert response.status_code == 200, response.text
        file = response.json()
        assert file["bytes"] == size
        after_upload = peak_rss(serve.proc.pid)
        received = 0
        with http.stream("GET", f"/files/{file['id']}/content") as download:
            assert download.headers["content-length"] == str(size)
            for chunk in download.iter_bytes():
                received += len(chunk)
        assert received == size
        after_download = peak_rss(serve.proc.pid)
        assert http.delete(f"/files/{file['id']}").status_code == 200
    grown = max(after_upload, after_download) - baseline
    print(f"peak RSS grew {grown / MB:.1f} MB for a {size // MB} MB upload and download")
    assert grown < 100 * MB, f"peak RSS grew by {grown / MB:.0f} MB"


def test_other_requests_are_answered_during_an_upload(serve):
    answers: list[int] = []

    def meanwhile() -> None:  # runs inside the upload's body generator: the upload is open
        with httpx.Client(base_url=serve.base_url, timeout=60) as http:
            answers.append(http.get("/assistants", headers=BETA).status_code)
            answers.append(http.post("/assistants", json={"model": "gpt-4o"}, headers=BETA).status_code)

    response = upload(serve.base_url, 40 * MB, during=meanwhile)
    assert answers == [200, 200]
    assert response.status_code == 200 and response.json()["bytes"] == 40 * MB


def test_poisoned_requests_leave_the_server_readable_across_a_restart(tmp_path):
    db = str(tmp_path / "server.sqlite3")
    bodies = ['{"model":"gpt-4o","temperature":NaN}', '{"model":"gpt-4o","name":"\\ud800"}',
              '{"model":"gpt-4o","tools":[{"type":"function","function":{"name":"f","parameters":{"a":Infinity}}}]}']
    with ServeProcess(tmp_path / "one", "--db", db) as first, httpx.Client(base_url=first.base_url) as http:
        for raw in bodies:
            assert http.post("/assistants", content=raw.encode(), headers=BETA).status_code == 400
        assert http.post("/assistants", json={"model": "gpt-4o", "name": "fine"}, headers=BETA).status_code == 200
        assert first.stop() == 0
    with ServeProcess(tmp_path / "two", "--db", db) as second, httpx.Client(base_url=second.base_url) as http:
        listed = http.get("/assistants", headers=BETA)
        assert listed.status_code == 200
        assert [a["name"] for a in listed.json()["data"]] == ["fine"]


def test_an_upload_past_the_flag_limit_is_a_413_and_nothing_is_stored(tmp_path):
    db = tmp_path / "server.sqlite3"
    with ServeProcess(tmp_path, "--db", str(db), "--max-upload-mb", "5") as process:
        for size in (8 * MB, 5 * MB + 1):
            response = upload(process.base_url, size)
            assert response.status_code == 413, response.text
            error = response.json()["error"]
            assert error["code"] == "file_too_large" and "5 MB" in error["message"]
        with httpx.Client(base_url=process.base_url) as http:
            declared = http.post(  # refused on its Content-Length, before the file is read
                "/files", content=b"".join(multipart_stream(6 * MB)),
                headers={"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"},
            )
            assert declared.status_code == 413
            assert http.get("/files").json()["data"] == []
        assert upload(process.base_url, 5 * MB).status_code == 200
        assert process.stop() == 0
    with sqlite3.connect(db) as raw:
        assert raw.execute("SELECT count(*) FROM blob_index").fetchone()[0] == 1  # the 5 MB one
        assert raw.execute("SELECT count(*), sum(length(data)) FROM blob_chunks").fetchone() == (5, 5 * MB)


def test_a_connection_with_unfinished_headers_is_closed(serve):
    host, port = serve.base_url.removeprefix("http://").removesuffix("/v1").rsplit(":", 1)
    fresh = socket.create_connection((host, int(port)))
    fresh.sendall(b"GET /v1/files HTTP/1.1\r\nHost: x\r\n")  # ... and never the blank line
    second = socket.create_connection((host, int(port)))
    second.sendall(b"GET /v1/files HTTP/1.1\r\nHost: x\r\n\r\n")  # one full request, then half of another
    second.settimeout(60)
    first_answer = b""
    while b"\r\n\r\n" not in first_answer or not first_answer.rstrip().endswith(b"}"):
        first_answer += second.recv(65536)
    second.sendall(b"GET /v1/fi")
    for sock in (fresh, second):
        sock.settimeout(60)  # the server's header timeout is 10 s; without one this recv would time out
        leftover = b""
        while chunk := sock.recv(65536):
            leftover += chunk
        assert leftover == b""  # closed, with nothing sent for the unfinished request
        sock.close()
    assert first_answer.startswith(b"HTTP/1.1 200")


@pytest.mark.parametrize(
    "args, env",
    [(["--api-key", ""], {}), (["--api-key", "   "], {}), ([], {"ASSTCTL_SERVER_API_KEY": " \t "}),
     (["--api-key", "sk-sécret-ключ"], {}), ([], {"ASSTCTL_SERVER_API_KEY": "sk-sécret-ключ"}),
     (["--api-key", "sk-two words"], {})],
    ids=["empty", "blank", "blank-env", "non-ascii", "non-ascii-env", "space"],
)
def test_an_api_key_no_client_could_send_is_refused_at_start(tmp_path, args, env):
    result = subprocess.run(
        [sys.executable, "-m", "asstctl", "serve", "--port", "0", "--db", ":memory:", *args],
        capture_output=True, text=True, timeout=60, cwd=tmp_path,
        env={**os.environ, **env},
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Serving" not in result.stdout
    assert "--api-key" in result.stderr and "ASSTCTL_SERVER_API_KEY" in result.stderr
    for secret in ("sécret", "ключ", "two words"):
        assert secret not in result.stderr + result.stdout
