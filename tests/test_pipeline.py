"""The pipeline functions with a real SqlStore (SQLite), the real Isograd client against the
in-process simulator, and a real WebhookSink against a scripted MockTransport target."""

from __future__ import annotations

import threading
import tomllib
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import httpx2
import pytest
from structlog.testing import capture_logs

from tests.fakes import FakeClock, FixedRandom, RecordingEnqueuer
from tests.fixtures.pipeline import (
    CERTIFICATION,
    EMAIL,
    EXCEL,
    ScriptedTarget,
    Simulated,
    invite,
    subscription,
)
from worker.catalogue import AssessmentCatalogue
from worker.errors import RetryableError
from worker.events import build_completion_event
from worker.grades import convert_grade
from worker.isograd.errors import AssessmentNotFinishedError
from worker.isograd.models import AssessmentResult, ResultDetails
from worker.jobs.completions import (
    CompletionOutcome,
    CompletionResult,
    marking_pending_delay,
    premature_recheck_delay,
    process_completion,
)
from worker.jobs.deliveries import DeliveryOutcome, DeliveryResult, deliver
from worker.sinks.registry import SinkTarget, make_sink
from worker.sinks.slack import SlackTarget
from worker.sinks.teams import TeamsTarget
from worker.storage.records import (
    Delivery,
    DeliveryStatus,
    InvitationStatus,
    NewInvitation,
    new_id,
)
from worker.storage.store import SqlStore
from worker.subscriptions import Subscription, parse_subscriptions


def run_completion(
    invitation_id: str,
    *,
    store: SqlStore,
    simulated: Simulated,
    enqueuer: RecordingEnqueuer,
    clock: FakeClock,
    subscriptions: tuple[Subscription, ...] = (subscription(),),
    recheck: int = 0,
    client: Any = None,
    **options: Any,
) -> CompletionOutcome:
    """process_completion against the simulator (or `client`); `options` go through as given
    (fetch_pool, deliver_now, ...)."""
    return process_completion(
        invitation_id,
        store=store,
        client=client or simulated.client,
        subscriptions=subscriptions,
        enqueuer=enqueuer,
        clock=clock,
        recheck=recheck,
        **options,
    )


# -- process_completion -----------------------------------------------------------------------


def test_a_completed_test_stores_one_event_and_one_delivery_per_matching_subscription(
    store: SqlStore, simulated: Simulated, enqueuer: RecordingEnqueuer, clock: FakeClock
) -> None:
    invitation = invite(simulated, store)
    simulated.move(invitation.pla_tst_id or 0, "complete", value=550, max_value=1000)
    wanted = (subscription("hr"), subscription("lms", tst_frm_ids=frozenset({EXCEL})))
    unwanted = (
        subscription("other-test", tst_frm_ids=frozenset({999})),
        subscription("switched-off", enabled=False),
    )

    outcome = run_completion(
        invitation.id,
        store=store,
        simulated=simulated,
        enqueuer=enqueuer,
        clock=clock,
        subscriptions=wanted + unwanted,
    )

    assert outcome.result is CompletionResult.COMPLETED
    deliveries = store.list_deliveries(event_id=outcome.event_id)
    assert sorted(d.subscription for d in deliveries) == ["hr", "lms"]
    assert sorted(job.id for job in enqueuer.of_kind("delivery")) == sorted(
        d.id for d in deliveries
    )


def test_a_completed_test_marks_the_invitation_completed(
    store: SqlStore, simulated: Simulated, enqueuer: RecordingEnqueuer, clock: FakeClock
) -> None:
    invitation = invite(simulated, store)
    simulated.move(invitation.pla_tst_id or 0, "complete")

    run_completion(invitation.id, store=store, simulated=simulated, enqueuer=enqueuer, clock=clock)

    stored = store.get_invitation(invitation.id)
    assert stored is not None
    assert stored.status is InvitationStatus.COMPLETED
    assert stored.completed_at == clock()
    assert stored.next_check_at is None


def test_the_event_carries_the_result_grade_skills_pdf_and_context(
    store: SqlStore, simulated: Simulated, enqueuer: RecordingEnqueuer, clock: FakeClock
) -> None:
    invitation = invite(simulated, store, context={"ats_id": "A-1"})
    simulated.move(
        invitation.pla_tst_id or 0,
        "complete",
        value=550,
        max_value=1000,
        elapsed_seconds=1834,
        skills={"45": 3.5},
    )

    outcome = run_completion(
        invitation.id, store=store, simulated=simulated, enqueuer=enqueuer, clock=clock
    )

    event = store.get_event(outcome.event_id or "")
    assert event is not None
    data = event.payload["data"]
    assert data["grade"]["value"] == 550
    assert data["grade"]["normalized"] == 0.55
    assert data["duration_seconds"] == 1834
    assert {"id": "45", "level": 3.5}.items() <= data["skills"][0].items()
    assert data["report"]["pdf_url"].startswith("http")
    assert data["context"] == {"ats_id": "A-1"}
    assert data["candidate"]["email"] == EMAIL


