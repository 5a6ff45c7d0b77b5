"""The pipeline: confirm a completion and store its event, then deliver it, one attempt per job.

Plain functions taking their collaborators as keyword arguments; worker.jobs.actors wraps them in
Dramatiq actors. Both are keyed by a row id and safe to run twice (ARCHITECTURE.md, "Reliability").
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Sequence
from concurrent.futures import Executor
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

import structlog

from worker.catalogue import AssessmentCatalogue
from worker.clock import Clock
from worker.errors import PermanentError, RelayError, RetryableError
from worker.events import ASSESSMENT_COMPLETED, build_completion_event
from worker.grades import convert_grade
from worker.isograd.errors import (
    AssessmentNotFinishedError,
    AssessmentNotFoundError,
)
from worker.isograd.models import (
    AssessmentStatus,
)
from worker.jobs import Enqueuer
from worker.jobs.fetches import AssessmentSource, ResultFetch
from worker.metrics import RelayMetrics
from worker.storage.records import (
    Delivery,
    Event,
    Invitation,
    InvitationStatus,
    NewCompletion,
    new_id,
)
from worker.storage.store import SqlStore
from worker.subscriptions import Subscription

log = structlog.get_logger(__name__)

# A callback that arrives before act 10 says "completed" (status 1 or 2) is premature or forged.
# A real one is a race we lose by seconds to minutes, so look again a few times, then leave it to
# the reconciler, which polls pending invitations anyway.
PREMATURE_RECHECK_DELAYS: tuple[float, ...] = (30.0, 120.0, 600.0)
# Manual marking (status 4) takes hours to days: 5 min, doubling, capped at 6 h, for 7 days.
MARKING_FIRST_DELAY = 300.0
MARKING_MAX_DELAY = 6 * 3600.0
MARKING_GIVE_UP_AFTER = 7 * 24 * 3600.0


class CompletionResult(StrEnum):
    COMPLETED = "completed"  # confirmed now: event stored (or found) and deliveries enqueued
    RETRYING = "retrying"  # of a batch, Isograd unavailable: its own job retries it shortly
    ERROR = "error"  # of a batch, an error no retry can help: logged, left to the reconciler
    ALREADY_COMPLETED = "already_completed"  # the invitation was done before: nothing asked
    MARKING_PENDING = "marking_pending"  # status 4: checked again after `recheck_in`
    NOT_CONFIRMED = "not_confirmed"  # status 1/2 (or results not ready): maybe checked again
    FAILED = "failed"  # the invitation cannot complete (unknown pla_tst_id, no email)
    UNKNOWN_INVITATION = "unknown_invitation"


@dataclass(frozen=True, slots=True)
class CompletionOutcome:
    result: CompletionResult
    event_id: str | None = None
    enqueued: tuple[str, ...] = ()  # delivery ids enqueued by this run
    attempted: tuple[str, ...] = ()  # delivery ids whose first attempt this run made itself
    recheck_in: float | None = None  # seconds until the next status check, if one was enqueued


def process_completion(
    invitation_id: str,
    *,
    store: SqlStore,
    client: AssessmentSource,
    subscriptions: Sequence[Subscription],
    enqueuer: Enqueuer,
    clock: Clock,
    recheck: int = 0,
    metrics: RelayMetrics | None = None,
    catalogue: AssessmentCatalogue | None = None,
    fetch_pool: Executor | None = None,
    deliver_now: DeliverNow | None = None,
) -> CompletionOutcome:
    """Confirm with act 10 that the invitation's test is completed; if so store its event.

    Safe to run twice: an invitation already completed costs nothing, and the event is unique per
    `pla_tst_id`, so a second run creates no event and enqueues nothing. Raises RetryableError
    (IsogradUnavailableError) when Isograd cannot answer now; other Isograd errors are permanent.
    `recheck` is how many re-checks came before this run (it picks the next wait). `metrics`
    counts runs that return, by result, and new events. `catalogue` names the test in the
    event (data.test.name) when act 14 gives a name. With `fetch_pool`, acts 4, 5 and 6 run in
    it side by side (they only read): on a first run (`recheck` 0) they start beside act 10,
    one Isograd round trip instead of four, and are used only if act 10 says "completed"; on a
    re-check they start once it has. With `deliver_now`
    (worker.jobs.deliveries.deliver_first_attempts bound to its collaborators, `claimed`: new
    events and their deliveries in, the ids it attempted out), the new event's deliveries are
    stored already claimed and their first attempts made at once instead of enqueued: the same
    claimed, recorded attempts `deliver` jobs make, minus a message per delivery and the claim's
    transaction. One it did not attempt (all, when it raises) stays claimed until its lease
    expires and the sweeper sends it, as after a crash.
    """
    started = time.perf_counter()
    with ExitStack() as pending:
        outcome = _confirm_completion(
            invitation_id,
            pending=pending,
            store=store,
            client=client,
            subscriptions=subscriptions,
            enqueuer=enqueuer,
            clock=clock,
            recheck=recheck,
            metrics=metrics,
            catalogue=catalogue,
            fetch_pool=fetch_pool,
            deliver_now=deliver_now,
        )
    if metrics is not None:
        metrics.record_completion(outcome.result, time.perf_counter() - started)
    return outcome


def process_completions(
    invitation_ids: Sequence[str],
    *,
    store: SqlStore,
    client: AssessmentSource,
    subscriptions: Sequence[Subscription],
    enqueuer: Enqueuer,
    clock: Clock,
    fetch_pool: Executor,
    metrics: RelayMetrics | None = None,
    catalogue: AssessmentCatalogue | None = None,
    deliver_now: DeliverNow | None = None,
) -> dict[str, CompletionOutcome]:
    """`process_completion` (a first run) of each invitation, together: the callbacks that
    arrived together, as the web enqueues them. The invitations are read in one statement,
    every act of every one (10, 4, 5 and 6) is asked at once in `fetch_pool`, the confirmed
    completions are stored in one transaction and their first attempts made side by side and
    recorded in one: a few transactions and one message per batch instead of per completion.

    Each invitation ends as its own run would (the same re-checks, failures and logs), but an
    invitation Isograd cannot answer for now does not hold up the others: its own
    `process_completion` is enqueued after ITEM_RETRY_DELAY (with Dramatiq's retries from
    there), and one that meets another error is logged and left to the reconciler. Raises only
    what concerns the whole batch (the database unavailable: RetryableError), and is safe to
    run twice, as each run is. Returns each invitation's outcome.
    """
    started = time.perf_counter()
    outcomes: dict[str, CompletionOutcome] = {}
    confirmed: list[NewCompletion] = []
    wanted = list(dict.fromkeys(invitation_ids))
    invitations = store.get_invitations(wanted)
    with ExitStack() as pending:
        fetches: list[tuple[Invitation, ResultFetch]] = []
        for invitation_id in wanted:
            asking = _fetch_for(
                invitation_id, invitations.get(invitation_id), client, store, clock, pending
            )
            if isinstance(asking, CompletionOutcome):
                outcomes[invitation_id] = asking
                continue
            invitation, fetch = asking
            fetch.start_status(fetch_pool)
            if invitation.email is not None:
                fetch.start_results(fetch_pool)
            fetches.append((invitation, fetch))
        for invitation, fetch in fetches:
            checked = _checked_in_batch(
                invitation,
                fetch,
                fetch_pool,
                store=store,
                subscriptions=subscriptions,
                enqueuer=enqueuer,
                clock=clock,
                catalogue=catalogue,
            )
            if isinstance(checked, NewCompletion):
                confirmed.append(checked)
            else:
                outcomes[invitation.id] = checked
    for each, outcome in zip(
        confirmed,
        _store_confirmed(confirmed, store, enqueuer, clock, metrics, deliver_now),
        strict=True,
    ):
        outcomes[each.invitation_id] = outcome
    if metrics is not None:
        took = time.perf_counter() - started
        for outcome in outcomes.values():
            metrics.record_completion(outcome.result, took)
    return outcomes


# An invitation of a batch that Isograd could not answer for is retried by its own job after
# this long (Dramatiq's first backoff for process_completion, worker.jobs.actors).
ITEM_RETRY_DELAY = 5.0

DeliverNow = Callable[[Sequence[tuple[Event, Sequence[Delivery]]]], Collection[str]]


def _confirm_completion(
    invitation_id: str,
    *,
    pending: ExitStack,
    store: SqlStore,
    client: AssessmentSource,
    subscriptions: Sequence[Subscription],
    enqueuer: Enqueuer,
    clock: Clock,
    recheck: int,
    metrics: RelayMetrics | None,
    catalogue: AssessmentCatalogue | None,
    fetch_pool: Executor | None,
    deliver_now: DeliverNow | None,
) -> CompletionOutcome:
    asking = _fetch_for(
        invitation_id, store.get_invitation(invitation_id), client, store, clock, pending
    )
    if isinstance(asking, CompletionOutcome):
        return asking
    invitation, fetch = asking
    # A callback's first run: the test is almost always completed, so acts 4, 5 and 6 (reads
    # only) start beside act 10, one Isograd round trip instead of two. Act 10 still decides:
    # their answers are used only when it says "completed", dropped otherwise. Re-checks (the
    # test was not completed a moment ago) ask act 10 alone first.
    if recheck == 0 and invitation.email is not None:
        fetch.start_results(fetch_pool)
    checked = _checked(
        invitation,
        fetch,
        fetch_pool,
        store=store,
        subscriptions=subscriptions,
        enqueuer=enqueuer,
        clock=clock,
        recheck=recheck,
        catalogue=catalogue,
    )
    if not isinstance(checked, NewCompletion):
        return checked
    [outcome] = _store_confirmed([checked], store, enqueuer, clock, metrics, deliver_now)
    return outcome


def _fetch_for(
    invitation_id: str,
    invitation: Invitation | None,
    client: AssessmentSource,
    store: SqlStore,
    clock: Clock,
    pending: ExitStack,
) -> tuple[Invitation, ResultFetch] | CompletionOutcome:
    """The invitation and its (not yet started) ResultFetch, or the outcome of a run that has
    nothing to ask Isograd. Whatever the run answers, no act the fetch starts is left running
    behind it: `pending` waits for them."""
    early = _before_asking(invitation_id, invitation, store, clock)
    if early is not None:
        return early
    assert invitation is not None
    assert invitation.pla_tst_id is not None
    fetch = ResultFetch(client, invitation, invitation.pla_tst_id)
    pending.callback(fetch.wait)
    return invitation, fetch


def _before_asking(
    invitation_id: str, invitation: Invitation | None, store: SqlStore, clock: Clock
) -> CompletionOutcome | None:
    """The outcome of a run that has nothing to ask Isograd, or None: ask act 10."""
    if invitation is None:
        log.warning("completion_unknown_invitation", invitation_id=invitation_id)
        return CompletionOutcome(CompletionResult.UNKNOWN_INVITATION)
    if invitation.status in (InvitationStatus.COMPLETED, InvitationStatus.FAILED):
        log.info(
            "completion_already_processed",
            invitation_id=invitation_id,
            status=invitation.status.value,
        )
        if invitation.status is InvitationStatus.COMPLETED:
            store.mark_callbacks_processed(invitation_id, clock())
            return CompletionOutcome(CompletionResult.ALREADY_COMPLETED)
        return CompletionOutcome(CompletionResult.FAILED)
    if invitation.pla_tst_id is None:
        # Isograd has not answered the invitation's act 8 yet (or it failed): nothing to check.
        log.warning("completion_without_assessment", invitation_id=invitation_id)
        return CompletionOutcome(CompletionResult.NOT_CONFIRMED)
    return None


def _checked_in_batch(
    invitation: Invitation,
    fetch: ResultFetch,
    fetch_pool: Executor,
    *,
    store: SqlStore,
    subscriptions: Sequence[Subscription],
    enqueuer: Enqueuer,
    clock: Clock,
    catalogue: AssessmentCatalogue | None,
) -> CompletionOutcome | NewCompletion:
    """`_checked` of one invitation of a batch, its errors kept to itself (see
    process_completions)."""
    try:
        return _checked(
            invitation,
            fetch,
            fetch_pool,
            store=store,
            subscriptions=subscriptions,
            enqueuer=enqueuer,
            clock=clock,
            recheck=0,
            catalogue=catalogue,
        )
    except RetryableError as error:
        enqueuer.completion(invitation.id, delay_seconds=ITEM_RETRY_DELAY)
        log.warning(
            "completion_will_retry",
            invitation_id=invitation.id,
            error=type(error).__name__,
            delay_seconds=ITEM_RETRY_DELAY,
        )
        return CompletionOutcome(CompletionResult.RETRYING)
    except RelayError as error:
        log.error("completion_error", invitation_id=invitation.id, error=type(error).__name__)
        return CompletionOutcome(CompletionResult.ERROR)


def _checked(
    invitation: Invitation,
    fetch: ResultFetch,
    fetch_pool: Executor | None,
    *,
    store: SqlStore,
    subscriptions: Sequence[Subscription],
    enqueuer: Enqueuer,
    clock: Clock,
    recheck: int,
    catalogue: AssessmentCatalogue | None,
) -> CompletionOutcome | NewCompletion:
    """Act 10's answer and, when it says "completed", acts 4, 5 and 6 (started in `fetch_pool`
    now unless `fetch` started them already): the run's outcome when it ends here, else the
    completion to store."""
    pla_tst_id = invitation.pla_tst_id
    assert pla_tst_id is not None
    try:
        status = fetch.status()
    except AssessmentNotFoundError:
        return _fail(store, invitation, clock, reason="unknown_pla_tst_id")

    if status is AssessmentStatus.MARKING_PENDING:
        delay = marking_pending_delay(recheck)
        return _recheck(
            store,
            enqueuer,
            clock,
            invitation,
            status,
            recheck,
            delay,
            CompletionResult.MARKING_PENDING,
        )
    if status is not AssessmentStatus.COMPLETED:
        delay = premature_recheck_delay(recheck)
        return _recheck(
            store,
            enqueuer,
            clock,
            invitation,
            status,
            recheck,
            delay,
            CompletionResult.NOT_CONFIRMED,
        )

    if invitation.email is None:
        # Acts 4, 5 and 6 find the result by email; a purged invitation cannot be fetched.
        return _fail(store, invitation, clock, reason="no_candidate_email")
    try:
        fetch.start_results(fetch_pool)
        result, details, pdf_url = fetch.get()
    except AssessmentNotFinishedError:
        # Act 10 and act 4 disagree for a moment: treat it as "not ready yet".
        return _recheck(
            store,
            enqueuer,
            clock,
            invitation,
            status,
            recheck,
            premature_recheck_delay(recheck),
            CompletionResult.NOT_CONFIRMED,
        )
    grade = convert_grade(result.grade_type, result.value, result.max_value, result.text)
    event_id = new_id("evt")
    payload = build_completion_event(
        event_id=event_id,
        invitation=invitation,
        pla_tst_id=pla_tst_id,
        result=result,
        details=details,
        grade=grade,
        pdf_url=pdf_url,
        occurred_at=clock(),
        test_name=None
        if catalogue is None
        else catalogue.name(invitation.tst_frm_id, sub_com_id=invitation.sub_com_id),
    )
    # Disabled subscriptions are left out by the store, in the same transaction.
    targets = [
        subscription.name
        for subscription in subscriptions
        if subscription.matches(
            ASSESSMENT_COMPLETED,
            invitation.tst_frm_id,
            invitation.sub_com_id,
            percent=grade.percent,
            context=invitation.context,
        )
    ]
    return NewCompletion(
        event_id=event_id,
        invitation_id=invitation.id,
        pla_tst_id=pla_tst_id,
        sta_id=status.value,
        type=ASSESSMENT_COMPLETED,
        payload=payload,
        deliveries_for=targets,
    )


def _store_confirmed(
    completions: Sequence[NewCompletion],
    store: SqlStore,
    enqueuer: Enqueuer,
    clock: Clock,
    metrics: RelayMetrics | None,
    deliver_now: DeliverNow | None,
) -> list[CompletionOutcome]:
    """Store the confirmed completions' events (in one transaction), then make their new
    deliveries' first attempts with `deliver_now`, or enqueue them; their outcomes, in order."""
    if not completions:
        return []
    now = clock()
    claim = deliver_now is not None
    stored: list[tuple[Event, list[Delivery], bool] | None]
    try:
        stored = list(store.store_completions(completions, now, claim=claim))
    except (LookupError, PermanentError):
        if len(completions) == 1:
            raise
        # One of the batch cannot be stored (its invitation erased meanwhile, say): store each
        # on its own, so the others are not held up by it.
        stored = [_stored_alone(store, each, now, claim) for each in completions]
    new = [(event, deliveries) for event, deliveries, created in filter(None, stored) if created]
    if metrics is not None:
        for _ in new:
            metrics.record_event_created(ASSESSMENT_COMPLETED)
    attempted: set[str] = set()
    if deliver_now is not None:
        # Stored claimed: what this run does not attempt waits for its lease (a claimed
        # row's delivery job would find it not claimable and do nothing).
        attempted = _attempt_now(new, deliver_now)
    outcomes = []
    for completion, found in zip(completions, stored, strict=True):
        if found is None:
            outcomes.append(CompletionOutcome(CompletionResult.ERROR))
            continue
        event, deliveries, created = found
        # A run that found the event already stored enqueues nothing: the first run did, and
        # the sweeper re-enqueues whatever a crash left pending.
        mine = [delivery.id for delivery in deliveries] if created else []
        enqueued = [] if deliver_now is not None else mine
        for delivery_id in enqueued:
            enqueuer.delivery(delivery_id)
        made = [delivery_id for delivery_id in mine if delivery_id in attempted]
        log.info(
            "completion_confirmed",
            invitation_id=completion.invitation_id,
            pla_tst_id=event.pla_tst_id,
            event_id=event.id,
            new_event=created,
            deliveries=len(enqueued) + len(made),
            attempted=len(made),
        )
        outcomes.append(
            CompletionOutcome(
                CompletionResult.COMPLETED,
                event_id=event.id,
                enqueued=tuple(enqueued),
                attempted=tuple(made),
            )
        )
    return outcomes


