"""File bytes in SQLite, streamed: the blob half of ``asstctl.server.store.Store``.

A blob is written as BLOB_CHUNK-sized rows of ``blob_chunks`` under a fresh write key, one
short transaction per chunk (the store lock is never held while the caller produces the
next chunk, e.g. reads the network); then one tiny transaction points ``blob_index`` at the
key. Readers see all of a blob or none of it, and the commit never rewrites the bytes.
Chunks no index row points at any more (replaced or deleted blobs) are removed piecewise,
outside any caller's transaction. Blobs from before this scheme (table ``blobs``, whole)
are still read.

The API (a PostgreSQL store implements the same): ``write_blob(id, chunks) -> size``,
``read_blob(id, chunk_size) -> iterator | None``, ``blob_size(id) -> int | None``,
``delete_blob(id)``.

Imports: the standard library only.
"""

from __future__ import annotations

import secrets
import time
from typing import Iterable, Iterator

BLOB_SCHEMA = """
CREATE TABLE IF NOT EXISTS blobs (id TEXT PRIMARY KEY, data BLOB NOT NULL);  -- older asstctl: read only
CREATE TABLE IF NOT EXISTS blob_chunks (key TEXT NOT NULL, n INTEGER NOT NULL, data BLOB NOT NULL, PRIMARY KEY (key, n));
CREATE TABLE IF NOT EXISTS blob_index (id TEXT PRIMARY KEY, key TEXT NOT NULL, chunks INTEGER NOT NULL, size INTEGER NOT NULL);
"""

BLOB_CHUNK = 1 << 20  # bytes per blob_chunks row
STALE_AFTER = 86_400  # seconds: an unreferenced write key older than this is a crashed write's


class SQLiteBlobs:
    """Mixin for ``Store``: needs ``_db``, ``_lock``, ``_depth`` and a ``transaction()`` that
    calls ``_collect_garbage()`` after its outermost commit when ``_garbage`` is not empty."""

    _garbage: set[str]

    def write_blob(self, id: str, chunks: Iterable[bytes]) -> int:
        """Store the bytes ``chunks`` yields under ``id`` (replacing any); the size. Atomic:
        if ``chunks`` raises, nothing is stored and the exception propagates."""
        key = f"{int(time.time())}-{secrets.token_hex(8)}"
        size = n = 0
        try:
            for piece in rechunk(chunks, BLOB_CHUNK):
                with self.transaction():
                    self._db.execute("INSERT INTO blob_chunks (key, n, data) VALUES (?, ?, ?)", (key, n, piece))
                size, n = size + len(piece), n + 1
            with self.transaction():
                old = self._db.execute("SELECT key FROM blob_index WHERE id = ?", (id,)).fetchone()
                self._db.execute(
                    "INSERT OR REPLACE INTO blob_index (id, key, chunks, size) VALUES (?, ?, ?, ?)", (id, key, n, size)
                )
                self._db.execute("DELETE FROM blobs WHERE id = ?", (id,))
                if old:
                    self._garbage.add(old[0])  # collected once the transaction commits
        except BaseException:
            with self._lock:
                self._garbage.add(key)
            self._collect_garbage()
            raise
        return size

    def read_blob(self, id: str, chunk_size: int = 1 << 20) -> Iterator[bytes] | None:
        """The bytes of ``id`` in pieces of ``chunk_size`` (the last may be shorter), or None.
        Each piece is read under the lock; none is held between pieces."""
        with self._lock:
            row = self._db.execute("SELECT key, chunks FROM blob_index WHERE id = ?", (id,)).fetchone()
            legacy = row is None and self._db.execute("SELECT 1 FROM blobs WHERE id = ?", (id,)).fetchone()
        if row is None and not legacy:
            return None
        return rechunk(self._legacy_rows(id) if legacy else self._chunk_rows(*row), chunk_size)

    def _chunk_rows(self, key: str, count: int) -> Iterator[bytes]:
        for n in range(count):
            with self._lock:
                row = self._db.execute("SELECT data FROM blob_chunks WHERE key = ? AND n = ?", (key, n)).fetchone()
            if row is None:  # deleted while being read
                return
            yield bytes(row[0])

    def _legacy_rows(self, id: str) -> Iterator[bytes]:
        with self._lock:
            row = self._db.execute("SELECT data FROM blobs WHERE id = ?", (id,)).fetchone()
        if row:
            yield bytes(row[0])

    def blob_size(self, id: str) -> int | None:
        with self._lock:
            row = self._db.execute("SELECT size FROM blob_index WHERE id = ?", (id,)).fetchone()
            if row is None:
                row = self._db.execute("SELECT length(data) FROM blobs WHERE id = ?", (id,)).fetchone()
        return row[0] if row else None

    def delete_blob(self, id: str) -> None:
        """Forget ``id`` (atomically with the caller's transaction); its bytes go afterwards."""
        with self.transaction():
            row = self._db.execute("SELECT key FROM blob_index WHERE id = ?", (id,)).fetchone()
            self._db.execute("DELETE FROM blob_index WHERE id = ?", (id,))
            self._db.execute("DELETE FROM blobs WHERE id = ?", (id,))
            if row:
                self._garbage.add(row[0])  # collected once the (outermost) transaction commits

    def _collect_garbage(self) -> None:
        """Remove unreferenced write keys, a chunk per transaction (others get the lock in
        between); never inside a caller's transaction (its rollback may need the key)."""
        with self._lock:
            if self._depth:
                return
            keys, self._garbage = self._garbage, set()
        for key in keys:
            with self._lock:
                if self._db.execute("SELECT 1 FROM blob_index WHERE key = ?", (key,)).fetchone():
                    continue
                numbers = self._db.execute("SELECT n FROM blob_chunks WHERE key = ?", (key,)).fetchall()
            for (n,) in numbers:
                with self.transaction():
                    self._db.execute("DELETE FROM blob_chunks WHERE key = ? AND n = ?", (key, n))

    def _init_blobs(self) -> None:
        """Tables, and the chunks of writes a crash interrupted (unreferenced and a day old:
        younger ones may be another process's upload in progress)."""
        self._db.executescript(BLOB_SCHEMA)
        self._garbage = set()
        cutoff = f"{int(time.time()) - STALE_AFTER}"
        rows = self._db.execute(
            "SELECT DISTINCT key FROM blob_chunks WHERE key < ? AND key NOT IN (SELECT key FROM blob_index)", (cutoff,)
        ).fetchall()
        self._garbage.update(key for (key,) in rows)
        self._collect_garbage()


def rechunk(chunks: Iterable[bytes], size: int) -> Iterator[bytes]:
    """Re-cut a stream of byte strings into pieces of exactly ``size`` (the last may be shorter)."""
    buffer = bytearray()
    for chunk in chunks:
        buffer += chunk
        if len(buffer) < size:
            continue
        with memoryview(buffer) as view:
            start = 0
            while len(buffer) - start >= size:
                yield bytes(view[start:start + size])
                start += size
        del buffer[:start]
    if buffer:
        yield bytes(buffer)