def test_a_test_that_is_not_an_assessment_has_no_pdf_and_still_completes(
    store: SqlStore, simulated: Simulated, enqueuer: RecordingEnqueuer, clock: FakeClock
) -> None:
    invitation = invite(simulated, store, CERTIFICATION)
    simulated.move(invitation.pla_tst_id or 0, "complete")

    outcome = run_completion(
        invitation.id, store=store, simulated=simulated, enqueuer=enqueuer, clock=clock
    )

    event = store.get_event(outcome.event_id or "")
    assert event is not None
    assert event.payload["data"]["report"] == {"pdf_url": None}


def test_running_twice_creates_one_event_and_enqueues_the_deliveries_once(
    store: SqlStore, simulated: Simulated, enqueuer: RecordingEnqueuer, clock: FakeClock
) -> None:
    invitation = invite(simulated, store)
    simulated.move(invitation.pla_tst_id or 0, "complete")
    run_completion(invitation.id, store=store, simulated=simulated, enqueuer=enqueuer, clock=clock)

    second = run_completion(
        invitation.id, store=store, simulated=simulated, enqueuer=enqueuer, clock=clock
    )

    assert second.result is CompletionResult.ALREADY_COMPLETED
    assert len(store.list_events().items) == 1
    assert len(enqueuer.of_kind("delivery")) == 1


def test_a_second_run_for_a_completed_invitation_asks_isograd_nothing(
    store: SqlStore, simulated: Simulated, enqueuer: RecordingEnqueuer, clock: FakeClock
) -> None:
    invitation = invite(simulated, store)
    simulated.move(invitation.pla_tst_id or 0, "complete")
    run_completion(invitation.id, store=store, simulated=simulated, enqueuer=enqueuer, clock=clock)
    status_calls = simulated.calls(10)

    run_completion(invitation.id, store=store, simulated=simulated, enqueuer=enqueuer, clock=clock)

    assert simulated.calls(10) == status_calls


def test_a_rerun_after_a_crash_before_marking_finds_the_event_and_enqueues_nothing_new(
    store: SqlStore, simulated: Simulated, enqueuer: RecordingEnqueuer, clock: FakeClock
) -> None:
    invitation = invite(simulated, store)
    simulated.move(invitation.pla_tst_id or 0, "complete")
    first = run_completion(
        invitation.id, store=store, simulated=simulated, enqueuer=enqueuer, clock=clock
    )
    store.mark_invitation(invitation.id, InvitationStatus.PENDING)  # as if we crashed before

    second = run_completion(
        invitation.id, store=store, simulated=simulated, enqueuer=enqueuer, clock=clock
    )

    assert second.result is CompletionResult.COMPLETED
    assert second.event_id == first.event_id
    assert second.enqueued == ()
    assert len(enqueuer.of_kind("delivery")) == 1


def test_marking_pending_asks_to_check_again_in_five_minutes(
    store: SqlStore, simulated: Simulated, enqueuer: RecordingEnqueuer, clock: FakeClock
) -> None:
    invitation = invite(simulated, store)
    simulated.move(invitation.pla_tst_id or 0, "pending")

    outcome = run_completion(
        invitation.id, store=store, simulated=simulated, enqueuer=enqueuer, clock=clock
    )

    assert outcome.result is CompletionResult.MARKING_PENDING
    assert outcome.recheck_in == 300.0
    [job] = enqueuer.jobs
    assert (job.kind, job.id, job.delay_seconds, job.recheck) == (
        "completion",
        invitation.id,
        300.0,
        1,
    )
    assert store.list_events().items == []


def test_marking_pending_then_marked_completes_on_the_recheck(
    store: SqlStore, simulated: Simulated, enqueuer: RecordingEnqueuer, clock: FakeClock
) -> None:
    invitation = invite(simulated, store)
    simulated.move(invitation.pla_tst_id or 0, "pending")
    run_completion(invitation.id, store=store, simulated=simulated, enqueuer=enqueuer, clock=clock)
    simulated.move(invitation.pla_tst_id or 0, "mark", value=700, max_value=1000)
    clock.advance(300)

    outcome = run_completion(
        invitation.id,
        store=store,
        simulated=simulated,
        enqueuer=enqueuer,
        clock=clock,
        recheck=1,
    )

    assert outcome.result is CompletionResult.COMPLETED
    assert len(store.list_events().items) == 1


def test_marking_pending_on_an_expired_invitation_puts_it_back_under_the_reconciler(
    store: SqlStore, simulated: Simulated, enqueuer: RecordingEnqueuer, clock: FakeClock
) -> None:
    # The candidate finished after the reconciler's horizon: if the marking outlasts the
    # re-checks (or a delayed re-check message is lost), only the reconciler can find it.
    invitation = invite(simulated, store)
    store.expire_invitation(invitation.id)
    simulated.move(invitation.pla_tst_id or 0, "pending")

    run_completion(invitation.id, store=store, simulated=simulated, enqueuer=enqueuer, clock=clock)

    stored = store.get_invitation(invitation.id)
    assert stored is not None
    assert stored.status is InvitationStatus.PENDING
    assert stored.next_check_at == clock() + timedelta(seconds=300)


