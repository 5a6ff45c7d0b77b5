"""The reconciler: missed callbacks found by polling act 10, on a backoff schedule, rate-limited;
watched tests registered through the API and the CLI are reconciled too."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from tests.fakes import FakeClock, RecordingEnqueuer
from tests.fixtures.pipeline import EMAIL, EXCEL, Simulated, subscription
from worker.isograd.models import NewCandidate
from worker.jobs.completions import CompletionResult, process_completion
from worker.requests import InvalidRequestError, WatchRequest, validate
from worker.scheduler.reconciler import (
    COMPLETED_RECHECK,
    ReconcileReport,
    ReconcileSchedule,
    TokenBucket,
    reconcile,
)
from worker.settings import Settings
from worker.storage.records import Invitation, InvitationSource, InvitationStatus, NewInvitation
from worker.storage.store import SqlStore
from worker.watch import watch_assessment

SCHEDULE = ReconcileSchedule(horizon=timedelta(days=30))


class Monotonic:
    """A monotonic clock (seconds) for the token bucket; `wait` advances it instead of sleeping."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.waits: list[float] = []

    def __call__(self) -> float:
        return self.now

    def wait(self, seconds: float) -> bool:
        if seconds > 0:
            self.waits.append(seconds)
            self.now += seconds
        return False


@pytest.fixture
def monotonic() -> Monotonic:
    return Monotonic()


def run(
    store: SqlStore,
    simulated: Simulated,
    enqueuer: RecordingEnqueuer,
    clock: FakeClock,
    monotonic: Monotonic,
    *,
    rate: float = 100.0,
    limit: int = 100,
    halt: bool = False,
) -> ReconcileReport:
    return reconcile(
        store=store,
        client=simulated.client,
        enqueuer=enqueuer,
        clock=clock,
        limiter=TokenBucket(rate, clock=monotonic),
        wait=(lambda seconds: True) if halt else monotonic.wait,
        schedule=SCHEDULE,
        limit=limit,
    )


def invite_someone(simulated: Simulated, store: SqlStore) -> Invitation:
    """Act 8 for a new candidate each time (one email can hold one unfinished test), stored."""
    email = (
        f"candidate-{len(simulated.control.get('/_simulator/state').json()['candidates'])}@x.org"
    )
    created = simulated.client.create_candidate_and_add_test(
        NewCandidate(email=email, first_name="Ada", last_name="Lovelace"), EXCEL
    )
    return store.create_invitation(
        NewInvitation(
            tst_frm_id=EXCEL, email=email, pla_tst_id=created.pla_tst_id, can_id=created.can_id
        )
    )


def due_invitation(simulated: Simulated, store: SqlStore, clock: FakeClock) -> Invitation:
    invitation = invite_someone(simulated, store)
    return store.postpone_status_check(invitation.id, clock())


# -- the schedule and the rate limit ------------------------------------------------------------


@pytest.mark.parametrize(
    ("age", "every"),
    [
        (timedelta(minutes=1), timedelta(minutes=5)),
        (timedelta(hours=5, minutes=59), timedelta(minutes=5)),
        (timedelta(hours=6), timedelta(hours=1)),
        (timedelta(days=2, hours=23), timedelta(hours=1)),
        (timedelta(days=3), timedelta(days=1)),
        (timedelta(days=20), timedelta(days=1)),
    ],
)
def test_the_check_interval_backs_off_with_age(age: timedelta, every: timedelta) -> None:
    assert SCHEDULE.interval(age) == every


def test_the_next_check_is_never_after_the_horizon(clock: FakeClock) -> None:
    created = clock() - timedelta(days=29, hours=12)

    assert SCHEDULE.next_check_at(created, clock()) == created + timedelta(days=30)


def test_an_invitation_expires_at_the_horizon(clock: FakeClock) -> None:
    created = clock() - timedelta(days=30)

    assert SCHEDULE.expired(created, clock())
    assert not SCHEDULE.expired(created + timedelta(seconds=1), clock())


def test_the_token_bucket_spaces_calls_by_the_rate(monotonic: Monotonic) -> None:
    bucket = TokenBucket(4.0, clock=monotonic)

    first, second = bucket.delay(), bucket.delay()
    monotonic.now += 0.25
    third = bucket.delay()

    assert (first, second, third) == (0.0, 0.25, 0.0)


def test_the_token_bucket_allows_a_burst_after_idling(monotonic: Monotonic) -> None:
    bucket = TokenBucket(1.0, burst=3, clock=monotonic)
    monotonic.now += 60

    delays = [bucket.delay() for _ in range(4)]

    assert delays == [0.0, 0.0, 0.0, 1.0]


