"""`isograd-relay invitations` and `events`: find invitations and events, filtered, a page at a
time, as a table or JSON (the admin API's answer)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol, TextIO

from worker.cli.processes import Commands, settings_from
from worker.queries import (
    DEFAULT_LIMIT,
    InvalidQueryError,
    Listing,
    read_event_query,
    read_invitation_query,
)
from worker.storage.paging import InvalidCursorError
from worker.storage.records import (
    Delivery,
    Event,
    EventFilter,
    Invitation,
    InvitationFilter,
    Page,
    jsonable,
)

USAGE_EXIT = 2  # argparse's own status for bad arguments


class ListingStore(Protocol):
    def list_invitations(
        self,
        filters: InvitationFilter | None = None,
        *,
        limit: int = 50,
        cursor: str | None = None,
    ) -> Page[Invitation]: ...

    def list_events(
        self, filters: EventFilter | None = None, *, limit: int = 50, cursor: str | None = None
    ) -> Page[Event]: ...

    def list_deliveries_of_events(self, event_ids: Sequence[str]) -> list[Delivery]: ...


def add_commands(commands: Commands, config: argparse.ArgumentParser) -> None:
    """Add the `invitations` and `events` subcommands."""
    invitations = commands.add_parser(
        "invitations",
        parents=[config],
        help="find invitations, newest first (who has not finished)",
    )
    invitations.add_argument(
        "--status", choices=["pending", "completed", "expired", "failed"], help="e.g. pending"
    )
    _filter_flags(invitations)
    invitations.set_defaults(handler=lambda args: _run(args, run_invitations_command))
    events = commands.add_parser(
        "events", parents=[config], help="find stored events, newest first"
    )
    events.add_argument(
        "--status",
        choices=["pending", "delivering", "retrying", "delivered", "failed", "cancelled"],
        help="events with a delivery in this status",
    )
    events.add_argument("--subscription", metavar="NAME", help="events with a delivery to it")
    _filter_flags(events)
    events.set_defaults(handler=lambda args: _run(args, run_events_command))


def _filter_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--email", help="the candidate's email (any case)")
    parser.add_argument(
        "--pla-tst-id", dest="pla_tst_id", metavar="ID", help="Isograd test session"
    )
    parser.add_argument("--tst-frm-id", dest="tst_frm_id", metavar="ID", help="Isograd test")
    parser.add_argument("--since", metavar="TIME", help="created at or after (ISO 8601 or date)")
    parser.add_argument("--until", metavar="TIME", help="created before (ISO 8601 or date)")
    parser.add_argument("--limit", default=str(DEFAULT_LIMIT), help="a page (default 50, max 200)")
    parser.add_argument("--cursor", help="the next page: the cursor the previous one printed")
    parser.add_argument("--json", action="store_true", help="JSON (the admin API's answer)")


def query_of(args: argparse.Namespace, names: Sequence[str]) -> dict[str, object]:
    """The flags as the query string's fields (--since is created_from, --until created_until)."""
    renamed = {"since": "created_from", "until": "created_until"}
    values = {renamed.get(name, name): getattr(args, name, None) for name in names}
    return {name: value for name, value in values.items() if value is not None}


_COMMON_FLAGS = ("email", "pla_tst_id", "tst_frm_id", "since", "until", "limit", "cursor")


def _run(
    args: argparse.Namespace,
    command: Callable[[ListingStore, argparse.Namespace, TextIO], int],
) -> int:
    from worker.storage.store import SqlStore

    settings = settings_from(args)
    if settings is None:
        return USAGE_EXIT
    store = SqlStore.from_url(settings.database_url)
    try:
        return command(store, args, sys.stdout)
    finally:
        store.close()


def run_invitations_command(store: ListingStore, args: argparse.Namespace, out: TextIO) -> int:
    """Exit status 0, or 2 (every problem on stderr) for invalid filters."""
    try:
        filters, listing = read_invitation_query(query_of(args, ("status", *_COMMON_FLAGS)))
        page = _page(lambda: store.list_invitations(filters, **_paging(listing)))
    except InvalidQueryError as exc:
        return _refuse(exc)
    if args.json:
        answer = {"invitations": jsonable(page.items), "next_cursor": page.next_cursor}
        print(json.dumps(answer, indent=2), file=out)
    elif page.items:
        print(format_invitations(page.items, now=datetime.now(UTC)), file=out)
    else:
        print("no invitations", file=out)
    _more(page, args, out)
    return 0


