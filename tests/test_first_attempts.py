"""deliveries.deliver_first_attempts: a new event's first attempts, claimed and recorded at once."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any

import pytest
from sqlalchemy import event as sql_event

from tests.fakes import FakeClock, FixedRandom, RecordingEnqueuer
from tests.fixtures.pipeline import EMAIL, EXCEL, subscription
from worker.events import build_completion_event
from worker.grades import convert_grade
from worker.isograd.models import AssessmentResult, ResultDetails
from worker.jobs.deliveries import DeliveryOutcome, DeliveryResult, deliver_first_attempts
from worker.sinks.base import AttemptOutcome, AttemptResult, EventEnvelope
from worker.storage.records import DeliveryStatus, Event, NewInvitation, new_id
from worker.storage.store import SqlStore
from worker.subscriptions import Subscription

NAMES = ("hr", "lms")


class ScriptedSink:
    """A sink answering one scripted result (or raising) per send, recording the thread."""

    kind = "webhook"

    def __init__(self, answer: AttemptResult | BaseException) -> None:
        self.answer = answer
        self.sent: list[tuple[str, str]] = []  # (event id, thread name)

    def send(self, envelope: EventEnvelope, *, attempt_at: datetime) -> AttemptResult:
        self.sent.append((envelope.event_id, threading.current_thread().name))
        if isinstance(self.answer, BaseException):
            raise self.answer
        return self.answer


class Interrupted(BaseException):
    """Stands for Dramatiq's TimeLimitExceeded, raised in the job's thread."""


OK = AttemptResult(AttemptOutcome.DELIVERED, 200, 12.0)
UNAVAILABLE = AttemptResult(AttemptOutcome.RETRY, 503, 8.0, error="unavailable")


@pytest.fixture
def pool() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(4, thread_name_prefix="pool") as executor:
        yield executor


def new_event(store: SqlStore, clock: FakeClock) -> tuple[Event, list[str]]:
    invitation = store.create_invitation(
        NewInvitation(tst_frm_id=EXCEL, email=EMAIL, pla_tst_id=456)
    )
    event_id = new_id("evt")
    payload = build_completion_event(
        event_id=event_id,
        invitation=invitation,
        pla_tst_id=456,
        result=AssessmentResult(2, 550.0, 1000.0, "550/1000", 1834),
        details=ResultDetails(language=2, skills=()),
        grade=convert_grade(2, 550.0, 1000.0, "550/1000"),
        pdf_url=None,
        occurred_at=clock(),
    )
    event, deliveries, _ = store.create_event(
        event_id, invitation.id, 456, "assessment.completed", payload, list(NAMES)
    )
    return event, [delivery.id for delivery in deliveries]


def run(
    store: SqlStore,
    clock: FakeClock,
    pool: ThreadPoolExecutor,
    event: Event,
    ids: list[str],
    sinks: dict[str, ScriptedSink],
    enqueuer: RecordingEnqueuer | None = None,
    subscriptions: dict[str, Subscription] | None = None,
    *,
    claimed: bool = False,
    begun: list[int] | None = None,
) -> dict[str, DeliveryOutcome]:
    """deliver_first_attempts of the stored deliveries `ids`; with `begun`
    (write_transactions), only the transactions it begins itself are counted there."""
    deliveries = [store.get_delivery(delivery_id) for delivery_id in ids]
    if begun is not None:
        begun.clear()
    return deliver_first_attempts(
        [(event, [delivery for delivery in deliveries if delivery is not None])],
        claimed=claimed,
        pool=pool,
        store=store,
        subscriptions=subscriptions or {name: subscription(name) for name in NAMES},
        sink_for=lambda sub: sinks[sub.name],
        enqueuer=enqueuer or RecordingEnqueuer(),
        clock=clock,
        rng=FixedRandom(0.5),
    )


def write_transactions(store: SqlStore) -> list[int]:
    """A list that grows by one at each transaction begun on the store's engine."""
    begun: list[int] = []
    engine: Any = store._engine  # the store's own engine: what its writes go through
    sql_event.listen(engine, "begin", lambda connection: begun.append(1))
    return begun


