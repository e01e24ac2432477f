"""The event loop's lag: how late the server's loop wakes a task that asked to sleep.

:class:`LoopLag` sleeps ``interval`` seconds in a loop task and records how much later than asked it
woke (anything that blocks the loop — a parse, a store call, a CPU-bound step — shows up here). It
starts with the app (``state.loop_lag``) and keeps the last ``window`` samples;
``stats()`` gives milliseconds: ``{"p50_ms", "p99_ms", "max_ms", "samples", "interval_ms"}``
(``max_ms`` since start, the percentiles over the window). ``reset()`` starts a new measurement.
"""

from __future__ import annotations

import asyncio
from collections import deque


class LoopLag:
    def __init__(self, interval: float = 0.02, window: int = 4096):
        self.interval = interval
        self.samples: deque[float] = deque(maxlen=window)
        self.max = 0.0
        self.count = 0
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._sample(), name="asstctl-loop-lag")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None

    async def _sample(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            asked = loop.time()
            await asyncio.sleep(self.interval)
            lag = max(0.0, loop.time() - asked - self.interval)
            self.samples.append(lag)
            self.count += 1
            self.max = max(self.max, lag)

    def reset(self) -> None:
        self.samples.clear()
        self.max = 0.0
        self.count = 0

    def stats(self) -> dict[str, float]:
        ordered = sorted(self.samples)

        def pct(p: float) -> float:
            return round(ordered[min(len(ordered) - 1, int(p * len(ordered)))] * 1000, 2) if ordered else 0.0

        return {"p50_ms": pct(0.5), "p99_ms": pct(0.99), "max_ms": round(self.max * 1000, 2),
                "samples": self.count, "interval_ms": self.interval * 1000}
