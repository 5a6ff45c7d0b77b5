"""`isograd-relay erase --email E [--isograd]`: erase a candidate on request (right to erasure)."""

from __future__ import annotations

import argparse
import getpass
import sys
from datetime import UTC, datetime
from typing import TextIO

from worker.cli.processes import Commands, settings_from
from worker.erasure import CandidateAnonymizer, ErasureStore, erase_candidate
from worker.processes import CONFIG_ERROR_EXIT, start_logging

ISOGRAD_FAILED_EXIT = 1
USAGE_EXIT = 2


def add_commands(commands: Commands, config: argparse.ArgumentParser) -> None:
    parser = commands.add_parser(
        "erase",
        parents=[config],
        help="erase everything about a candidate (invitations, events, callbacks, attempts)",
        description="Blank the candidate's personal data in every table, cancel deliveries "
        "still to be sent, and keep an audit row (who, when, how many rows, a salted hash, "
        "never the email). Safe to run twice.",
    )
    parser.add_argument("--email", required=True, help="the candidate's email")
    parser.add_argument(
        "--isograd", action="store_true", help="also anonymize the candidate at Isograd (act 12)"
    )
    parser.add_argument("--by", dest="requested_by", help="who asked (default: cli:$USER)")
    parser.set_defaults(handler=lambda args: _run(args))


def _run(args: argparse.Namespace) -> int:
    from worker.isograd.client import IsogradClient
    from worker.storage.store import SqlStore

    settings = settings_from(args)
    if settings is None:
        return CONFIG_ERROR_EXIT
    start_logging(settings)
    store = SqlStore.from_url(settings.database_url)
    client = (
        IsogradClient(
            api_url=settings.isograd_api_url,
            auth_url=settings.isograd_auth_url,
            client_id=settings.isograd_client_id,
            client_secret=settings.isograd_client_secret,
            sub_com_id=settings.isograd_sub_com_id,
            timeout=settings.http_timeout,
        )
        if args.isograd
        else None
    )
    try:
        return run_erase_command(
            store,
            args.email,
            isograd=client,
            requested_by=args.requested_by or f"cli:{getpass.getuser()}",
            now=datetime.now(UTC),
            out=sys.stdout,
        )
    finally:
        if client is not None:
            client.close()
        store.close()


def run_erase_command(
    store: ErasureStore,
    email: str,
    *,
    isograd: CandidateAnonymizer | None,
    requested_by: str,
    now: datetime,
    out: TextIO,
) -> int:
    """Exit status 0; 1 when Isograd's part failed (run it again); 2 for a bad email."""
    try:
        erasure = erase_candidate(
            email, store=store, requested_by=requested_by, now=now, isograd=isograd
        )
    except ValueError as exc:
        print(f"isograd-relay erase: --email: {exc}", file=sys.stderr)
        return USAGE_EXIT
    record = erasure.record
    print(f"erasure {record.id} recorded (by {record.requested_by})", file=out)
    print(f"  invitations blanked:  {record.invitations}", file=out)
    print(f"  events blanked:       {record.events}", file=out)
    print(f"  callbacks blanked:    {record.callbacks}", file=out)
    print(f"  attempts blanked:     {record.attempts}", file=out)
    print(f"  deliveries cancelled: {record.deliveries_cancelled}", file=out)
    if record.isograd is not None:
        print(f"  isograd (act 12):     {record.isograd}", file=out)
    if erasure.isograd_failed:
        print("Isograd's part failed: run the same command again to retry it", file=out)
        return ISOGRAD_FAILED_EXIT
    return 0
