"""Attempt outcomes: how one delivery attempt ended, as sinks report it and the store keeps it."""

from __future__ import annotations

from enum import StrEnum


class AttemptOutcome(StrEnum):
    """How one delivery attempt ended, from the delivery's point of view.

    One enum for sinks, the pipeline and the attempts table (its CHECK constraint lists these
    values), so a sink's answer is stored as it is, with no conversion.
    """

    DELIVERED = "delivered"  # the target accepted the event (2xx): done
    RETRY = "retry"  # transient (408/425/429/5xx, timeout, connection error): try again later
    FAILED = "failed"  # permanent (3xx, other 4xx, bad configuration): retrying cannot help
    GONE = "gone"  # the target said 410 Gone: the caller disables the subscription
