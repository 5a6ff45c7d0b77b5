"""Tests of the command line: invite (one and CSV), deliveries, replay, and configuration checks
that stop every process before it starts. Isograd is the simulator served on a free port."""

from __future__ import annotations

import csv
import gc
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import dramatiq
import pytest
from sqlalchemy import inspect

from tests.fakes import RecordingEnqueuer
from tests.fixtures.simulator import CLIENT_ID, CLIENT_SECRET, ServedSimulator
from worker import cli, processes
from worker.cli import processes as cli_processes
from worker.clock import utc_now
from worker.replay import ReplayOutcome, broker_enqueuer, replay_delivery, replay_failed
from worker.storage.records import Delivery, DeliveryStatus
from worker.storage.store import SqlStore

EXCEL = 101
NOT_ALLOWED = 999_999
RELAY_ENV = (
    "ISOGRAD_ENV",
    "ISOGRAD_CLIENT_ID",
    "ISOGRAD_CLIENT_SECRET",
    "ISOGRAD_API_URL",
    "ISOGRAD_AUTH_URL",
    "ISOGRAD_SUB_COM_ID",
    "SIMULATOR_URL",
    "PUBLIC_URL",
    "CALLBACK_KEYS",
    "ADMIN_TOKEN",
    "DATABASE_URL",
    "BROKER_URL",
    "REDIS_URL",
    "HTTP_TIMEOUT",
    "LOG_LEVEL",
    "LOG_FORMAT",
    "VAR_DIR",
    "RELAY_CONFIG",
)
INVALID = {
    "ISOGRAD_ENV": "production",
    "CALLBACK_KEYS": "bad",
    "ADMIN_TOKEN": "short",
}
PROBLEMS = (
    "ISOGRAD_CLIENT_ID: is required when ISOGRAD_ENV=production",
    "ISOGRAD_CLIENT_SECRET: is required when ISOGRAD_ENV=production",
    "CALLBACK_KEYS: key 1: expected 'kid:secret'",
    "ADMIN_TOKEN: must be at least 16 characters",
)


# The commands configure logging: put it back after each test.
pytestmark = pytest.mark.usefixtures("restore_logging")


@pytest.fixture
def database(tmp_path: Path) -> Path:
    return tmp_path / "relay.db"


@pytest.fixture
def environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, database: Path
) -> pytest.MonkeyPatch:
    """A clean relay environment in `tmp_path` (no relay.toml there): simulator, SQLite."""
    for name in RELAY_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("VAR_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{database}")
    monkeypatch.setenv("LOG_FORMAT", "json")
    return monkeypatch


@pytest.fixture
def isograd(environment: pytest.MonkeyPatch) -> Iterator[ServedSimulator]:
    with ServedSimulator() as served:
        environment.setenv("ISOGRAD_API_URL", f"{served.url}/api/usage")
        environment.setenv("ISOGRAD_AUTH_URL", f"{served.url}/oauth2/token")
        environment.setenv("ISOGRAD_CLIENT_ID", CLIENT_ID)
        environment.setenv("ISOGRAD_CLIENT_SECRET", CLIENT_SECRET)
        yield served


@pytest.fixture
def migrated(environment: pytest.MonkeyPatch, database: Path) -> Path:
    assert cli.main(["migrate"]) == 0
    return database


@pytest.fixture
def store(migrated: Path) -> Iterator[SqlStore]:
    sql_store = SqlStore.from_url(f"sqlite:///{migrated}")
    yield sql_store
    sql_store.close()


def candidate_flags(**changes: str) -> list[str]:
    flags = {
        "--email": "ada@example.org",
        "--first-name": "Ada",
        "--last-name": "Lovelace",
        "--tst-frm-id": str(EXCEL),
        **changes,
    }
    return [part for pair in flags.items() for part in pair]


