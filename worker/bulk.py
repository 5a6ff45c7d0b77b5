"""Bulk invitations: one invitation per row of a CSV file, each row idempotent on its own key.

Columns (a header row names them, in any order; empty cells count as absent):

    email, first_name, last_name, tst_frm_id      required
    gender                male | female | not_provided
    language              Isograd code 1-8, ISO code (fr, en, …) or name (french, …)
    ext_id                your id for the candidate
    group                 your group id (Isograd's ext_dep_id)
    sub_com_id            Isograd sub account (distributor accounts)
    return_url            where the candidate goes after the test (Isograd's rtn_pag)
    context               a JSON object passed through to the delivered event
    idempotency_key       optional; default: derived from email, tst_frm_id and sub_com_id

A row's key makes a second run of the same file create nothing twice: rows already invited are
reported "existing". Give an explicit `idempotency_key` to invite the same candidate to the same
test again (a retake).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import TextIO

import structlog

from worker.cli.progress import Progress
from worker.errors import IsogradApiError, PermanentError, RelayError
from worker.invitations import (
    FIRST_CHECK_AFTER,
    InvalidInvitationError,
    InvitationRequest,
    Invited,
    invite,
    validate_invitation_request,
)
from worker.isograd.client import IsogradClient
from worker.settings import Settings
from worker.storage.store import SqlStore
from worker.tokens import CallbackKey

log = structlog.get_logger(__name__)

REQUIRED_COLUMNS = ("email", "first_name", "last_name", "tst_frm_id")
OPTIONAL_COLUMNS = (
    "gender",
    "language",
    "ext_id",
    "group",
    "sub_com_id",
    "return_url",
    "context",
    "idempotency_key",
)
RESULT_COLUMNS = (
    "line",
    "email",
    "status",
    "invitation_id",
    "pla_tst_id",
    "test_url",
    "error",
)
# The admin API accepts Idempotency-Key headers of the same length.
MAX_IDEMPOTENCY_KEY_LENGTH = 200
DEFAULT_CONCURRENCY = 4
USAGE_ERROR_EXIT = 2

InviteFunction = Callable[[InvitationRequest, str | None], Invited]


class RowStatus(StrEnum):
    CREATED = "created"
    EXISTING = "existing"
    FAILED = "failed"


class InvalidCsvError(PermanentError):
    """The file cannot be read as invitations (missing or unknown columns, not CSV)."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        super().__init__("; ".join(self.problems))


@dataclass(frozen=True, slots=True)
class InvitationRow:
    """One data row; `line` is where it starts in the file (the header is line 1)."""

    line: int
    cells: dict[str, str]
    extra_cells: bool = False  # more cells than the header has columns


@dataclass(frozen=True, slots=True)
class RowResult:
    line: int
    email: str
    status: RowStatus
    invitation_id: str | None = None
    pla_tst_id: int | None = None
    test_url: str | None = None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class BulkSummary:
    results: list[RowResult] = field(default_factory=list)

    def count(self, status: RowStatus) -> int:
        return sum(1 for result in self.results if result.status is status)

    @property
    def failures(self) -> list[RowResult]:
        return [result for result in self.results if result.status is RowStatus.FAILED]


def read_rows(stream: TextIO) -> list[InvitationRow]:
    """The data rows of an invitation CSV; raise InvalidCsvError if its header is wrong.

    The delimiter is `,`, or `;` or a tab when the header uses one (spreadsheets in French
    locales save with `;`). Blank lines are skipped; cells are stripped; empty cells left out.
    """
    text = stream.read()
    first_line = text.split("\n", 1)[0]
    delimiter = max((",", ";", "\t"), key=first_line.count)
    reader = csv.reader(io.StringIO(text), delimiter=delimiter)
    try:
        header = [name.strip() for name in next(reader, [])]
        problems = _header_problems(header)
        if problems:
            raise InvalidCsvError(problems)
        rows: list[InvitationRow] = []
        start = reader.line_num + 1
        for record in reader:
            line, start = start, reader.line_num + 1
            cells = {
                name: value.strip()
                for name, value in zip(header, record, strict=False)
                if value.strip()
            }
            if cells or len(record) > len(header):
                rows.append(InvitationRow(line, cells, extra_cells=len(record) > len(header)))
    except csv.Error as exc:
        raise InvalidCsvError([f"line {reader.line_num}: {exc}"]) from exc
    return rows


