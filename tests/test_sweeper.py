"""The sweeper: deliveries and callbacks whose broker message was lost are enqueued again."""

from __future__ import annotations

from datetime import timedelta

import pytest
from structlog.testing import capture_logs

from tests.fakes import FakeClock, FakeSink, FixedRandom, RecordingEnqueuer
from tests.fixtures.pipeline import subscription
from worker.jobs.deliveries import DeliveryResult, deliver
from worker.scheduler.sweeper import DEFAULT_GRACE, Sweeper
from worker.storage.records import DeliveryStatus, InvitationStatus, NewInvitation
from worker.storage.store import SqlStore

GRACE = DEFAULT_GRACE.total_seconds()
PAYLOAD = {"type": "assessment.completed", "timestamp": "2026-11-27T10:15:00Z", "data": {}}


@pytest.fixture
def enqueuer() -> RecordingEnqueuer:
    return RecordingEnqueuer()


@pytest.fixture
def sweeper(store: SqlStore, enqueuer: RecordingEnqueuer, clock: FakeClock) -> Sweeper:
    return Sweeper(store=store, enqueuer=enqueuer, clock=clock)


def pending_invitation(store: SqlStore, pla_tst_id: int | None = 456) -> str:
    return store.create_invitation(
        NewInvitation(tst_frm_id=101, email="a@example.org", pla_tst_id=pla_tst_id)
    ).id


def stored_delivery(store: SqlStore) -> str:
    invitation_id = pending_invitation(store)
    _, deliveries, _ = store.create_event(
        "evt_1", invitation_id, 456, "assessment.completed", PAYLOAD, ["hr"]
    )
    return deliveries[0].id


def run_deliver(
    delivery_id: str, store: SqlStore, sink: FakeSink, enqueuer: RecordingEnqueuer, clock: FakeClock
) -> DeliveryResult:
    return deliver(
        delivery_id,
        store=store,
        subscriptions={"hr": subscription("hr")},
        sink_for=lambda _: sink,
        enqueuer=enqueuer,
        clock=clock,
        rng=FixedRandom(),
    ).result


# -- deliveries ----------------------------------------------------------------------------------


def test_a_delivery_whose_message_was_lost_is_enqueued_again_and_delivered(
    store: SqlStore, sweeper: Sweeper, enqueuer: RecordingEnqueuer, clock: FakeClock
) -> None:
    delivery_id = stored_delivery(store)  # its message never reached the broker
    clock.advance(GRACE + 1)

    report = sweeper.sweep()
    sink = FakeSink()
    [job] = enqueuer.of_kind("delivery")
    result = run_deliver(job.id, store, sink, enqueuer, clock)

    assert report.deliveries == 1
    assert job.id == delivery_id
    assert result is DeliveryResult.DELIVERED
    assert len(sink.sent) == 1


def test_a_delivery_due_within_the_grace_period_is_left_to_its_message(
    store: SqlStore, sweeper: Sweeper, enqueuer: RecordingEnqueuer, clock: FakeClock
) -> None:
    stored_delivery(store)
    clock.advance(GRACE - 1)

    report = sweeper.sweep()

    assert report.deliveries == 0
    assert enqueuer.jobs == []


def test_an_overdue_delivery_is_enqueued_once_per_grace_period(
    store: SqlStore, sweeper: Sweeper, enqueuer: RecordingEnqueuer, clock: FakeClock
) -> None:
    stored_delivery(store)
    clock.advance(GRACE + 1)
    sweeper.sweep()

    clock.advance(60)
    soon_after = sweeper.sweep()
    clock.advance(GRACE)
    a_grace_later = sweeper.sweep()

    assert (soon_after.deliveries, a_grace_later.deliveries) == (0, 1)
    assert len(enqueuer.of_kind("delivery")) == 2