def test_the_marking_pending_wait_doubles_from_five_minutes_up_to_six_hours() -> None:
    delays = [marking_pending_delay(recheck) for recheck in range(8)]

    assert delays == [300.0, 600.0, 1200.0, 2400.0, 4800.0, 9600.0, 19200.0, 21600.0]


def test_marking_pending_checks_stop_after_seven_days() -> None:
    total, recheck = 0.0, 0
    while (delay := marking_pending_delay(recheck)) is not None:
        total, recheck = total + delay, recheck + 1

    assert 6 * 86400 < total <= 7 * 86400


def test_a_premature_callback_is_checked_again_after_thirty_seconds(
    store: SqlStore, simulated: Simulated, enqueuer: RecordingEnqueuer, clock: FakeClock
) -> None:
    invitation = invite(simulated, store)

    outcome = run_completion(
        invitation.id, store=store, simulated=simulated, enqueuer=enqueuer, clock=clock
    )

    assert outcome.result is CompletionResult.NOT_CONFIRMED
    assert [(job.delay_seconds, job.recheck) for job in enqueuer.jobs] == [(30.0, 1)]
    stored = store.get_invitation(invitation.id)
    assert stored is not None
    assert (stored.status, stored.last_status) == (InvitationStatus.PENDING, 1)


def test_premature_rechecks_wait_thirty_seconds_two_minutes_then_ten_minutes() -> None:
    assert [premature_recheck_delay(n) for n in range(4)] == [30.0, 120.0, 600.0, None]


def test_a_premature_callback_stops_being_rechecked_after_three_tries_and_says_why(
    store: SqlStore, simulated: Simulated, enqueuer: RecordingEnqueuer, clock: FakeClock
) -> None:
    invitation = invite(simulated, store)
    simulated.move(invitation.pla_tst_id or 0, "start")

    with capture_logs() as logs:
        outcome = run_completion(
            invitation.id,
            store=store,
            simulated=simulated,
            enqueuer=enqueuer,
            clock=clock,
            recheck=3,
        )

    assert outcome == CompletionOutcome(CompletionResult.NOT_CONFIRMED)
    assert enqueuer.jobs == []
    [line] = [entry for entry in logs if entry["event"] == "completion_not_confirmed"]
    assert (line["sta_id"], line["reason"]) == (2, "not_completed")


def test_isograd_answering_5xx_raises_a_retryable_error(
    store: SqlStore, simulated: Simulated, enqueuer: RecordingEnqueuer, clock: FakeClock
) -> None:
    invitation = invite(simulated, store)
    simulated.faults(fail_next=5, error_status=503)

    with pytest.raises(RetryableError):
        run_completion(
            invitation.id, store=store, simulated=simulated, enqueuer=enqueuer, clock=clock
        )


def test_an_unknown_pla_tst_id_marks_the_invitation_failed(
    store: SqlStore, simulated: Simulated, enqueuer: RecordingEnqueuer, clock: FakeClock
) -> None:
    invitation = store.create_invitation(
        NewInvitation(tst_frm_id=EXCEL, email=EMAIL, pla_tst_id=987654)
    )

    with capture_logs() as logs:
        outcome = run_completion(
            invitation.id, store=store, simulated=simulated, enqueuer=enqueuer, clock=clock
        )

    assert outcome.result is CompletionResult.FAILED
    stored = store.get_invitation(invitation.id)
    assert stored is not None
    assert stored.status is InvitationStatus.FAILED
    assert [e["reason"] for e in logs if e["event"] == "completion_failed"] == [
        "unknown_pla_tst_id"
    ]


def test_an_unknown_invitation_is_reported_without_asking_isograd(
    store: SqlStore, simulated: Simulated, enqueuer: RecordingEnqueuer, clock: FakeClock
) -> None:
    outcome = run_completion(
        "inv_missing", store=store, simulated=simulated, enqueuer=enqueuer, clock=clock
    )

    assert outcome.result is CompletionResult.UNKNOWN_INVITATION
    assert simulated.calls(10) == 0


# -- deliver ----------------------------------------------------------------------------------


class Delivering:
    """A stored event with one delivery to `subscription`, and `run()` = pipeline.deliver."""

    def __init__(
        self,
        store: SqlStore,
        clock: FakeClock,
        target: ScriptedTarget,
        sub: Subscription,
        http: httpx2.Client,
    ) -> None:
        self.store = store
        self.clock = clock
        self.target = target
        self.subscription = sub
        self.subscriptions = {sub.name: sub}
        self.enqueuer = RecordingEnqueuer()
        self.sink = make_sink(sub, http)
        self.delivery_id = self.add_delivery()

    def add_delivery(self, pla_tst_id: int = 456) -> str:
        invitation = self.store.create_invitation(
            NewInvitation(tst_frm_id=EXCEL, email=EMAIL, pla_tst_id=pla_tst_id)
        )
        event_id = new_id("evt")
        payload = build_completion_event(
            event_id=event_id,
            invitation=invitation,
            pla_tst_id=pla_tst_id,
            result=AssessmentResult(2, 550.0, 1000.0, "550/1000", 1834),
            details=ResultDetails(language=2, skills=()),
            grade=convert_grade(2, 550.0, 1000.0, "550/1000"),
            pdf_url=None,
            occurred_at=self.clock(),
        )
        _, deliveries, _ = self.store.create_event(
            event_id,
            invitation.id,
            pla_tst_id,
            "assessment.completed",
            payload,
            [self.subscription.name],
        )
        return deliveries[0].id

    def run(self, delivery_id: str | None = None) -> DeliveryOutcome:
        return deliver(
            delivery_id or self.delivery_id,
            store=self.store,
            subscriptions=self.subscriptions,
            sink_for=lambda _: self.sink,
            enqueuer=self.enqueuer,
            clock=self.clock,
            rng=FixedRandom(0.5),
        )

    def status(self, delivery_id: str | None = None) -> DeliveryStatus:
        delivery = self.store.get_delivery(delivery_id or self.delivery_id)
        assert delivery is not None
        return delivery.status


