"""Tests of delivery activity (attempts per subscription and hour), on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from worker.storage import AttemptOutcome, AttemptRecord, NewInvitation, SqlStore

HOUR = datetime(2026, 11, 27, 9, tzinfo=UTC)


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SqlStore]:
    """A migrated store on each backend (PostgreSQL: a schema of its own, conftest.py)."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path}/relay.db"
    else:
        url = str(request.getfixturevalue("postgres_schema_url"))
    sql_store = SqlStore.from_url(url)
    sql_store.migrate()
    yield sql_store
    sql_store.close()


def delivery_of(store: SqlStore, subscription: str, pla_tst_id: int) -> str:
    invitation = store.create_invitation(
        NewInvitation(tst_frm_id=1, email="a@example.org", first_name="A", last_name="B")
    )
    _, deliveries, _ = store.create_event(
        f"evt_{pla_tst_id}", invitation.id, pla_tst_id, "assessment.completed", {}, [subscription]
    )
    return deliveries[0].id


def attempt_at(
    store: SqlStore, delivery_id: str, started_at: datetime, outcome: AttemptOutcome, ms: int
) -> None:
    store.record_attempt(
        delivery_id, AttemptRecord(started_at=started_at, duration_ms=ms, outcome=outcome)
    )


def test_attempts_are_counted_per_subscription_and_utc_hour(store: SqlStore) -> None:
    hr, ats = delivery_of(store, "hr", 1), delivery_of(store, "ats", 2)
    attempt_at(store, hr, HOUR + timedelta(minutes=1), AttemptOutcome.RETRY, 100)
    attempt_at(store, hr, HOUR + timedelta(minutes=59, seconds=59.9), AttemptOutcome.GONE, 300)
    attempt_at(store, hr, HOUR + timedelta(hours=1), AttemptOutcome.DELIVERED, 50)
    attempt_at(store, ats, HOUR + timedelta(minutes=30), AttemptOutcome.DELIVERED, 20)
    # Another time zone is the same instant: it lands in the UTC hour.
    paris = HOUR.astimezone(ZoneInfo("Europe/Paris"))
    attempt_at(store, ats, paris + timedelta(minutes=5), AttemptOutcome.FAILED, 40)

    rows = store.hourly_attempts(HOUR, HOUR + timedelta(hours=2))

    assert [
        (r.subscription, r.hour, r.delivered, r.failed, r.total_ms, r.max_ms) for r in rows
    ] == [
        ("ats", HOUR, 1, 1, 60, 40),
        ("hr", HOUR, 0, 2, 400, 300),
        ("hr", HOUR + timedelta(hours=1), 1, 0, 50, 50),
    ]
    assert rows[1].mean_ms == 200


def test_attempts_outside_the_range_are_left_out(store: SqlStore) -> None:
    hr = delivery_of(store, "hr", 1)
    attempt_at(store, hr, HOUR - timedelta(microseconds=1), AttemptOutcome.DELIVERED, 10)
    attempt_at(store, hr, HOUR, AttemptOutcome.DELIVERED, 20)
    attempt_at(store, hr, HOUR + timedelta(hours=1), AttemptOutcome.DELIVERED, 30)

    rows = store.hourly_attempts(HOUR, HOUR + timedelta(hours=1))

    assert [(r.hour, r.delivered, r.total_ms) for r in rows] == [(HOUR, 1, 20)]


def test_no_attempt_no_row(store: SqlStore) -> None:
    assert store.hourly_attempts(HOUR, HOUR + timedelta(days=1)) == []
