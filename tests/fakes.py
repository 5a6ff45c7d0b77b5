"""Shared test doubles: small, honest stand-ins for the relay's seams (each has its own tests)."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

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


# -- pipeline fakes (helper "pipeline") ---------------------------------------------------------


@dataclass(frozen=True)
class EnqueuedJob:
    """One call to RecordingEnqueuer: `kind` is "completion" or "delivery"."""

    kind: str
    id: str
    delay_seconds: float
    recheck: int = 0


class RecordingEnqueuer:
    """An Enqueuer (worker.runtime) that records the jobs asked for instead of sending them."""

    def __init__(self) -> None:
        self.jobs: list[EnqueuedJob] = []

    def completion(
        self, invitation_id: str, *, delay_seconds: float = 0.0, recheck: int = 0
    ) -> None:
        self.jobs.append(EnqueuedJob("completion", invitation_id, delay_seconds, recheck))

    def delivery(self, delivery_id: str, *, delay_seconds: float = 0.0) -> None:
        self.jobs.append(EnqueuedJob("delivery", delivery_id, delay_seconds))

    def of_kind(self, kind: str) -> list[EnqueuedJob]:
        return [job for job in self.jobs if job.kind == kind]


class FakeClock:
    """A clock (a callable returning an aware datetime) that only moves when told to."""

    def __init__(self, start: datetime | None = None) -> None:
        self.current = start or datetime(2026, 11, 27, 10, 15, tzinfo=UTC)
        if self.current.tzinfo is None:
            raise ValueError("FakeClock needs a timezone-aware start")

    def __call__(self) -> datetime:
        return self.current

    def advance(self, seconds: float) -> datetime:
        self.current += timedelta(seconds=seconds)
        return self.current
