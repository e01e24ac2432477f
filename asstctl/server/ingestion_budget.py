"""The memory ingestion may hold in chunk text while files wait for their embeddings.

A file's chunks stay in the server from the moment its worker sends them back until they are indexed
(with their vectors, after the embeddings upstream answered). ``IN_FLIGHT`` bounds the files in that
state, not their size: 256 files of up to 5,000,000 tokens each. :class:`Budget` bounds the
characters instead (``IngestLimits.pending_mb``, 256 MB): before its extraction a file
reserves an estimate (its size, times the chunks' overlap factor) and waits while the others' reservations
fill the budget; once its chunks are back the reservation becomes their real size (taken without
waiting: they are already held) and it is given back after the file is indexed. A file larger than
the whole budget still passes, alone.
"""

from __future__ import annotations

import asyncio


class Budget:
    def __init__(self, total: int):
        self.total = max(1, int(total))
        self.used = 0
        self._changed = asyncio.Condition()

    async def take(self, amount: int) -> int:
        """Wait until ``amount`` (at most the whole budget) fits, take it; what was taken."""
        amount = max(0, min(int(amount), self.total))
        async with self._changed:
            await self._changed.wait_for(lambda: self.used == 0 or self.used + amount <= self.total)
            self.used += amount
        return amount

    async def resize(self, held: int, amount: int) -> int:
        """A reservation of ``held`` becomes ``amount`` (the real size, already in memory: no wait)."""
        async with self._changed:
            self.used += amount - held
            self._changed.notify_all()
        return amount

    async def give(self, held: int) -> None:
        if held:
            async with self._changed:
                self.used -= held
                self._changed.notify_all()


def estimate(size: int, sizes: tuple[int, int]) -> int:
    """The characters of chunk text a file of ``size`` bytes likely makes: each token sits in about
    ``max / (max - overlap)`` chunks."""
    max_tokens, overlap = sizes
    return int(size * max_tokens / max(1, max_tokens - overlap))


def chars(pieces) -> int:
    return sum(len(text) for text, _ in pieces or ())
