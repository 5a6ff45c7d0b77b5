"""`isograd-relay deliveries` and `replay`: list deliveries as a table or JSON, replay them."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TextIO

from worker.replay import (
    DeliveryEnqueuer,
    DeliveryStore,
    Replay,
    ReplayOutcome,
    replay_delivery,
    replay_failed,
)
from worker.storage.records import Delivery, DeliveryStatus

MAX_ERROR_WIDTH = 60


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