def delivering(
    store: SqlStore, clock: FakeClock, *answers: httpx2.Response | Exception, **changes: Any
) -> tuple[Delivering, httpx2.Client]:
    target = ScriptedTarget(*answers)
    client = httpx2.Client(transport=target.transport, follow_redirects=False)
    return Delivering(store, clock, target, subscription(**changes), client), client


@pytest.fixture
def make_delivering(store: SqlStore, clock: FakeClock) -> Iterator[Any]:
    clients: list[httpx2.Client] = []

    def make(*answers: httpx2.Response | Exception, **changes: Any) -> Delivering:
        setup, client = delivering(store, clock, *answers, **changes)
        clients.append(client)
        return setup

    yield make
    for client in clients:
        client.close()


def test_a_200_marks_the_delivery_delivered(make_delivering: Any) -> None:
    setup: Delivering = make_delivering(httpx2.Response(200))

    outcome = setup.run()

    assert outcome == DeliveryOutcome(DeliveryResult.DELIVERED, attempt=1, status_code=200)
    assert setup.status() is DeliveryStatus.DELIVERED
    assert setup.store.subscription_state("hr").last_success_at == setup.clock()


def test_the_webhook_is_signed_with_the_event_id(make_delivering: Any, store: SqlStore) -> None:
    setup: Delivering = make_delivering(httpx2.Response(200))
    delivery = store.get_delivery(setup.delivery_id)
    assert delivery is not None

    setup.run()

    [request] = setup.target.requests
    assert request.headers["webhook-id"] == delivery.event_id
    assert request.headers["webhook-signature"].startswith("v1,")


def test_a_500_then_a_200_is_retried_after_the_schedule_then_delivered(
    make_delivering: Any, store: SqlStore, clock: FakeClock
) -> None:
    setup: Delivering = make_delivering(httpx2.Response(500), httpx2.Response(200))

    first = setup.run()
    clock.advance(first.next_attempt_in or 0)
    second = setup.run()

    assert first == DeliveryOutcome(
        DeliveryResult.RETRY_SCHEDULED, attempt=1, status_code=500, next_attempt_in=5.0
    )
    assert [(job.kind, job.delay_seconds) for job in setup.enqueuer.jobs] == [("delivery", 5.0)]
    assert second.result is DeliveryResult.DELIVERED
    attempts = store.list_attempts(setup.delivery_id)
    assert [(a.number, a.status_code) for a in attempts] == [(1, 500), (2, 200)]


def test_a_retry_is_not_sent_before_it_is_due(make_delivering: Any, clock: FakeClock) -> None:
    setup: Delivering = make_delivering(httpx2.Response(500))
    setup.run()
    clock.advance(1)

    outcome = setup.run()

    assert outcome.result is DeliveryResult.NOTHING_TO_DO
    assert len(setup.target.requests) == 1


def test_a_429_with_retry_after_waits_as_asked_within_the_clamp(make_delivering: Any) -> None:
    setup: Delivering = make_delivering(httpx2.Response(429, headers={"Retry-After": "120"}))

    outcome = setup.run()

    # Scheduled 5 s, raised to 60 s for a 429; Retry-After 120 s is within [60, 120].
    assert outcome.next_attempt_in == 120.0
    assert setup.status() is DeliveryStatus.RETRYING


def test_a_timeout_is_retried_after_at_least_a_minute(make_delivering: Any) -> None:
    setup: Delivering = make_delivering(httpx2.ReadTimeout("slow"))

    outcome = setup.run()

    assert outcome.result is DeliveryResult.RETRY_SCHEDULED
    assert outcome.next_attempt_in == 60.0


def test_a_410_disables_the_subscription(make_delivering: Any, store: SqlStore) -> None:
    setup: Delivering = make_delivering(httpx2.Response(410))

    with capture_logs() as logs:
        outcome = setup.run()

    assert outcome.result is DeliveryResult.SUBSCRIPTION_DISABLED
    assert setup.status() is DeliveryStatus.FAILED
    assert store.subscription_state("hr").disabled
    assert [e["subscription"] for e in logs if e["event"] == "subscription_disabled"] == ["hr"]


