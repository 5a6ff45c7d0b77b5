"""Tests of the SQL store, on SQLite and on PostgreSQL."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, func, inspect, select, text
from sqlalchemy import event as sqlalchemy_event
from sqlalchemy.exc import DBAPIError, IntegrityError, StatementError

from worker.errors import PermanentError, RetryableError
from worker.storage import (
    AttemptOutcome,
    AttemptRecord,
    DeliveryFilter,
    DeliveryStatus,
    EventFilter,
    InvalidCursorError,
    InvitationFilter,
    InvitationSource,
    InvitationStatus,
    NewInvitation,
    SqlStore,
    SubscriptionState,
    migrate,
    new_id,
)
from worker.storage.callbacks import NewCallback
from worker.storage.engine import make_engine
from worker.storage.migrations import alembic_config
from worker.storage.paging import encode_cursor
from worker.storage.records import NewCompletion
from worker.storage.store import MAX_RESPONSE_BODY_BYTES
from worker.storage.tables import callbacks, deliveries, events, invitations, metadata

T = TypeVar("T")

NOW = datetime(2026, 11, 27, 10, 15, tzinfo=UTC)
LEASE = timedelta(minutes=5)
TABLES = {
    "invitations",
    "callbacks",
    "events",
    "deliveries",
    "attempts",
    "subscription_state",
    "erasures",
}


# -- fixtures -----------------------------------------------------------------------------------


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/relay.db"


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest) -> str:
    """An empty database of each backend."""
    if request.param == "sqlite":
        return str(request.getfixturevalue("sqlite_url"))
    return str(request.getfixturevalue("postgres_schema_url"))


@pytest.fixture
def store(database_url: str) -> Iterator[SqlStore]:
    """A migrated store whose clock says NOW."""
    sql_store = SqlStore.from_url(database_url, clock=lambda: NOW, lease=LEASE)
    sql_store.migrate()
    yield sql_store
    sql_store.close()


# -- helpers ------------------------------------------------------------------------------------


def count(store: SqlStore, table: Any) -> int:
    with store.engine.connect() as connection:
        return int(connection.execute(select(func.count()).select_from(table)).scalar_one())


def invite(store: SqlStore, **changes: Any) -> str:
    values: dict[str, Any] = {
        "tst_frm_id": 123,
        "email": "ada@example.com",
        "first_name": "Ada",
        "last_name": "Lovelace",
        "pla_tst_id": 456,
        "next_check_at": NOW + timedelta(minutes=10),
        **changes,
    }
    return store.create_invitation(NewInvitation(**values), NOW).id


def payload(pla_tst_id: int = 456) -> dict[str, Any]:
    return {
        "type": "assessment.completed",
        "data": {
            "candidate": {"email": "ada@example.com", "first_name": "Ada", "last_name": "L"},
            "test": {"pla_tst_id": pla_tst_id},
            "grade": {"value": 550},
        },
    }


def make_event(
    store: SqlStore, subscriptions: tuple[str, ...] = ("hook",), pla_tst_id: int = 456
) -> str:
    invitation_id = invite(store, pla_tst_id=pla_tst_id)
    event, _, _ = store.create_event(
        new_id("evt"),
        invitation_id,
        pla_tst_id,
        "assessment.completed",
        payload(pla_tst_id),
        list(subscriptions),
        NOW,
    )
    return event.id


def make_delivery(store: SqlStore, pla_tst_id: int = 456) -> str:
    event_id = make_event(store, pla_tst_id=pla_tst_id)
    return store.list_deliveries(event_id=event_id)[0].id


def attempt(outcome: AttemptOutcome = AttemptOutcome.RETRY, **changes: Any) -> AttemptRecord:
    return AttemptRecord(
        **{
            "started_at": NOW,
            "duration_ms": 12.4,
            "outcome": outcome,
            "status_code": 503,
            **changes,
        }
    )


def race(functions: list[Callable[[], T]]) -> list[T]:
    """Call every function in its own thread, all released at the same moment."""
    barrier = threading.Barrier(len(functions))

    def run(function: Callable[[], T]) -> T:
        barrier.wait(timeout=30)
        return function()

    with ThreadPoolExecutor(max_workers=len(functions)) as pool:
        return list(pool.map(run, functions))


# -- engine, migrations ---------------------------------------------------------------------------


def test_new_ids_carry_the_prefix_and_no_dot() -> None:
    ids = {new_id("evt") for _ in range(200)}

    assert len(ids) == 200
    assert all(value.startswith("evt_") and "." not in value for value in ids)


def test_a_sqlite_file_url_creates_the_missing_parent_directory(tmp_path: Path) -> None:
    store = SqlStore.from_url(f"sqlite:///{tmp_path}/var/data/relay.db")

    store.ping()
    store.close()

    assert (tmp_path / "var" / "data" / "relay.db").exists()


def test_sqlite_connections_use_wal_foreign_keys_and_a_busy_timeout(sqlite_url: str) -> None:
    store = SqlStore.from_url(sqlite_url)
    with store.engine.connect() as connection:
        settings = [
            connection.exec_driver_sql(f"PRAGMA {name}").scalar()
            for name in ("journal_mode", "foreign_keys", "busy_timeout")
        ]
    store.close()

    assert settings == ["wal", 1, 30_000]


WRITE_LOCK_PROBE = """
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDWR)
try:
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
except BlockingIOError:
    print("held")
else:
    print("free")
