"""Tests of worker.bulk: CSV invitations against the in-process simulator and real SQLite."""

from __future__ import annotations

import csv
import io
import threading
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from structlog.testing import capture_logs

from tests.fakes import FakeClock
from tests.fixtures.pipeline import EXCEL, Simulated
from worker.bulk import (
    MAX_LISTED_FAILURES,
    READ_AHEAD_PER_WORKER,
    RESULT_COLUMNS,
    BulkSummary,
    InvalidCsvError,
    InvitationRow,
    Inviter,
    RowResult,
    RowStatus,
    default_result_path,
    invite_rows,
    neutralise_formula,
    read_rows,
    row_idempotency_key,
    row_request,
)
from worker.cli.invitations import invite_file, print_summary
from worker.errors import IsogradUnavailableError
from worker.invitations import Invited
from worker.requests import InvitationRequest
from worker.storage.records import InvitationStatus
from worker.storage.store import SqlStore
from worker.storage.tables import invitations
from worker.tokens import CallbackKey

KEYS = (CallbackKey("k1", b"s" * 32),)
PUBLIC_URL = "https://relay.example"
HEADER = ["email", "first_name", "last_name", "tst_frm_id"]
NOT_ALLOWED = 999_999  # the simulator's catalogue has no such test: error 106
BAD_EMAIL_LINE = 5
MISSING_NAME_LINE = 12
BAD_TEST_ID_LINE = 20
NOT_ALLOWED_LINE = 27
ROWS = 30


def people_rows() -> list[list[str]]:
    """30 data rows (file lines 2-31): three invalid ones and one Isograd refuses."""
    rows = [[f"candidate{n}@example.org", f"First{n}", f"Last{n}", str(EXCEL)] for n in range(30)]
    rows[BAD_EMAIL_LINE - 2][0] = "not-an-email"
    rows[MISSING_NAME_LINE - 2][2] = ""
    rows[BAD_TEST_ID_LINE - 2][3] = "abc"
    rows[NOT_ALLOWED_LINE - 2][3] = str(NOT_ALLOWED)
    return rows