def test_a_delivery_to_a_disabled_subscription_is_cancelled_unsent(
    make_delivering: Any, store: SqlStore
) -> None:
    setup: Delivering = make_delivering(httpx2.Response(410))
    setup.run()
    later = setup.add_delivery(pla_tst_id=789)

    outcome = setup.run(later)

    assert outcome.result is DeliveryResult.CANCELLED
    assert setup.status(later) is DeliveryStatus.CANCELLED
    assert len(setup.target.requests) == 1


def test_a_302_fails_the_delivery_without_following_it(make_delivering: Any) -> None:
    setup: Delivering = make_delivering(
        httpx2.Response(302, headers={"Location": "https://elsewhere.example/"})
    )

    outcome = setup.run()

    assert outcome.result is DeliveryResult.FAILED
    assert setup.status() is DeliveryStatus.FAILED
    assert len(setup.target.requests) == 1


def test_a_400_fails_the_delivery_and_no_attempt_follows(make_delivering: Any) -> None:
    setup: Delivering = make_delivering(httpx2.Response(400))
    setup.run()

    again = setup.run()

    assert again.result is DeliveryResult.NOTHING_TO_DO
    assert setup.enqueuer.jobs == []
    assert len(setup.target.requests) == 1


def test_delivering_twice_sends_once(make_delivering: Any) -> None:
    setup: Delivering = make_delivering(httpx2.Response(200))
    setup.run()

    again = setup.run()

    assert again.result is DeliveryResult.NOTHING_TO_DO
    assert len(setup.target.requests) == 1


def test_a_delivery_that_exhausts_its_schedule_fails(
    make_delivering: Any, clock: FakeClock
) -> None:
    setup: Delivering = make_delivering(
        httpx2.Response(503), httpx2.Response(503), retry_schedule=(5.0,)
    )
    first = setup.run()
    clock.advance(first.next_attempt_in or 0)

    last = setup.run()

    assert last.result is DeliveryResult.FAILED
    assert setup.status() is DeliveryStatus.FAILED
    assert len(setup.enqueuer.jobs) == 1


def test_a_subscription_failing_longer_than_its_limit_is_disabled(
    make_delivering: Any, store: SqlStore, clock: FakeClock
) -> None:
    setup: Delivering = make_delivering(
        httpx2.Response(503), httpx2.Response(503), disable_after_days=1.0
    )
    setup.run()
    clock.advance(2 * 86400)

    outcome = setup.run()

    assert outcome.result is DeliveryResult.SUBSCRIPTION_DISABLED
    assert store.subscription_state("hr").disabled


def test_a_success_ends_the_failure_streak(
    make_delivering: Any, store: SqlStore, clock: FakeClock
) -> None:
    setup: Delivering = make_delivering(httpx2.Response(503), httpx2.Response(200))
    first = setup.run()
    clock.advance(first.next_attempt_in or 0)

    setup.run()

    assert store.subscription_state("hr").failing_since is None


def test_a_delivery_for_a_subscription_no_longer_configured_is_cancelled(
    make_delivering: Any,
) -> None:
    setup: Delivering = make_delivering(httpx2.Response(200))
    setup.subscriptions = {}

    outcome = setup.run()

    assert outcome.result is DeliveryResult.CANCELLED
    assert setup.target.requests == []


def test_each_attempt_logs_one_canonical_line_without_the_email(make_delivering: Any) -> None:
    setup: Delivering = make_delivering(httpx2.Response(503))

    with capture_logs() as logs:
        setup.run()

    [line] = [entry for entry in logs if entry["event"] == "delivery_attempt"]
    assert {
        "delivery_id": setup.delivery_id,
        "subscription": "hr",
        "attempt": 1,
        "status": 503,
        "outcome": "retry",
        "next_attempt_in": 5.0,
    }.items() <= line.items()
    assert "duration_ms" in line
    assert EMAIL not in repr(line)


# -- fakes ------------------------------------------------------------------------------------


def test_the_fake_clock_moves_only_when_advanced() -> None:
    clock = FakeClock()
    start = clock()

    clock.advance(90)

    assert (clock() - start).total_seconds() == 90


def test_the_recording_enqueuer_keeps_jobs_in_order() -> None:
    enqueuer = RecordingEnqueuer()

    enqueuer.delivery("dlv_1", delay_seconds=5)
    enqueuer.completion("inv_1", recheck=2)

    assert [(job.kind, job.id) for job in enqueuer.jobs] == [
        ("delivery", "dlv_1"),
        ("completion", "inv_1"),
    ]


def test_a_min_percent_subscription_gets_only_events_at_or_above_it(
    store: SqlStore, simulated: Simulated, enqueuer: RecordingEnqueuer, clock: FakeClock
) -> None:
    invitation = invite(simulated, store)
    simulated.move(invitation.pla_tst_id or 0, "complete", value=550, max_value=1000)
    subscriptions = (
        subscription("passes", min_percent=55.0),
        subscription("high-scores", min_percent=80.0),
        subscription("low-scores", max_percent=54.9),
    )

    outcome = run_completion(
        invitation.id,
        store=store,
        simulated=simulated,
        enqueuer=enqueuer,
        clock=clock,
        subscriptions=subscriptions,
    )

    assert [d.subscription for d in store.list_deliveries(event_id=outcome.event_id)] == ["passes"]


