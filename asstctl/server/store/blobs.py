"""File bytes, streamed, on either database: the blob half of the store (same scheme as before
the split into backends, now in portable SQL).

A blob is written as BLOB_CHUNK-sized rows of ``blob_chunks`` under a fresh write key, one
short transaction per chunk (no lock is held while the caller produces the next chunk, e.g.
reads the network); then one tiny transaction points ``blob_index`` at the key. Readers see all
of a blob or none of it, and the commit never rewrites the bytes. Chunks no index row points at
any more (replaced or deleted blobs, failed writes) are removed piecewise after the outermost
commit, outside any caller's transaction.

    write_blob(id, chunks) -> size    read_blob(id, chunk_size) -> iterator | None
    blob_size(id) -> int | None       delete_blob(id)

Imports: the standard library only.
"""

from __future__ import annotations

import secrets
import time
from typing import Iterable, Iterator

BLOB_CHUNK = 1 << 20  # bytes per blob_chunks row
STALE_AFTER = 86_400  # seconds: an unreferenced write key older than this is a crashed write's


class Blobs:
    """Mixin for a store with ``_fetch``, ``_exec``, ``transaction()`` and ``after_commit()``."""

    def write_blob(self, id: str, chunks: Iterable[bytes]) -> int:
        """Store the bytes ``chunks`` yields under ``id`` (replacing any); the size. Atomic:
        if ``chunks`` raises, nothing is stored and the exception propagates."""
        key = f"{int(time.time())}-{secrets.token_hex(8)}"
        size = n = 0
        try:
            for piece in rechunk(chunks, BLOB_CHUNK):
                with self.transaction():
                    self._exec("INSERT INTO blob_chunks (key, n, data) VALUES (?, ?, ?)", (key, n, piece))
                size, n = size + len(piece), n + 1
            with self.transaction():
                old = self._fetch("SELECT key FROM blob_index WHERE id = ?", (id,))
                self._exec("DELETE FROM blob_index WHERE id = ?", (id,))
                self._exec("INSERT INTO blob_index (id, key, chunks, size) VALUES (?, ?, ?, ?)", (id, key, n, size))
                if old:
                    self.after_commit(lambda: self._collect(old[0][0]))
        except BaseException:
            self._collect(key)
            raise
        return size

    def read_blob(self, id: str, chunk_size: int = 1 << 20) -> Iterator[bytes] | None:
        """The bytes of ``id`` in pieces of ``chunk_size`` (the last may be shorter), or None.
        Each stored row is read on its own; nothing is held between pieces."""
        rows = self._fetch("SELECT key, chunks FROM blob_index WHERE id = ?", (id,))
        if not rows:
            return None
        return rechunk(self._chunk_rows(*rows[0]), chunk_size)

    def _chunk_rows(self, key: str, count: int) -> Iterator[bytes]:
        for n in range(count):
            rows = self._fetch("SELECT data FROM blob_chunks WHERE key = ? AND n = ?", (key, n))
            if not rows:  # deleted while being read
                return
            yield bytes(rows[0][0])

    def blob_size(self, id: str) -> int | None:
        rows = self._fetch("SELECT size FROM blob_index WHERE id = ?", (id,))
        return int(rows[0][0]) if rows else None

    def delete_blob(self, id: str) -> None:
        """Forget ``id`` (atomically with the caller's transaction); its bytes go after the commit."""
        with self.transaction():
            rows = self._fetch("SELECT key FROM blob_index WHERE id = ?", (id,))
            self._exec("DELETE FROM blob_index WHERE id = ?", (id,))
            if rows:
                self.after_commit(lambda: self._collect(rows[0][0]))

    def _collect(self, key: str) -> None:
        """Remove the chunks of a write key no index row points at, one chunk per transaction."""
        if self._fetch("SELECT 1 FROM blob_index WHERE key = ?", (key,)):
            return
        for (n,) in self._fetch("SELECT n FROM blob_chunks WHERE key = ?", (key,)):
            with self.transaction():
                self._exec("DELETE FROM blob_chunks WHERE key = ? AND n = ?", (key, n))

    def _collect_stale(self) -> None:
        """At open: chunks of writes a crash interrupted (unreferenced and a day old: younger
        ones may be another process's upload in progress)."""
        cutoff = f"{int(time.time()) - STALE_AFTER}"
        rows = self._fetch(
            "SELECT DISTINCT key FROM blob_chunks WHERE key < ? AND key NOT IN (SELECT key FROM blob_index)", (cutoff,)
        )
        for (key,) in rows:
            self._collect(key)

    # Shims for routes written against the one-shot API.
    def put_blob(self, id: str, data: bytes) -> None:
        self.write_blob(id, [data])

    def get_blob(self, id: str) -> bytes | None:
        pieces = self.read_blob(id)
        return None if pieces is None else b"".join(pieces)


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