"""


def test_a_sqlite_write_transaction_holds_a_lock_file_other_processes_wait_on(
    tmp_path: Path,
) -> None:
    database = tmp_path / "relay.db"
    store = SqlStore.from_url(f"sqlite:///{database}", clock=lambda: NOW)
    store.migrate()
    lock_file = tmp_path / "relay.db-write.lock"

    def probe() -> str:
        probed = subprocess.run(
            [sys.executable, "-c", WRITE_LOCK_PROBE, str(lock_file)],
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        )
        return probed.stdout.strip()

    try:
        invite(store)  # a write: makes the lock file
        with store._write():  # what every write of the store goes through
            during = probe()
        after = probe()
    finally:
        store.close()

    assert (during, after) == ("held", "free")


def test_an_in_memory_sqlite_store_keeps_its_data_across_threads() -> None:
    store = SqlStore.from_url("sqlite://", clock=lambda: NOW)
    store.migrate()
    invitation_id = invite(store)

    with ThreadPoolExecutor(max_workers=1) as pool:
        found = pool.submit(store.get_invitation, invitation_id).result()
    store.close()

    assert found is not None


def test_migrate_creates_every_table_in_an_empty_database(database_url: str) -> None:
    migrate(database_url)

    engine = create_engine(database_url)
    names = set(inspect(engine).get_table_names())
    engine.dispose()
    assert names >= TABLES | {"alembic_version"}


def test_migrating_twice_is_a_no_op(store: SqlStore) -> None:
    invitation_id = invite(store)

    store.migrate()

    with store.engine.connect() as connection:
        version = MigrationContext.configure(connection).get_current_revision()
    assert version == "0003"
    assert store.get_invitation(invitation_id) is not None


def test_the_worker_and_the_web_load_no_alembic_until_they_migrate() -> None:
    # Alembic brings Mako and Pygments: ~9 MB of a worker's RSS (issue 11 caps it at 120 MB).
    probe = (
        "import sys, worker.jobs.process, webhooks.asgi, worker.scheduler.process\n"
        "print(sorted({'alembic', 'mako', 'pygments'} & {m.split('.')[0] for m in sys.modules}))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )

    assert loaded.stdout.strip() == "[]"


def test_a_store_migrates_with_alembic_loaded_on_demand(tmp_path: Path) -> None:
    probe = (
        "import sys\n"
        "from worker.storage.store import SqlStore\n"
        f"store = SqlStore.from_url('sqlite:///{tmp_path / 'relay.db'}')\n"
        "before = 'alembic' in sys.modules\n"
        "store.migrate()\n"
        "from sqlalchemy import inspect\n"
        "tables = inspect(store.engine).get_table_names()\n"
        "print(before, 'alembic' in sys.modules, 'callbacks' in tables)"
    )
    migrated = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )

    assert migrated.stdout.split() == ["False", "True", "True"]


def test_migrations_create_exactly_the_tables_of_tables_py(store: SqlStore) -> None:
    with store.engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), metadata)

    assert differences == []


def test_migrations_downgrade_to_an_empty_database_and_back(database_url: str) -> None:
    migrate(database_url)
    config = alembic_config(database_url=database_url)

    command.downgrade(config, "base")
    engine = create_engine(database_url)
    emptied = set(inspect(engine).get_table_names())
    command.upgrade(config, "head")
    restored = set(inspect(engine).get_table_names())
    engine.dispose()

    assert emptied & TABLES == set()
    assert restored >= TABLES


def test_autogenerated_migrations_use_plain_sqlalchemy_types(
    sqlite_url: str, tmp_path: Path
) -> None:
    versions = tmp_path / "versions"
    versions.mkdir()
    config = alembic_config(database_url=sqlite_url)
    config.set_main_option("version_locations", str(versions))

    command.revision(config, message="everything", autogenerate=True, rev_id="9999")

    [script] = versions.glob("9999_*.py")
    source = script.read_text()
    assert "sa.DateTime(timezone=True)" in source
    assert "UtcDateTime" not in source


def test_alembic_can_run_from_a_url_alone(sqlite_url: str) -> None:
    command.upgrade(alembic_config(database_url=sqlite_url), "head")

    engine = create_engine(sqlite_url)
    names = set(inspect(engine).get_table_names())
    engine.dispose()
    assert names >= TABLES


def test_alembic_offline_mode_prints_the_schema_sql(
    sqlite_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    command.upgrade(alembic_config(database_url=sqlite_url), "head", sql=True)

    assert "CREATE TABLE invitations" in capsys.readouterr().out


def test_alembic_without_a_connection_or_url_refuses_to_run() -> None:
    with pytest.raises(RuntimeError, match="neither a connection nor"):
        command.upgrade(alembic_config(), "head")


def test_ping_answers_when_the_database_is_up(store: SqlStore) -> None:
    store.ping()


def test_ping_raises_a_retryable_error_when_the_database_is_down() -> None:
    store = SqlStore.from_url("postgresql+psycopg://postgres@127.0.0.1:1/none?connect_timeout=2")

    with pytest.raises(RetryableError, match="unreachable"):
        store.ping()
    store.close()


def test_a_database_outage_surfaces_as_a_retryable_error() -> None:
    store = SqlStore.from_url("postgresql+psycopg://postgres@127.0.0.1:1/none?connect_timeout=2")

    with pytest.raises(RetryableError, match="database unavailable"):
        store.get_delivery("dlv_x")
    store.close()


def test_datetimes_come_back_timezone_aware_in_utc(store: SqlStore) -> None:
    paris = timezone(timedelta(hours=1))
    invitation_id = invite(store, next_check_at=datetime(2026, 11, 27, 12, 0, tzinfo=paris))

    invitation = store.get_invitation(invitation_id)

    assert invitation is not None
    assert invitation.next_check_at == datetime(2026, 11, 27, 11, 0, tzinfo=UTC)
    assert invitation.next_check_at.utcoffset() == timedelta(0)
    assert invitation.created_at == NOW


def test_the_default_clock_is_the_current_utc_time(sqlite_url: str) -> None:
    store = SqlStore.from_url(sqlite_url)
    store.migrate()
    before = datetime.now(UTC)

    invitation = store.create_invitation(NewInvitation(tst_frm_id=1, email=None))
    store.close()

    assert before <= invitation.created_at <= datetime.now(UTC)


def test_naive_datetimes_are_refused(store: SqlStore) -> None:
    with pytest.raises(StatementError, match="naive datetime"):
        invite(store, next_check_at=datetime(2026, 11, 27, 12, 0))


# -- invitations ----------------------------------------------------------------------------------


def test_a_new_invitation_is_pending_with_nothing_checked_yet(store: SqlStore) -> None:
    invitation_id = invite(store, context={"lti": {"sourcedid": "x"}}, sub_com_id=7)

    invitation = store.get_invitation(invitation_id)

    assert invitation is not None
    assert invitation.id.startswith("inv_")
    assert (invitation.status, invitation.source) == (
        InvitationStatus.PENDING,
        InvitationSource.INVITED,
    )
    assert (invitation.check_count, invitation.last_status) == (0, None)
    assert invitation.context == {"lti": {"sourcedid": "x"}}
    assert (invitation.email, invitation.sub_com_id, invitation.pla_tst_id) == (
        "ada@example.com",
        7,
        456,
    )


def test_an_unknown_invitation_is_none(store: SqlStore) -> None:
    assert store.get_invitation("inv_missing") is None


def test_an_invitation_is_found_by_its_pla_tst_id(store: SqlStore) -> None:
    invitation_id = invite(store, pla_tst_id=999)

    found = store.get_invitation_by_pla_tst_id(999)

    assert found is not None
    assert found.id == invitation_id
    assert store.get_invitation_by_pla_tst_id(1000) is None


def test_creating_with_a_known_idempotency_key_returns_the_first_invitation(
    store: SqlStore,
) -> None:
    first = invite(store, idempotency_key="req-1", pla_tst_id=None)

    second = invite(store, idempotency_key="req-1", pla_tst_id=None, email="other@example.com")

    assert second == first
    assert count(store, invitations) == 1
    found = store.get_invitation_by_idempotency_key("req-1")
    assert found is not None
    assert found.email == "ada@example.com"


def test_concurrent_creations_with_one_idempotency_key_store_one_invitation(
    store: SqlStore,
) -> None:
    ids = race([partial(invite, store, idempotency_key="req-1", pla_tst_id=None)] * 4)

    assert len(set(ids)) == 1
    assert count(store, invitations) == 1


def test_a_second_invitation_for_the_same_test_is_refused(store: SqlStore) -> None:
    invite(store, pla_tst_id=456)

    with pytest.raises(PermanentError, match="conflicts"):
        invite(store, pla_tst_id=456)


def test_attaching_the_assessment_records_what_isograd_answered(store: SqlStore) -> None:
    invitation_id = invite(store, pla_tst_id=None)

    invitation = store.attach_assessment(
        invitation_id, pla_tst_id=789, can_id=42, test_url="https://tosa.example/t"
    )

    assert (invitation.pla_tst_id, invitation.can_id, invitation.test_url) == (
        789,
        42,
        "https://tosa.example/t",
    )


def test_attaching_a_test_that_belongs_to_another_invitation_is_refused(store: SqlStore) -> None:
    invite(store, pla_tst_id=789)
    invitation_id = invite(store, pla_tst_id=None)

    with pytest.raises(PermanentError, match="already belongs"):
        store.attach_assessment(invitation_id, pla_tst_id=789)


def test_attaching_to_an_unknown_invitation_raises_lookup_error(store: SqlStore) -> None:
    with pytest.raises(LookupError):
        store.attach_assessment("inv_missing", pla_tst_id=789)


def test_a_status_check_counts_and_reschedules(store: SqlStore) -> None:
    invitation_id = invite(store)
    later = NOW + timedelta(hours=1)

    store.record_status_check(invitation_id, 2, later, NOW)
    invitation = store.record_status_check(invitation_id, 4, later + timedelta(hours=1))

    assert (invitation.check_count, invitation.last_status) == (2, 4)
    assert invitation.next_check_at == later + timedelta(hours=1)
    assert invitation.last_checked_at == NOW


def test_a_status_check_of_an_unknown_invitation_raises_lookup_error(store: SqlStore) -> None:
    with pytest.raises(LookupError, match="inv_missing"):
        store.record_status_check("inv_missing", 1, None, NOW)


def test_completing_an_invitation_stops_its_checks(store: SqlStore) -> None:
    invitation_id = invite(store)

    invitation = store.mark_invitation(invitation_id, InvitationStatus.COMPLETED, NOW)

    assert invitation.status is InvitationStatus.COMPLETED
    assert invitation.completed_at == NOW
    assert invitation.next_check_at is None


def test_completing_twice_keeps_the_first_completion_time(store: SqlStore) -> None:
    invitation_id = invite(store)
    store.mark_invitation(invitation_id, InvitationStatus.COMPLETED, NOW)

    invitation = store.mark_invitation(
        invitation_id, InvitationStatus.COMPLETED, NOW + timedelta(hours=1)
    )

    assert invitation.completed_at == NOW


def test_marking_an_invitation_pending_keeps_its_next_check(store: SqlStore) -> None:
    invitation_id = invite(store)

    invitation = store.mark_invitation(invitation_id, InvitationStatus.PENDING, NOW)

    assert invitation.next_check_at == NOW + timedelta(minutes=10)
    assert invitation.completed_at is None


def test_due_invitations_are_pending_ones_due_now_oldest_first(store: SqlStore) -> None:
    late = invite(store, pla_tst_id=1, next_check_at=NOW - timedelta(minutes=1))
    later = invite(store, pla_tst_id=2, next_check_at=NOW)
    invite(store, pla_tst_id=3, next_check_at=NOW + timedelta(seconds=1))
    invite(store, pla_tst_id=4, next_check_at=None)
    earliest = invite(store, pla_tst_id=5, next_check_at=NOW - timedelta(hours=1))
    done = invite(store, pla_tst_id=6, next_check_at=NOW - timedelta(hours=2))
    store.mark_invitation(done, InvitationStatus.EXPIRED, NOW)

    due = store.due_invitations(NOW, limit=10)

    assert [invitation.id for invitation in due] == [earliest, late, later]


def test_due_invitations_respect_the_limit(store: SqlStore) -> None:
    for pla_tst_id in range(3):
        invite(store, pla_tst_id=pla_tst_id, next_check_at=NOW)

    assert len(store.due_invitations(limit=2)) == 2


# -- callbacks ------------------------------------------------------------------------------------


def test_a_recorded_callback_is_kept_as_received(store: SqlStore) -> None:
    callback_id = store.record_callback(
        "inv_1", "GET", {"utm": "x"}, "203.0.113.9", True, None, NOW - timedelta(minutes=5)
    )

    [receipt] = store.unprocessed_callbacks(older_than=NOW)

    assert receipt.id == callback_id
    assert (receipt.invitation_id, receipt.method, receipt.query, receipt.remote_addr) == (
        "inv_1",
        "GET",
        {"utm": "x"},
        "203.0.113.9",
    )
    assert (receipt.accepted, receipt.received_at, receipt.processed_at) == (
        True,
        NOW - timedelta(minutes=5),
        None,
    )


def test_a_batch_of_callbacks_reads_the_stored_statuses_and_inserts_every_receipt(
    store: SqlStore,
) -> None:
    pending = store.create_invitation(NewInvitation(tst_frm_id=101, email="a@x.org")).id
    done = store.create_invitation(NewInvitation(tst_frm_id=101, email="b@x.org")).id
    store.mark_invitation(done, InvitationStatus.COMPLETED)
    seen: list[Mapping[str, InvitationStatus]] = []

    def receipts_for(statuses: Mapping[str, InvitationStatus]) -> list[NewCallback]:
        seen.append(dict(statuses))
        return [
            NewCallback(i, "GET", {"sid": i}, "203.0.113.9", i != "inv_unknown", None, NOW)
            for i in (pending, done, "inv_unknown")
        ]

    store.record_callbacks({pending, done, "inv_unknown"}, receipts_for)

    assert seen == [{pending: InvitationStatus.PENDING, done: InvitationStatus.COMPLETED}]
    stored = store.unprocessed_callbacks(older_than=NOW)
    assert sorted((r.invitation_id, r.query["sid"]) for r in stored) == sorted(
        [(pending, pending), (done, done)]
    )


def test_a_batch_of_callbacks_stores_nothing_when_one_receipt_fails(store: SqlStore) -> None:
    def receipts_for(statuses: Mapping[str, InvitationStatus]) -> list[NewCallback]:
        good = NewCallback("inv_1", "GET", {}, None, True, None, NOW)
        bad = NewCallback("inv_2", None, {}, None, True, None, NOW)  # type: ignore[arg-type]
        return [good, bad]  # method is NOT NULL: the second insert fails

    with pytest.raises(IntegrityError):
        store.record_callbacks({"inv_1", "inv_2"}, receipts_for)

    assert store.unprocessed_callbacks(older_than=NOW) == []


def test_callback_ids_increase(store: SqlStore) -> None:
    first = store.record_callback("inv_1", "GET", {}, None, True, None)
    second = store.record_callback("inv_1", "HEAD", {}, None, True, None)

    assert second > first


def test_processing_marks_only_that_invitations_callbacks(store: SqlStore) -> None:
    store.record_callback("inv_1", "GET", {}, None, True, None, NOW - timedelta(minutes=5))
    store.record_callback("inv_1", "GET", {}, None, True, None, NOW - timedelta(minutes=4))
    store.record_callback("inv_2", "GET", {}, None, True, None, NOW - timedelta(minutes=3))

    marked = store.mark_callbacks_processed("inv_1", NOW)

    assert marked == 2
    assert [receipt.invitation_id for receipt in store.unprocessed_callbacks(NOW)] == ["inv_2"]


def test_unprocessed_callbacks_skip_rejected_and_recent_ones_oldest_first(
    store: SqlStore,
) -> None:
    store.record_callback(None, "GET", {}, None, False, "bad_token", NOW - timedelta(hours=1))
    store.record_callback("inv_2", "GET", {}, None, True, None, NOW - timedelta(minutes=2))
    store.record_callback("inv_1", "GET", {}, None, True, None, NOW - timedelta(minutes=3))
    store.record_callback("inv_3", "GET", {}, None, True, None, NOW)

    found = store.unprocessed_callbacks(older_than=NOW - timedelta(minutes=1), limit=10)

    assert [receipt.invitation_id for receipt in found] == ["inv_1", "inv_2"]


def test_unprocessed_callbacks_page_on_after_a_position_ties_included(store: SqlStore) -> None:
    same_time = NOW - timedelta(minutes=3)
    for invitation_id in ("inv_1", "inv_2", "inv_3"):
        store.record_callback(invitation_id, "GET", {}, None, True, None, same_time)
    store.record_callback("inv_4", "GET", {}, None, True, None, NOW - timedelta(minutes=2))

    first = store.unprocessed_callbacks(NOW, limit=2)
    rest = store.unprocessed_callbacks(NOW, limit=10, after=(first[-1].received_at, first[-1].id))

    assert [receipt.invitation_id for receipt in first + rest] == [
        "inv_1",
        "inv_2",
        "inv_3",
        "inv_4",
    ]


# -- events ---------------------------------------------------------------------------------------


def test_creating_an_event_creates_one_pending_delivery_per_subscription(
    store: SqlStore,
) -> None:
    invitation_id = invite(store)

    event, created_deliveries, created = store.create_event(
        "evt_1", invitation_id, 456, "assessment.completed", payload(), ["slack", "hook"], NOW
    )

    assert created is True
    assert (event.id, event.invitation_id, event.pla_tst_id, event.payload) == (
        "evt_1",
        invitation_id,
        456,
        payload(),
    )
    assert [delivery.subscription for delivery in created_deliveries] == ["hook", "slack"]
    assert all(
        (delivery.status, delivery.attempt_count, delivery.next_attempt_at, delivery.event_id)
        == (DeliveryStatus.PENDING, 0, NOW, "evt_1")
        for delivery in created_deliveries
    )
    assert all(delivery.id.startswith("dlv_") for delivery in created_deliveries)


def test_a_second_event_for_the_same_test_returns_the_first(store: SqlStore) -> None:
    invitation_id = invite(store)
    first, first_deliveries, _ = store.create_event(
        "evt_1", invitation_id, 456, "assessment.completed", payload(), ["hook"], NOW
    )

    again, again_deliveries, created = store.create_event(
        "evt_2", invitation_id, 456, "assessment.completed", payload(), ["hook", "new"], NOW
    )

    assert created is False
    assert again == first
    assert again_deliveries == first_deliveries
    assert (count(store, events), count(store, deliveries)) == (1, 1)


def test_concurrent_event_creations_for_one_test_store_one_event(store: SqlStore) -> None:
    for pla_tst_id in range(1, 6):
        invitation_id = invite(store, pla_tst_id=pla_tst_id)

        results = race(
            [
                partial(
                    store.create_event,
                    f"evt_{pla_tst_id}_{index}",
                    invitation_id,
                    pla_tst_id,
                    "assessment.completed",
                    payload(pla_tst_id),
                    ["hook", "slack"],
                    NOW,
                )
                for index in range(2)
            ]
        )

        assert sorted(created for _, _, created in results) == [False, True]
        assert results[0][0] == results[1][0]
        assert results[0][1] == results[1][1]
    assert (count(store, events), count(store, deliveries)) == (5, 10)


def test_subscription_names_are_deduplicated(store: SqlStore) -> None:
    event_id = make_event(store, subscriptions=("hook", "hook"))

    assert len(store.list_deliveries(event_id=event_id)) == 1


def test_an_event_without_subscriptions_has_no_deliveries(store: SqlStore) -> None:
    invitation_id = invite(store)

    _, created_deliveries, created = store.create_event(
        "evt_1", invitation_id, 456, "assessment.completed", payload(), [], NOW
    )

    assert (created_deliveries, created) == ([], True)


def test_an_event_for_an_unknown_invitation_is_refused(store: SqlStore) -> None:
    with pytest.raises(PermanentError, match="conflicts"):
        store.create_event("evt_1", "inv_missing", 456, "assessment.completed", {}, ["h"], NOW)


def test_an_event_is_found_by_id_and_by_pla_tst_id(store: SqlStore) -> None:
    event_id = make_event(store)

    by_id = store.get_event(event_id)

    assert by_id is not None
    assert store.get_event_by_pla_tst_id(456) == by_id
    assert store.get_event("evt_missing") is None
    assert store.get_event_by_pla_tst_id(1) is None


def test_events_are_listed_newest_first_in_pages(store: SqlStore) -> None:
    ids = []
    for minute in range(5):
        invitation_id = invite(store, pla_tst_id=minute)
        event, _, _ = store.create_event(
            f"evt_{minute}",
            invitation_id,
            minute,
            "assessment.completed",
            {},
            [],
            NOW + timedelta(minutes=minute // 2),  # pairs share a timestamp
        )
        ids.append(event.id)

    first_page = store.list_events(limit=2)
    second_page = store.list_events(limit=2, cursor=first_page.next_cursor)
    third_page = store.list_events(limit=2, cursor=second_page.next_cursor)

    listed = [event.id for event in first_page.items + second_page.items + third_page.items]
    assert listed == ["evt_4", "evt_3", "evt_2", "evt_1", "evt_0"]
    assert third_page.next_cursor is None


@pytest.mark.parametrize(
    "cursor",
    [
        "evt_missing",
        "",
        "W10",
        "WyJub3QgYSB0aW1lIiwgIngiXQ",  # ["not a time", "x"]
        encode_cursor(NOW.replace(tzinfo=None), "evt_1"),  # a naive time
        encode_cursor(NOW, "evt\x00"),  # PostgreSQL text cannot hold NUL
    ],
)
def test_listing_events_after_a_cursor_not_made_by_the_store_is_refused(
    store: SqlStore, cursor: str
) -> None:
    make_event(store)

    with pytest.raises(InvalidCursorError):
        store.list_events(cursor=cursor)


# -- deliveries -----------------------------------------------------------------------------------


def test_claiming_a_due_delivery_marks_it_delivering(store: SqlStore) -> None:
    delivery_id = make_delivery(store)

    claimed = store.claim_delivery(delivery_id, NOW + timedelta(seconds=1))

    assert claimed is not None
    assert claimed.status is DeliveryStatus.DELIVERING
    assert claimed.updated_at == NOW + timedelta(seconds=1)


def test_a_delivery_being_delivered_cannot_be_claimed_again(store: SqlStore) -> None:
    delivery_id = make_delivery(store)
    store.claim_delivery(delivery_id, NOW)

    assert store.claim_delivery(delivery_id, NOW + LEASE - timedelta(seconds=1)) is None


def test_of_two_concurrent_claims_exactly_one_wins(store: SqlStore) -> None:
    delivery_ids = [make_delivery(store, pla_tst_id=pla_tst_id) for pla_tst_id in range(5)]

    for delivery_id in delivery_ids:
        claims = race([partial(store.claim_delivery, delivery_id, NOW)] * 2)

        assert sum(claim is not None for claim in claims) == 1


def test_a_delivered_delivery_cannot_be_claimed(store: SqlStore) -> None:
    delivery_id = make_delivery(store)
    store.mark_delivered(delivery_id, NOW)

    assert store.claim_delivery(delivery_id, NOW + timedelta(days=1)) is None


def test_a_retry_cannot_be_claimed_before_it_is_due(store: SqlStore) -> None:
    delivery_id = make_delivery(store)
    store.schedule_retry(delivery_id, NOW + timedelta(minutes=5), "503", NOW)

    early = store.claim_delivery(delivery_id, NOW + timedelta(minutes=4))
    on_time = store.claim_delivery(delivery_id, NOW + timedelta(minutes=5))

    assert early is None
    assert on_time is not None


def test_a_delivery_stranded_by_a_crashed_worker_is_claimed_after_the_lease(
    store: SqlStore,
) -> None:
    delivery_id = make_delivery(store)
    store.claim_delivery(delivery_id, NOW)

    reclaimed = store.claim_delivery(delivery_id, NOW + LEASE)

    assert reclaimed is not None
    assert reclaimed.updated_at == NOW + LEASE


def test_claiming_an_unknown_delivery_returns_none(store: SqlStore) -> None:
    assert store.claim_delivery("dlv_missing", NOW) is None


def test_attempts_are_numbered_and_counted(store: SqlStore) -> None:
    delivery_id = make_delivery(store)

    first = store.record_attempt(delivery_id, attempt())
    second = store.record_attempt(delivery_id, attempt(AttemptOutcome.DELIVERED, status_code=200))

    assert (first.number, second.number) == (1, 2)
    assert store.list_attempts(delivery_id) == [first, second]
    delivery = store.get_delivery(delivery_id)
    assert delivery is not None
    assert delivery.attempt_count == 2


def test_an_attempt_is_stored_as_reported(store: SqlStore) -> None:
    delivery_id = make_delivery(store)

    stored = store.record_attempt(
        delivery_id,
        attempt(error="upstream down", response_body="busy", response_headers={"retry-after": "5"}),
    )

    assert (stored.delivery_id, stored.started_at, stored.duration_ms) == (delivery_id, NOW, 12)
    assert (stored.outcome, stored.status_code, stored.error) == (
        AttemptOutcome.RETRY,
        503,
        "upstream down",
    )
    assert (stored.response_body, stored.response_headers) == ("busy", {"retry-after": "5"})


def test_long_response_bodies_are_truncated_to_20_kb(store: SqlStore) -> None:
    delivery_id = make_delivery(store)

    stored = store.record_attempt(delivery_id, attempt(response_body="é" * 20_000))

    assert stored.response_body is not None
    assert len(stored.response_body.encode()) <= MAX_RESPONSE_BODY_BYTES
    assert stored.response_body == "é" * (MAX_RESPONSE_BODY_BYTES // 2)


def test_nul_characters_in_a_response_are_dropped(store: SqlStore) -> None:
    delivery_id = make_delivery(store)

    stored = store.record_attempt(
        delivery_id, attempt(response_body="a\x00b", error="e\x00", response_headers={"x": "\x00"})
    )

    assert (stored.response_body, stored.error, stored.response_headers) == ("ab", "e", {"x": ""})


def test_an_attempt_for_an_unknown_delivery_raises_lookup_error(store: SqlStore) -> None:
    with pytest.raises(LookupError):
        store.record_attempt("dlv_missing", attempt())


def test_a_delivered_delivery_records_when(store: SqlStore) -> None:
    delivery_id = make_delivery(store)
    store.schedule_retry(delivery_id, NOW + timedelta(seconds=5), "503", NOW)

    delivered = store.mark_delivered(delivery_id, NOW + timedelta(seconds=6))

    assert delivered.status is DeliveryStatus.DELIVERED
    assert delivered.delivered_at == NOW + timedelta(seconds=6)
    assert (delivered.next_attempt_at, delivered.last_error) == (None, None)


def test_marking_delivered_twice_keeps_the_first_time(store: SqlStore) -> None:
    delivery_id = make_delivery(store)
    store.mark_delivered(delivery_id, NOW)

    again = store.mark_delivered(delivery_id, NOW + timedelta(hours=1))

    assert again.delivered_at == NOW


def test_scheduling_a_retry_sets_when_and_why(store: SqlStore) -> None:
    delivery_id = make_delivery(store)

    retrying = store.schedule_retry(delivery_id, NOW + timedelta(minutes=5), "HTTP 503")

    assert retrying.status is DeliveryStatus.RETRYING
    assert (retrying.next_attempt_at, retrying.last_error, retrying.updated_at) == (
        NOW + timedelta(minutes=5),
        "HTTP 503",
        NOW,
    )


def test_a_late_retry_does_not_reopen_a_delivered_delivery(store: SqlStore) -> None:
    delivery_id = make_delivery(store)
    store.mark_delivered(delivery_id, NOW)

    after = store.schedule_retry(delivery_id, NOW + timedelta(minutes=5), "timeout", NOW)

    assert after.status is DeliveryStatus.DELIVERED


def test_a_failed_delivery_is_dead_lettered(store: SqlStore) -> None:
    delivery_id = make_delivery(store)

    failed = store.mark_failed(delivery_id, "HTTP 400", NOW)

    assert failed.status is DeliveryStatus.FAILED
    assert (failed.next_attempt_at, failed.last_error) == (None, "HTTP 400")


def test_a_late_failure_does_not_undo_a_delivery(store: SqlStore) -> None:
    delivery_id = make_delivery(store)
    store.mark_delivered(delivery_id, NOW)

    assert store.mark_failed(delivery_id, "HTTP 400", NOW).status is DeliveryStatus.DELIVERED


def test_a_cancelled_delivery_is_no_longer_due(store: SqlStore) -> None:
    delivery_id = make_delivery(store)

    cancelled = store.cancel_delivery(delivery_id, "subscription disabled", NOW)

    assert cancelled.status is DeliveryStatus.CANCELLED
    assert store.claim_delivery(delivery_id, NOW) is None


def test_changing_an_unknown_delivery_raises_lookup_error(store: SqlStore) -> None:
    with pytest.raises(LookupError, match="dlv_missing"):
        store.mark_delivered("dlv_missing", NOW)


def test_deliveries_are_listed_newest_first_and_filtered(store: SqlStore) -> None:
    first_event = make_event(store, subscriptions=("hook", "slack"), pla_tst_id=1)
    second_event = make_event(store, subscriptions=("hook",), pla_tst_id=2)
    failed = store.list_deliveries(event_id=second_event)[0]
    store.mark_failed(failed.id, "HTTP 400", NOW)

    assert [delivery.id for delivery in store.list_deliveries(status=DeliveryStatus.FAILED)] == [
        failed.id
    ]
    assert {delivery.event_id for delivery in store.list_deliveries(subscription="hook")} == {
        first_event,
        second_event,
    }
    assert len(store.list_deliveries(event_id=first_event)) == 2
    assert len(store.list_deliveries(limit=1)) == 1


def test_the_sweeper_sees_deliveries_overdue_beyond_the_grace_period(store: SqlStore) -> None:
    overdue = make_delivery(store, pla_tst_id=1)
    store.schedule_retry(overdue, NOW - timedelta(minutes=10), "503", NOW)
    within_grace = make_delivery(store, pla_tst_id=2)
    store.schedule_retry(within_grace, NOW - timedelta(seconds=30), "503", NOW)
    future = make_delivery(store, pla_tst_id=3)
    store.schedule_retry(future, NOW + timedelta(minutes=1), "503", NOW)
    delivered = make_delivery(store, pla_tst_id=4)
    store.mark_delivered(delivered, NOW)

    found = store.overdue_deliveries(NOW, grace=timedelta(minutes=1), limit=10)

    assert [delivery.id for delivery in found] == [overdue]


def test_the_sweeper_sees_deliveries_stranded_by_a_crashed_worker(store: SqlStore) -> None:
    stranded = make_delivery(store, pla_tst_id=1)
    store.claim_delivery(stranded, NOW)
    in_flight = make_delivery(store, pla_tst_id=2)
    store.claim_delivery(in_flight, NOW + timedelta(minutes=1))

    found = store.overdue_deliveries(NOW + LEASE, grace=timedelta(hours=1))

    assert [delivery.id for delivery in found] == [stranded]


def test_replaying_a_failed_delivery_makes_it_due_now_with_a_fresh_budget(
    store: SqlStore,
) -> None:
    delivery_id = make_delivery(store)
    store.record_attempt(delivery_id, attempt())
    store.mark_failed(delivery_id, "HTTP 400", NOW)

    replayed = store.requeue_delivery(delivery_id, NOW + timedelta(days=1))

    assert replayed is not None
    assert (replayed.status, replayed.attempt_count, replayed.last_error) == (
        DeliveryStatus.PENDING,
        0,
        None,
    )
    assert replayed.next_attempt_at == NOW + timedelta(days=1)
    next_attempt = store.record_attempt(delivery_id, attempt())
    assert next_attempt.number == 2


def test_a_delivery_in_flight_cannot_be_replayed(store: SqlStore) -> None:
    delivery_id = make_delivery(store)
    store.claim_delivery(delivery_id, NOW)

    assert store.requeue_delivery(delivery_id, NOW + timedelta(seconds=1)) is None


def test_a_delivered_delivery_is_not_replayed_unless_allowed(store: SqlStore) -> None:
    delivery_id = make_delivery(store)
    store.claim_delivery(delivery_id, NOW)
    store.mark_delivered(delivery_id, NOW)

    refused = store.requeue_delivery(delivery_id, NOW + timedelta(days=1), allow_delivered=False)
    allowed = store.requeue_delivery(delivery_id, NOW + timedelta(days=1))

    assert refused is None
    assert allowed is not None
    assert allowed.status is DeliveryStatus.PENDING


def test_a_failed_delivery_is_replayed_even_when_delivered_ones_are_not(store: SqlStore) -> None:
    delivery_id = make_delivery(store)
    store.mark_failed(delivery_id, "HTTP 400", NOW)

    replayed = store.requeue_delivery(delivery_id, NOW, allow_delivered=False)

    assert replayed is not None
    assert replayed.status is DeliveryStatus.PENDING


def test_replaying_an_unknown_delivery_raises_lookup_error(store: SqlStore) -> None:
    with pytest.raises(LookupError):
        store.requeue_delivery("dlv_missing", NOW)


# -- subscription state ---------------------------------------------------------------------------


def test_a_subscription_never_seen_is_healthy(store: SqlStore) -> None:
    assert store.subscription_state("hook") == SubscriptionState(name="hook")
    assert store.subscription_state("hook").disabled is False


def test_disabling_a_subscription_keeps_the_first_reason(store: SqlStore) -> None:
    store.disable_subscription("hook", "410 Gone", NOW)

    state = store.disable_subscription("hook", "failing for 5 days", NOW + timedelta(hours=1))

    assert state.disabled is True
    assert (state.disabled_at, state.disabled_reason) == (NOW, "410 Gone")


def test_enabling_a_subscription_clears_the_disable_and_the_streak(store: SqlStore) -> None:
    store.record_subscription_failure("hook", NOW)
    store.disable_subscription("hook", "410 Gone", NOW)

    state = store.enable_subscription("hook")

    assert state == SubscriptionState(name="hook")


def test_a_failure_streak_starts_at_the_first_failure(store: SqlStore) -> None:
    store.record_subscription_failure("hook", NOW)

    state = store.record_subscription_failure("hook", NOW + timedelta(hours=1))

    assert state.failing_since == NOW


def test_a_success_ends_the_failure_streak(store: SqlStore) -> None:
    store.record_subscription_failure("hook", NOW)

    state = store.record_subscription_success("hook", NOW + timedelta(hours=1))

    assert (state.failing_since, state.last_success_at) == (None, NOW + timedelta(hours=1))


def test_subscription_states_are_listed_by_name(store: SqlStore) -> None:
    store.record_subscription_success("slack", NOW)
    store.record_subscription_failure("hook", NOW)

    assert [state.name for state in store.list_subscription_states()] == ["hook", "slack"]


# -- retention ------------------------------------------------------------------------------------


def test_purging_blanks_old_finished_invitations_only(store: SqlStore) -> None:
    old = invite(store, pla_tst_id=1)
    store.mark_invitation(old, InvitationStatus.COMPLETED, NOW)
    pending = invite(store, pla_tst_id=2)
    cutoff = NOW + timedelta(days=1)
    recent = store.create_invitation(
        NewInvitation(tst_frm_id=1, email="new@example.com", pla_tst_id=3), cutoff
    )
    store.mark_invitation(recent.id, InvitationStatus.COMPLETED, cutoff)

    counts = store.purge_pii(older_than=cutoff, now=cutoff)

    purged = store.get_invitation(old)
    assert purged is not None
    assert (purged.email, purged.first_name, purged.last_name) == (None, None, None)
    assert (purged.purged_at, purged.tst_frm_id) == (cutoff, 123)
    kept = [store.get_invitation(invitation_id) for invitation_id in (pending, recent.id)]
    assert [invitation.email if invitation else None for invitation in kept] == [
        "ada@example.com",
        "new@example.com",
    ]
    assert counts.invitations == 1


def test_purging_blanks_the_candidate_in_old_event_payloads(store: SqlStore) -> None:
    event_id = make_event(store)

    counts = store.purge_pii(older_than=NOW + timedelta(days=1))

    event = store.get_event(event_id)
    assert event is not None
    candidate = event.payload["data"]["candidate"]
    assert (candidate["email"], candidate["first_name"], candidate["last_name"]) == (
        None,
        None,
        None,
    )
    assert event.payload["data"]["grade"] == {"value": 550}
    assert (counts.events, event.purged_at) == (1, NOW)


def test_purging_twice_finds_nothing_new(store: SqlStore) -> None:
    make_event(store)
    store.record_callback("inv_1", "GET", {}, "203.0.113.9", True, None, NOW)
    store.purge_pii(older_than=NOW + timedelta(days=1))

    counts = store.purge_pii(older_than=NOW + timedelta(days=1))

    assert (counts.invitations, counts.events, counts.callbacks) == (0, 0, 0)


def test_purging_walks_every_batch_of_events(store: SqlStore) -> None:
    for pla_tst_id in range(3):
        make_event(store, pla_tst_id=pla_tst_id)

    counts = store.purge_pii(older_than=NOW + timedelta(days=1), batch_size=2)

    assert counts.events == 3
    assert all(event.purged_at == NOW for event in store.list_events().items)


def test_purging_keeps_payloads_without_a_candidate_as_they_are(store: SqlStore) -> None:
    invitation_id = invite(store)
    store.create_event("evt_1", invitation_id, 456, "assessment.completed", {"data": 1}, [], NOW)

    store.purge_pii(older_than=NOW + timedelta(days=1))

    event = store.get_event("evt_1")
    assert event is not None
    assert event.payload == {"data": 1}


def test_purging_forgets_old_callback_addresses(store: SqlStore) -> None:
    store.record_callback("inv_1", "GET", {}, "203.0.113.9", True, None, NOW - timedelta(days=2))
    store.record_callback("inv_2", "GET", {}, "203.0.113.10", True, None, NOW)

    counts = store.purge_pii(older_than=NOW - timedelta(days=1))

    addresses = {
        receipt.invitation_id: receipt.remote_addr
        for receipt in store.unprocessed_callbacks(older_than=NOW)
    }
    assert addresses == {"inv_1": None, "inv_2": "203.0.113.10"}
    assert counts.callbacks == 1


def test_purging_forgets_old_callback_query_parameters(store: SqlStore) -> None:
    # Parameters Isograd appends to the callback URL may carry personal data.
    old_query = {"ema": "ada@example.com"}
    store.record_callback("inv_1", "GET", old_query, None, True, None, NOW - timedelta(days=2))
    store.record_callback("inv_2", "GET", {"ema": "bob@example.com"}, None, True, None, NOW)

    store.purge_pii(older_than=NOW - timedelta(days=1))

    queries = {
        receipt.invitation_id: receipt.query
        for receipt in store.unprocessed_callbacks(older_than=NOW)
    }
    assert queries == {"inv_1": {}, "inv_2": {"ema": "bob@example.com"}}


def test_purging_forgets_old_response_bodies_which_may_echo_the_candidate(
    store: SqlStore,
) -> None:
    delivery_id = make_delivery(store)
    echoed = '{"received": {"email": "ada@example.com"}}'
    store.record_attempt(delivery_id, attempt(started_at=NOW, response_body=echoed))
    store.record_attempt(
        delivery_id, attempt(started_at=NOW + timedelta(days=2), response_body=echoed)
    )

    store.purge_pii(older_than=NOW + timedelta(days=1))

    bodies = [recorded.response_body for recorded in store.list_attempts(delivery_id)]
    assert bodies == [None, echoed]


# -- scheduler methods (helper "scheduler") -----------------------------------------------------


def test_postponing_a_status_check_moves_it_without_counting_a_check(store: SqlStore) -> None:
    invitation_id = invite(store)

    postponed = store.postpone_status_check(invitation_id, NOW + timedelta(hours=1))

    assert postponed.next_check_at == NOW + timedelta(hours=1)
    assert (postponed.check_count, postponed.last_checked_at) == (0, None)


def test_expiring_a_pending_invitation_stops_its_checks(store: SqlStore) -> None:
    invitation_id = invite(store)

    expired = store.expire_invitation(invitation_id, NOW)

    stored = store.get_invitation(invitation_id)
    assert expired is True
    assert stored is not None
    assert (stored.status, stored.next_check_at) == (InvitationStatus.EXPIRED, None)


def test_expiring_a_completed_invitation_changes_nothing(store: SqlStore) -> None:
    invitation_id = invite(store)
    store.mark_invitation(invitation_id, InvitationStatus.COMPLETED, NOW)

    expired = store.expire_invitation(invitation_id, NOW)

    stored = store.get_invitation(invitation_id)
    assert expired is False
    assert stored is not None
    assert stored.status is InvitationStatus.COMPLETED


def test_marking_callback_receipts_processed_touches_only_those_receipts(store: SqlStore) -> None:
    first = store.record_callback("inv_1", "GET", {}, None, True, None, NOW)
    second = store.record_callback("inv_1", "GET", {}, None, True, None, NOW)

    marked = store.mark_callback_receipts_processed([first], NOW)

    remaining = store.unprocessed_callbacks(NOW)
    assert marked == 1
    assert [receipt.id for receipt in remaining] == [second]


def test_an_overdue_delivery_reset_is_due_now_and_not_overdue_again(store: SqlStore) -> None:
    delivery_id = make_delivery(store)
    later = NOW + timedelta(minutes=10)

    reset = store.reset_overdue_delivery(delivery_id, timedelta(minutes=5), later)

    assert reset is not None
    assert reset.next_attempt_at == later
    assert store.overdue_deliveries(later, timedelta(minutes=5)) == []


def test_a_delivery_due_within_the_grace_is_not_reset(store: SqlStore) -> None:
    delivery_id = make_delivery(store)

    reset = store.reset_overdue_delivery(delivery_id, timedelta(minutes=5), NOW)

    assert reset is None


def test_a_delivery_stranded_by_a_crashed_worker_is_reset_to_retrying_after_its_lease(
    store: SqlStore,
) -> None:
    delivery_id = make_delivery(store)
    store.claim_delivery(delivery_id, NOW)

    within_lease = store.reset_overdue_delivery(delivery_id, timedelta(0), NOW + LEASE / 2)
    after_lease = store.reset_overdue_delivery(delivery_id, timedelta(0), NOW + LEASE)

    assert within_lease is None
    assert after_lease is not None
    assert after_lease.status is DeliveryStatus.RETRYING
    assert after_lease.next_attempt_at == NOW + LEASE


# -- dashboard reads ----------------------------------------------------------------------------


def test_invitations_are_counted_by_status_with_zeros(store: SqlStore) -> None:
    invite(store, pla_tst_id=1)
    invite(store, pla_tst_id=2)
    completed = invite(store, pla_tst_id=3)
    store.mark_invitation(completed, InvitationStatus.COMPLETED, NOW)

    counts = store.count_invitations()

    assert counts == {
        InvitationStatus.PENDING: 2,
        InvitationStatus.COMPLETED: 1,
        InvitationStatus.EXPIRED: 0,
        InvitationStatus.FAILED: 0,
    }


def test_events_are_counted(store: SqlStore) -> None:
    make_event(store, pla_tst_id=1)
    make_event(store, pla_tst_id=2)

    assert store.count_events() == 2


def test_deliveries_are_counted_by_status_with_zeros(store: SqlStore) -> None:
    make_event(store, ("a", "b"), pla_tst_id=1)
    failed = make_delivery(store, pla_tst_id=2)
    store.mark_failed(failed, "HTTP 410", NOW)

    counts = store.count_deliveries()

    assert counts[DeliveryStatus.PENDING] == 2
    assert counts[DeliveryStatus.FAILED] == 1
    assert set(counts) == set(DeliveryStatus)
    assert sum(counts.values()) == 3


def test_deliveries_of_a_page_of_events_are_read_at_once(store: SqlStore) -> None:
    first = make_event(store, ("b", "a"), pla_tst_id=1)
    second = make_event(store, ("a",), pla_tst_id=2)
    make_event(store, ("a",), pla_tst_id=3)

    found = store.list_deliveries_of_events([first, second])

    assert sorted((d.event_id, d.subscription) for d in found) == sorted(
        [(first, "a"), (first, "b"), (second, "a")]
    )
    assert store.list_deliveries_of_events([]) == []


def test_reopening_an_expired_invitation_makes_it_pending_again(store: SqlStore) -> None:
    invitation_id = invite(store)
    store.expire_invitation(invitation_id, NOW)

    reopened = store.reopen_expired_invitation(invitation_id)

    stored = store.get_invitation(invitation_id)
    assert reopened is True
    assert stored is not None
    assert stored.status is InvitationStatus.PENDING


def test_reopening_a_completed_invitation_changes_nothing(store: SqlStore) -> None:
    invitation_id = invite(store)
    store.mark_invitation(invitation_id, InvitationStatus.COMPLETED, NOW)

    reopened = store.reopen_expired_invitation(invitation_id)

    stored = store.get_invitation(invitation_id)
    assert reopened is False
    assert stored is not None
    assert stored.status is InvitationStatus.COMPLETED


def test_database_errors_never_quote_the_statements_parameters(database_url: str) -> None:
    # Parameters hold candidates' names, emails and contexts; an error line must not carry them.
    engine = make_engine(database_url)
    try:
        with pytest.raises(DBAPIError) as caught, engine.connect() as connection:
            connection.execute(text("INSERT INTO no_such_table VALUES (:v)"), {"v": "Jane-Marker"})
    finally:
        engine.dispose()

    assert "Jane-Marker" not in str(caught.value)
    assert "parameters hidden" in str(caught.value)


# -- operator listings: invitations, events, search -----------------------------------------------


def test_a_database_at_the_first_revision_upgrades_keeping_its_rows(database_url: str) -> None:
    config = alembic_config(database_url=database_url)
    command.upgrade(config, "0001")
    sql_store = SqlStore.from_url(database_url, clock=lambda: NOW)
    invitation_id = invite(sql_store)

    sql_store.migrate()

    assert sql_store.get_invitation(invitation_id) is not None
    assert sql_store.list_erasures() == []
    sql_store.close()


def test_invitations_are_listed_newest_first_in_pages_ties_broken_by_id(store: SqlStore) -> None:
    for number in range(5):
        store.create_invitation(
            NewInvitation(tst_frm_id=1, email=None, id=f"inv_{number}"),
            NOW + timedelta(minutes=number // 2),  # pairs share a timestamp
        )

    pages = [store.list_invitations(limit=2)]
    while pages[-1].next_cursor is not None:
        pages.append(store.list_invitations(limit=2, cursor=pages[-1].next_cursor))

    listed = [[invitation.id for invitation in page.items] for page in pages]
    assert listed == [["inv_4", "inv_3"], ["inv_2", "inv_1"], ["inv_0"]]


def test_a_page_exactly_full_has_no_next_cursor(store: SqlStore) -> None:
    invite(store, pla_tst_id=1)
    invite(store, pla_tst_id=2)

    page = store.list_invitations(limit=2)

    assert len(page.items) == 2
    assert page.next_cursor is None


def test_invitations_are_filtered_by_each_field(store: SqlStore) -> None:
    ada = invite(store, pla_tst_id=1, email="Ada@Example.com", tst_frm_id=10)
    bob = invite(store, pla_tst_id=2, email="bob@example.com", tst_frm_id=20)
    store.mark_invitation(bob, InvitationStatus.COMPLETED)
    late = store.create_invitation(
        NewInvitation(tst_frm_id=10, email="carl@example.com", pla_tst_id=3),
        NOW + timedelta(hours=2),
    ).id

    def ids(**fields: Any) -> list[str]:
        page = store.list_invitations(InvitationFilter(**fields))
        return [invitation.id for invitation in page.items]

    assert ids(email=" ada@EXAMPLE.com ") == [ada]
    assert ids(status=InvitationStatus.COMPLETED) == [bob]
    assert ids(pla_tst_id=3) == [late]
    assert ids(tst_frm_id=10) == [late, ada]
    assert ids(created_from=NOW + timedelta(hours=1)) == [late]
    assert ids(created_until=NOW + timedelta(hours=2)) == sorted([ada, bob], reverse=True)
    assert ids(tst_frm_id=10, status=InvitationStatus.COMPLETED) == []


def test_the_search_finds_an_invitation_by_id_email_test_or_event(store: SqlStore) -> None:
    event_id = make_event(store, pla_tst_id=789)
    [invitation] = store.list_invitations().items

    for term in (invitation.id, "ADA@example.com", "789", event_id, f"  {invitation.id} "):
        assert [found.id for found in store.find_invitations(term)] == [invitation.id], term
    assert store.find_invitations("nobody@example.com") == []
    assert store.find_invitations("  ") == []
    assert store.find_invitations("9" * 40) == []


def test_events_are_filtered_by_candidate_test_status_and_time(store: SqlStore) -> None:
    first = make_event(store, ("hook", "slack"), pla_tst_id=1)
    second = make_event(store, ("hook",), pla_tst_id=2)
    [failing] = store.list_deliveries(event_id=second)
    store.mark_failed(failing.id, "HTTP 500")
    other = store.create_event(
        "evt_other",
        invite(store, pla_tst_id=3, email="bob@example.com"),
        3,
        "assessment.completed",
        {"data": {"candidate": {"email": "Bob@Example.com"}, "test": {"tst_frm_id": 77}}},
        [],
        NOW + timedelta(hours=1),
    )[0].id

    def ids(**fields: Any) -> list[str]:
        return [event.id for event in store.list_events(EventFilter(**fields)).items]

    assert ids(email="bob@example.com") == [other]
    assert set(ids(email="ada@example.com")) == {first, second}
    assert ids(pla_tst_id=2) == [second]
    assert ids(tst_frm_id=77) == [other]
    assert ids(status=DeliveryStatus.FAILED) == [second]
    assert ids(subscription="slack") == [first]
    assert ids(status=DeliveryStatus.PENDING, subscription="slack") == [first]
    assert ids(created_from=NOW + timedelta(minutes=30)) == [other]
    assert ids(created_until=NOW + timedelta(minutes=30)) == sorted([first, second], reverse=True)


# -- bulk replay selection, subscription counts ---------------------------------------------------


def test_deliveries_matching_a_filter_come_oldest_first_in_batches(store: SqlStore) -> None:
    ids = []
    for number in range(5):
        _event, [delivery], _ = store.create_event(
            f"evt_{number}",
            None,
            number,
            "assessment.completed",
            {},
            ["hook"],
            NOW + timedelta(minutes=number),
        )
        store.mark_failed(delivery.id, "HTTP 500")
        ids.append(delivery.id)
    store.create_event("evt_other", None, 99, "assessment.completed", {}, ["slack"], NOW)
    chosen = DeliveryFilter(
        subscription="hook",
        created_from=NOW + timedelta(minutes=1),
        created_until=NOW + timedelta(minutes=4),
    )

    first = store.deliveries_matching(chosen, limit=2)
    rest = store.deliveries_matching(chosen, after=(first[-1].created_at, first[-1].id))

    assert [delivery.id for delivery in first + rest] == ids[1:4]


def test_a_requeue_restricted_to_some_statuses_leaves_the_others(store: SqlStore) -> None:
    failed_id = make_delivery(store, pla_tst_id=1)
    pending_id = make_delivery(store, pla_tst_id=2)
    store.mark_failed(failed_id, "HTTP 500")

    only_failed = (DeliveryStatus.FAILED,)
    requeued = store.requeue_delivery(failed_id, allow_delivered=False, only_from=only_failed)
    again = store.requeue_delivery(failed_id, allow_delivered=False, only_from=only_failed)
    untouched = store.requeue_delivery(pending_id, allow_delivered=False, only_from=only_failed)

    assert requeued is not None
    assert requeued.status is DeliveryStatus.PENDING
    assert again is None
    assert untouched is None


def test_deliveries_are_counted_per_subscription_and_status(store: SqlStore) -> None:
    make_event(store, ("hook", "slack"), pla_tst_id=1)
    event_id = make_event(store, ("hook",), pla_tst_id=2)
    [delivery] = store.list_deliveries(event_id=event_id)
    store.mark_failed(delivery.id, "HTTP 500")

    counts = {entry.name: entry.by_status for entry in store.count_deliveries_by_subscription()}

    assert set(counts) == {"hook", "slack"}
    assert counts["hook"][DeliveryStatus.PENDING] == 1
    assert counts["hook"][DeliveryStatus.FAILED] == 1
    assert counts["slack"] == {**dict.fromkeys(DeliveryStatus, 0), DeliveryStatus.PENDING: 1}


# -- erasure --------------------------------------------------------------------------------------


def erase(store: SqlStore, email: str = "ada@example.com", erasure_id: str = "era_1") -> Any:
    return store.erase_candidate(
        email, erasure_id=erasure_id, requested_by="ops", email_hash="h", email_salt="s"
    )


def test_erasure_blanks_the_candidate_in_every_table_and_keeps_the_grade(store: SqlStore) -> None:
    invitation_id = invite(store, ext_id="emp-7", context={"employee": 7})
    store.record_callback(invitation_id, "GET", {"ema": "ada@example.com"}, "10.0.0.1", True, None)
    event_payload = payload()
    event_payload["data"]["context"] = {"employee": 7}
    event_payload["data"]["report"] = {"pdf_url": "https://isograd.example/report.pdf"}
    event, [delivery], _ = store.create_event(
        "evt_ada", invitation_id, 456, "assessment.completed", event_payload, ["hook"], NOW
    )
    store.record_attempt(
        delivery.id,
        attempt(response_body='{"echo": "ada@example.com"}', response_headers={"x": "ada"}),
    )

    record = erase(store, "  ADA@example.com ")

    invitation = store.get_invitation(invitation_id)
    assert invitation is not None
    assert (invitation.email, invitation.first_name, invitation.last_name) == (None, None, None)
    assert (invitation.ext_id, invitation.context, invitation.purged_at) == (None, {}, NOW)
    erased = store.get_event(event.id)
    assert erased is not None
    candidate = erased.payload["data"]["candidate"]
    assert set(candidate.values()) == {None}
    assert erased.payload["data"]["context"] == {}
    assert erased.payload["data"]["report"] == {"pdf_url": None}
    assert erased.payload["data"]["grade"] == {"value": 550}
    [attempt_row] = store.list_attempts(delivery.id)
    assert (attempt_row.response_body, attempt_row.response_headers) == (None, {})
    with store.engine.connect() as connection:
        receipt = connection.execute(select(callbacks.c.query, callbacks.c.remote_addr)).one()
    assert tuple(receipt) == ({}, None)
    cancelled = store.get_delivery(delivery.id)
    assert cancelled is not None
    assert cancelled.status is DeliveryStatus.CANCELLED
    counts = (record.invitations, record.events, record.callbacks, record.attempts)
    assert counts == (1, 1, 1, 1)
    assert record.deliveries_cancelled == 1
    assert store.list_erasures() == [record]


def test_erasure_leaves_other_candidates_and_finished_deliveries(store: SqlStore) -> None:
    ada_event = make_event(store, pla_tst_id=1)
    [delivered] = store.list_deliveries(event_id=ada_event)
    store.mark_delivered(delivered.id)
    bob = invite(store, pla_tst_id=2, email="bob@example.com")

    record = erase(store)

    kept = store.get_invitation(bob)
    assert kept is not None
    assert kept.email == "bob@example.com"
    still = store.get_delivery(delivered.id)
    assert still is not None
    assert still.status is DeliveryStatus.DELIVERED
    assert record.deliveries_cancelled == 0


def test_erasing_a_pending_invitation_stops_its_status_checks(store: SqlStore) -> None:
    invitation_id = invite(store)

    erase(store)

    invitation = store.get_invitation(invitation_id)
    assert invitation is not None
    assert invitation.status is InvitationStatus.FAILED
    assert invitation.next_check_at is None


def test_an_event_naming_the_email_is_erased_without_its_invitation(store: SqlStore) -> None:
    store.create_event("evt_alone", None, 9, "assessment.completed", payload(9), [], NOW)

    record = erase(store)

    event = store.get_event("evt_alone")
    assert event is not None
    assert event.payload["data"]["candidate"]["email"] is None
    assert record.events == 1


def test_erasing_an_unknown_email_still_keeps_an_audit_row(store: SqlStore) -> None:
    invite(store)

    record = erase(store, "nobody@example.com")

    assert (record.invitations, record.events, record.callbacks, record.attempts) == (0, 0, 0, 0)
    assert store.list_erasures() == [record]
    assert store.list_invitations().items[0].email == "ada@example.com"


def test_erasing_twice_blanks_nothing_the_second_time_but_records_it(store: SqlStore) -> None:
    make_event(store)
    erase(store, erasure_id="era_1")

    second = erase(store, erasure_id="era_2")

    assert (second.invitations, second.events, second.deliveries_cancelled) == (0, 0, 0)
    # Same time (the clock is fixed): newest first falls back to the id, descending.
    assert [record.id for record in store.list_erasures()] == ["era_2", "era_1"]


def test_the_isograd_answer_is_noted_on_the_audit_row(store: SqlStore) -> None:
    erase(store)

    record = store.record_erasure_isograd("era_1", "anonymized")

    assert record.isograd == "anonymized"
    with pytest.raises(LookupError):
        store.record_erasure_isograd("era_missing", "anonymized")


# -- one transaction per step of the pipeline ---------------------------------------------------


def store_completion(
    store: SqlStore, invitation_id: str, names: list[str], *, claim: bool = False
) -> Any:
    return store.store_completion(
        event_id=new_id("evt"),
        invitation_id=invitation_id,
        pla_tst_id=456,
        sta_id=3,
        type="assessment.completed",
        payload=payload(),
        deliveries_for=names,
        now=NOW,
        claim=claim,
    )


def test_store_completion_with_claim_stores_its_deliveries_claimed_until_the_lease_ends(
    store: SqlStore,
) -> None:
    _, stored, created = store_completion(store, invite(store), ["a-hook", "b-hook"], claim=True)

    assert created
    assert [(d.status, d.updated_at) for d in stored] == [(DeliveryStatus.DELIVERING, NOW)] * 2
    assert stored == store.list_deliveries_of_events([stored[0].event_id])
    assert store.claim_attempts([d.id for d in stored], NOW + LEASE / 2) == {}
    reclaimed = store.claim_attempts([d.id for d in stored], NOW + LEASE)
    assert sorted(reclaimed) == sorted(d.id for d in stored)


def test_store_completion_with_claim_of_a_stored_event_claims_nothing(store: SqlStore) -> None:
    invitation_id = invite(store)
    _, first, _ = store_completion(store, invitation_id, ["hook"])

    _, again, created = store_completion(store, invitation_id, ["hook"], claim=True)

    assert not created
    assert again == first
    assert [d.status for d in again] == [DeliveryStatus.PENDING]


def new_completion(invitation_id: str, pla_tst_id: int, names: list[str]) -> NewCompletion:
    return NewCompletion(
        event_id=new_id("evt"),
        invitation_id=invitation_id,
        pla_tst_id=pla_tst_id,
        sta_id=3,
        type="assessment.completed",
        payload=payload(pla_tst_id),
        deliveries_for=names,
    )


def test_store_completions_stores_a_batch_and_answers_a_stored_one_as_before(
    store: SqlStore,
) -> None:
    ids = [invite(store, pla_tst_id=500 + n) for n in range(3)]
    first, first_deliveries, _ = store_completion(store, ids[0], ["hook"])
    batch = [new_completion(ids[n], 500 + n, ["hook", "lms"]) for n in range(3)]
    batch[0] = replace(batch[0], pla_tst_id=first.pla_tst_id)

    stored = store.store_completions(batch, NOW, claim=True)

    assert [created for _, _, created in stored] == [False, True, True]
    assert stored[0][:2] == (first, first_deliveries)
    for (event, stored_deliveries, _), completion in zip(stored[1:], batch[1:], strict=True):
        assert store.get_event(event.id) == event
        assert stored_deliveries == store.list_deliveries_of_events([event.id])
        assert [(d.subscription, d.status) for d in stored_deliveries] == [
            ("hook", DeliveryStatus.DELIVERING),
            ("lms", DeliveryStatus.DELIVERING),
        ]
        invitation = store.get_invitation(completion.invitation_id)
        assert invitation is not None
        assert invitation.status is InvitationStatus.COMPLETED
    assert count(store, events) == 3


def test_store_completions_with_an_unknown_invitation_stores_none_of_the_batch(
    store: SqlStore,
) -> None:
    known = invite(store, pla_tst_id=600)

    with pytest.raises(LookupError):
        store.store_completions(
            [new_completion(known, 600, ["hook"]), new_completion("inv_missing", 601, ["hook"])],
            NOW,
        )

    assert count(store, events) == 0
    invitation = store.get_invitation(known)
    assert invitation is not None
    assert invitation.status is not InvitationStatus.COMPLETED


def test_store_completion_stores_the_event_its_deliveries_and_completes_the_invitation(
    store: SqlStore,
) -> None:
    invitation_id = invite(store)
    store.record_callback(invitation_id, "GET", {}, None, True, None, NOW)

    event, stored, created = store_completion(store, invitation_id, ["b-hook", "a-hook"])

    assert created
    assert store.get_event(event.id) == event
    assert stored == store.list_deliveries_of_events([event.id])
    assert [d.subscription for d in stored] == ["a-hook", "b-hook"]
    invitation = store.get_invitation(invitation_id)
    assert invitation is not None
    assert (invitation.status, invitation.completed_at) == (InvitationStatus.COMPLETED, NOW)
    assert (invitation.check_count, invitation.last_status, invitation.next_check_at) == (
        1,
        3,
        None,
    )
    assert store.unprocessed_callbacks(NOW + timedelta(seconds=1)) == []


def test_store_completion_twice_creates_nothing_more_and_still_counts_the_check(
    store: SqlStore,
) -> None:
    invitation_id = invite(store)
    first, first_deliveries, _ = store_completion(store, invitation_id, ["hook"])

    again, deliveries_again, created = store_completion(store, invitation_id, ["hook", "new"])

    assert not created
    assert (again, deliveries_again) == (first, first_deliveries)
    assert count(store, events) == 1
    invitation = store.get_invitation(invitation_id)
    assert invitation is not None
    assert invitation.check_count == 2


def test_store_completion_leaves_out_a_disabled_subscription(store: SqlStore) -> None:
    store.disable_subscription("off", "410 Gone", NOW)

    _, stored, _ = store_completion(store, invite(store), ["off", "on"])

    assert [d.subscription for d in stored] == ["on"]


def test_store_completion_of_an_unknown_invitation_raises_lookup_error(store: SqlStore) -> None:
    with pytest.raises(LookupError):
        store_completion(store, "inv_missing", ["hook"])
    assert count(store, events) == 0


def test_claim_attempt_returns_the_delivery_with_its_event_once(store: SqlStore) -> None:
    delivery_id = make_delivery(store)

    claimed = store.claim_attempt(delivery_id, NOW)
    again = store.claim_attempt(delivery_id, NOW)

    assert claimed is not None
    assert claimed.delivery.status is DeliveryStatus.DELIVERING
    assert claimed.event == store.get_event(claimed.delivery.event_id)
    assert not claimed.subscription_disabled
    assert again is None


def test_claim_attempt_says_when_the_subscription_is_disabled(store: SqlStore) -> None:
    delivery_id = make_delivery(store)
    store.disable_subscription("hook", "410 Gone", NOW)

    claimed = store.claim_attempt(delivery_id, NOW)

    assert claimed is not None
    assert claimed.subscription_disabled


def test_claim_attempt_takes_back_a_delivery_whose_lease_expired(store: SqlStore) -> None:
    delivery_id = make_delivery(store)
    assert store.claim_attempt(delivery_id, NOW) is not None

    assert store.claim_attempt(delivery_id, NOW + LEASE - timedelta(seconds=1)) is None
    assert store.claim_attempt(delivery_id, NOW + LEASE) is not None


def test_claim_attempts_claims_the_claimable_ones_at_once_with_their_subscription_state(
    store: SqlStore,
) -> None:
    event_id = make_event(store, ("hook", "lms", "crm"))
    ids = {d.subscription: d.id for d in store.list_deliveries(event_id=event_id)}
    store.disable_subscription("lms", "410 Gone", NOW)
    assert store.claim_attempt(ids["crm"], NOW) is not None  # being delivered elsewhere

    claimed = store.claim_attempts(list(ids.values()), NOW)

    assert sorted(claimed) == sorted([ids["hook"], ids["lms"]])
    assert {c.delivery.subscription: c.subscription_disabled for c in claimed.values()} == {
        "hook": False,
        "lms": True,
    }
    assert all(c.delivery.status is DeliveryStatus.DELIVERING for c in claimed.values())
    assert all(c.event is None for c in claimed.values())
    assert store.claim_attempts(list(ids.values()), NOW) == {}
    assert store.claim_attempts([], NOW) == {}


def test_record_delivered_attempts_records_each_and_ends_both_streaks_in_one_transaction(
    store: SqlStore,
) -> None:
    event_id = make_event(store, ("hook", "lms"))
    ids = {d.subscription: d.id for d in store.list_deliveries(event_id=event_id)}
    store.claim_attempts(list(ids.values()), NOW)
    for name in ids:
        store.record_subscription_failure(name, NOW)
    later = NOW + timedelta(seconds=3)
    ok = attempt(AttemptOutcome.DELIVERED, status_code=200)

    recorded = store.record_delivered_attempts([(ids[n], n, ok) for n in ("hook", "lms")], later)

    assert [a.delivery_id for a in recorded] == [ids["hook"], ids["lms"]]
    for name, delivery_id in ids.items():
        delivery = store.get_delivery(delivery_id)
        assert delivery is not None
        assert (delivery.status, delivery.attempt_count) == (DeliveryStatus.DELIVERED, 1)
        state = store.subscription_state(name)
        assert (state.failing_since, state.last_success_at) == (None, later)


def statements_during(store: SqlStore, action: Callable[[], object]) -> int:
    """How many statements the store sent to the database while `action` ran."""
    sent = 0

    def counted(*_: object) -> None:
        nonlocal sent
        sent += 1

    sqlalchemy_event.listen(store.engine, "before_cursor_execute", counted)
    try:
        action()
    finally:
        sqlalchemy_event.remove(store.engine, "before_cursor_execute", counted)
    return sent


def test_a_batch_of_completions_costs_the_statements_of_one(store: SqlStore) -> None:
    # Each statement is a point where, on SQLite, the writer gives up the GIL while it holds
    # the write lock: one per row made a burst's worker transactions hold it ~100 ms. A batch
    # whose size is a power of two is one chunk (worker.storage.shapes).
    ids = [invite(store, pla_tst_id=700 + n) for n in range(17)]
    batch = [new_completion(ids[n], 700 + n, ["hook", "lms"]) for n in range(17)]

    one = statements_during(store, lambda: store.store_completions(batch[:1], NOW, claim=True))
    many = statements_during(store, lambda: store.store_completions(batch[1:], NOW, claim=True))

    assert many == one
    assert count(store, events) == 17
    assert count(store, deliveries) == 34


def test_delivered_attempts_of_a_batch_cost_the_statements_of_one(store: SqlStore) -> None:
    stored = [make_event(store, ("hook", "lms"), pla_tst_id=800 + n) for n in range(5)]
    found = [d for event_id in stored for d in store.list_deliveries(event_id=event_id)]
    ok = attempt(AttemptOutcome.DELIVERED, status_code=200)
    delivered = [(d.id, d.subscription, ok) for d in found]

    one = statements_during(store, lambda: store.record_delivered_attempts(delivered[:1], NOW))
    many = statements_during(store, lambda: store.record_delivered_attempts(delivered[1:9], NOW))
    rest = statements_during(store, lambda: store.record_delivered_attempts(delivered[9:], NOW))

    assert many == one == rest
    assert all(len(store.list_attempts(d.id)) == 1 for d in found)


def test_a_batch_of_thirteen_completions_is_written_in_chunks_of_eight_four_and_one(
    store: SqlStore,
) -> None:
    ids = [invite(store, pla_tst_id=900 + n) for n in range(13)]
    batch = [new_completion(ids[n], 900 + n, ["hook"]) for n in range(13)]
    sizes: list[int] = []

    def inserted(_c: object, _cursor: object, statement: str, parameters: Any, *_: object) -> None:
        if statement.startswith("INSERT INTO events"):
            sizes.append(statement.count("(?") + statement.count("(%("))

    sqlalchemy_event.listen(store.engine, "before_cursor_execute", inserted)
    try:
        stored = store.store_completions(batch, NOW, claim=True)
    finally:
        sqlalchemy_event.remove(store.engine, "before_cursor_execute", inserted)

    assert sizes == [8, 4, 1]
    assert [created for _, _, created in stored] == [True] * 13
    assert [event.pla_tst_id for event, _, _ in stored] == [900 + n for n in range(13)]


def test_record_delivered_attempts_stores_nothing_when_one_delivery_is_missing(
    store: SqlStore,
) -> None:
    delivery_id = make_delivery(store)
    ok = attempt(AttemptOutcome.DELIVERED, status_code=200)

    with pytest.raises(LookupError):
        store.record_delivered_attempts(
            [(delivery_id, "hook", ok), ("dlv_missing", "hook", ok)], NOW
        )

    assert store.list_attempts(delivery_id) == []
    delivery = store.get_delivery(delivery_id)
    assert delivery is not None
    assert delivery.status is DeliveryStatus.PENDING


def test_record_delivered_attempt_records_delivers_and_ends_the_failure_streak(
    store: SqlStore,
) -> None:
    delivery_id = make_delivery(store)
    store.claim_delivery(delivery_id, NOW)
    store.record_subscription_failure("hook", NOW)
    later = NOW + timedelta(seconds=3)

    recorded = store.record_delivered_attempt(
        delivery_id, "hook", attempt(AttemptOutcome.DELIVERED, status_code=200), later
    )

    assert store.list_attempts(delivery_id) == [recorded]
    assert recorded.number == 1
    delivery = store.get_delivery(delivery_id)
    assert delivery is not None
    assert (delivery.status, delivery.attempt_count, delivery.delivered_at) == (
        DeliveryStatus.DELIVERED,
        1,
        later,
    )
    state = store.subscription_state("hook")
    assert (state.failing_since, state.last_success_at) == (None, later)


def test_record_delivered_attempt_keeps_the_first_delivered_at_and_numbers_in_turn(
    store: SqlStore,
) -> None:
    delivery_id = make_delivery(store)
    store.record_attempt(delivery_id, attempt())
    store.mark_delivered(delivery_id, NOW)

    recorded = store.record_delivered_attempt(
        delivery_id, "hook", attempt(AttemptOutcome.DELIVERED), NOW + timedelta(hours=1)
    )

    assert recorded.number == 2
    delivery = store.get_delivery(delivery_id)
    assert delivery is not None
    assert (delivery.delivered_at, delivery.attempt_count) == (NOW, 2)


def test_record_delivered_attempt_of_an_unknown_delivery_raises_lookup_error(
    store: SqlStore,
) -> None:
    with pytest.raises(LookupError):
        store.record_delivered_attempt("dlv_missing", "hook", attempt(), NOW)


def test_claim_attempt_without_reading_the_event_still_claims(store: SqlStore) -> None:
    delivery_id = make_delivery(store)

    claimed = store.claim_attempt(delivery_id, NOW, read_event=False)

    assert claimed is not None
    assert (claimed.event, claimed.delivery.status) == (None, DeliveryStatus.DELIVERING)