def test_the_reconciler_waits_for_the_rate_limit_between_calls(
    store: SqlStore,
    simulated: Simulated,
    enqueuer: RecordingEnqueuer,
    clock: FakeClock,
    monotonic: Monotonic,
) -> None:
    for _ in range(3):
        due_invitation(simulated, store, clock)

    report = run(store, simulated, enqueuer, clock, monotonic, rate=2.0)

    assert report.checked == 3
    assert monotonic.waits == [0.5, 0.5]
    assert simulated.calls(10) == 3


# -- reconciling ---------------------------------------------------------------------------------


def test_a_completed_test_whose_callback_never_came_is_enqueued_for_processing(
    store: SqlStore,
    simulated: Simulated,
    enqueuer: RecordingEnqueuer,
    clock: FakeClock,
    monotonic: Monotonic,
) -> None:
    invitation = due_invitation(simulated, store, clock)
    simulated.move(invitation.pla_tst_id or 0, "complete")

    report = run(store, simulated, enqueuer, clock, monotonic)

    assert report.completed == 1
    assert [job.id for job in enqueuer.of_kind("completion")] == [invitation.id]
    stored = store.get_invitation(invitation.id)
    assert stored is not None
    assert stored.next_check_at == clock() + COMPLETED_RECHECK  # if that message is lost


def test_a_missed_callback_and_a_received_one_give_one_event(
    store: SqlStore,
    simulated: Simulated,
    enqueuer: RecordingEnqueuer,
    clock: FakeClock,
    monotonic: Monotonic,
) -> None:
    invitation = due_invitation(simulated, store, clock)
    simulated.move(invitation.pla_tst_id or 0, "complete")
    run(store, simulated, enqueuer, clock, monotonic)

    outcomes = [
        process_completion(
            invitation.id,
            store=store,
            client=simulated.client,
            subscriptions=[subscription()],
            enqueuer=enqueuer,
            clock=clock,
        )
        for _ in ("reconciler's job", "the late callback's job")
    ]
    clock.advance(3600)
    again = run(store, simulated, enqueuer, clock, monotonic)

    assert [outcome.result for outcome in outcomes] == [
        CompletionResult.COMPLETED,
        CompletionResult.ALREADY_COMPLETED,
    ]
    assert len(store.list_events().items) == 1
    assert len(enqueuer.of_kind("delivery")) == 1
    assert again.checked == 0


def test_a_test_not_finished_is_checked_again_later_by_its_age(
    store: SqlStore,
    simulated: Simulated,
    enqueuer: RecordingEnqueuer,
    clock: FakeClock,
    monotonic: Monotonic,
) -> None:
    invitation = due_invitation(simulated, store, clock)
    simulated.move(invitation.pla_tst_id or 0, "start")

    report = run(store, simulated, enqueuer, clock, monotonic)

    stored = store.get_invitation(invitation.id)
    assert stored is not None
    assert report.checked == 1
    assert enqueuer.jobs == []
    assert (stored.last_status, stored.check_count) == (2, 1)
    assert stored.next_check_at == clock() + timedelta(minutes=5)


def test_invitations_are_checked_oldest_due_first_up_to_the_limit(
    store: SqlStore,
    simulated: Simulated,
    enqueuer: RecordingEnqueuer,
    clock: FakeClock,
    monotonic: Monotonic,
) -> None:
    newer = invite_someone(simulated, store)
    older = invite_someone(simulated, store)
    store.postpone_status_check(newer.id, clock() - timedelta(minutes=1))
    store.postpone_status_check(older.id, clock() - timedelta(minutes=2))

    run(store, simulated, enqueuer, clock, monotonic, limit=1)

    checked = store.get_invitation(older.id)
    unchecked = store.get_invitation(newer.id)
    assert checked is not None
    assert unchecked is not None
    assert (checked.check_count, unchecked.check_count) == (1, 0)


def test_a_pending_invitation_past_the_horizon_is_expired_after_a_last_check(
    store: SqlStore,
    simulated: Simulated,
    enqueuer: RecordingEnqueuer,
    clock: FakeClock,
    monotonic: Monotonic,
) -> None:
    invitation = due_invitation(simulated, store, clock)
    clock.advance(timedelta(days=30).total_seconds())

    report = run(store, simulated, enqueuer, clock, monotonic)

    stored = store.get_invitation(invitation.id)
    assert stored is not None
    assert (report.checked, report.expired) == (1, 1)
    assert stored.status is InvitationStatus.EXPIRED
    assert stored.next_check_at is None