def output_fields(text: str) -> dict[str, str]:
    pairs = (line.split(":", 1) for line in text.splitlines() if ":" in line)
    return {name.strip(): value.strip() for name, value in pairs}


def make_invitations_csv(path: Path, rows: int, bad_line: int) -> Path:
    with path.open("w", newline="", encoding="utf-8") as stream:
        writer = csv.writer(stream)
        writer.writerow(["email", "first_name", "last_name", "tst_frm_id", "context"])
        for n in range(rows):
            email = "oops" if n + 2 == bad_line else f"c{n}@example.org"
            writer.writerow([email, f"F{n}", f"L{n}", EXCEL, json.dumps({"row": n})])
    return path


def seed_deliveries(store: SqlStore, *names: str, pla_tst_id: int = 5_000_001) -> list[Delivery]:
    _, deliveries, _ = store.create_event(
        f"evt_{pla_tst_id}", None, pla_tst_id, "assessment.completed", {"data": {}}, names
    )
    return deliveries


# -- configuration ----------------------------------------------------------------------------


@dataclass
class Report:
    out: io.StringIO
    err: io.StringIO


@pytest.fixture
def report(environment: pytest.MonkeyPatch) -> Report:
    """What the configuration check prints. worker.processes binds sys.stdout/sys.stderr as
    default arguments when it is imported, so neither capsys nor capfd sees them: hand the
    real functions buffers instead."""
    captured = Report(io.StringIO(), io.StringIO())
    environment.setattr(
        cli_processes, "load_settings", partial(processes.load_settings, out=captured.err)
    )
    environment.setattr(
        cli_processes, "check_config", partial(processes.check_config, out=captured.out)
    )
    return captured


def make_invalid(environment: pytest.MonkeyPatch) -> None:
    for name, value in INVALID.items():
        environment.setenv(name, value)


def test_check_config_prints_a_summary_of_a_valid_configuration(report: Report) -> None:
    code = cli.main(["check-config"])

    assert code == 0
    out = report.out.getvalue()
    assert out.startswith("configuration OK")
    assert "database:      sqlite" in out


def test_check_config_lists_every_problem_and_exits_2(
    environment: pytest.MonkeyPatch, report: Report
) -> None:
    make_invalid(environment)

    code = cli.main(["check-config"])

    assert code == 2
    err = report.err.getvalue()
    assert err.startswith("isograd-relay: invalid configuration (4 problem(s)):")
    for problem in PROBLEMS:
        assert f"  - {problem}" in err


def test_check_config_reports_a_template_syntax_error_with_its_line(
    environment: pytest.MonkeyPatch, report: Report, tmp_path: Path
) -> None:
    (tmp_path / "relay.toml").write_text(
        '[[subscriptions]]\nname = "hris"\nkind = "http"\n'
        'url = "https://api.example.com/x"\nbody = """{\n  "a": {{ data.grade.percent \n}"""\n',
        encoding="utf-8",
    )

    code = cli.main(["check-config"])

    assert code == 2
    # The expression opened on line 2 meets a stray "}" on line 3, where Jinja stops.
    assert (
        "  - relay.toml: subscriptions[0].body: template syntax error on line 3: unexpected '}'"
        in report.err.getvalue()
    )


def test_worker_refuses_to_start_on_invalid_configuration(
    environment: pytest.MonkeyPatch, report: Report
) -> None:
    make_invalid(environment)
    started: list[Any] = []
    environment.setattr(cli_processes, "run_worker", lambda *args, **kwargs: started.append(args))

    code = cli.main(["worker"])

    assert code == 2
    assert started == []
    assert all(problem in report.err.getvalue() for problem in PROBLEMS)


def test_migrate_refuses_to_touch_the_database_on_invalid_configuration(
    environment: pytest.MonkeyPatch, report: Report, database: Path
) -> None:
    make_invalid(environment)

    code = cli.main(["migrate"])

    assert code == 2
    assert not database.exists()
    assert all(problem in report.err.getvalue() for problem in PROBLEMS)