def test_a_retry_lost_while_redis_was_down_is_swept_after_its_due_time(
    store: SqlStore, sweeper: Sweeper, enqueuer: RecordingEnqueuer, clock: FakeClock
) -> None:
    delivery_id = stored_delivery(store)
    store.claim_delivery(delivery_id)
    store.schedule_retry(delivery_id, clock() + timedelta(minutes=30), "HTTP 503")
    clock.advance(timedelta(minutes=30).total_seconds())  # the delayed message is gone

    on_time = sweeper.sweep()
    clock.advance(GRACE)
    late = sweeper.sweep()

    assert (on_time.deliveries, late.deliveries) == (0, 1)
    assert [job.id for job in enqueuer.of_kind("delivery")] == [delivery_id]


@pytest.mark.parametrize("finish", ["delivered", "failed"])
def test_a_finished_delivery_is_never_swept(
    finish: str, store: SqlStore, sweeper: Sweeper, enqueuer: RecordingEnqueuer, clock: FakeClock
) -> None:
    delivery_id = stored_delivery(store)
    if finish == "delivered":
        store.mark_delivered(delivery_id)
    else:
        store.mark_failed(delivery_id, "HTTP 400")
    clock.advance(GRACE * 10)

    report = sweeper.sweep()

    assert report.deliveries == 0
    delivery = store.get_delivery(delivery_id)
    assert delivery is not None
    assert delivery.status is DeliveryStatus(finish)


# -- callbacks -----------------------------------------------------------------------------------


def test_an_accepted_callback_never_processed_enqueues_its_completion_once_per_grace(
    store: SqlStore, sweeper: Sweeper, enqueuer: RecordingEnqueuer, clock: FakeClock
) -> None:
    invitation_id = pending_invitation(store)
    store.record_callback(invitation_id, "GET", {}, "10.0.0.1", True, None)
    store.record_callback(invitation_id, "GET", {}, "10.0.0.1", True, None)  # a repeat
    clock.advance(GRACE + 1)

    first = sweeper.sweep()
    clock.advance(60)
    second = sweeper.sweep()

    assert (first.completions, second.completions) == (1, 0)
    assert [job.id for job in enqueuer.of_kind("completion")] == [invitation_id]


def test_a_callback_followed_by_a_status_check_is_closed_without_a_new_job(
    store: SqlStore, sweeper: Sweeper, enqueuer: RecordingEnqueuer, clock: FakeClock
) -> None:
    invitation_id = pending_invitation(store)
    store.record_callback(invitation_id, "GET", {}, None, True, None)
    clock.advance(30)
    store.record_status_check(invitation_id, 2, clock() + timedelta(minutes=5))  # premature
    clock.advance(GRACE)

    report = sweeper.sweep()

    assert (report.completions, report.callbacks_closed) == (0, 1)
    assert store.unprocessed_callbacks(clock()) == []


def test_a_callback_arriving_after_the_last_check_still_enqueues_a_completion(
    store: SqlStore, sweeper: Sweeper, enqueuer: RecordingEnqueuer, clock: FakeClock
) -> None:
    invitation_id = pending_invitation(store)
    store.record_status_check(invitation_id, 1, clock() + timedelta(hours=1))
    clock.advance(30)
    store.record_callback(invitation_id, "GET", {}, None, True, None)
    clock.advance(GRACE)

    report = sweeper.sweep()

    assert (report.completions, report.callbacks_closed) == (1, 0)


@pytest.mark.parametrize("state", ["completed", "failed", "unknown"])
def test_a_callback_of_a_finished_or_unknown_invitation_is_closed(
    state: str, store: SqlStore, sweeper: Sweeper, enqueuer: RecordingEnqueuer, clock: FakeClock
) -> None:
    invitation_id = "inv_unknown"
    if state != "unknown":
        invitation_id = pending_invitation(store)
        store.mark_invitation(invitation_id, InvitationStatus(state))
    store.record_callback(invitation_id, "GET", {}, None, True, None)
    clock.advance(GRACE + 1)

    report = sweeper.sweep()

    assert (report.completions, report.callbacks_closed) == (0, 1)
    assert enqueuer.jobs == []


