"""Operator tasks on deliveries: list them, and replay failed ones through the broker."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Protocol

import structlog

from worker.storage.records import Delivery, DeliveryFilter, DeliveryStatus

log = structlog.get_logger(__name__)

REPLAY_BATCH = 200


class DeliveryStore(Protocol):
    def get_delivery(self, delivery_id: str) -> Delivery | None: ...

    def list_deliveries(
        self,
        status: DeliveryStatus | None = None,
        subscription: str | None = None,
        event_id: str | None = None,
        limit: int = 100,
    ) -> Sequence[Delivery]: ...

    def requeue_delivery(
        self, delivery_id: str, now: datetime | None = None, *, allow_delivered: bool = True
    ) -> Delivery | None: ...


class BulkReplayStore(Protocol):
    def deliveries_matching(
        self,
        filters: DeliveryFilter,
        *,
        after: tuple[datetime, str] | None = None,
        limit: int = 200,
    ) -> Sequence[Delivery]: ...

    def requeue_delivery(
        self,
        delivery_id: str,
        now: datetime | None = None,
        *,
        allow_delivered: bool = True,
        only_from: Sequence[DeliveryStatus] | None = None,
    ) -> Delivery | None: ...


class DeliveryEnqueuer(Protocol):
    def delivery(self, delivery_id: str, *, delay_seconds: float = 0.0) -> None: ...


class ReplayOutcome(StrEnum):
    REQUEUED = "requeued"  # due now in the database, and sent to the broker
    REQUEUED_ONLY = "requeued_only"  # due now in the database; the sweeper will send it
    UNKNOWN = "unknown"
    BUSY = "busy"  # being delivered right now
    DELIVERED = "delivered"  # already delivered; replaying it needs `force`


@dataclass(frozen=True, slots=True)
class Replay:
    delivery_id: str
    outcome: ReplayOutcome
    previous_status: DeliveryStatus | None = None

    @property
    def requeued(self) -> bool:
        return self.outcome in (ReplayOutcome.REQUEUED, ReplayOutcome.REQUEUED_ONLY)


def replay_delivery(
    delivery_id: str,
    *,
    store: DeliveryStore,
    enqueuer: DeliveryEnqueuer | None,
    now: datetime,
    force: bool = False,
) -> Replay:
    """Make one delivery due now with a fresh retry budget, then ask the broker to send it.

    A delivered delivery is only replayed with `force` (the receiver gets it again, with the
    same `webhook-id`). The database is changed first: if the broker is missing or fails, the
    scheduler's sweeper still sends the delivery, since it is due.
    """
    delivery = store.get_delivery(delivery_id)
    if delivery is None:
        return Replay(delivery_id, ReplayOutcome.UNKNOWN)
    previous = delivery.status
    if previous is DeliveryStatus.DELIVERED and not force:
        return Replay(delivery_id, ReplayOutcome.DELIVERED, previous)
    # The status just read may be stale (a worker can deliver it meanwhile): the requeue checks
    # it again in its own UPDATE, so a delivered delivery is only sent again when forced.
    if store.requeue_delivery(delivery_id, now=now, allow_delivered=force) is None:
        current = store.get_delivery(delivery_id)
        if current is None:
            return Replay(delivery_id, ReplayOutcome.UNKNOWN)
        if current.status is DeliveryStatus.DELIVERED:
            return Replay(delivery_id, ReplayOutcome.DELIVERED, current.status)
        return Replay(delivery_id, ReplayOutcome.BUSY, previous)
    log.info("delivery_replayed", delivery_id=delivery_id, previous_status=previous.value)
    if enqueuer is None:
        return Replay(delivery_id, ReplayOutcome.REQUEUED_ONLY, previous)
    try:
        enqueuer.delivery(delivery_id)
    except Exception as exc:
        # The row is due: the sweeper sends it; say so rather than fail the whole replay.
        log.warning("delivery_replay_not_enqueued", delivery_id=delivery_id, error=repr(exc))
        return Replay(delivery_id, ReplayOutcome.REQUEUED_ONLY, previous)
    return Replay(delivery_id, ReplayOutcome.REQUEUED, previous)


def replay_failed(
    *,
    store: DeliveryStore,
    enqueuer: DeliveryEnqueuer | None,
    now: datetime,
    subscription: str | None = None,
    include_cancelled: bool = False,
) -> list[Replay]:
    """Replay every failed delivery (of one subscription, if given), in batches; with
    `include_cancelled`, the cancelled ones too (subscription disabled or removed, event
    purged: once the cause is fixed, they can be sent)."""
    statuses = [DeliveryStatus.FAILED]
    if include_cancelled:
        statuses.append(DeliveryStatus.CANCELLED)
    replays: list[Replay] = []
    seen: set[str] = set()
    for status in statuses:
        while True:
            batch = [
                delivery
                for delivery in store.list_deliveries(
                    status=status, subscription=subscription, limit=REPLAY_BATCH
                )
                if delivery.id not in seen
            ]
            if not batch:
                break
            for delivery in batch:
                seen.add(delivery.id)
                replays.append(
                    replay_delivery(delivery.id, store=store, enqueuer=enqueuer, now=now)
                )
    return replays


# What a bulk replay may take: a dead-lettered or cancelled delivery, never a live or delivered one.
REPLAYABLE = frozenset({DeliveryStatus.FAILED, DeliveryStatus.CANCELLED})


@dataclass(frozen=True, slots=True)
class BulkReplay:
    """What `replay_matching` did: `requeued` deliveries are due now (`enqueued` of them also
    sent to the broker; the sweeper sends the rest); `skipped` ones changed meanwhile."""

    matched: int
    requeued: int
    enqueued: int

    @property
    def skipped(self) -> int:
        return self.matched - self.requeued


def replay_matching(
    filters: DeliveryFilter,
    *,
    store: BulkReplayStore,
    enqueuer: DeliveryEnqueuer | None,
    now: datetime,
    batch_size: int = REPLAY_BATCH,
) -> BulkReplay:
    """Requeue every delivery the filter matches (failed and/or cancelled, of a subscription,
    created between two times), oldest first, in batches.

    Idempotent and safe while workers run: each requeue changes the row only if it is still in
    one of the filter's statuses (checked in the UPDATE), so a delivery a worker or another
    replay took meanwhile is skipped, never sent or counted twice; a second run finds nothing.
    Raises ValueError for a status other than failed or cancelled.
    """
    if not filters.statuses or not set(filters.statuses) <= REPLAYABLE:
        raise ValueError("a bulk replay takes failed and/or cancelled deliveries only")
    matched = requeued = enqueued = 0
    after: tuple[datetime, str] | None = None
    while batch := store.deliveries_matching(filters, after=after, limit=batch_size):
        after = (batch[-1].created_at, batch[-1].id)
        for delivery in batch:
            matched += 1
            changed = store.requeue_delivery(
                delivery.id, now=now, allow_delivered=False, only_from=filters.statuses
            )
            if changed is None:
                continue
            requeued += 1
            log.info(
                "delivery_replayed", delivery_id=delivery.id, previous_status=delivery.status.value
            )
            enqueued += _enqueue(enqueuer, delivery.id)
    return BulkReplay(matched=matched, requeued=requeued, enqueued=enqueued)


def _enqueue(enqueuer: DeliveryEnqueuer | None, delivery_id: str) -> int:
    if enqueuer is None:
        return 0
    try:
        enqueuer.delivery(delivery_id)
    except Exception as exc:
        # The row is due: the sweeper sends it; say so rather than fail the whole replay.
        log.warning("delivery_replay_not_enqueued", delivery_id=delivery_id, error=repr(exc))
        return 0
    return 1


@contextmanager
def broker_enqueuer(broker_url: str | None) -> Iterator[DeliveryEnqueuer | None]:
    """An enqueuer on the configured broker, or None when no broker URL is set."""
    if not broker_url:
        yield None
        return
    # Imported here: listing deliveries needs no broker, and dramatiq's import is not free.
    from worker.broker import make_broker
    from worker.jobs.actors import DramatiqEnqueuer, declare_actors

    broker = make_broker(broker_url)
    try:
        yield DramatiqEnqueuer(declare_actors(broker))
    finally:
        broker.close()