def test_a_test_completed_on_the_horizon_is_processed_not_expired(
    store: SqlStore,
    simulated: Simulated,
    enqueuer: RecordingEnqueuer,
    clock: FakeClock,
    monotonic: Monotonic,
) -> None:
    invitation = due_invitation(simulated, store, clock)
    simulated.move(invitation.pla_tst_id or 0, "complete")
    clock.advance(timedelta(days=31).total_seconds())

    report = run(store, simulated, enqueuer, clock, monotonic)

    assert (report.completed, report.expired) == (1, 0)


def test_a_test_awaiting_marking_at_the_horizon_is_not_expired_but_checked_daily(
    store: SqlStore,
    simulated: Simulated,
    enqueuer: RecordingEnqueuer,
    clock: FakeClock,
    monotonic: Monotonic,
) -> None:
    # The candidate has finished and no callback comes when the marking does: expiring it
    # would lose the completion.
    invitation = due_invitation(simulated, store, clock)
    simulated.move(invitation.pla_tst_id or 0, "pending")
    clock.advance(timedelta(days=30).total_seconds())

    report = run(store, simulated, enqueuer, clock, monotonic)

    stored = store.get_invitation(invitation.id)
    assert stored is not None
    assert (report.checked, report.expired) == (1, 0)
    assert stored.status is InvitationStatus.PENDING
    assert stored.next_check_at == clock() + SCHEDULE.last_step


def test_a_test_unknown_to_isograd_fails_the_invitation(
    store: SqlStore,
    simulated: Simulated,
    enqueuer: RecordingEnqueuer,
    clock: FakeClock,
    monotonic: Monotonic,
) -> None:
    invitation = store.create_invitation(
        NewInvitation(tst_frm_id=EXCEL, email=EMAIL, pla_tst_id=99_999_999, next_check_at=clock())
    )

    report = run(store, simulated, enqueuer, clock, monotonic)

    stored = store.get_invitation(invitation.id)
    assert stored is not None
    assert report.failed == 1
    assert stored.status is InvitationStatus.FAILED


def test_isograd_unavailable_ends_the_run_and_leaves_the_invitations_due(
    store: SqlStore,
    simulated: Simulated,
    enqueuer: RecordingEnqueuer,
    clock: FakeClock,
    monotonic: Monotonic,
) -> None:
    invitation = due_invitation(simulated, store, clock)
    due_invitation(simulated, store, clock)
    simulated.faults(error_rate=1.0, error_status=503)

    report = run(store, simulated, enqueuer, clock, monotonic)

    stored = store.get_invitation(invitation.id)
    assert stored is not None
    assert report.interrupted is True
    assert report.checked == 0
    assert len(store.due_invitations(clock())) == 2


def test_an_invitation_without_a_test_id_is_postponed_without_a_call(
    store: SqlStore,
    simulated: Simulated,
    enqueuer: RecordingEnqueuer,
    clock: FakeClock,
    monotonic: Monotonic,
) -> None:
    invitation = store.create_invitation(
        NewInvitation(tst_frm_id=EXCEL, email=EMAIL, next_check_at=clock())
    )

    report = run(store, simulated, enqueuer, clock, monotonic)

    stored = store.get_invitation(invitation.id)
    assert stored is not None
    assert report.postponed == 1
    assert simulated.calls(10) == 0
    assert stored.next_check_at == clock() + timedelta(minutes=5)


def test_a_halted_run_makes_no_call(
    store: SqlStore,
    simulated: Simulated,
    enqueuer: RecordingEnqueuer,
    clock: FakeClock,
    monotonic: Monotonic,
) -> None:
    due_invitation(simulated, store, clock)

    report = run(store, simulated, enqueuer, clock, monotonic, halt=True)

    assert report.interrupted is True
    assert simulated.calls(10) == 0


# -- settings -------------------------------------------------------------------------------------


def test_the_reconciler_settings_are_read_from_the_environment(tmp_path: Path) -> None:
    environ = {
        "VAR_DIR": str(tmp_path),
        "RECONCILE_RATE": "0.5",
        "RECONCILE_HORIZON_DAYS": "7",
        "PII_RETENTION_DAYS": "90",
    }

    settings = Settings.from_env(environ, config_path=None)

    assert (settings.reconcile_rate, settings.reconcile_horizon_days) == (0.5, 7)
    assert settings.pii_retention_days == 90


def test_the_reconciler_settings_have_defaults(tmp_path: Path) -> None:
    settings = Settings.from_env({"VAR_DIR": str(tmp_path)})

    assert (settings.reconcile_rate, settings.reconcile_horizon_days) == (2.0, 30)
    assert settings.pii_retention_days is None


