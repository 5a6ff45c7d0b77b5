"""The `isograd-relay` command line: one subcommand per process or operator task.

    processes.py    version, check-config, migrate, web, worker, scheduler
    invitations.py  invite (one, or a CSV file with progress), watch
    deliveries.py   deliveries (table or JSON), replay
    devtools.py     dev, demo, simulator
    listings.py     invitations, events (filtered, paged, table or JSON)
    subscriptions.py  subscriptions (list, enable, disable)
    erasure.py      erase (a candidate, on request)
    kombo.py        kombo sync-packages

Every print and exit status of the relay's commands lives in this package.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from worker.cli import (
    deliveries,
    devtools,
    erasure,
    invitations,
    kombo,
    listings,
    processes,
    subscriptions,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="isograd-relay",
        description="Relay Isograd (TOSA) results to webhooks, chat, ATS/HRIS and LMS systems.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    config = argparse.ArgumentParser(add_help=False)
    config.add_argument(
        "--config", metavar="PATH", help="relay.toml to load (default: $RELAY_CONFIG or relay.toml)"
    )
    groups = (processes, invitations, deliveries, listings, subscriptions, erasure, kombo, devtools)
    for group in groups:
        group.add_commands(commands, config)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    result: int = args.handler(args)
    return result