def test_invite_refuses_to_start_on_invalid_configuration(
    environment: pytest.MonkeyPatch, report: Report, database: Path
) -> None:
    make_invalid(environment)

    code = cli.main(["invite", *candidate_flags()])

    assert code == 2
    assert not database.exists()
    assert all(problem in report.err.getvalue() for problem in PROBLEMS)


def test_migrate_creates_the_tables(environment: pytest.MonkeyPatch, database: Path) -> None:
    code = cli.main(["migrate"])

    assert code == 0
    store = SqlStore.from_url(f"sqlite:///{database}")
    try:
        assert {"invitations", "deliveries"} <= set(inspect(store.engine).get_table_names())
    finally:
        store.close()


# -- invite -----------------------------------------------------------------------------------


def test_invite_one_candidate_prints_the_invitation_and_its_test(
    isograd: ServedSimulator, store: SqlStore, capsys: pytest.CaptureFixture[str]
) -> None:
    code = cli.main(["invite", *candidate_flags(), "--context", '{"ats": 7}'])

    assert code == 0
    fields = output_fields(capsys.readouterr().out)
    stored = store.get_invitation(fields["invitation_id"])
    assert stored is not None
    assert str(stored.pla_tst_id) == fields["pla_tst_id"]
    assert fields["test_url"] == stored.test_url
    assert fields["status"] == "created"
    assert stored.context == {"ats": 7}


def test_invite_with_the_same_idempotency_key_reports_the_existing_invitation(
    isograd: ServedSimulator, store: SqlStore, capsys: pytest.CaptureFixture[str]
) -> None:
    cli.main(["invite", *candidate_flags(), "--idempotency-key", "k1"])
    first = output_fields(capsys.readouterr().out)

    code = cli.main(["invite", *candidate_flags(), "--idempotency-key", "k1"])

    second = output_fields(capsys.readouterr().out)
    assert code == 0
    assert second["invitation_id"] == first["invitation_id"]
    assert second["status"] == "existing"


def test_invite_with_invalid_fields_names_each_and_exits_2(
    isograd: ServedSimulator, store: SqlStore, capsys: pytest.CaptureFixture[str]
) -> None:
    code = cli.main(["invite", *candidate_flags(**{"--email": "nope", "--tst-frm-id": "0"})])

    assert code == 2
    err = capsys.readouterr().err
    assert "email: must be an email address" in err
    assert "tst_frm_id: must be a positive integer" in err


def test_invite_refused_by_isograd_prints_its_code_and_exits_1(
    isograd: ServedSimulator, store: SqlStore, capsys: pytest.CaptureFixture[str]
) -> None:
    code = cli.main(["invite", *candidate_flags(**{"--tst-frm-id": str(NOT_ALLOWED)})])

    assert code == 1
    assert "isograd error 106: This tst_frm_id is not allowed" in capsys.readouterr().err


def test_invite_without_a_candidate_or_a_file_exits_2(
    environment: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["invite"]) == 2
    assert "--csv FILE" in capsys.readouterr().err


