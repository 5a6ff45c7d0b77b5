"""Operator tasks on deliveries: list them, and replay failed ones through the broker."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Protocol, TextIO

import structlog

from worker.storage.records import Delivery, DeliveryStatus

log = structlog.get_logger(__name__)

MAX_ERROR_WIDTH = 60
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


def format_deliveries(deliveries: Sequence[Delivery]) -> str:
    """A plain-text table, one delivery per line, with a header."""
    header = ("ID", "SUBSCRIPTION", "STATUS", "ATTEMPTS", "NEXT ATTEMPT (UTC)", "LAST ERROR")
    rows = [header] + [
        (
            delivery.id,
            delivery.subscription,
            delivery.status.value,
            str(delivery.attempt_count),
            _time(delivery.next_attempt_at),
            _short(delivery.last_error),
        )
        for delivery in deliveries
    ]
    widths = [max(len(row[column]) for row in rows) for column in range(len(header))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        for row in rows
    ]
    return "\n".join(line.rstrip() for line in lines)


def deliveries_json(deliveries: Sequence[Delivery]) -> str:
    return json.dumps(
        [
            {
                "id": delivery.id,
                "event_id": delivery.event_id,
                "subscription": delivery.subscription,
                "status": delivery.status.value,
                "attempts": delivery.attempt_count,
                "next_attempt_at": _iso(delivery.next_attempt_at),
                "last_error": delivery.last_error,
                "created_at": _iso(delivery.created_at),
                "updated_at": _iso(delivery.updated_at),
                "delivered_at": _iso(delivery.delivered_at),
            }
            for delivery in deliveries
        ],
        indent=2,
    )


def print_replays(replays: Sequence[Replay], out: TextIO) -> None:
    messages = {
        ReplayOutcome.REQUEUED: "requeued",
        ReplayOutcome.REQUEUED_ONLY: "requeued in the database (the scheduler will send it)",
        ReplayOutcome.UNKNOWN: "no such delivery",
        ReplayOutcome.BUSY: "being delivered right now; not replayed",
        ReplayOutcome.DELIVERED: "already delivered; use --force to send it again",
    }
    for replay in replays:
        print(f"{replay.delivery_id}: {messages[replay.outcome]}", file=out)
    requeued = sum(1 for replay in replays if replay.requeued)
    print(f"{requeued} of {len(replays)} deliveries requeued", file=out)


@contextmanager
def broker_enqueuer(broker_url: str | None) -> Iterator[DeliveryEnqueuer | None]:
    """An enqueuer on the configured broker, or None when no broker URL is set."""
    if not broker_url:
        yield None
        return
    # Imported here: listing deliveries needs no broker, and dramatiq's import is not free.
    from worker.actors import DramatiqEnqueuer, declare_actors
    from worker.broker import make_broker

    broker = make_broker(broker_url)
    try:
        yield DramatiqEnqueuer(declare_actors(broker))
    finally:
        broker.close()


def _time(value: datetime | None) -> str:
    if value is None:
        return "-"
    if value.tzinfo is not None:
        value = value.astimezone(UTC)
    return value.strftime("%Y-%m-%d %H:%M:%S")


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat().replace("+00:00", "Z")


def _short(error: str | None) -> str:
    if not error:
        return "-"
    line = " ".join(error.split())
    return line if len(line) <= MAX_ERROR_WIDTH else line[: MAX_ERROR_WIDTH - 1] + "…"


def run_deliveries_command(
    store: DeliveryStore,
    *,
    status: DeliveryStatus | None = None,
    subscription: str | None = None,
    limit: int = 50,
    as_json: bool = False,
    out: TextIO,
) -> int:
    """`isograd-relay deliveries`: newest first, as a table or JSON."""
    deliveries = store.list_deliveries(status=status, subscription=subscription, limit=limit)
    if as_json:
        print(deliveries_json(deliveries), file=out)
    elif deliveries:
        print(format_deliveries(deliveries), file=out)
    else:
        print("no deliveries", file=out)
    return 0


def run_replay_command(
    store: DeliveryStore,
    enqueuer: DeliveryEnqueuer | None,
    *,
    delivery_ids: Sequence[str] = (),
    all_failed: bool = False,
    include_cancelled: bool = False,
    subscription: str | None = None,
    force: bool = False,
    now: datetime,
    out: TextIO,
) -> int:
    """`isograd-relay replay`: exit status 0 when every named delivery was requeued, else 1."""
    if enqueuer is None:
        print(
            "no broker configured (BROKER_URL / REDIS_URL): deliveries are made due now in the"
            " database and the scheduler's sweeper will send them",
            file=out,
        )
    if all_failed:
        replays = replay_failed(
            store=store,
            enqueuer=enqueuer,
            now=now,
            subscription=subscription,
            include_cancelled=include_cancelled,
        )
    else:
        replays = [
            replay_delivery(delivery_id, store=store, enqueuer=enqueuer, now=now, force=force)
            for delivery_id in dict.fromkeys(delivery_ids)
        ]
    print_replays(replays, out)
    return 0 if all(replay.requeued for replay in replays) else 1
