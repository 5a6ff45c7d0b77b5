"""Tests of the operators' tasks: bulk replay by filter, subscription status and enable/disable,
and erasure of a candidate (with Isograd's act 12 on the in-process simulator)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from tests.fakes import FakeClock, RecordingEnqueuer
from tests.fixtures.pipeline import EMAIL, Simulated, invite, subscription
from worker.erasure import ISOGRAD_ANONYMIZED, ISOGRAD_UNKNOWN, erase_candidate, hash_email
from worker.errors import IsogradUnavailableError
from worker.replay import replay_matching
from worker.storage.records import DeliveryFilter, DeliveryStatus, InvitationFilter
from worker.storage.store import SqlStore
from worker.subscription_status import (
    UnknownSubscriptionError,
    set_subscription_enabled,
    subscription_statuses,
)


def failed_delivery(store: SqlStore, clock: FakeClock, pla_tst_id: int, name: str = "hr") -> str:
    _, [delivery], _ = store.create_event(
        f"evt_{pla_tst_id}", None, pla_tst_id, "assessment.completed", {}, [name], clock()
    )
    store.mark_failed(delivery.id, "HTTP 500")
    clock.advance(1)  # distinct creation times: replays go oldest first
    return delivery.id


# -- bulk replay ----------------------------------------------------------------------------------


def test_a_bulk_replay_requeues_the_failed_deliveries_of_a_subscription_in_a_time_range(
    store: SqlStore, clock: FakeClock, enqueuer: RecordingEnqueuer
) -> None:
    too_early = failed_delivery(store, clock, 1)
    clock.advance(3600)
    start = clock()
    wanted = [failed_delivery(store, clock, number) for number in (2, 3, 4)]
    other = failed_delivery(store, clock, 5, name="slack")
    clock.advance(3600)
    too_late = failed_delivery(store, clock, 6)
    chosen = DeliveryFilter(
        subscription="hr", created_from=start, created_until=start + timedelta(minutes=30)
    )

    result = replay_matching(chosen, store=store, enqueuer=enqueuer, now=clock(), batch_size=2)

    assert (result.matched, result.requeued, result.enqueued, result.skipped) == (3, 3, 3, 0)
    assert [job.id for job in enqueuer.of_kind("delivery")] == wanted
    for delivery_id in wanted:
        replayed = store.get_delivery(delivery_id)
        assert replayed is not None
        assert replayed.status is DeliveryStatus.PENDING
    for delivery_id in (too_early, other, too_late):
        kept = store.get_delivery(delivery_id)
        assert kept is not None
        assert kept.status is DeliveryStatus.FAILED


def test_a_second_bulk_replay_finds_nothing_to_do(
    store: SqlStore, clock: FakeClock, enqueuer: RecordingEnqueuer
) -> None:
    failed_delivery(store, clock, 1)
    replay_matching(DeliveryFilter(), store=store, enqueuer=enqueuer, now=clock())

    second = replay_matching(DeliveryFilter(), store=store, enqueuer=enqueuer, now=clock())

    assert (second.matched, second.requeued) == (0, 0)
    assert len(enqueuer.of_kind("delivery")) == 1


def test_a_delivery_taken_meanwhile_is_skipped_not_requeued(
    store: SqlStore, clock: FakeClock, enqueuer: RecordingEnqueuer
) -> None:
    delivery_id = failed_delivery(store, clock, 1)

    class RacingStore:
        """The store, with a concurrent replay requeuing the row right after it was listed."""

        def deliveries_matching(self, *args: Any, **kwargs: Any) -> Any:
            found = store.deliveries_matching(*args, **kwargs)
            if found:
                store.requeue_delivery(delivery_id)
            return found

        def requeue_delivery(self, *args: Any, **kwargs: Any) -> Any:
            return store.requeue_delivery(*args, **kwargs)

    result = replay_matching(DeliveryFilter(), store=RacingStore(), enqueuer=enqueuer, now=clock())

    assert (result.matched, result.requeued, result.skipped) == (1, 0, 1)
    assert enqueuer.of_kind("delivery") == []


def test_a_bulk_replay_of_cancelled_deliveries_leaves_failed_ones(
    store: SqlStore, clock: FakeClock
) -> None:
    failed = failed_delivery(store, clock, 1)
    _, [cancelled], _ = store.create_event(
        "evt_c", None, 2, "assessment.completed", {}, ["hr"], clock()
    )
    store.cancel_delivery(cancelled.id, "subscription disabled")

    result = replay_matching(
        DeliveryFilter(statuses=(DeliveryStatus.CANCELLED,)),
        store=store,
        enqueuer=None,
        now=clock(),
    )

    assert (result.requeued, result.enqueued) == (1, 0)
    kept = store.get_delivery(failed)
    assert kept is not None
    assert kept.status is DeliveryStatus.FAILED


@pytest.mark.parametrize("statuses", [(), (DeliveryStatus.PENDING,), (DeliveryStatus.DELIVERED,)])
def test_a_bulk_replay_of_live_or_delivered_deliveries_is_refused(
    store: SqlStore, clock: FakeClock, statuses: tuple[DeliveryStatus, ...]
) -> None:
    with pytest.raises(ValueError, match="failed and/or cancelled"):
        replay_matching(DeliveryFilter(statuses=statuses), store=store, enqueuer=None, now=clock())


def test_a_broker_failure_leaves_the_replayed_delivery_due_for_the_sweeper(
    store: SqlStore, clock: FakeClock
) -> None:
    delivery_id = failed_delivery(store, clock, 1)

    class DownBroker:
        def delivery(self, delivery_id: str, *, delay_seconds: float = 0.0) -> None:
            raise ConnectionError("redis down")

    result = replay_matching(DeliveryFilter(), store=store, enqueuer=DownBroker(), now=clock())

    assert (result.requeued, result.enqueued) == (1, 0)
    replayed = store.get_delivery(delivery_id)
    assert replayed is not None
    assert replayed.next_attempt_at == clock()


# -- subscriptions --------------------------------------------------------------------------------


def test_the_status_lists_configured_subscriptions_then_ones_only_the_store_knows(
    store: SqlStore, clock: FakeClock
) -> None:
    failed_delivery(store, clock, 1, name="hr")
    failed_delivery(store, clock, 2, name="removed")
    store.record_subscription_failure("hr", clock())
    configured = [subscription("hr"), subscription("quiet", enabled=False)]

    statuses = subscription_statuses(configured, store)

    assert [(s.name, s.configured, s.active) for s in statuses] == [
        ("hr", True, True),
        ("quiet", True, False),
        ("removed", False, False),
    ]
    assert statuses[0].state.failing_since == clock()
    assert statuses[0].deliveries[DeliveryStatus.FAILED] == 1
    assert statuses[1].deliveries == dict.fromkeys(DeliveryStatus, 0)
    assert statuses[0].kind == "webhook"
    assert statuses[2].kind is None


def test_an_operator_disables_and_enables_a_subscription(store: SqlStore, clock: FakeClock) -> None:
    configured = [subscription("hr")]
    store.record_subscription_failure("hr", clock())

    disabled = set_subscription_enabled(
        "hr", False, configured=configured, store=store, now=clock()
    )
    enabled = set_subscription_enabled("hr", True, configured=configured, store=store, now=clock())

    assert not disabled.active
    assert disabled.state.disabled_reason == "disabled by an operator"
    assert enabled.active
    assert enabled.state.failing_since is None


def test_enabling_a_subscription_relay_toml_does_not_configure_is_refused(
    store: SqlStore, clock: FakeClock
) -> None:
    with pytest.raises(UnknownSubscriptionError, match="'nope'"):
        set_subscription_enabled("nope", True, configured=[], store=store, now=clock())

    assert store.list_subscription_states() == []


# -- erasure --------------------------------------------------------------------------------------


def test_erasure_blanks_the_candidate_and_keeps_an_audit_row_without_the_email(
    store: SqlStore, clock: FakeClock, simulated: Simulated
) -> None:
    invitation = invite(simulated, store)

    erasure = erase_candidate(EMAIL.upper(), store=store, requested_by="alice", now=clock())

    assert store.list_invitations(InvitationFilter(email=EMAIL)).items == []
    erased = store.get_invitation(invitation.id)
    assert erased is not None
    assert erased.email is None
    record = erasure.record
    assert (record.requested_by, record.requested_at, record.invitations) == ("alice", clock(), 1)
    assert record.isograd is None
    assert EMAIL not in repr(record).lower()
    assert record.email_hash == hash_email(EMAIL, record.email_salt)
    assert record.email_hash != hash_email("someone@example.com", record.email_salt)


def test_two_erasures_of_one_email_hash_it_with_different_salts(
    store: SqlStore, clock: FakeClock
) -> None:
    first = erase_candidate(EMAIL, store=store, requested_by="ops", now=clock()).record
    second = erase_candidate(EMAIL, store=store, requested_by="ops", now=clock()).record

    assert first.email_salt != second.email_salt
    assert first.email_hash != second.email_hash


@pytest.mark.parametrize("email", ["", "not-an-email", 12, None])
def test_erasing_something_that_is_not_an_email_is_refused_and_records_nothing(
    store: SqlStore, clock: FakeClock, email: object
) -> None:
    with pytest.raises(ValueError, match=r"email|non-empty"):
        erase_candidate(email, store=store, requested_by="ops", now=clock())

    assert store.list_erasures() == []


def test_erasure_with_isograd_anonymizes_the_candidate_there(
    store: SqlStore, clock: FakeClock, simulated: Simulated
) -> None:
    invite(simulated, store)

    erasure = erase_candidate(
        EMAIL, store=store, requested_by="ops", now=clock(), isograd=simulated.client
    )

    state = simulated.control.get("/_simulator/state").json()
    assert [candidate["anonymized"] for candidate in state["candidates"]] == [True]
    assert erasure.record.isograd == ISOGRAD_ANONYMIZED
    assert not erasure.isograd_failed
    assert simulated.calls(12) == 1


def test_erasure_of_a_candidate_isograd_does_not_know_says_so(
    store: SqlStore, clock: FakeClock, simulated: Simulated
) -> None:
    erasure = erase_candidate(
        "nobody@example.com", store=store, requested_by="ops", now=clock(), isograd=simulated.client
    )

    assert erasure.record.isograd == ISOGRAD_UNKNOWN
    assert not erasure.isograd_failed


def test_isograd_being_down_keeps_the_local_erasure_and_reports_the_failure(
    store: SqlStore, clock: FakeClock, simulated: Simulated
) -> None:
    invitation = invite(simulated, store)

    class DownIsograd:
        def anonymize_candidate(self, email: str, *, sub_com_id: int | None = None) -> None:
            raise IsogradUnavailableError(f"could not reach Isograd for {email}")

    erasure = erase_candidate(
        EMAIL, store=store, requested_by="ops", now=clock(), isograd=DownIsograd()
    )

    assert erasure.isograd_failed
    assert erasure.record.isograd == "failed: IsogradUnavailableError"
    erased = store.get_invitation(invitation.id)
    assert erased is not None
    assert erased.email is None