def test_a_rejected_callback_is_never_swept(
    store: SqlStore, sweeper: Sweeper, enqueuer: RecordingEnqueuer, clock: FakeClock
) -> None:
    store.record_callback(None, "GET", {}, None, False, "bad_token")
    clock.advance(GRACE + 1)

    report = sweeper.sweep()

    assert report == type(report)()


def test_a_late_callback_of_an_expired_invitation_whose_enqueue_failed_enqueues_its_completion(
    store: SqlStore, sweeper: Sweeper, enqueuer: RecordingEnqueuer, clock: FakeClock
) -> None:
    # Expired only means the reconciler stopped polling: process_completion still completes
    # the invitation when the candidate finishes late, so the receipt must not be dropped.
    invitation_id = pending_invitation(store)
    store.expire_invitation(invitation_id)
    clock.advance(30)
    store.record_callback(invitation_id, "GET", {}, None, True, None)  # its enqueue failed
    clock.advance(GRACE)

    report = sweeper.sweep()

    assert (report.completions, report.callbacks_closed) == (1, 0)
    assert [job.id for job in enqueuer.of_kind("completion")] == [invitation_id]


def test_a_callback_of_an_invitation_without_a_test_id_is_closed_as_unconfirmable(
    store: SqlStore, sweeper: Sweeper, enqueuer: RecordingEnqueuer, clock: FakeClock
) -> None:
    # Isograd created the test but it was never attached (act 8 answer lost, invite crashed):
    # process_completion has nothing to ask Isograd, so re-enqueueing would repeat until expiry.
    invitation_id = pending_invitation(store, pla_tst_id=None)
    store.record_callback(invitation_id, "GET", {}, None, True, None)
    clock.advance(GRACE + 1)

    with capture_logs() as logs:
        report = sweeper.sweep()

    assert (report.completions, report.callbacks_closed) == (0, 1)
    assert enqueuer.jobs == []
    assert store.unprocessed_callbacks(clock()) == []
    assert {
        "event": "callback_unconfirmable",
        "invitation_id": invitation_id,
        "reason": "no_test_id",
        "callbacks": 1,
        "log_level": "warning",
    } in logs


def test_unconfirmable_callbacks_beyond_the_limit_do_not_hold_back_a_newer_one(
    store: SqlStore, enqueuer: RecordingEnqueuer, clock: FakeClock
) -> None:
    sweeper = Sweeper(store=store, enqueuer=enqueuer, clock=clock, limit=2)
    for _ in range(3):
        stuck = pending_invitation(store, pla_tst_id=None)
        store.record_callback(stuck, "GET", {}, None, True, None)
        clock.advance(1)
    invitation_id = pending_invitation(store)
    store.record_callback(invitation_id, "GET", {}, None, True, None)
    clock.advance(GRACE + 1)

    report = sweeper.sweep()

    assert (report.completions, report.callbacks_closed) == (1, 3)
    assert [job.id for job in enqueuer.of_kind("completion")] == [invitation_id]


def test_callbacks_swept_recently_do_not_hold_back_newer_ones_beyond_the_limit(
    store: SqlStore, enqueuer: RecordingEnqueuer, clock: FakeClock
) -> None:
    sweeper = Sweeper(store=store, enqueuer=enqueuer, clock=clock, limit=2)
    invitations = [pending_invitation(store, pla_tst_id=456 + n) for n in range(3)]
    for invitation_id in invitations:
        store.record_callback(invitation_id, "GET", {}, None, True, None)
        clock.advance(1)
    clock.advance(GRACE)
    first = sweeper.sweep()  # the two oldest; their jobs are still queued a minute later
    clock.advance(60)

    second = sweeper.sweep()

    assert (first.completions, second.completions) == (2, 1)
    assert [job.id for job in enqueuer.of_kind("completion")] == invitations
