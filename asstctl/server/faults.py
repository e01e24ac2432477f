"""Fault and latency injection (off by default), for tests and benchmarks.

Mutable at run time: tests hold the ``Faults`` object of an embedded server and
change ``rate`` between phases. Kinds:

* ``429`` — rate limited, with ``retry-after-ms`` (not committed)
* ``500`` / ``503`` — server error (not committed)
* ``drop`` — the connection is closed before the request is handled (not committed)
* ``lost`` — writes only: the request is committed, then the connection is closed
  before the response is sent (the client cannot know it succeeded)

``ingest_fail_marker`` (None unless a test sets it): a file whose bytes contain it ends ``failed``
when a vector store ingests it, with ``last_error = {"code": "invalid_file", ...}``.
"""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass, field

from asstctl.errors import ConfigError

ALL_KINDS = ("429", "500", "503", "drop", "lost")
WRITE_METHODS = ("POST", "DELETE")


@dataclass
class Faults:
    latency_ms: float = 0.0
    rate: float = 0.0
    kinds: tuple[str, ...] = ALL_KINDS
    retry_after_ms: int = 20
    seed: int | None = None
    injected: dict[str, int] = field(default_factory=dict)
    ingest_fail_marker: bytes | None = None  # off unless a test switches it on

    def __post_init__(self) -> None:
        self._random = random.Random(self.seed)
        self._lock = threading.Lock()

    def pick(self, method: str, path: str) -> str | None:
        """The fault to inject into this request, or None."""
        if self.rate <= 0 or not path.startswith("/v1/"):
            return None
        kinds = [k for k in self.kinds if k != "lost" or method in WRITE_METHODS]
        with self._lock:
            if not kinds or self._random.random() >= self.rate:
                return None
            kind = self._random.choice(kinds)
            self.injected[kind] = self.injected.get(kind, 0) + 1
        return kind

    @classmethod
    def parse(cls, spec: str | None, latency_ms: float = 0.0, seed: int | None = None) -> "Faults":
        """``"0.2"`` or ``"0.2:429,500,drop"`` → Faults(rate=0.2, kinds=...)."""
        if not spec:
            return cls(latency_ms=latency_ms, seed=seed)
        rate_text, _, kinds_text = spec.partition(":")
        kinds = tuple(k.strip() for k in kinds_text.split(",") if k.strip()) or ALL_KINDS
        unknown = [k for k in kinds if k not in ALL_KINDS]
        if unknown:
            raise _bad_spec(spec, f"unknown fault kind(s) {', '.join(unknown)}")
        try:
            rate = float(rate_text)
        except ValueError:
            raise _bad_spec(spec, f"the rate {rate_text!r} is not a number") from None
        if not 0 <= rate <= 1:
            raise _bad_spec(spec, "the rate must be between 0 and 1")
        return cls(latency_ms=latency_ms, rate=rate, kinds=kinds, seed=seed)


def _bad_spec(spec: str, problem: str) -> ConfigError:
    return ConfigError(
        f"invalid fault spec {spec!r}: {problem}",
        hint=f"Use RATE[:KINDS], e.g. 0.2 or 0.1:429,500; kinds: {', '.join(ALL_KINDS)}.",
    )