def premature_recheck_delay(recheck: int) -> float | None:
    """Seconds before re-check number `recheck` + 1 of a not-yet-completed test; None: stop."""
    if recheck < len(PREMATURE_RECHECK_DELAYS):
        return PREMATURE_RECHECK_DELAYS[recheck]
    return None


def marking_pending_delay(recheck: int) -> float | None:
    """Seconds before the next check of a test awaiting manual marking; None after 7 days."""
    waited = 0.0
    delay = MARKING_FIRST_DELAY
    for _ in range(recheck):
        waited += delay
        delay = min(delay * 2, MARKING_MAX_DELAY)
    if waited + delay > MARKING_GIVE_UP_AFTER:
        return None
    return delay


def _recheck(
    store: SqlStore,
    enqueuer: Enqueuer,
    clock: Clock,
    invitation: Invitation,
    status: AssessmentStatus,
    recheck: int,
    delay: float | None,
    result: CompletionResult,
) -> CompletionOutcome:
    now = clock()
    if delay is None:
        # Keep the reconciler's own schedule (next_check_at) untouched: it finds real
        # completions whose callback we gave up on.
        store.record_status_check(invitation.id, status.value, invitation.next_check_at, now)
        log.info(
            "completion_not_confirmed",
            invitation_id=invitation.id,
            sta_id=status.value,
            rechecks=recheck,
            reason="still_marking"
            if status is AssessmentStatus.MARKING_PENDING
            else "not_completed",
        )
        return CompletionOutcome(result)
    next_check_at = now + timedelta(seconds=delay)
    # The candidate finished after the reconciler's horizon: a marking that outlasts the
    # re-checks, or a lost re-check message, would lose the completion unless it polls again.
    if (
        status is AssessmentStatus.MARKING_PENDING
        and invitation.status is InvitationStatus.EXPIRED
        and store.reopen_expired_invitation(invitation.id)
    ):
        log.info("invitation_reopened", invitation_id=invitation.id, sta_id=status.value)
    store.record_status_check(invitation.id, status.value, next_check_at, now)
    enqueuer.completion(invitation.id, delay_seconds=delay, recheck=recheck + 1)
    log.info(
        "completion_recheck_scheduled",
        invitation_id=invitation.id,
        sta_id=status.value,
        recheck=recheck + 1,
        delay_seconds=delay,
    )
    return CompletionOutcome(result, recheck_in=delay)


