"""Shared test doubles: small, honest stand-ins for the relay's seams (each has its own tests)."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from datetime import datetime

from worker.sinks.base import AttemptOutcome, AttemptResult, EventEnvelope


@dataclass(frozen=True)
class SentEnvelope:
    """One call to FakeSink.send."""

    envelope: EventEnvelope
    attempt_at: datetime


class FakeSink:
    """A Sink that records what it is sent and answers scripted AttemptResults.

    Once the script runs out it answers `default` (delivered, 200). Like a real sink it never
    raises for outcomes, and it refuses a naive `attempt_at` as WebhookSink does.
    """

    def __init__(
        self,
        *results: AttemptResult,
        kind: str = "fake",
        name: str = "fake",
        default: AttemptResult | None = None,
    ) -> None:
        self.kind = kind
        self.name = name
        self.default = default or AttemptResult(
            AttemptOutcome.DELIVERED, status_code=200, duration_ms=1.0
        )
        self._script: deque[AttemptResult] = deque(results)
        self.sent: list[SentEnvelope] = []

    def script(self, *results: AttemptResult) -> None:
        self._script.extend(results)

    def send(self, envelope: EventEnvelope, *, attempt_at: datetime) -> AttemptResult:
        if attempt_at.tzinfo is None:
            raise ValueError("attempt_at must be timezone-aware")
        self.sent.append(SentEnvelope(envelope, attempt_at))
        return self._script.popleft() if self._script else self.default


class FixedRandom:
    """A RandomSource whose `uniform(a, b)` always returns the point `fraction` of the way to b.

    `FixedRandom(0.5)` gives the midpoint (no jitter for a symmetric range), 0.0 the lower bound,
    1.0 the upper bound.
    """

    def __init__(self, fraction: float = 0.5) -> None:
        if not 0.0 <= fraction <= 1.0:
            raise ValueError("fraction must be within [0, 1]")
        self.fraction = fraction

    def uniform(self, a: float, b: float) -> float:
        return a + (b - a) * self.fraction