@pytest.mark.parametrize("value", ["0", "-1", "fast", "inf"])
def test_an_invalid_reconcile_rate_is_a_configuration_problem(value: str, tmp_path: Path) -> None:
    from worker.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match="RECONCILE_RATE"):
        Settings.from_env({"VAR_DIR": str(tmp_path), "RECONCILE_RATE": value})


# -- watched tests ------------------------------------------------------------------------------


def watch_request(pla_tst_id: int, **changes: object) -> WatchRequest:
    body = {"pla_tst_id": pla_tst_id, "tst_frm_id": EXCEL, "email": EMAIL, **changes}
    return validate(WatchRequest, body)


def test_a_watched_test_is_stored_as_a_watched_invitation_due_at_once(
    store: SqlStore, clock: FakeClock
) -> None:
    invitation, created = watch_assessment(
        watch_request(456, context={"ats_id": "c-9"}), store=store, now=clock()
    )

    assert created is True
    assert invitation.source is InvitationSource.WATCHED
    assert (invitation.pla_tst_id, invitation.context) == (456, {"ats_id": "c-9"})
    assert store.due_invitations(clock()) == [invitation]


def test_watching_the_same_test_twice_stores_it_once(store: SqlStore, clock: FakeClock) -> None:
    first, _ = watch_assessment(watch_request(456), store=store, now=clock())

    second, created = watch_assessment(watch_request(456), store=store, now=clock())

    assert created is False
    assert second.id == first.id


def test_a_watch_request_lists_every_problem() -> None:
    with pytest.raises(InvalidRequestError) as raised:
        validate(WatchRequest, {"tst_frm_id": 0, "email": "nope", "color": "red"})

    assert set(raised.value.errors) == {"pla_tst_id", "tst_frm_id", "email", "color"}


def test_a_watched_test_completed_elsewhere_is_found_by_the_reconciler(
    store: SqlStore,
    simulated: Simulated,
    enqueuer: RecordingEnqueuer,
    clock: FakeClock,
    monotonic: Monotonic,
) -> None:
    elsewhere = simulated.client.create_candidate_and_add_test(
        NewCandidate(email=EMAIL, first_name="Ada", last_name="Lovelace"), EXCEL
    )
    watched, _ = watch_assessment(watch_request(elsewhere.pla_tst_id), store=store, now=clock())
    simulated.move(elsewhere.pla_tst_id, "complete")

    report = run(store, simulated, enqueuer, clock, monotonic)

    assert report.completed == 1
    assert [job.id for job in enqueuer.of_kind("completion")] == [watched.id]


def test_the_watch_api_registers_a_test_once(admin: TestClient) -> None:
    body = {"pla_tst_id": 456, "tst_frm_id": EXCEL, "email": EMAIL, "context": {"a": 1}}

    first = admin.post("/api/watch", json=body)
    second = admin.post("/api/watch", json=body)

    assert first.status_code == 201
    assert first.json()["source"] == "watched"
    assert second.status_code == 200
    assert second.json()["invitation_id"] == first.json()["invitation_id"]
    assert second.json()["created"] is False


def test_the_watch_api_needs_the_bearer_token(web: TestClient) -> None:
    response = web.post("/api/watch", json={"pla_tst_id": 456, "tst_frm_id": 1, "email": EMAIL})

    assert response.status_code == 401


def test_the_watch_api_answers_422_with_every_problem(admin: TestClient) -> None:
    response = admin.post("/api/watch", json={"pla_tst_id": "x"})

    assert response.status_code == 422
    assert "tst_frm_id" in response.text
    assert "pla_tst_id" in response.text


def test_the_watch_command_registers_a_test(tmp_path: Path) -> None:
    database = tmp_path / "relay.db"
    migrated = SqlStore.from_url(f"sqlite:///{database}")
    migrated.migrate()
    migrated.close()
    command = [sys.executable, "-m", "worker.cli", "watch", "--pla-tst-id", "456"]
    command += ["--tst-frm-id", str(EXCEL), "--email", EMAIL, "--context", '{"ats_id": "c-9"}']
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{database}", "VAR_DIR": str(tmp_path)}

    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, check=False)

    assert result.returncode == 0, result.stderr
    assert b"watching: pla_tst_id 456" in result.stdout
    stored = SqlStore.from_url(f"sqlite:///{database}")
    try:
        invitation = stored.get_invitation_by_pla_tst_id(456)
    finally:
        stored.close()
    assert invitation is not None
    assert invitation.context == {"ats_id": "c-9"}
