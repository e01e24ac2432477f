"""Nothing acknowledged is lost: not to a kill -9 of ``asstctl serve``, not to concurrent writers."""

from __future__ import annotations

import signal
import sqlite3
import threading
import time

import openai

from asstctl.server.embedded import start_server
from asstctl.server.store import Store
from tests.conftest import make_client
from tests.serve_process import ServeProcess


class Writer(threading.Thread):
    """Creates assistants until the server goes away; ``acked`` holds every id the server confirmed."""

    def __init__(self, base_url: str, prefix: str):
        super().__init__(daemon=True)
        self.base_url, self.prefix = base_url, prefix
        self.acked: dict[str, str] = {}
        self.ended_by: BaseException | None = None

    def run(self) -> None:
        with openai.OpenAI(base_url=self.base_url, api_key="x", max_retries=0, timeout=10) as client:
            try:
                while True:
                    name = f"{self.prefix}-{len(self.acked)}"
                    self.acked[client.beta.assistants.create(model="gpt-4o", name=name).id] = name
            except BaseException as error:  # noqa: BLE001 - the test inspects it
                self.ended_by = error


def wait_for(condition, patience: float = 30.0) -> None:
    deadline = time.monotonic() + patience
    while not condition():
        assert time.monotonic() < deadline, "gave up waiting"
        time.sleep(0.01)


def test_acknowledged_writes_survive_kill_9(tmp_path):
    db = str(tmp_path / "server.sqlite3")
    with ServeProcess(tmp_path / "first", "--db", db) as server:
        writers = [Writer(server.base_url, prefix) for prefix in ("a", "b")]
        for writer in writers:
            writer.start()
        wait_for(lambda: all(len(w.acked) >= 15 for w in writers))
        assert server.stop(signal.SIGKILL) == -signal.SIGKILL  # mid-stream: both writers are still writing
        for writer in writers:
            writer.join(timeout=30)
    for writer in writers:  # each one was cut off by the kill, not by anything else
        assert isinstance(writer.ended_by, openai.APIConnectionError), writer.ended_by
    acked = {**writers[0].acked, **writers[1].acked}
    with ServeProcess(tmp_path / "second", "--db", db) as server, make_client(server) as client:
        for assistant_id, name in acked.items():
            assert client.beta.assistants.retrieve(assistant_id).name == name
        stored = {a.id for a in client.beta.assistants.list(limit=100)}
    assert set(acked) <= stored and len(stored) - len(acked) <= len(writers)  # at most the in-flight ones extra


def test_eight_sdk_threads_lose_nothing(tmp_path):
    errors: list[BaseException] = []
    created: list[str] = []

    def work(worker: int) -> None:
        try:
            with make_client(server, max_retries=0) as client:
                for i in range(8):
                    made = client.beta.assistants.create(model="gpt-4o", name=f"w{worker}-{i}")
                    client.beta.assistants.update(made.id, metadata={"worker": str(worker)})
                    assert client.beta.assistants.retrieve(made.id).metadata == {"worker": str(worker)}
                    created.append(made.id)
                    list(client.beta.assistants.list(limit=5))
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)

    with start_server(str(tmp_path / "server.sqlite3")) as server:
        threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        with make_client(server) as client:
            listed = [a.id for a in client.beta.assistants.list(limit=100)]
    assert errors == []
    assert sorted(listed) == sorted(created) and len(set(created)) == 64


def test_two_connections_on_one_file_never_see_database_is_locked(tmp_path):
    """Two stores on one file, as `asstctl serve` and an embedded target would be, 4 threads each."""
    path = tmp_path / "shared.sqlite3"
    stores = [Store(path), Store(path)]
    errors: list[BaseException] = []

    def work(store: Store, name: str) -> None:
        try:
            for i in range(100):
                with store.transaction():
                    store.insert("assistant", {"id": f"{name}-{i}", "created_at": i})
                    store.update("assistant", f"{name}-{i}", lambda obj: obj.update(touched=True))
        except sqlite3.Error as error:
            errors.append(error)

    threads = [threading.Thread(target=work, args=(stores[n % 2], f"t{n}")) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    stored = stores[1].all("assistant")
    for store in stores:
        store.close()
    assert errors == []
    assert len(stored) == 800 and all(obj["touched"] for obj in stored)


def test_file_database_uses_wal(tmp_path):
    store = Store(tmp_path / "server.sqlite3")
    try:
        assert store._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        store.close()

