"""`isograd-relay kombo ...`: publishing a Kombo subscription's packages (our tests) to Kombo."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TextIO

import httpx2

from worker.cli.processes import Commands, settings_from
from worker.processes import CONFIG_ERROR_EXIT, start_logging
from worker.scheduler.orders import publish_packages
from worker.settings import Settings
from worker.sinks.kombo import KIND, KomboApi, KomboTarget


def add_commands(commands: Commands, config: argparse.ArgumentParser) -> None:
    """Register `kombo sync-packages` on the top-level subparsers."""
    kombo = commands.add_parser("kombo", help="Kombo integration tasks")
    tasks = kombo.add_subparsers(dest="kombo_command", required=True, metavar="TASK")
    sync = tasks.add_parser(
        "sync-packages",
        parents=[config],
        help="publish each kombo subscription's packages (PUT /assessment/packages)",
    )
    sync.add_argument(
        "names", nargs="*", metavar="SUBSCRIPTION", help="only these (default: every kombo one)"
    )
    sync.set_defaults(handler=_cmd_sync_packages)


def _cmd_sync_packages(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    if settings is None:
        return CONFIG_ERROR_EXIT
    start_logging(settings)
    return sync_packages(settings, args.names)


def sync_packages(
    settings: Settings,
    names: Sequence[str] = (),
    *,
    out: TextIO | None = None,
    transport: httpx2.BaseTransport | None = None,
) -> int:
    """Publish the packages of every (or each named) kombo subscription; 0 when all were taken,
    1 when Kombo refused one, 2 when a name is not a kombo subscription."""
    out = out or sys.stdout
    chosen = [
        s for s in settings.subscriptions if s.kind == KIND and (not names or s.name in names)
    ]
    missing = sorted(set(names) - {s.name for s in chosen})
    if missing or not chosen:
        print(f"isograd-relay kombo: no kombo subscription {', '.join(missing)}".rstrip(), file=out)
        return CONFIG_ERROR_EXIT
    failures = 0
    with httpx2.Client(transport=transport, follow_redirects=False) as client:
        for subscription in chosen:
            target = subscription.target
            assert isinstance(target, KomboTarget)
            api = KomboApi(
                target, client=client, timeout=subscription.timeout_seconds, name=subscription.name
            )
            if publish_packages(api, now=datetime.now(UTC)):
                print(f"{subscription.name}: {len(target.packages)} package(s) published", file=out)
            else:
                failures += 1
                print(f"{subscription.name}: not published (see the log)", file=out)
    return 1 if failures else 0
