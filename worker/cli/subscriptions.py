"""`isograd-relay subscriptions`: list them with state and counts; enable or disable one."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, TextIO

from worker.cli.processes import Commands, settings_from
from worker.processes import CONFIG_ERROR_EXIT
from worker.storage.records import DeliveryStatus, jsonable
from worker.subscription_status import (
    OPERATOR_REASON,
    SubscriptionStateStore,
    SubscriptionStatus,
    UnknownSubscriptionError,
    set_subscription_enabled,
    subscription_statuses,
)
from worker.subscriptions import Subscription

UNKNOWN_EXIT = 1


def add_commands(commands: Commands, config: argparse.ArgumentParser) -> None:
    """Add `subscriptions [list | enable NAME | disable NAME]`."""
    parser = commands.add_parser(
        "subscriptions", parents=[config], help="list subscriptions; enable or disable one"
    )
    parser.add_argument("--json", action="store_true", help="JSON instead of a table")
    actions = parser.add_subparsers(dest="action", metavar="ACTION")
    actions.add_parser("list", help="every subscription with its state (the default)")
    enable = actions.add_parser("enable", help="new events go to it again")
    enable.add_argument("name", metavar="NAME")
    disable = actions.add_parser("disable", help="stop sending to it")
    disable.add_argument("name", metavar="NAME")
    disable.add_argument("--reason", default=OPERATOR_REASON, help="kept with the state")
    parser.set_defaults(handler=lambda args: _run(args))


def _run(args: argparse.Namespace) -> int:
    from worker.storage.store import SqlStore

    settings = settings_from(args)
    if settings is None:
        return CONFIG_ERROR_EXIT
    store = SqlStore.from_url(settings.database_url)
    try:
        return run_subscriptions_command(
            store,
            settings.subscriptions,
            action=args.action or "list",
            name=getattr(args, "name", None),
            reason=getattr(args, "reason", OPERATOR_REASON),
            as_json=args.json,
            now=datetime.now(UTC),
            out=sys.stdout,
        )
    finally:
        store.close()


def run_subscriptions_command(
    store: SubscriptionStateStore,
    configured: Sequence[Subscription],
    *,
    action: str,
    name: str | None,
    reason: str = OPERATOR_REASON,
    as_json: bool = False,
    now: datetime,
    out: TextIO,
) -> int:
    """Exit status 0, or 1 when NAME is not a subscription relay.toml configures."""
    if action == "list":
        statuses = subscription_statuses(configured, store)
    else:
        assert name is not None
        try:
            statuses = [
                set_subscription_enabled(
                    name,
                    action == "enable",
                    configured=configured,
                    store=store,
                    now=now,
                    reason=reason,
                )
            ]
        except UnknownSubscriptionError as exc:
            print(f"isograd-relay: {exc}", file=sys.stderr)
            return UNKNOWN_EXIT
    if as_json:
        print(json.dumps([_json(status) for status in statuses], indent=2), file=out)
    elif statuses:
        print(format_subscriptions(statuses), file=out)
    else:
        print("no subscriptions (none in relay.toml, none in the database)", file=out)
    return 0


def format_subscriptions(statuses: Sequence[SubscriptionStatus]) -> str:
    header = ("NAME", "KIND", "STATE", "FAILING SINCE", "LAST SUCCESS", "DELIVERED", "FAILED")
    rows = [header] + [
        (
            status.name,
            status.kind or "-",
            _state(status),
            _time(status.state.failing_since),
            _time(status.state.last_success_at),
            str(status.deliveries[DeliveryStatus.DELIVERED]),
            str(status.deliveries[DeliveryStatus.FAILED]),
        )
        for status in statuses
    ]
    widths = [max(len(row[column]) for row in rows) for column in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )


def _state(status: SubscriptionStatus) -> str:
    if not status.configured:
        return "not configured"
    if not status.enabled_in_config:
        return "off in relay.toml"
    if status.state.disabled:
        return f"disabled ({status.state.disabled_reason})"
    return "active"


def _json(status: SubscriptionStatus) -> dict[str, Any]:
    return {
        "name": status.name,
        "kind": status.kind,
        "configured": status.configured,
        "enabled_in_config": status.enabled_in_config,
        "active": status.active,
        **{key: value for key, value in jsonable(status.state).items() if key != "name"},
        "deliveries": jsonable(status.deliveries),
    }


def _time(value: datetime | None) -> str:
    return "-" if value is None else value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