def _header_problems(header: Sequence[str]) -> list[str]:
    if not any(header):
        return ["the file has no header row"]
    problems = [f"missing column {name!r}" for name in REQUIRED_COLUMNS if name not in header]
    known = set(REQUIRED_COLUMNS) | set(OPTIONAL_COLUMNS)
    problems += [f"unknown column {name!r}" for name in header if name not in known]
    if len(set(header)) != len(header):
        problems.append("a column is named twice")
    return problems


def row_request(row: InvitationRow) -> tuple[InvitationRequest, str]:
    """The validated request and idempotency key of a row; raise InvalidInvitationError."""
    errors: dict[str, str] = {}
    if row.extra_cells:
        errors["row"] = "has more cells than the header has columns"
    data: dict[str, object] = {
        name: value
        for name, value in row.cells.items()
        if name not in ("context", "idempotency_key")
    }
    if "context" in row.cells:
        try:
            data["context"] = json.loads(row.cells["context"])
        except json.JSONDecodeError:
            errors["context"] = "must be a JSON object"
    key = row.cells.get("idempotency_key")
    if key is not None and len(key) > MAX_IDEMPOTENCY_KEY_LENGTH:
        errors["idempotency_key"] = f"must be at most {MAX_IDEMPOTENCY_KEY_LENGTH} characters"
    try:
        request = validate_invitation_request(data)
    except InvalidInvitationError as exc:
        raise InvalidInvitationError({**exc.errors, **errors}) from None
    if errors:
        raise InvalidInvitationError(errors)
    return request, key if key is not None else row_idempotency_key(request)


def row_idempotency_key(request: InvitationRequest) -> str:
    """The key of an invitation to one test for one candidate (email compared case-blind)."""
    identity = f"{request.email.casefold()}\n{request.tst_frm_id}\n{request.sub_com_id or ''}"
    # Hashed so the key column holds no email once the retention purge blanks the row's PII.
    return "bulk:" + hashlib.sha256(identity.encode()).hexdigest()


def invite_row(row: InvitationRow, invite_one: InviteFunction) -> RowResult:
    """Invite one row; every expected failure becomes a failed RowResult, never an exception."""
    email = row.cells.get("email", "")
    try:
        request, key = row_request(row)
    except InvalidInvitationError as exc:
        reasons = "; ".join(f"{name}: {message}" for name, message in sorted(exc.errors.items()))
        return RowResult(row.line, email, RowStatus.FAILED, error=f"invalid row: {reasons}")
    try:
        invited = invite_one(request, key)
    except IsogradApiError as exc:
        error = f"isograd error {exc.code}: {exc.error_message}"
        return RowResult(row.line, email, RowStatus.FAILED, error=error)
    except RelayError as exc:
        error = f"{type(exc).__name__}: {exc}"
        return RowResult(row.line, email, RowStatus.FAILED, error=error)
    invitation = invited.invitation
    return RowResult(
        row.line,
        email,
        RowStatus.CREATED if invited.created else RowStatus.EXISTING,
        invitation_id=invitation.id,
        pla_tst_id=invitation.pla_tst_id,
        test_url=invitation.test_url,
    )


def invite_rows(
    rows: Sequence[InvitationRow],
    invite_one: InviteFunction,
    *,
    concurrency: int = DEFAULT_CONCURRENCY,
    progress: Progress | None = None,
) -> BulkSummary:
    """Invite every row with at most `concurrency` at once; results in file order.

    One row's failure never stops the others. Safe to run twice: see the module docstring.
    """
    results: list[RowResult] = []
    with ThreadPoolExecutor(max_workers=max(1, concurrency), thread_name_prefix="invite") as pool:
        futures = [pool.submit(invite_row, row, invite_one) for row in rows]
        for future in as_completed(futures):
            result = future.result()
            results.append(result)
            if progress is not None:
                progress.advance(result.status.value)
    results.sort(key=lambda result: result.line)
    summary = BulkSummary(results)
    log.info(
        "bulk_invitations_done",
        rows=len(results),
        created=summary.count(RowStatus.CREATED),
        existing=summary.count(RowStatus.EXISTING),
        failed=summary.count(RowStatus.FAILED),
    )
    return summary