class NamedTests:
    """Act 14 answering with names (or failing with `error`)."""

    def __init__(self, names: dict[int, str], error: Exception | None = None) -> None:
        self.names, self.error = names, error

    def list_test_names(self, *, sub_com_id: int | None = None) -> dict[int, str]:
        if self.error is not None:
            raise self.error
        return self.names


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        (NamedTests({EXCEL: "Excel 2019"}), {"name": "Excel 2019"}),
        (NamedTests({}, RetryableError("act 14 down")), {}),
    ],
)
def test_the_event_names_the_test_when_act_14_can_and_completes_anyway(
    store: SqlStore,
    simulated: Simulated,
    enqueuer: RecordingEnqueuer,
    clock: FakeClock,
    source: NamedTests,
    expected: dict[str, str],
) -> None:
    invitation = invite(simulated, store)
    simulated.move(invitation.pla_tst_id or 0, "complete")

    outcome = process_completion(
        invitation.id,
        store=store,
        client=simulated.client,
        subscriptions=(subscription(),),
        enqueuer=enqueuer,
        clock=clock,
        catalogue=AssessmentCatalogue(source),
    )

    assert outcome.result is CompletionResult.COMPLETED
    event = store.get_event(outcome.event_id or "")
    assert event is not None
    test = event.payload["data"]["test"]
    assert {key: test[key] for key in test if key == "name"} == expected


# Every sink kind goes through the same delivery: retries, dead letter, auto-disable, attempts.


def http_target() -> SinkTarget:
    (found,) = parse_subscriptions(
        tomllib.loads(
            '[[subscriptions]]\nname = "hr"\nkind = "http"\n'
            'url = "https://api.example.com/x"\nbody = "{}"\n'
        ),
        {},
    )
    return found.target


KIND_TARGETS: dict[str, Callable[[], SinkTarget]] = {
    "slack": lambda: SlackTarget("https://hooks.slack.com/services/T1/B1/secret"),
    "teams": lambda: TeamsTarget("https://flow.example/workflows/1?sig=secret"),
    "http": http_target,
}


@pytest.mark.parametrize("kind", sorted(KIND_TARGETS))
def test_every_kind_is_retried_then_delivered_with_its_attempts_recorded(
    make_delivering: Any, store: SqlStore, clock: FakeClock, kind: str
) -> None:
    setup: Delivering = make_delivering(
        httpx2.Response(503, text="busy"),
        httpx2.Response(200, text="ok"),
        kind=kind,
        target=KIND_TARGETS[kind](),
    )

    first = setup.run()
    clock.advance(first.next_attempt_in or 0)
    second = setup.run()

    assert (first.result, second.result) == (
        DeliveryResult.RETRY_SCHEDULED,
        DeliveryResult.DELIVERED,
    )
    attempts = store.list_attempts(setup.delivery_id)
    assert [(a.status_code, a.response_body) for a in attempts] == [(503, "busy"), (200, "ok")]


@pytest.mark.parametrize("kind", sorted(KIND_TARGETS))
def test_every_kind_is_disabled_by_a_410(make_delivering: Any, store: SqlStore, kind: str) -> None:
    setup: Delivering = make_delivering(
        httpx2.Response(410), kind=kind, target=KIND_TARGETS[kind]()
    )

    assert setup.run().result is DeliveryResult.SUBSCRIPTION_DISABLED
    assert store.subscription_state("hr").disabled


@pytest.mark.parametrize("kind", sorted(KIND_TARGETS))
def test_every_kind_dead_letters_once_the_schedule_is_exhausted(
    make_delivering: Any, clock: FakeClock, kind: str
) -> None:
    setup: Delivering = make_delivering(
        httpx2.Response(500),
        httpx2.Response(500),
        kind=kind,
        target=KIND_TARGETS[kind](),
        retry_schedule=(5.0,),
    )

    first = setup.run()
    clock.advance(first.next_attempt_in or 0)
    last = setup.run()

    assert last.result is DeliveryResult.FAILED
    assert setup.status() is DeliveryStatus.FAILED


# -- process_completion with a fetch pool and first attempts made at once ---------------------


class NotFinishedOnAct4:
    """The simulated client, except that act 4 says "not finished" (it and act 10 disagree)."""

    def __init__(self, simulated: Simulated) -> None:
        self._client = simulated.client
        self.get_test_status = self._client.get_test_status
        self.get_result_details = self._client.get_result_details
        self.get_pdf_url = self._client.get_pdf_url

    def get_result(self, *args: Any, **kwargs: Any) -> AssessmentResult:
        raise AssessmentNotFinishedError("test not finished", action=4)


@pytest.fixture
def pool() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(4) as executor:
        yield executor