def run_events_command(store: ListingStore, args: argparse.Namespace, out: TextIO) -> int:
    """Exit status 0, or 2 (every problem on stderr) for invalid filters."""
    try:
        names = ("status", "subscription", *_COMMON_FLAGS)
        filters, listing = read_event_query(query_of(args, names))
        page = _page(lambda: store.list_events(filters, **_paging(listing)))
    except InvalidQueryError as exc:
        return _refuse(exc)
    if args.json:
        answer = {"events": jsonable(page.items), "next_cursor": page.next_cursor}
        print(json.dumps(answer, indent=2), file=out)
    elif page.items:
        deliveries = store.list_deliveries_of_events([event.id for event in page.items])
        print(format_events(page.items, deliveries), file=out)
    else:
        print("no events", file=out)
    _more(page, args, out)
    return 0


def format_invitations(invitations: Sequence[Invitation], *, now: datetime) -> str:
    """A plain-text table, one invitation per line, with its age (how long it has waited)."""
    header = ("ID", "STATUS", "EMAIL", "TST_FRM_ID", "PLA_TST_ID", "CREATED (UTC)", "AGE")
    rows = [
        (
            invitation.id,
            invitation.status.value,
            invitation.email or "-",
            str(invitation.tst_frm_id),
            _text(invitation.pla_tst_id),
            _time(invitation.created_at),
            _age(now - invitation.created_at),
        )
        for invitation in invitations
    ]
    return _table(header, rows)


def format_events(events: Sequence[Event], deliveries: Sequence[Delivery]) -> str:
    """A plain-text table, one event per line, with each delivery's subscription and status."""
    by_event: dict[str, list[str]] = {}
    for delivery in deliveries:
        by_event.setdefault(delivery.event_id, []).append(
            f"{delivery.subscription}:{delivery.status.value}"
        )
    header = ("ID", "PLA_TST_ID", "TST_FRM_ID", "EMAIL", "GRADE", "CREATED (UTC)", "DELIVERIES")
    rows = [
        (
            event.id,
            str(event.pla_tst_id),
            _text(_data(event, "test", "tst_frm_id")),
            _text(_data(event, "candidate", "email")),
            _text(_data(event, "grade", "text") or _data(event, "grade", "value")),
            _time(event.created_at),
            " ".join(by_event.get(event.id, [])) or "-",
        )
        for event in events
    ]
    return _table(header, rows)


def _paging(listing: Listing) -> dict[str, Any]:
    return {"limit": listing.limit, "cursor": listing.cursor}


def _page(list_page: Callable[[], Page[Any]]) -> Page[Any]:
    try:
        return list_page()
    except InvalidCursorError:
        raise InvalidQueryError({"cursor": "is not a cursor of this listing"}) from None


def _refuse(exc: InvalidQueryError) -> int:
    flags = {"created_from": "since", "created_until": "until"}
    for name, message in exc.errors.items():
        flag = flags.get(name, name).replace("_", "-")
        print(f"isograd-relay: --{flag}: {message}", file=sys.stderr)
    return USAGE_EXIT


def _more(page: Page[Any], args: argparse.Namespace, out: TextIO) -> None:
    if page.next_cursor is not None and not args.json:
        print(f"more: add --cursor {page.next_cursor}", file=out)


def _data(event: Event, *path: str) -> Any:
    node: Any = event.payload.get("data")
    for key in path:
        node = node.get(key) if isinstance(node, dict) else None
    return node


def _table(header: tuple[str, ...], rows: Sequence[tuple[str, ...]]) -> str:
    everything = [header, *rows]
    widths = [max(len(row[column]) for row in everything) for column in range(len(header))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        for row in everything
    ]
    return "\n".join(line.rstrip() for line in lines)


def _text(value: object) -> str:
    return "-" if value is None else str(value)


def _time(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def _age(elapsed: Any) -> str:
    seconds = max(0, int(elapsed.total_seconds()))
    days, rest = divmod(seconds, 86_400)
    hours, rest = divmod(rest, 3600)
    return f"{days}d {hours}h" if days else f"{hours}h {rest // 60}m"
