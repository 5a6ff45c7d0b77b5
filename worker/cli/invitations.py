"""`isograd-relay invite` (one candidate or a CSV file) and `watch` (a test created elsewhere)."""

from __future__ import annotations

import argparse
import sys

from worker.cli.processes import Commands, settings_from
from worker.processes import (
    CONFIG_ERROR_EXIT,
)
from worker.requests import (
    InvalidRequestError,
    InvitationRequest,
    WatchRequest,
    field_help,
    field_names,
    validate,
)


def _cmd_watch(args: argparse.Namespace) -> int:
    import json
    from datetime import UTC, datetime

    from worker.storage.store import SqlStore
    from worker.watch import watch_assessment

    settings = settings_from(args)
    if settings is None:
        return CONFIG_ERROR_EXIT
    try:
        context = json.loads(args.context) if args.context else None
        request = validate(
            WatchRequest,
            {
                "pla_tst_id": args.pla_tst_id,
                "tst_frm_id": args.tst_frm_id,
                "email": args.email,
                "first_name": args.first_name,
                "last_name": args.last_name,
                "sub_com_id": args.sub_com_id,
                "context": context,
            },
        )
    except json.JSONDecodeError:
        print("isograd-relay watch: --context must be a JSON object", file=sys.stderr)
        return CONFIG_ERROR_EXIT
    except InvalidRequestError as exc:
        for name, problem in exc.errors.items():
            print(f"isograd-relay watch: {name} {problem}", file=sys.stderr)
        return CONFIG_ERROR_EXIT
    store = SqlStore.from_url(settings.database_url)
    try:
        invitation, created = watch_assessment(request, store=store, now=datetime.now(UTC))
    finally:
        store.close()
    state = "watching" if created else "already known"
    print(f"{state}: pla_tst_id {invitation.pla_tst_id} as invitation {invitation.id}")
    return 0


def _cmd_invite(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from worker.bulk import run_invite_command
    from worker.logs import configure_logging

    settings = settings_from(args)
    if settings is None:
        return CONFIG_ERROR_EXIT
    # Per-row info lines would bury the progress bar; --verbose brings them back.
    level = settings.log_level if args.verbose else "WARNING"
    configure_logging(json=settings.log_json, level=level, secrets=settings.redacted_secrets())
    # Every invitation field has a flag of the same name; context is JSON, read below.
    fields: dict[str, object] = {
        name: value
        for name in field_names(InvitationRequest)
        if name != "context" and (value := getattr(args, name)) is not None
    }
    if args.context is not None:
        try:
            fields["context"] = json.loads(args.context)
        except json.JSONDecodeError:
            print("isograd-relay invite: --context must be a JSON object", file=sys.stderr)
            return 2
    if args.csv is None and not fields:
        print("isograd-relay invite: give --email, --first-name, … or --csv FILE", file=sys.stderr)
        return 2
    if args.csv is not None and fields:
        print("isograd-relay invite: --csv excludes the single-candidate flags", file=sys.stderr)
        return 2
    return run_invite_command(
        settings,
        fields=fields,
        idempotency_key=args.idempotency_key,
        csv_path=Path(args.csv) if args.csv else None,
        result_path=Path(args.result) if args.result else None,
        concurrency=args.concurrency,
        out=sys.stdout,
        err=sys.stderr,
    )


def add_commands(commands: Commands, config: argparse.ArgumentParser) -> None:
    """Register this group's subcommands; `config` is the parent parser adding --config."""
    watch = commands.add_parser(
        "watch",
        parents=[config],
        help="register a test created outside the relay, so it is reconciled and delivered",
    )
    watch.add_argument("--pla-tst-id", type=int, required=True)
    watch.add_argument("--tst-frm-id", type=int, required=True)
    watch.add_argument("--email", required=True)
    watch.add_argument("--first-name")
    watch.add_argument("--last-name")
    watch.add_argument("--sub-com-id", type=int)
    watch.add_argument("--context", metavar="JSON", help="a JSON object passed through in events")
    watch.set_defaults(handler=_cmd_watch)

    invite = commands.add_parser(
        "invite",
        parents=[config],
        help="invite one candidate, or every row of a CSV file (--csv), to an Isograd test",
        description="Invite candidates directly through Isograd and the database (no web "
        "process needed). CSV columns: email, first_name, last_name, tst_frm_id; optional "
        "gender, language, ext_id, group, sub_com_id, return_url, context (JSON), "
        "idempotency_key. Running the same file twice creates nothing twice.",
    )
    # One flag per field of the invitation request (worker.requests), named after it.
    for name in field_names(InvitationRequest):
        invite.add_argument(
            "--" + name.replace("_", "-"),
            dest=name,
            metavar="JSON" if name == "context" else None,
            help=field_help(InvitationRequest, name),
        )
    invite.add_argument(
        "--idempotency-key", dest="idempotency_key", help="repeat-safe key (single candidate)"
    )
    invite.add_argument("--csv", metavar="FILE", help="invite every row of this CSV file")
    invite.add_argument(
        "--result", metavar="FILE", help="result CSV (default: FILE.result.csv next to --csv)"
    )
    invite.add_argument(
        "--concurrency", type=int, default=4, help="invitations at once (default 4)"
    )
    invite.add_argument("--verbose", action="store_true", help="log every invitation")
    invite.set_defaults(handler=_cmd_invite)