def test_with_a_fetch_pool_acts_4_5_and_6_are_asked_once_and_fill_the_event(
    store: SqlStore,
    simulated: Simulated,
    enqueuer: RecordingEnqueuer,
    clock: FakeClock,
    pool: ThreadPoolExecutor,
) -> None:
    invitation = invite(simulated, store)
    simulated.move(invitation.pla_tst_id or 0, "complete", value=550, skills={"45": 3.5})

    outcome = process_completion(
        invitation.id,
        store=store,
        client=simulated.client,
        subscriptions=(subscription(),),
        enqueuer=enqueuer,
        clock=clock,
        fetch_pool=pool,
    )

    assert outcome.result is CompletionResult.COMPLETED
    event = store.get_event(outcome.event_id or "")
    assert event is not None
    data = event.payload["data"]
    assert data["grade"]["value"] == 550
    assert {s["id"]: s["level"] for s in data["skills"]}["45"] == 3.5
    assert data["report"]["pdf_url"]
    assert [simulated.calls(act) for act in (10, 4, 5, 6)] == [1, 1, 1, 1]


def test_with_a_fetch_pool_act_4_not_finished_still_schedules_a_recheck(
    store: SqlStore,
    simulated: Simulated,
    enqueuer: RecordingEnqueuer,
    clock: FakeClock,
    pool: ThreadPoolExecutor,
) -> None:
    invitation = invite(simulated, store)
    simulated.move(invitation.pla_tst_id or 0, "complete")

    outcome = process_completion(
        invitation.id,
        store=store,
        client=NotFinishedOnAct4(simulated),
        subscriptions=(subscription(),),
        enqueuer=enqueuer,
        clock=clock,
        fetch_pool=pool,
    )

    assert outcome.result is CompletionResult.NOT_CONFIRMED
    assert store.count_events() == 0
    assert [job.delay_seconds for job in enqueuer.of_kind("completion")] == [
        premature_recheck_delay(0)
    ]


class ActsMeetAct10:
    """The simulated client, except that act 10 answers only once acts 4, 5 and 6 have all
    been asked (a barrier with a deadline: were they asked after act 10, it breaks)."""

    def __init__(self, simulated: Simulated) -> None:
        self._client = simulated.client
        self.barrier = threading.Barrier(4, timeout=10)

    def get_test_status(self, *args: Any, **kwargs: Any) -> Any:
        self.barrier.wait()
        return self._client.get_test_status(*args, **kwargs)

    def get_result(self, *args: Any, **kwargs: Any) -> Any:
        self.barrier.wait()
        return self._client.get_result(*args, **kwargs)

    def get_result_details(self, *args: Any, **kwargs: Any) -> Any:
        self.barrier.wait()
        return self._client.get_result_details(*args, **kwargs)

    def get_pdf_url(self, *args: Any, **kwargs: Any) -> Any:
        self.barrier.wait()
        return self._client.get_pdf_url(*args, **kwargs)


def test_a_first_run_asks_acts_4_5_and_6_beside_act_10(
    store: SqlStore,
    simulated: Simulated,
    enqueuer: RecordingEnqueuer,
    clock: FakeClock,
    pool: ThreadPoolExecutor,
) -> None:
    invitation = invite(simulated, store)
    simulated.move(invitation.pla_tst_id or 0, "complete", value=550, max_value=1000)
    client = ActsMeetAct10(simulated)

    outcome = run_completion(
        invitation.id,
        store=store,
        simulated=simulated,
        enqueuer=enqueuer,
        clock=clock,
        client=client,
        fetch_pool=pool,
    )

    assert outcome.result is CompletionResult.COMPLETED
    assert not client.barrier.broken
    assert [simulated.calls(act) for act in (10, 4, 5, 6)] == [1, 1, 1, 1]


@pytest.mark.parametrize(
    ("move", "result"),
    [
        ("start", CompletionResult.NOT_CONFIRMED),
        ("pending", CompletionResult.MARKING_PENDING),
    ],
)
def test_a_first_run_drops_the_acts_asked_beside_act_10_when_it_says_not_completed(
    store: SqlStore,
    simulated: Simulated,
    enqueuer: RecordingEnqueuer,
    clock: FakeClock,
    pool: ThreadPoolExecutor,
    move: str,
    result: CompletionResult,
) -> None:
    invitation = invite(simulated, store)
    simulated.move(invitation.pla_tst_id or 0, move)

    outcome = run_completion(
        invitation.id,
        store=store,
        simulated=simulated,
        enqueuer=enqueuer,
        clock=clock,
        fetch_pool=pool,
    )

    assert outcome.result is result
    assert store.count_events() == 0
    assert len(enqueuer.of_kind("completion")) == 1
    stored = store.get_invitation(invitation.id)
    assert stored is not None
    assert stored.status is not InvitationStatus.COMPLETED


def test_a_recheck_asks_act_10_alone_while_the_test_is_not_completed(
    store: SqlStore,
    simulated: Simulated,
    enqueuer: RecordingEnqueuer,
    clock: FakeClock,
    pool: ThreadPoolExecutor,
) -> None:
    invitation = invite(simulated, store)
    simulated.move(invitation.pla_tst_id or 0, "start")

    outcome = run_completion(
        invitation.id,
        store=store,
        simulated=simulated,
        enqueuer=enqueuer,
        clock=clock,
        recheck=1,
        fetch_pool=pool,
    )

    assert outcome.result is CompletionResult.NOT_CONFIRMED
    assert [simulated.calls(act) for act in (10, 4, 5, 6)] == [1, 0, 0, 0]


