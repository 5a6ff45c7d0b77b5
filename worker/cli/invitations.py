"""`isograd-relay invite` (one candidate or a CSV file) and `watch` (a test created elsewhere).

The CSV reading, inviting and result writing are worker.bulk's; what is printed is here.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TextIO

from worker.bulk import (
    DEFAULT_CONCURRENCY,
    USAGE_ERROR_EXIT,
    BulkSummary,
    InvalidCsvError,
    InviteFunction,
    Inviter,
    ResultWriter,
    RowResult,
    RowStatus,
    default_result_path,
    invite_rows,
    iter_rows,
)
from worker.cli.processes import Commands, settings_from
from worker.cli.progress import Progress
from worker.errors import IsogradApiError, RelayError
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
from worker.settings import Settings


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


def invite_file(
    csv_path: Path,
    invite_one: InviteFunction,
    *,
    result_path: Path | None = None,
    concurrency: int = DEFAULT_CONCURRENCY,
    out: TextIO,
    err: TextIO,
    keep_results: bool = False,
) -> BulkSummary:
    """Invite every row of `csv_path`: progress on `err`, the summary on `out`, one result row
    per input row in `result_path` (default: `default_result_path`), written as each is done.

    The file is streamed, twice: a first pass checks it all (header, CSV syntax, UTF-8) and
    counts its rows, so a file that cannot be read invites nobody (InvalidCsvError); the second
    invites. Memory stays bounded whatever its size (`keep_results` keeps every row's result
    in the summary too).
    """
    try:
        with csv_path.open(encoding="utf-8-sig", newline="") as stream:
            total = sum(1 for _ in iter_rows(stream))
    except UnicodeDecodeError as exc:
        raise InvalidCsvError(["the file is not UTF-8 text"]) from exc
    progress = Progress(total, stream=err, label="rows")
    result_path = result_path or default_result_path(csv_path)
    with (
        csv_path.open(encoding="utf-8-sig", newline="") as rows,
        result_path.open("w", encoding="utf-8", newline="") as results,
    ):
        writer = ResultWriter(results)

        def on_result(result: RowResult) -> None:
            writer.write(result)
            progress.advance(result.status.value)

        summary = invite_rows(
            iter_rows(rows),
            invite_one,
            concurrency=concurrency,
            on_result=on_result,
            keep_results=keep_results,
        )
    progress.finish()
    print_summary(summary, result_path, out)
    return summary


def print_summary(summary: BulkSummary, result_path: Path, out: TextIO) -> None:
    # Line numbers, not emails: terminals and CI logs are not the place for candidate PII.
    print(
        f"{summary.rows} rows: {summary.count(RowStatus.CREATED)} created, "
        f"{summary.count(RowStatus.EXISTING)} already existing, "
        f"{summary.count(RowStatus.FAILED)} failed",
        file=out,
    )
    for failure in summary.failures:
        print(f"  line {failure.line}: {failure.error}", file=out)
    unlisted = summary.count(RowStatus.FAILED) - len(summary.failures)
    if unlisted > 0:
        print(f"  … and {unlisted} more failed rows (see the results file)", file=out)
    print(f"results: {result_path}", file=out)


def run_invite_command(
    settings: Settings,
    *,
    fields: Mapping[str, object] | None = None,
    idempotency_key: str | None = None,
    csv_path: Path | None = None,
    result_path: Path | None = None,
    concurrency: int = DEFAULT_CONCURRENCY,
    out: TextIO,
    err: TextIO,
) -> int:
    """`isograd-relay invite`: one candidate from `fields`, or every row of `csv_path`.

    Exit status: 0 all done, 1 some invitation failed, 2 the input is unusable.
    """
    inviter = Inviter.from_settings(settings)
    try:
        if csv_path is not None:
            try:
                summary = invite_file(
                    csv_path,
                    inviter,
                    result_path=result_path,
                    concurrency=concurrency,
                    out=out,
                    err=err,
                )
            except (InvalidCsvError, OSError) as exc:
                print(f"isograd-relay invite: {csv_path}: {exc}", file=err)
                return USAGE_ERROR_EXIT
            return 1 if summary.count(RowStatus.FAILED) else 0
        return _invite_one(inviter, fields or {}, idempotency_key, out=out, err=err)
    finally:
        inviter.close()


def _invite_one(
    inviter: Inviter,
    fields: Mapping[str, object],
    idempotency_key: str | None,
    *,
    out: TextIO,
    err: TextIO,
) -> int:
    try:
        request = validate(InvitationRequest, fields)
    except InvalidRequestError as exc:
        for name, message in sorted(exc.errors.items()):
            print(f"isograd-relay invite: {name}: {message}", file=err)
        return USAGE_ERROR_EXIT
    try:
        invited = inviter(request, idempotency_key)
    except IsogradApiError as exc:
        print(f"isograd-relay invite: isograd error {exc.code}: {exc.error_message}", file=err)
        return 1
    except RelayError as exc:
        print(f"isograd-relay invite: {type(exc).__name__}: {exc}", file=err)
        return 1
    invitation = invited.invitation
    print(f"invitation_id: {invitation.id}", file=out)
    print(f"pla_tst_id:    {invitation.pla_tst_id}", file=out)
    print(f"test_url:      {invitation.test_url or '-'}", file=out)
    print(f"status:        {'created' if invited.created else 'existing'}", file=out)
    return 0


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
