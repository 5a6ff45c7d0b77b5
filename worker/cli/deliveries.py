"""`isograd-relay deliveries` and `replay`: list deliveries as a table or JSON, replay them."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TextIO

from worker.cli.bulk_replay import replay_session, run_bulk_replay
from worker.cli.processes import Commands, settings_from
from worker.processes import CONFIG_ERROR_EXIT
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


def _cmd_deliveries(args: argparse.Namespace) -> int:
    from worker.cli.deliveries import run_deliveries_command
    from worker.storage.records import DeliveryStatus
    from worker.storage.store import SqlStore

    settings = settings_from(args)
    if settings is None:
        return CONFIG_ERROR_EXIT
    store = SqlStore.from_url(settings.database_url)
    try:
        return run_deliveries_command(
            store,
            status=DeliveryStatus(args.status) if args.status else None,
            subscription=args.subscription,
            limit=args.limit,
            as_json=args.json,
            out=sys.stdout,
        )
    finally:
        store.close()


def _cmd_replay(args: argparse.Namespace) -> int:
    if args.since or args.until:
        return run_bulk_replay(args)
    if bool(args.delivery_ids) == args.all_failed:
        print("isograd-relay replay: give DELIVERY_ID… or --all-failed", file=sys.stderr)
        return 2
    if args.include_cancelled and not args.all_failed:
        print("isograd-relay replay: --include-cancelled goes with --all-failed", file=sys.stderr)
        return 2
    settings = settings_from(args)
    if settings is None:
        return CONFIG_ERROR_EXIT
    with replay_session(settings) as (store, enqueuer):
        return run_replay_command(
            store,
            enqueuer,
            delivery_ids=args.delivery_ids,
            all_failed=args.all_failed,
            include_cancelled=args.include_cancelled,
            subscription=args.subscription,
            force=args.force,
            now=datetime.now(UTC),
            out=sys.stdout,
        )


def add_commands(commands: Commands, config: argparse.ArgumentParser) -> None:
    """Register this group's subcommands; `config` is the parent parser adding --config."""
    deliveries = commands.add_parser(
        "deliveries", parents=[config], help="list deliveries, newest first"
    )
    deliveries.add_argument(
        "--status",
        choices=["pending", "delivering", "retrying", "delivered", "failed", "cancelled"],
    )
    deliveries.add_argument("--subscription", metavar="NAME")
    deliveries.add_argument("--limit", type=int, default=50, help="at most N (default 50)")
    deliveries.add_argument("--json", action="store_true", help="JSON instead of a table")
    deliveries.set_defaults(handler=_cmd_deliveries)

    replay = commands.add_parser(
        "replay", parents=[config], help="send deliveries again (failed ones, or by id)"
    )
    replay.add_argument("delivery_ids", nargs="*", metavar="DELIVERY_ID")
    replay.add_argument("--all-failed", action="store_true", help="every failed delivery")
    replay.add_argument(
        "--include-cancelled",
        action="store_true",
        help="with --all-failed: cancelled deliveries too (subscription disabled, event purged)",
    )
    replay.add_argument("--subscription", metavar="NAME", help="with --all-failed: only these")
    replay.add_argument(
        "--force", action="store_true", help="also replay deliveries already delivered"
    )
    replay.add_argument("--since", metavar="TIME", help="failed ones created at or after TIME")
    replay.add_argument("--until", metavar="TIME", help="failed ones created before TIME")
    replay.set_defaults(handler=_cmd_replay)