def test_invite_csv_invites_every_valid_row_and_writes_the_result_file(
    isograd: ServedSimulator,
    store: SqlStore,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    people = make_invitations_csv(tmp_path / "people.csv", rows=12, bad_line=6)

    code = cli.main(["invite", "--csv", str(people), "--concurrency", "3"])

    assert code == 1  # one row failed
    captured = capsys.readouterr()
    assert captured.out.startswith("12 rows: 11 created, 0 already existing, 1 failed")
    assert "line 6: invalid row: email" in captured.out
    assert "12/12 rows 100%" in captured.err
    with (tmp_path / "people.csv.result.csv").open(newline="") as stream:
        results = list(csv.DictReader(stream))
    assert [row["status"] for row in results].count("created") == 11
    stored = store.get_invitation(results[0]["invitation_id"])
    assert stored is not None
    assert stored.context == {"row": 0}


def test_invite_csv_twice_reports_every_row_as_existing(
    isograd: ServedSimulator,
    store: SqlStore,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    people = make_invitations_csv(tmp_path / "people.csv", rows=5, bad_line=99)
    assert cli.main(["invite", "--csv", str(people)]) == 0
    capsys.readouterr()

    code = cli.main(["invite", "--csv", str(people), "--result", str(tmp_path / "again.csv")])

    assert code == 0
    assert capsys.readouterr().out.startswith("5 rows: 0 created, 5 already existing, 0 failed")
    assert (tmp_path / "again.csv").exists()


def test_invite_csv_with_a_bad_header_exits_2_naming_the_problem(
    environment: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "people.csv"
    path.write_text("mail,first_name,last_name,tst_frm_id\n", encoding="utf-8")

    code = cli.main(["invite", "--csv", str(path)])

    assert code == 2
    assert "unknown column 'mail'" in capsys.readouterr().err


def test_invite_csv_of_a_missing_file_exits_2(
    environment: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = cli.main(["invite", "--csv", str(tmp_path / "nowhere.csv")])

    assert code == 2
    assert "nowhere.csv" in capsys.readouterr().err


# -- deliveries -------------------------------------------------------------------------------


def test_deliveries_are_listed_as_a_table_filtered_by_status(
    store: SqlStore, capsys: pytest.CaptureFixture[str]
) -> None:
    failed, pending = seed_deliveries(store, "crm", "hr")
    store.mark_failed(failed.id, "HTTP 500 from https://crm.example/hook")

    code = cli.main(["deliveries", "--status", "failed"])

    assert code == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == [
        "ID",
        "SUBSCRIPTION",
        "STATUS",
        "ATTEMPTS",
        "NEXT",
        "ATTEMPT",
        "(UTC)",
        "LAST",
        "ERROR",
    ]
    assert len(lines) == 2
    assert lines[1].startswith(f"{failed.id}  crm")
    assert lines[1].endswith("HTTP 500 from https://crm.example/hook")
    assert pending.id not in lines[1]


def test_deliveries_as_json_filtered_by_subscription(
    store: SqlStore, capsys: pytest.CaptureFixture[str]
) -> None:
    seed_deliveries(store, "crm", "hr")

    code = cli.main(["deliveries", "--subscription", "hr", "--json"])

    assert code == 0
    listed = json.loads(capsys.readouterr().out)
    assert [(item["subscription"], item["status"], item["attempts"]) for item in listed] == [
        ("hr", "pending", 0)
    ]


def test_no_deliveries_says_so(store: SqlStore, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["deliveries"]) == 0
    assert capsys.readouterr().out == "no deliveries\n"


# -- replay -----------------------------------------------------------------------------------


def test_replay_without_a_broker_requeues_in_the_database_and_says_so(
    store: SqlStore, capsys: pytest.CaptureFixture[str]
) -> None:
    (delivery,) = seed_deliveries(store, "crm")
    store.mark_failed(delivery.id, "HTTP 500")

    code = cli.main(["replay", delivery.id])

    assert code == 0
    out = capsys.readouterr().out
    assert "no broker configured" in out
    assert "scheduler" in out
    replayed = store.get_delivery(delivery.id)
    assert replayed is not None
    assert replayed.status is DeliveryStatus.PENDING
    assert replayed.attempt_count == 0


def test_replay_all_failed_of_one_subscription_leaves_the_others(
    store: SqlStore, capsys: pytest.CaptureFixture[str]
) -> None:
    crm, hr = seed_deliveries(store, "crm", "hr")
    crm_2, hr_2 = seed_deliveries(store, "crm", "hr", pla_tst_id=5_000_002)
    for delivery in (crm, hr, crm_2, hr_2):
        store.mark_failed(delivery.id, "HTTP 500")

    code = cli.main(["replay", "--all-failed", "--subscription", "crm"])

    assert code == 0
    assert "2 of 2 deliveries requeued" in capsys.readouterr().out
    statuses = {d.id: d.status for d in store.list_deliveries()}
    assert statuses[crm.id] is statuses[crm_2.id] is DeliveryStatus.PENDING
    assert statuses[hr.id] is statuses[hr_2.id] is DeliveryStatus.FAILED


def test_replay_of_a_delivered_delivery_needs_force(
    store: SqlStore, capsys: pytest.CaptureFixture[str]
) -> None:
    (delivery,) = seed_deliveries(store, "crm")
    store.mark_delivered(delivery.id)

    refused = cli.main(["replay", delivery.id])
    forced = cli.main(["replay", "--force", delivery.id])

    assert (refused, forced) == (1, 0)
    assert "already delivered; use --force" in capsys.readouterr().out
    replayed = store.get_delivery(delivery.id)
    assert replayed is not None
    assert replayed.status is DeliveryStatus.PENDING


def test_replay_of_an_unknown_delivery_exits_1(
    store: SqlStore, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["replay", "dlv_nope"]) == 1
    assert "dlv_nope: no such delivery" in capsys.readouterr().out


def test_replay_needs_ids_or_all_failed_but_not_both(
    environment: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["replay"]) == 2
    assert cli.main(["replay", "dlv_x", "--all-failed"]) == 2


def test_replayed_delivery_is_enqueued_after_it_is_due_again(store: SqlStore) -> None:
    (delivery,) = seed_deliveries(store, "crm")
    store.mark_failed(delivery.id, "HTTP 500")
    enqueuer = RecordingEnqueuer()

    replay = replay_delivery(delivery.id, store=store, enqueuer=enqueuer, now=utc_now())

    assert replay.outcome is ReplayOutcome.REQUEUED
    assert replay.previous_status is DeliveryStatus.FAILED
    assert [job.id for job in enqueuer.of_kind("delivery")] == [delivery.id]


def test_a_delivery_being_delivered_is_not_replayed(store: SqlStore) -> None:
    (delivery,) = seed_deliveries(store, "crm")
    assert store.claim_delivery(delivery.id) is not None
    enqueuer = RecordingEnqueuer()

    replay = replay_delivery(delivery.id, store=store, enqueuer=enqueuer, now=utc_now())

    assert replay.outcome is ReplayOutcome.BUSY
    assert enqueuer.jobs == []


def test_replay_failed_takes_every_failed_delivery_beyond_one_batch(
    store: SqlStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("worker.replay.REPLAY_BATCH", 2)
    failed = [seed_deliveries(store, "crm", pla_tst_id=5_000_000 + n)[0] for n in range(5)]
    for delivery in failed:
        store.mark_failed(delivery.id, "HTTP 500")

    replays = replay_failed(store=store, enqueuer=RecordingEnqueuer(), now=utc_now())

    assert sorted(replay.delivery_id for replay in replays) == sorted(d.id for d in failed)


def test_broker_enqueuer_sends_the_deliver_message_on_the_broker(store: SqlStore) -> None:
    (delivery,) = seed_deliveries(store, "crm")
    store.mark_failed(delivery.id, "HTTP 500")

    with broker_enqueuer("stub") as enqueuer:
        replay_delivery(delivery.id, store=store, enqueuer=enqueuer, now=utc_now())
        broker = dramatiq.get_broker()
        messages = [dramatiq.Message.decode(raw).args for raw in broker.queues["deliveries"].queue]

    assert messages == [(delivery.id,)]


def test_broker_enqueuer_is_none_without_a_broker_url() -> None:
    with broker_enqueuer(None) as enqueuer:
        assert enqueuer is None


def test_replay_all_failed_leaves_cancelled_deliveries_unless_asked(
    store: SqlStore, capsys: pytest.CaptureFixture[str]
) -> None:
    failed, cancelled = seed_deliveries(store, "crm", "hr")
    store.mark_failed(failed.id, "HTTP 500")
    store.cancel_delivery(cancelled.id, "subscription_disabled")

    code = cli.main(["replay", "--all-failed"])

    assert code == 0
    assert "1 of 1 deliveries requeued" in capsys.readouterr().out
    statuses = {d.id: d.status for d in store.list_deliveries()}
    assert statuses[cancelled.id] is DeliveryStatus.CANCELLED


def test_replay_all_failed_including_cancelled_requeues_both(
    store: SqlStore, capsys: pytest.CaptureFixture[str]
) -> None:
    failed, cancelled = seed_deliveries(store, "crm", "hr")
    store.mark_failed(failed.id, "HTTP 500")
    store.cancel_delivery(cancelled.id, "subscription_disabled")

    code = cli.main(["replay", "--all-failed", "--include-cancelled"])

    assert code == 0
    assert "2 of 2 deliveries requeued" in capsys.readouterr().out
    statuses = {d.id: d.status for d in store.list_deliveries()}
    assert statuses[failed.id] is statuses[cancelled.id] is DeliveryStatus.PENDING


def test_include_cancelled_needs_all_failed(
    environment: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["replay", "dlv_x", "--include-cancelled"]) == 2


def test_replay_failed_with_cancelled_takes_every_one_beyond_one_batch(
    store: SqlStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("worker.replay.REPLAY_BATCH", 2)
    deliveries = [seed_deliveries(store, "crm", pla_tst_id=5_000_000 + n)[0] for n in range(5)]
    for n, delivery in enumerate(deliveries):
        if n % 2:
            store.mark_failed(delivery.id, "HTTP 500")
        else:
            store.cancel_delivery(delivery.id, "event_purged")

    replays = replay_failed(
        store=store, enqueuer=RecordingEnqueuer(), now=utc_now(), include_cancelled=True
    )

    assert sorted(replay.delivery_id for replay in replays) == sorted(d.id for d in deliveries)
    assert all(replay.requeued for replay in replays)


class DeliveredMeanwhile:
    """A store where a worker delivers the delivery right after the replay has read it."""

    def __init__(self, store: SqlStore) -> None:
        self._store = store
        self._reads = 0

    def get_delivery(self, delivery_id: str) -> Delivery | None:
        read = self._store.get_delivery(delivery_id)
        self._reads += 1
        if self._reads == 1:
            assert self._store.claim_delivery(delivery_id) is not None
            self._store.mark_delivered(delivery_id)
        return read

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


def test_a_delivery_delivered_between_read_and_requeue_is_not_sent_again(store: SqlStore) -> None:
    (delivery,) = seed_deliveries(store, "crm")  # pending, due: a worker may take it any moment
    enqueuer = RecordingEnqueuer()

    replay = replay_delivery(
        delivery.id, store=DeliveredMeanwhile(store), enqueuer=enqueuer, now=utc_now()
    )

    assert replay.outcome is ReplayOutcome.DELIVERED
    assert enqueuer.jobs == []
    after = store.get_delivery(delivery.id)
    assert after is not None
    assert after.status is DeliveryStatus.DELIVERED


def test_freeze_heap_moves_what_is_alive_out_of_the_collectors_reach() -> None:
    from worker.processes import freeze_heap

    alive = [object() for _ in range(10)]
    gc.unfreeze()
    try:
        freeze_heap()
        assert gc.get_freeze_count() >= len(alive)
    finally:
        gc.unfreeze()
    assert gc.get_freeze_count() == 0


def test_the_worker_command_freezes_the_heap(environment: pytest.MonkeyPatch) -> None:
    started: list[dict[str, Any]] = []
    environment.setattr(cli_processes, "run_worker", lambda *args, **kwargs: started.append(kwargs))

    assert cli.main(["worker", "--threads", "2"]) == 0

    assert started == [{"threads": 2, "freeze": True}]