def test_both_are_sent_side_by_side_and_delivered_in_two_transactions(
    store: SqlStore, clock: FakeClock, pool: ThreadPoolExecutor
) -> None:
    event, ids = new_event(store, clock)
    sinks = {name: ScriptedSink(OK) for name in NAMES}
    begun = write_transactions(store)

    outcomes = run(store, clock, pool, event, ids, sinks, begun=begun)

    assert len(begun) == 2  # one claim, one record, for both deliveries
    assert {outcome.result for outcome in outcomes.values()} == {DeliveryResult.DELIVERED}
    assert sorted(outcomes) == sorted(ids)
    for delivery_id in ids:
        delivery = store.get_delivery(delivery_id)
        assert delivery is not None
        assert delivery.status is DeliveryStatus.DELIVERED
        [attempt] = store.list_attempts(delivery_id)
        assert (attempt.number, attempt.status_code) == (1, 200)
    threads = {thread for sink in sinks.values() for _, thread in sink.sent}
    assert len(threads) == 2
    assert any(name.startswith("pool") for name in threads)
    for name in NAMES:
        assert store.subscription_state(name).last_success_at == clock()


def test_a_failed_attempt_is_recorded_and_retried_beside_a_delivered_one(
    store: SqlStore, clock: FakeClock, pool: ThreadPoolExecutor
) -> None:
    event, ids = new_event(store, clock)
    sinks = {"hr": ScriptedSink(OK), "lms": ScriptedSink(UNAVAILABLE)}
    enqueuer = RecordingEnqueuer()

    outcomes = run(store, clock, pool, event, ids, sinks, enqueuer)

    by_subscription = {}
    for delivery_id, outcome in outcomes.items():
        delivery = store.get_delivery(delivery_id)
        assert delivery is not None
        by_subscription[delivery.subscription] = (delivery, outcome)
    hr, hr_outcome = by_subscription["hr"]
    lms, lms_outcome = by_subscription["lms"]
    assert (hr.status, hr_outcome.result) == (DeliveryStatus.DELIVERED, DeliveryResult.DELIVERED)
    assert (lms.status, lms_outcome.result) == (
        DeliveryStatus.RETRYING,
        DeliveryResult.RETRY_SCHEDULED,
    )
    assert [(job.id, job.delay_seconds) for job in enqueuer.of_kind("delivery")] == [
        (lms.id, lms_outcome.next_attempt_in)
    ]
    assert [a.status_code for a in store.list_attempts(lms.id)] == [503]


def test_a_delivery_not_claimable_is_left_alone(
    store: SqlStore, clock: FakeClock, pool: ThreadPoolExecutor
) -> None:
    event, ids = new_event(store, clock)
    assert store.claim_attempt(ids[0]) is not None  # someone else is delivering it
    sinks = {name: ScriptedSink(OK) for name in NAMES}

    outcomes = run(store, clock, pool, event, ids, sinks)

    assert outcomes[ids[0]] == DeliveryOutcome(DeliveryResult.NOTHING_TO_DO)
    assert outcomes[ids[1]].result is DeliveryResult.DELIVERED
    assert sum(len(sink.sent) for sink in sinks.values()) == 1
    assert store.list_attempts(ids[0]) == []


def test_a_disabled_subscription_cancels_its_delivery_and_sends_nothing(
    store: SqlStore, clock: FakeClock, pool: ThreadPoolExecutor
) -> None:
    event, ids = new_event(store, clock)
    store.disable_subscription("lms", "test", clock())
    sinks = {name: ScriptedSink(OK) for name in NAMES}

    outcomes = run(store, clock, pool, event, ids, sinks)

    results = sorted(outcome.result.value for outcome in outcomes.values())
    assert results == [DeliveryResult.CANCELLED.value, DeliveryResult.DELIVERED.value]
    assert sinks["lms"].sent == []


def test_an_interrupted_attempt_is_recorded_with_the_others_then_raised(
    store: SqlStore, clock: FakeClock, pool: ThreadPoolExecutor
) -> None:
    event, ids = new_event(store, clock)
    # The last delivery is sent in the calling thread: that one is interrupted there.
    last = store.get_delivery(ids[-1])
    assert last is not None
    sinks = {name: ScriptedSink(OK) for name in NAMES}
    sinks[last.subscription] = ScriptedSink(Interrupted())
    enqueuer = RecordingEnqueuer()

    with pytest.raises(Interrupted):
        run(store, clock, pool, event, ids, sinks, enqueuer)

    statuses = {}
    for delivery_id in ids:
        delivery = store.get_delivery(delivery_id)
        assert delivery is not None
        statuses[delivery_id] = delivery.status
        assert len(store.list_attempts(delivery_id)) == 1
    assert statuses == {
        ids[0]: DeliveryStatus.DELIVERED,
        ids[-1]: DeliveryStatus.RETRYING,
    }
    assert [job.id for job in enqueuer.of_kind("delivery")] == [ids[-1]]