def write_csv(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as stream:
        writer = csv.writer(stream)
        writer.writerow(header)
        writer.writerows(rows)
    return path


@pytest.fixture
def people(tmp_path: Path) -> Path:
    return write_csv(tmp_path / "people.csv", HEADER, people_rows())


@pytest.fixture
def inviter(simulated: Simulated, store: SqlStore, clock: FakeClock) -> Inviter:
    # Not closed here: the fixtures that made the client and the store close them.
    return Inviter(
        store=store, client=simulated.client, callback_keys=KEYS, public_url=PUBLIC_URL, clock=clock
    )


def run_file(path: Path, inviter: Inviter, concurrency: int = 4) -> BulkSummary:
    return invite_file(
        path,
        inviter,
        concurrency=concurrency,
        out=io.StringIO(),
        err=io.StringIO(),
        keep_results=True,
    )


def by_line(summary: BulkSummary) -> dict[int, RowResult]:
    return {result.line: result for result in summary.results}


def stored_invitations(store: SqlStore) -> int:
    with store.engine.connect() as connection:
        return int(connection.execute(select(func.count()).select_from(invitations)).scalar_one())


def parse(text: str) -> list[InvitationRow]:
    return read_rows(io.StringIO(text))


# -- a whole file against the simulator --------------------------------------------------------


def test_valid_rows_are_invited_and_stored_with_their_test(
    people: Path, inviter: Inviter, store: SqlStore
) -> None:
    summary = run_file(people, inviter)

    created = [result for result in summary.results if result.status is RowStatus.CREATED]
    assert len(created) == ROWS - 4
    for result in created:
        assert result.invitation_id is not None
        stored = store.get_invitation(result.invitation_id)
        assert stored is not None
        assert stored.pla_tst_id == result.pla_tst_id
        assert result.test_url


def test_invalid_rows_are_reported_with_their_line_and_field(
    people: Path, inviter: Inviter
) -> None:
    results = by_line(run_file(people, inviter))

    assert results[BAD_EMAIL_LINE].status is RowStatus.FAILED
    assert results[BAD_EMAIL_LINE].error == "invalid row: email: must be an email address"
    assert results[MISSING_NAME_LINE].error == "invalid row: last_name: is required"
    assert results[BAD_TEST_ID_LINE].error == "invalid row: tst_frm_id: must be a positive integer"


def test_isograd_refusal_is_reported_with_its_code_and_message(
    people: Path, inviter: Inviter, store: SqlStore
) -> None:
    result = by_line(run_file(people, inviter))[NOT_ALLOWED_LINE]

    assert result.status is RowStatus.FAILED
    assert result.error == "isograd error 106: This tst_frm_id is not allowed"
    assert result.invitation_id is None


def test_results_come_in_file_order_with_one_result_per_row(people: Path, inviter: Inviter) -> None:
    summary = run_file(people, inviter, concurrency=8)

    assert [result.line for result in summary.results] == list(range(2, ROWS + 2))


def test_running_the_same_file_twice_creates_nothing_twice(
    people: Path, inviter: Inviter, simulated: Simulated, store: SqlStore
) -> None:
    first = run_file(people, inviter)
    calls, stored = simulated.calls(8), stored_invitations(store)

    second = run_file(people, inviter)

    assert second.count(RowStatus.EXISTING) == first.count(RowStatus.CREATED) == ROWS - 4
    assert second.count(RowStatus.CREATED) == 0
    assert len(simulated.control.get("/_simulator/state").json()["tests"]) == ROWS - 4
    assert stored_invitations(store) == stored
    # Only the row Isograd refused is tried again (its invitation failed; it has no test).
    assert simulated.calls(8) == calls + 1
    assert simulated.calls(2) == 1  # that candidate exists since the first run: 202, then act 2


def test_second_run_reports_the_same_invitation_for_each_row(
    people: Path, inviter: Inviter
) -> None:
    first = by_line(run_file(people, inviter))

    second = by_line(run_file(people, inviter))

    for line, result in first.items():
        assert second[line].invitation_id == result.invitation_id
        assert second[line].pla_tst_id == result.pla_tst_id


def test_isograd_unavailable_for_some_rows_does_not_stop_the_others(
    people: Path, inviter: Inviter, simulated: Simulated, store: SqlStore
) -> None:
    simulated.faults(fail_next=2)

    results = run_file(people, inviter, concurrency=1).results

    unavailable = [
        result for result in results if "IsogradUnavailableError" in (result.error or "")
    ]
    assert [result.line for result in unavailable] == [2, 3]
    assert sum(result.status is RowStatus.CREATED for result in results) == ROWS - 6


def test_rows_that_were_unavailable_are_created_on_the_next_run(
    people: Path, inviter: Inviter, simulated: Simulated, store: SqlStore
) -> None:
    simulated.faults(fail_next=2)
    run_file(people, inviter, concurrency=1)

    results = by_line(run_file(people, inviter, concurrency=1))

    assert results[2].status is RowStatus.CREATED
    assert results[3].status is RowStatus.CREATED
    invitation_id = results[2].invitation_id
    assert invitation_id is not None
    stored = store.get_invitation(invitation_id)
    assert stored is not None
    assert stored.status is InvitationStatus.PENDING


def test_result_csv_has_one_line_per_row_with_status_and_error(
    people: Path, inviter: Inviter
) -> None:
    run_file(people, inviter)

    with default_result_path(people).open(newline="", encoding="utf-8") as stream:
        lines = list(csv.DictReader(stream))
    assert tuple(lines[0]) == RESULT_COLUMNS
    assert len(lines) == ROWS
    bad = next(line for line in lines if line["line"] == str(NOT_ALLOWED_LINE))
    assert bad["status"] == "failed"
    assert bad["email"] == f"candidate{NOT_ALLOWED_LINE - 2}@example.org"
    assert bad["error"].startswith("isograd error 106")
    good = lines[0]
    assert good["status"] == "created"
    assert good["invitation_id"].startswith("inv_")
    assert good["pla_tst_id"].isdigit()


def test_summary_counts_and_lists_failures_by_line_without_emails(
    people: Path, inviter: Inviter
) -> None:
    out = io.StringIO()

    invite_file(people, inviter, out=out, err=io.StringIO())

    text = out.getvalue()
    assert text.startswith(f"{ROWS} rows: {ROWS - 4} created, 0 already existing, 4 failed")
    assert f"  line {BAD_EMAIL_LINE}: invalid row: email" in text
    assert "@" not in text
    assert f"results: {default_result_path(people)}" in text


def test_progress_is_written_to_the_error_stream(people: Path, inviter: Inviter) -> None:
    err = io.StringIO()

    invite_file(people, inviter, out=io.StringIO(), err=err)

    assert f"{ROWS}/{ROWS} rows 100%" in err.getvalue().splitlines()[-1]


def test_explicit_result_path_is_used(people: Path, inviter: Inviter, tmp_path: Path) -> None:
    result_path = tmp_path / "out" / "results.csv"
    result_path.parent.mkdir()

    invite_file(people, inviter, result_path=result_path, out=io.StringIO(), err=io.StringIO())

    assert result_path.exists()
    assert not default_result_path(people).exists()


def test_file_with_a_bad_header_invites_nobody(
    tmp_path: Path, inviter: Inviter, simulated: Simulated
) -> None:
    path = write_csv(tmp_path / "x.csv", ["mail", "first_name"], [["a@example.org", "A"]])

    with pytest.raises(InvalidCsvError):
        run_file(path, inviter)

    assert simulated.calls(8) == 0


# -- reading rows ------------------------------------------------------------------------------


def test_missing_and_unknown_columns_are_all_reported() -> None:
    with pytest.raises(InvalidCsvError) as caught:
        parse("email,first_name,tst_frm,extra\n")

    assert caught.value.problems == [
        "missing column 'last_name'",
        "missing column 'tst_frm_id'",
        "unknown column 'tst_frm'",
        "unknown column 'extra'",
    ]


def test_empty_file_is_refused() -> None:
    with pytest.raises(InvalidCsvError) as caught:
        parse("")

    assert caught.value.problems == ["the file has no header row"]


def test_semicolon_separated_file_is_read() -> None:
    rows = parse("email;first_name;last_name;tst_frm_id\na@example.org;Ada;L;101\n")

    assert rows == [
        InvitationRow(
            2,
            {"email": "a@example.org", "first_name": "Ada", "last_name": "L", "tst_frm_id": "101"},
        )
    ]


def test_line_numbers_count_blank_lines_and_multiline_cells() -> None:
    text = (
        "email,first_name,last_name,tst_frm_id,context\n"
        "\n"
        'a@example.org,Ada,L,101,"{""note"":\n""two lines""}"\n'
        "b@example.org,Bob,M,101,\n"
    )

    rows = parse(text)

    assert [row.line for row in rows] == [3, 5]


def test_cells_are_stripped_and_empty_ones_left_out() -> None:
    (row,) = parse("email,first_name,last_name,tst_frm_id,gender\n a@example.org ,Ada,L,101,\n")

    assert row.cells == {
        "email": "a@example.org",
        "first_name": "Ada",
        "last_name": "L",
        "tst_frm_id": "101",
    }


def test_a_row_with_more_cells_than_columns_is_invalid() -> None:
    (row,) = parse("email,first_name,last_name,tst_frm_id\na@example.org,Ada,L,101,oops\n")

    with pytest.raises(Exception, match="invalid request: row"):
        row_request(row)


# -- one row's request and key -----------------------------------------------------------------


def row(**cells: str) -> InvitationRow:
    base = {"email": "Ada@Example.org", "first_name": "Ada", "last_name": "L", "tst_frm_id": "101"}
    return InvitationRow(2, {**base, **cells})


def test_optional_columns_are_read_like_the_api_fields() -> None:
    request, _ = row_request(
        row(language="2", sub_com_id="7", context='{"ats": {"id": 4}}', group="sales")
    )

    assert request.sub_com_id == 7
    assert request.context == {"ats": {"id": 4}}
    assert request.group == "sales"
    assert request.language is not None


def test_context_that_is_not_json_is_reported() -> None:
    with pytest.raises(Exception, match="context") as caught:
        row_request(row(context="{oops"))

    assert caught.value.errors == {"context": "must be a JSON object"}  # type: ignore[attr-defined]


def test_derived_key_ignores_the_email_case_but_not_the_test_or_sub_account() -> None:
    key = row_request(row())[1]

    assert row_request(row(email="ada@example.ORG"))[1] == key
    assert row_request(row(tst_frm_id="102"))[1] != key
    assert row_request(row(sub_com_id="7"))[1] != key
    assert "ada" not in key.lower()


def test_explicit_idempotency_key_column_wins() -> None:
    request, key = row_request(row(idempotency_key="retake-2026"))

    assert key == "retake-2026"
    assert key != row_idempotency_key(request)


# -- concurrency -------------------------------------------------------------------------------


class GatedInvite:
    """An invite function that records how many calls run at once; `parties` calls meet at a
    barrier before any returns, so the test fails (timeout) if fewer can run together."""

    def __init__(self, parties: int) -> None:
        self.barrier = threading.Barrier(parties, timeout=10)
        self.lock = threading.Lock()
        self.inside = 0
        self.most = 0

    def __call__(self, request: InvitationRequest, key: str | None) -> Invited:
        with self.lock:
            self.inside += 1
            self.most = max(self.most, self.inside)
        self.barrier.wait()
        with self.lock:
            self.inside -= 1
        raise _Refused()


class _Refused(Exception):
    pass


def test_rows_run_concurrently_but_never_more_than_the_limit() -> None:
    gate = GatedInvite(parties=3)
    rows = [row(email=f"p{n}@example.org") for n in range(9)]

    summary = invite_rows(rows, gate, concurrency=3)

    assert gate.most == 3
    assert summary.count(RowStatus.FAILED) == 9


def test_an_unexpected_error_fails_its_row_only_logged_with_its_traceback() -> None:
    def broken_for_p1(request: InvitationRequest, key: str | None) -> Any:
        if request.email == "p1@example.org":
            raise _Refused()
        raise IsogradUnavailableError("down")

    rows = [row(email=f"p{n}@example.org") for n in range(3)]
    with capture_logs() as logs:
        summary = invite_rows(rows, broken_for_p1)

    [unexpected] = [result for result in summary.results if "unexpected" in (result.error or "")]
    assert unexpected.email == "p1@example.org"
    assert unexpected.error == "unexpected error (_Refused); see the logs"
    assert summary.count(RowStatus.FAILED) == 3
    assert any(entry["event"] == "bulk_row_failed_unexpectedly" for entry in logs)


def test_the_first_status_check_follows_the_inviters_configured_delay(
    simulated: Simulated, store: SqlStore, clock: FakeClock
) -> None:
    inviter = Inviter(
        store=store,
        client=simulated.client,
        callback_keys=KEYS,
        public_url=PUBLIC_URL,
        clock=clock,
        first_check_after=timedelta(seconds=90),
    )
    request = InvitationRequest(
        email="ana@example.org", first_name="Ana", last_name="Silva", tst_frm_id=EXCEL
    )

    invited = inviter(request, None)

    assert invited.invitation.next_check_at == clock() + timedelta(seconds=90)


# -- hardening: formulas, oversized values, streaming ------------------------------------------


@pytest.mark.parametrize("start", ["=", "+", "-", "@"])
def test_a_result_cell_that_would_be_a_formula_is_written_as_text(
    tmp_path: Path, inviter: Inviter, start: str
) -> None:
    email = f'{start}HYPERLINK("http://evil.example")@example.org'
    people = write_csv(tmp_path / "formula.csv", HEADER, [[email, "Ada", "L", str(EXCEL)]])

    run_file(people, inviter)

    with default_result_path(people).open(newline="", encoding="utf-8") as stream:
        [line] = list(csv.DictReader(stream))
    assert line["email"] == "'" + email


@pytest.mark.parametrize("start", ["=", "+", "-", "@", "\t", "\r"])
def test_every_formula_start_of_the_owasp_list_is_neutralised(start: str) -> None:
    assert neutralise_formula(f"{start}1+1") == f"'{start}1+1"
    assert neutralise_formula(f"a{start}1") == f"a{start}1"


def test_ordinary_result_cells_are_written_unchanged(tmp_path: Path, inviter: Inviter) -> None:
    people = write_csv(tmp_path / "plain.csv", HEADER, [["ada@example.org", "A", "L", "101"]])

    run_file(people, inviter)

    with default_result_path(people).open(newline="", encoding="utf-8") as stream:
        [line] = list(csv.DictReader(stream))
    assert line["email"] == "ada@example.org"


@pytest.mark.parametrize("number", ["9" * 19, "9" * 5000, str(2**63)])
def test_a_row_with_an_oversized_number_fails_alone_and_every_row_is_written(
    tmp_path: Path, inviter: Inviter, number: str
) -> None:
    rows = [[f"p{n}@example.org", "Ada", "L", str(EXCEL)] for n in range(3)]
    rows[1][3] = number
    people = write_csv(tmp_path / "big.csv", [*HEADER], rows)

    summary = run_file(people, inviter)

    with default_result_path(people).open(newline="", encoding="utf-8") as stream:
        lines = list(csv.DictReader(stream))
    assert [line["status"] for line in lines] == ["created", "failed", "created"]
    assert lines[1]["error"].startswith("invalid row: tst_frm_id: must be a positive integer")
    assert summary.count(RowStatus.CREATED) == 2


def test_rows_are_read_as_they_are_invited_not_all_at_once() -> None:
    read = 0

    def rows() -> Any:
        nonlocal read
        for n in range(1000):
            read += 1
            yield row(email=f"p{n}@example.org")

    read_at_first_result: list[int] = []

    def invite_one(request: InvitationRequest, key: str | None) -> Any:
        raise IsogradUnavailableError("down")

    invite_rows(
        rows(),
        invite_one,
        concurrency=2,
        on_result=lambda result: read_at_first_result.append(read),
    )

    assert read == 1000
    assert read_at_first_result[0] <= 2 * READ_AHEAD_PER_WORKER + 1


def test_each_result_is_in_the_file_before_the_next_row_is_invited(
    tmp_path: Path, inviter: Inviter
) -> None:
    people = write_csv(
        tmp_path / "three.csv",
        HEADER,
        [[f"p{n}@example.org", "Ada", "L", str(EXCEL)] for n in range(3)],
    )
    result_path = default_result_path(people)
    lines_seen: list[int] = []

    def counting(request: InvitationRequest, key: str | None) -> Invited:
        with result_path.open(encoding="utf-8") as stream:
            lines_seen.append(len(stream.read().splitlines()) - 1)  # minus the header
        return inviter(request, key)

    invite_file(people, counting, concurrency=1, out=io.StringIO(), err=io.StringIO())

    # With one worker and a read-ahead of a few rows, results trail the invitations slightly,
    # but they are written (and flushed) while the run goes on, not only at its end.
    assert lines_seen[0] == 0
    with result_path.open(encoding="utf-8") as stream:
        assert len(stream.read().splitlines()) == 4


def test_a_long_run_lists_its_first_failures_and_counts_the_rest() -> None:
    summary = BulkSummary(keep_results=False)
    for line in range(MAX_LISTED_FAILURES + 10):
        summary.add(RowResult(line, "", RowStatus.FAILED, error="bad"))
    out = io.StringIO()

    print_summary(summary, Path("r.csv"), out)

    assert len(summary.failures) == MAX_LISTED_FAILURES
    assert summary.count(RowStatus.FAILED) == MAX_LISTED_FAILURES + 10
    assert "… and 10 more failed rows" in out.getvalue()
