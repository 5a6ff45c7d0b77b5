"""`isograd-relay replay --since T --until T [--subscription S]`: replay the failed (and, with
--include-cancelled, cancelled) deliveries created in a time range, e.g. after an outage."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, TextIO

from worker.cli.processes import settings_from
from worker.processes import CONFIG_ERROR_EXIT, start_logging
from worker.queries import InvalidQueryError, read_replay_filter
from worker.replay import BulkReplayStore, DeliveryEnqueuer, broker_enqueuer, replay_matching

if TYPE_CHECKING:
    from worker.settings import Settings
    from worker.storage.store import SqlStore

USAGE_EXIT = 2


def run_bulk_replay_command(
    store: BulkReplayStore,
    enqueuer: DeliveryEnqueuer | None,
    *,
    since: str | None,
    until: str | None,
    subscription: str | None,
    include_cancelled: bool,
    now: datetime,
    out: TextIO,
) -> int:
    """Exit status 0 (also when nothing matched: running it twice is safe), 2 for bad flags."""
    values: dict[str, object] = {
        "created_from": since,
        "created_until": until,
        "subscription": subscription,
        "status": ["failed", "cancelled"] if include_cancelled else "failed",
    }
    try:
        filters = read_replay_filter({k: v for k, v in values.items() if v is not None})
    except InvalidQueryError as exc:
        flags = {"created_from": "since", "created_until": "until"}
        for name, message in exc.errors.items():
            print(f"isograd-relay replay: --{flags.get(name, name)}: {message}", file=sys.stderr)
        return USAGE_EXIT
    if enqueuer is None:
        print(
            "no broker configured (BROKER_URL / REDIS_URL): deliveries are made due now in the"
            " database and the scheduler's sweeper will send them",
            file=out,
        )
    result = replay_matching(filters, store=store, enqueuer=enqueuer, now=now)
    print(f"{result.requeued} of {result.matched} matching deliveries requeued", file=out)
    if result.skipped:
        print(f"{result.skipped} changed meanwhile (delivered or replayed): skipped", file=out)
    return 0


@contextmanager
def replay_session(settings: Settings) -> Iterator[tuple[SqlStore, DeliveryEnqueuer | None]]:
    """The store and (when a broker is configured) an enqueuer a replay command works with,
    with logging started; both are closed on exit."""
    from worker.storage.store import SqlStore

    start_logging(settings)
    store = SqlStore.from_url(settings.database_url)
    try:
        with broker_enqueuer(settings.broker_url) as enqueuer:
            yield store, enqueuer
    finally:
        store.close()


def run_bulk_replay(args: argparse.Namespace) -> int:
    """`replay --since/--until`: the bulk replay on the configured database and broker."""
    if args.delivery_ids or args.force:
        print("isograd-relay replay: --since/--until select by time, not by id", file=sys.stderr)
        return USAGE_EXIT
    settings = settings_from(args)
    if settings is None:
        return CONFIG_ERROR_EXIT
    with replay_session(settings) as (store, enqueuer):
        return run_bulk_replay_command(
            store,
            enqueuer,
            since=args.since,
            until=args.until,
            subscription=args.subscription,
            include_cancelled=args.include_cancelled,
            now=datetime.now(UTC),
            out=sys.stdout,
        )