def write_results(stream: TextIO, results: Iterable[RowResult]) -> None:
    writer = csv.writer(stream)
    writer.writerow(RESULT_COLUMNS)
    for result in results:
        writer.writerow(
            [
                result.line,
                result.email,
                result.status.value,
                result.invitation_id or "",
                "" if result.pla_tst_id is None else result.pla_tst_id,
                result.test_url or "",
                result.error or "",
            ]
        )


def default_result_path(csv_path: Path) -> Path:
    """`people.csv` → `people.csv.result.csv`, next to the input."""
    return csv_path.with_name(csv_path.name + ".result.csv")


class Inviter:
    """`invite` bound to one store, one Isograd client and the callback settings.

    Thread-safe (the client and the store are); call `close()` when done.
    """

    def __init__(
        self,
        *,
        store: SqlStore,
        client: IsogradClient,
        callback_keys: Sequence[CallbackKey],
        public_url: str,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        first_check_after: timedelta = FIRST_CHECK_AFTER,
    ) -> None:
        self.store = store
        self.client = client
        self._callback_keys = tuple(callback_keys)
        self._public_url = public_url
        self._clock = clock
        self._first_check_after = first_check_after

    @classmethod
    def from_settings(cls, settings: Settings) -> Inviter:
        return cls(
            store=SqlStore.from_url(settings.database_url),
            client=IsogradClient(
                api_url=settings.isograd_api_url,
                auth_url=settings.isograd_auth_url,
                client_id=settings.isograd_client_id,
                client_secret=settings.isograd_client_secret,
                sub_com_id=settings.isograd_sub_com_id,
                timeout=settings.http_timeout,
            ),
            callback_keys=settings.callback_keys,
            public_url=settings.public_url,
            first_check_after=timedelta(seconds=settings.reconcile_first_check_seconds),
        )

    def __call__(self, request: InvitationRequest, idempotency_key: str | None) -> Invited:
        return invite(
            request,
            client=self.client,
            store=self.store,
            callback_keys=self._callback_keys,
            public_url=self._public_url,
            now=self._clock(),
            idempotency_key=idempotency_key,
            first_check_after=self._first_check_after,
        )

    def close(self) -> None:
        self.client.close()
        self.store.close()


def invite_file(
    csv_path: Path,
    invite_one: InviteFunction,
    *,
    result_path: Path | None = None,
    concurrency: int = DEFAULT_CONCURRENCY,
    out: TextIO,
    err: TextIO,
) -> BulkSummary:
    """Invite every row of `csv_path`: progress on `err`, the summary on `out`, one result row
    per input row in `result_path` (default: `default_result_path`).

    Raises InvalidCsvError if the file cannot be read as invitations (nothing is invited then).
    """
    try:
        with csv_path.open(encoding="utf-8-sig", newline="") as stream:
            rows = read_rows(stream)
    except UnicodeDecodeError as exc:
        raise InvalidCsvError(["the file is not UTF-8 text"]) from exc
    progress = Progress(len(rows), stream=err, label="rows")
    summary = invite_rows(rows, invite_one, concurrency=concurrency, progress=progress)
    progress.finish()
    result_path = result_path or default_result_path(csv_path)
    with result_path.open("w", encoding="utf-8", newline="") as stream:
        write_results(stream, summary.results)
    print_summary(summary, result_path, out)
    return summary


def print_summary(summary: BulkSummary, result_path: Path, out: TextIO) -> None:
    # Line numbers, not emails: terminals and CI logs are not the place for candidate PII.
    print(
        f"{len(summary.results)} rows: {summary.count(RowStatus.CREATED)} created, "
        f"{summary.count(RowStatus.EXISTING)} already existing, "
        f"{summary.count(RowStatus.FAILED)} failed",
        file=out,
    )
    for failure in summary.failures:
        print(f"  line {failure.line}: {failure.error}", file=out)
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
            return 1 if summary.failures else 0
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
        request = validate_invitation_request(fields)
    except InvalidInvitationError as exc:
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