def claimed_event(store: SqlStore, clock: FakeClock) -> tuple[Event, list[str]]:
    """A new event stored as process_completion stores it, its deliveries already claimed."""
    invitation = store.create_invitation(
        NewInvitation(tst_frm_id=EXCEL, email=EMAIL, pla_tst_id=457)
    )
    event_id = new_id("evt")
    payload = build_completion_event(
        event_id=event_id,
        invitation=invitation,
        pla_tst_id=457,
        result=AssessmentResult(2, 550.0, 1000.0, "550/1000", 1834),
        details=ResultDetails(language=2, skills=()),
        grade=convert_grade(2, 550.0, 1000.0, "550/1000"),
        pdf_url=None,
        occurred_at=clock(),
    )
    event, deliveries, created = store.store_completion(
        event_id=event_id,
        invitation_id=invitation.id,
        pla_tst_id=457,
        sta_id=3,
        type="assessment.completed",
        payload=payload,
        deliveries_for=list(NAMES),
        now=clock(),
        claim=True,
    )
    assert created
    return event, [delivery.id for delivery in deliveries]


def test_deliveries_stored_claimed_are_sent_and_recorded_in_one_transaction(
    store: SqlStore, clock: FakeClock, pool: ThreadPoolExecutor
) -> None:
    event, ids = claimed_event(store, clock)
    sinks = {name: ScriptedSink(OK) for name in NAMES}
    begun = write_transactions(store)

    outcomes = run(store, clock, pool, event, ids, sinks, claimed=True, begun=begun)

    assert len(begun) == 1  # no claim: one record, for both deliveries
    assert {outcome.result for outcome in outcomes.values()} == {DeliveryResult.DELIVERED}
    for delivery_id in ids:
        delivery = store.get_delivery(delivery_id)
        assert delivery is not None
        assert delivery.status is DeliveryStatus.DELIVERED
        assert [attempt.number for attempt in store.list_attempts(delivery_id)] == [1]


def test_without_claimed_deliveries_stored_claimed_are_not_claimable_again(
    store: SqlStore, clock: FakeClock, pool: ThreadPoolExecutor
) -> None:
    event, ids = claimed_event(store, clock)
    sinks = {name: ScriptedSink(OK) for name in NAMES}

    outcomes = run(store, clock, pool, event, ids, sinks)

    assert {outcome.result for outcome in outcomes.values()} == {DeliveryResult.NOTHING_TO_DO}
    assert all(sink.sent == [] for sink in sinks.values())


def test_the_first_attempts_of_several_events_are_recorded_in_one_transaction(
    store: SqlStore, clock: FakeClock, pool: ThreadPoolExecutor
) -> None:
    first, first_ids = new_event(store, clock)
    second, second_ids = claimed_event(store, clock)
    store.claim_attempts(first_ids, clock())  # both events' deliveries claimed, as stored
    batch = [
        (event, [store.get_delivery(i) for i in ids])
        for event, ids in ((first, first_ids), (second, second_ids))
    ]
    sinks = {name: ScriptedSink(OK) for name in NAMES}
    begun = write_transactions(store)

    outcomes = deliver_first_attempts(
        [(event, [d for d in deliveries if d is not None]) for event, deliveries in batch],
        claimed=True,
        pool=pool,
        store=store,
        subscriptions={name: subscription(name) for name in NAMES},
        sink_for=lambda sub: sinks[sub.name],
        enqueuer=RecordingEnqueuer(),
        clock=clock,
        rng=FixedRandom(0.5),
    )

    assert len(begun) == 1
    assert sorted(outcomes) == sorted(first_ids + second_ids)
    assert {o.result for o in outcomes.values()} == {DeliveryResult.DELIVERED}
    assert sorted(event_id for event_id, _ in sinks["hr"].sent) == sorted([first.id, second.id])
