"""Answers of the admin API: the shapes its endpoints render, from which the OpenAPI document
generates their schemas (openapi.py), so a documented answer is the answer."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from worker.replay import BulkReplay
from worker.storage.records import (
    Attempt,
    Delivery,
    DeliveryStatus,
    ErasureRecord,
    Event,
    Invitation,
    InvitationSource,
    jsonable,
)
from worker.subscription_status import SubscriptionStatus

__all__ = ["jsonable"]  # re-exported: the endpoints render answers with it


def fields_of(record: object) -> dict[str, Any]:
    """A dataclass's fields by name, unconverted (to build a wider answer from a record)."""
    return {f.name: getattr(record, f.name) for f in dataclasses.fields(record)}  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class InvitationCreated:
    invitation_id: str
    pla_tst_id: int | None
    can_id: int | None
    test_url: str | None


@dataclass(frozen=True, slots=True)
class WatchAnswer:
    invitation_id: str
    pla_tst_id: int | None
    source: InvitationSource
    created: bool  # false: it was already known


@dataclass(frozen=True, slots=True)
class InvitationPage:
    """A page of invitations, newest first; pass `next_cursor` as `cursor` for the next one."""

    invitations: list[Invitation]
    next_cursor: str | None


@dataclass(frozen=True, slots=True)
class EventPage:
    """A page of events, newest first; pass `next_cursor` as `cursor` for the next one."""

    events: list[Event]
    next_cursor: str | None


@dataclass(frozen=True, slots=True)
class DeliveryList:
    deliveries: list[Delivery]


@dataclass(frozen=True, slots=True)
class DeliveryWithAttempts(Delivery):
    attempts: list[Attempt]


@dataclass(frozen=True, slots=True)
class BulkReplayAnswer:
    """How many deliveries matched; how many were requeued (due now; `enqueued` of them sent to
    the broker at once, the sweeper sends the rest); how many changed meanwhile (skipped)."""

    matched: int
    requeued: int
    enqueued: int
    skipped: int

    @classmethod
    def of(cls, replay: BulkReplay) -> BulkReplayAnswer:
        return cls(replay.matched, replay.requeued, replay.enqueued, replay.skipped)


@dataclass(frozen=True, slots=True)
class SubscriptionAnswer:
    """One subscription: `active` means new events go to it; `configured` is false for a name
    only the database knows (removed from relay.toml); `deliveries` counts by status."""

    name: str
    kind: str | None
    configured: bool
    enabled_in_config: bool
    active: bool
    disabled_at: datetime | None
    disabled_reason: str | None
    failing_since: datetime | None
    last_success_at: datetime | None
    deliveries: dict[DeliveryStatus, int]

    @classmethod
    def of(cls, status: SubscriptionStatus) -> SubscriptionAnswer:
        state = status.state
        return cls(
            name=status.name,
            kind=status.kind,
            configured=status.configured,
            enabled_in_config=status.enabled_in_config,
            active=status.active,
            disabled_at=state.disabled_at,
            disabled_reason=state.disabled_reason,
            failing_since=state.failing_since,
            last_success_at=state.last_success_at,
            deliveries=status.deliveries,
        )


@dataclass(frozen=True, slots=True)
class SubscriptionList:
    subscriptions: list[SubscriptionAnswer]


@dataclass(frozen=True, slots=True)
class ErasureAnswer(ErasureRecord):
    """The audit row; `isograd_failed`: act 12 failed (run the erasure again to retry it)."""

    isograd_failed: bool