def test_with_deliver_now_the_first_attempts_are_made_and_not_enqueued(
    store: SqlStore,
    simulated: Simulated,
    enqueuer: RecordingEnqueuer,
    clock: FakeClock,
    pool: ThreadPoolExecutor,
) -> None:
    invitation = invite(simulated, store)
    simulated.move(invitation.pla_tst_id or 0, "complete")
    handed: list[tuple[Any, list[str]]] = []

    def deliver_now(new: Sequence[tuple[Any, Sequence[Delivery]]]) -> list[str]:
        [(event, deliveries)] = new
        # Handed already claimed: stored `delivering`, in the transaction that stored the event.
        assert {delivery.status for delivery in deliveries} == {DeliveryStatus.DELIVERING}
        handed.append((event, [delivery.id for delivery in deliveries]))
        return [delivery.id for delivery in deliveries]

    outcome = run_completion(
        invitation.id,
        store=store,
        simulated=simulated,
        enqueuer=enqueuer,
        clock=clock,
        subscriptions=(subscription("hr"), subscription("lms")),
        fetch_pool=pool,
        deliver_now=deliver_now,
    )

    stored = store.list_deliveries(event_id=outcome.event_id)
    [(event, ids)] = handed
    assert sorted(outcome.attempted) == sorted(ids) == sorted(d.id for d in stored)
    assert len(stored) == 2
    assert event == store.get_event(outcome.event_id or "")
    assert (outcome.enqueued, enqueuer.of_kind("delivery")) == ((), [])


def test_first_attempts_not_made_stay_claimed_until_their_lease_expires(
    store: SqlStore,
    simulated: Simulated,
    enqueuer: RecordingEnqueuer,
    clock: FakeClock,
    pool: ThreadPoolExecutor,
) -> None:
    invitation = invite(simulated, store)
    simulated.move(invitation.pla_tst_id or 0, "complete")

    def deliver_now(new: Sequence[tuple[Any, Sequence[Delivery]]]) -> list[str]:
        [(_, deliveries)] = new
        return [deliveries[0].id]

    outcome = run_completion(
        invitation.id,
        store=store,
        simulated=simulated,
        enqueuer=enqueuer,
        clock=clock,
        subscriptions=(subscription("hr"), subscription("lms")),
        fetch_pool=pool,
        deliver_now=deliver_now,
    )

    [attempted] = outcome.attempted
    [left] = [d for d in store.list_deliveries(event_id=outcome.event_id) if d.id != attempted]
    # A delivery job for it would find it claimed and do nothing: none is enqueued.
    assert outcome.enqueued == ()
    assert enqueuer.of_kind("delivery") == []
    assert left.status is DeliveryStatus.DELIVERING
    assert store.claim_attempt(left.id, clock()) is None
    lease_over = clock() + timedelta(minutes=10)
    assert store.claim_attempt(left.id, lease_over) is not None  # the sweeper's to send


def test_first_attempts_that_raise_are_left_claimed_for_the_sweeper(
    store: SqlStore,
    simulated: Simulated,
    enqueuer: RecordingEnqueuer,
    clock: FakeClock,
    pool: ThreadPoolExecutor,
) -> None:
    invitation = invite(simulated, store)
    simulated.move(invitation.pla_tst_id or 0, "complete")

    def deliver_now(new: Sequence[tuple[Any, Sequence[Delivery]]]) -> list[str]:
        raise RetryableError("database unavailable: OperationalError")

    with capture_logs() as logs:
        outcome = run_completion(
            invitation.id,
            store=store,
            simulated=simulated,
            enqueuer=enqueuer,
            clock=clock,
            subscriptions=(subscription("hr"), subscription("lms")),
            fetch_pool=pool,
            deliver_now=deliver_now,
        )

    stored = store.list_deliveries(event_id=outcome.event_id)
    assert outcome.result is CompletionResult.COMPLETED
    assert outcome.attempted == outcome.enqueued == ()
    assert {delivery.status for delivery in stored} == {DeliveryStatus.DELIVERING}
    [failed] = [e for e in logs if e["event"] == "delivery_inline_failed"]
    assert sorted(failed["delivery_ids"]) == sorted(d.id for d in stored)
    assert failed["recovered_by"] == "sweeper"


def test_deliver_handed_the_event_sends_it_and_marks_the_delivery_delivered(
    make_delivering: Any, store: SqlStore
) -> None:
    setup: Delivering = make_delivering(httpx2.Response(200))
    delivery = store.get_delivery(setup.delivery_id)
    assert delivery is not None
    event = store.get_event(delivery.event_id)

    outcome = deliver(
        setup.delivery_id,
        store=store,
        subscriptions=setup.subscriptions,
        sink_for=lambda _: setup.sink,
        enqueuer=setup.enqueuer,
        clock=setup.clock,
        rng=FixedRandom(0.5),
        event=event,
    )

    assert outcome.result is DeliveryResult.DELIVERED
    [request] = setup.target.requests
    assert request.headers["webhook-id"] == delivery.event_id