def _fail(
    store: SqlStore, invitation: Invitation, clock: Clock, *, reason: str
) -> CompletionOutcome:
    store.mark_invitation(invitation.id, InvitationStatus.FAILED, clock())
    log.error(
        "completion_failed",
        invitation_id=invitation.id,
        pla_tst_id=invitation.pla_tst_id,
        reason=reason,
    )
    return CompletionOutcome(CompletionResult.FAILED)


def _stored_alone(
    store: SqlStore, completion: NewCompletion, now: datetime, claim: bool
) -> tuple[Event, list[Delivery], bool] | None:
    """`store_completions` of one completion of a batch whose transaction failed; None (and
    logged: the reconciler checks the invitation again) when this one cannot be stored."""
    try:
        [stored] = store.store_completions([completion], now, claim=claim)
    except (LookupError, PermanentError) as error:
        log.error(
            "completion_error",
            invitation_id=completion.invitation_id,
            error=type(error).__name__,
        )
        return None
    return stored


def _attempt_now(
    new: Sequence[tuple[Event, Sequence[Delivery]]], deliver_now: DeliverNow
) -> set[str]:
    """The ids whose first attempt `deliver_now` made (whatever its outcome: it recorded it).
    When it raises, none: the claimed rows are left to the sweeper once their lease expires."""
    ids = [delivery.id for _, deliveries in new for delivery in deliveries]
    if not ids:
        return set()
    try:
        done = deliver_now(new)
    except Exception as error:
        log.warning(
            "delivery_inline_failed",
            delivery_ids=ids,
            error=type(error).__name__,
            recovered_by="sweeper",
        )
        return set()
    return {delivery_id for delivery_id in ids if delivery_id in done}
