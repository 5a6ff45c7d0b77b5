"""The sink seam: what a delivery target receives (an envelope) and answers (an attempt result)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

from worker.outcomes import AttemptOutcome as AttemptOutcome

# Response bodies are stored truncated to at most 20 kB: enough to debug, bounded storage.
MAX_RESPONSE_BODY_BYTES = 20_000
TRUNCATION_MARKER = "…[truncated]"


@dataclass(frozen=True)
class EventEnvelope:
    """One event as every sink receives it (README, "Receiving our webhooks").

    `timestamp` is the event's own time (ISO 8601, e.g. "2026-11-27T10:15:00Z"), not the attempt
    time; `event_id` is stable across retries and becomes the webhook-id header.
    """

    event_id: str
    type: str
    timestamp: str
    data: Mapping[str, Any]
    _body: bytes | None = field(default=None, init=False, repr=False, compare=False)

    def body(self) -> bytes:
        """The canonical JSON body `{"type", "timestamp", "data"}`, compact UTF-8.

        Deterministic: keys are sorted, so the same event yields the same bytes on every attempt
        even if `data` went through a store that reorders keys (PostgreSQL JSONB does). Raises
        ValueError or TypeError if `data` holds what JSON cannot carry (NaN, non-JSON types).
        Encoded once per envelope: the sinks of one event's first attempts share it.
        """
        if self._body is None:
            document = {"type": self.type, "timestamp": self.timestamp, "data": self.data}
            text = json.dumps(
                document, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
            )
            # Frozen: set once, the same bytes whichever thread gets there first.
            object.__setattr__(self, "_body", text.encode("utf-8"))
        return self._body  # type: ignore[return-value]  # set just above


@dataclass(frozen=True)
class AttemptResult:
    """What one attempt produced; stored as an attempts row.

    `response_body` is the target's answer decoded leniently (undecodable bytes and NUL become
    U+FFFD) and truncated to at most MAX_RESPONSE_BODY_BYTES characters, ending with
    TRUNCATION_MARKER when it was cut. `error` is one line describing a transport problem, never
    a secret, a URL or the payload. `retry_after` is the target's Retry-After hint in seconds,
    relative to the attempt time (only set for RETRY). `timed_out` is True when the request ran out
    of time, which the retry schedule treats like a 429 (wait at least 60 s).
    """

    outcome: AttemptOutcome
    status_code: int | None
    duration_ms: float
    response_body: str = ""
    error: str | None = None
    retry_after: float | None = None
    timed_out: bool = False


@runtime_checkable
class Sink(Protocol):
    """A delivery target: renders the envelope for its target, sends it, classifies the answer.

    `send` never raises for what the target answers or for transport failures; it returns an
    AttemptResult, and no third-party exception leaves it.
    """

    kind: str

    def send(self, envelope: EventEnvelope, *, attempt_at: datetime) -> AttemptResult:
        """Make one attempt; `attempt_at` is the (timezone-aware) time the attempt is made."""
        ...
