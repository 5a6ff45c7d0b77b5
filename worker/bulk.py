"""Bulk invitations: one invitation per row of a CSV file, each row idempotent on its own key.

Columns (a header row names them, in any order; empty cells count as absent):

    email, first_name, last_name, tst_frm_id      required
    gender                male | female | not_provided, or Isograd gen_id 1-3
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
import itertools
import json
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import TextIO

import structlog

from worker.errors import IsogradApiError, PermanentError, RelayError
from worker.invitations import FIRST_CHECK_AFTER, Invited, invite
from worker.isograd.client import IsogradClient
from worker.requests import (
    InvalidRequestError,
    InvitationRequest,
    field_names,
    required_field_names,
    validate,
)
from worker.settings import Settings
from worker.storage.store import SqlStore
from worker.tokens import CallbackKey

log = structlog.get_logger(__name__)

# The columns are the invitation request's fields (worker.requests), plus the row's own key.
REQUIRED_COLUMNS = required_field_names(InvitationRequest)
OPTIONAL_COLUMNS = (
    *(name for name in field_names(InvitationRequest) if name not in REQUIRED_COLUMNS),
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
# Failures listed in the command's summary; the result file has every row.
MAX_LISTED_FAILURES = 50
# Rows read ahead of the oldest unfinished one, per concurrent invitation: memory stays bounded
# whatever the file's size, and a slow row does not idle the other workers.
READ_AHEAD_PER_WORKER = 4
# A cell starting with one of these is a formula to Excel, LibreOffice and Google Sheets; the
# result file quotes such cells with a leading ' (https://owasp.org/www-community/attacks/CSV_Injection).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")

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


@dataclass(slots=True)
class BulkSummary:
    """Counts by status and the failed rows (the first MAX_LISTED_FAILURES unless every result
    is kept); `results` holds every row only when kept."""

    results: list[RowResult] = field(default_factory=list)
    counts: dict[RowStatus, int] = field(default_factory=dict)
    failures: list[RowResult] = field(default_factory=list)
    keep_results: bool = True

    def add(self, result: RowResult) -> None:
        self.counts[result.status] = self.counts.get(result.status, 0) + 1
        listed = self.keep_results or len(self.failures) < MAX_LISTED_FAILURES
        if result.status is RowStatus.FAILED and listed:
            self.failures.append(result)
        if self.keep_results:
            self.results.append(result)

    def count(self, status: RowStatus) -> int:
        return self.counts.get(status, 0)

    @property
    def rows(self) -> int:
        return sum(self.counts.values())


def read_rows(stream: TextIO) -> list[InvitationRow]:
    """Every data row of an invitation CSV (see iter_rows), in a list."""
    return list(iter_rows(stream))


def iter_rows(stream: TextIO) -> Iterator[InvitationRow]:
    """The data rows of an invitation CSV as they are read; InvalidCsvError (raised by the first
    `next`) if its header is wrong, or later at the first line that is not CSV.

    The delimiter is `,`, or `;` or a tab when the header uses one (spreadsheets in French
    locales save with `;`). Blank lines are skipped; cells are stripped; empty cells left out.
    """
    first_line = stream.readline()
    delimiter = max((",", ";", "\t"), key=first_line.count)
    reader = csv.reader(itertools.chain([first_line], stream), delimiter=delimiter)
    try:
        header = [name.strip() for name in next(reader, [])]
        problems = _header_problems(header)
        if problems:
            raise InvalidCsvError(problems)
        start = reader.line_num + 1
        for record in reader:
            line, start = start, reader.line_num + 1
            cells = {
                name: value.strip()
                for name, value in zip(header, record, strict=False)
                if value.strip()
            }
            if cells or len(record) > len(header):
                yield InvitationRow(line, cells, extra_cells=len(record) > len(header))
    except csv.Error as exc:
        raise InvalidCsvError([f"line {reader.line_num}: {exc}"]) from exc


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
    """The validated request and idempotency key of a row; raise InvalidRequestError."""
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
        except (ValueError, RecursionError):  # not JSON, too deep, or a 4,300+ digit number
            errors["context"] = "must be a JSON object"
    key = row.cells.get("idempotency_key")
    if key is not None and len(key) > MAX_IDEMPOTENCY_KEY_LENGTH:
        errors["idempotency_key"] = f"must be at most {MAX_IDEMPOTENCY_KEY_LENGTH} characters"
    try:
        request = validate(InvitationRequest, data)
    except InvalidRequestError as exc:
        raise InvalidRequestError({**exc.errors, **errors}) from None
    if errors:
        raise InvalidRequestError(errors)
    return request, key if key is not None else row_idempotency_key(request)


def row_idempotency_key(request: InvitationRequest) -> str:
    """The key of an invitation to one test for one candidate (email compared case-blind)."""
    identity = f"{request.email.casefold()}\n{request.tst_frm_id}\n{request.sub_com_id or ''}"
    # Hashed so the key column holds no email once the retention purge blanks the row's PII.
    return "bulk:" + hashlib.sha256(identity.encode()).hexdigest()


def invite_row(row: InvitationRow, invite_one: InviteFunction) -> RowResult:
    """Invite one row; every failure becomes a failed RowResult, never an exception.

    An unexpected error (a bug, a database refusing a value) fails this row only, logged with
    its traceback: the other rows go on and every row's outcome is written.
    """
    email = row.cells.get("email", "")
    try:
        return _invite_row(row, email, invite_one)
    except Exception as exc:
        log.exception("bulk_row_failed_unexpectedly", line=row.line)
        error = f"unexpected error ({type(exc).__name__}); see the logs"
        return RowResult(row.line, email, RowStatus.FAILED, error=error)


def _invite_row(row: InvitationRow, email: str, invite_one: InviteFunction) -> RowResult:
    try:
        request, key = row_request(row)
    except InvalidRequestError as exc:
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
    rows: Iterable[InvitationRow],
    invite_one: InviteFunction,
    *,
    concurrency: int = DEFAULT_CONCURRENCY,
    on_result: Callable[[RowResult], None] | None = None,
    keep_results: bool = True,
) -> BulkSummary:
    """Invite every row with at most `concurrency` at once; results in file order.

    `rows` is consumed as it goes, at most READ_AHEAD_PER_WORKER * concurrency rows ahead of
    the oldest unfinished one; `on_result` gets each result in file order as soon as it and
    those before it are done. One row's failure never stops the others. Safe to run twice: see
    the module docstring.
    """
    workers = max(1, concurrency)
    summary = BulkSummary(keep_results=keep_results)

    def finish(result: RowResult) -> None:
        summary.add(result)
        if on_result is not None:
            on_result(result)

    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="invite") as pool:
        in_flight: deque[Future[RowResult]] = deque()
        for row in rows:
            in_flight.append(pool.submit(invite_row, row, invite_one))
            if len(in_flight) >= workers * READ_AHEAD_PER_WORKER:
                finish(in_flight.popleft().result())
        while in_flight:
            finish(in_flight.popleft().result())
    log.info(
        "bulk_invitations_done",
        rows=summary.rows,
        created=summary.count(RowStatus.CREATED),
        existing=summary.count(RowStatus.EXISTING),
        failed=summary.count(RowStatus.FAILED),
    )
    return summary


def neutralise_formula(cell: str) -> str:
    """`cell` as text a spreadsheet will not evaluate: a leading ' before a formula start."""
    return "'" + cell if cell.startswith(FORMULA_STARTS) else cell


class ResultWriter:
    """Writes the result CSV one row at a time, flushed, so a run cut short keeps its rows."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._writer = csv.writer(stream)
        self._writer.writerow(RESULT_COLUMNS)
        stream.flush()

    def write(self, result: RowResult) -> None:
        cells = [
            result.email,
            result.status.value,
            result.invitation_id or "",
            "" if result.pla_tst_id is None else str(result.pla_tst_id),
            result.test_url or "",
            result.error or "",
        ]
        self._writer.writerow([result.line, *(neutralise_formula(cell) for cell in cells)])
        self._stream.flush()


def write_results(stream: TextIO, results: Iterable[RowResult]) -> None:
    writer = ResultWriter(stream)
    for result in results:
        writer.write(result)


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
