"""Delivering an event: one attempt per job, recorded, then delivered, retried later or failed.

A plain function taking its collaborators as keyword arguments; worker.jobs.actors wraps it in a
Dramatiq actor. Keyed by the delivery's row id and safe to run twice.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

import structlog

from worker.clock import Clock
from worker.events import envelope_from_payload
from worker.jobs import Enqueuer
from worker.metrics import RelayMetrics
from worker.retries import RandomSource, RetrySchedule
from worker.sinks.base import AttemptOutcome, AttemptResult, EventEnvelope, Sink
from worker.storage.records import (
    Attempt,
    AttemptRecord,
    ClaimedDelivery,
    Delivery,
    Event,
)
from worker.storage.store import SqlStore
from worker.subscriptions import Subscription

log = structlog.get_logger(__name__)


class DeliveryResult(StrEnum):
    DELIVERED = "delivered"
    RETRY_SCHEDULED = "retry_scheduled"
    FAILED = "failed"
    SUBSCRIPTION_DISABLED = "subscription_disabled"  # 410 Gone, or failing for too long
    CANCELLED = "cancelled"  # subscription disabled or removed, event purged: nothing sent
    NOTHING_TO_DO = "nothing_to_do"  # delivered, finished, not due or being delivered


@dataclass(frozen=True, slots=True)
class DeliveryOutcome:
    result: DeliveryResult
    attempt: int | None = None  # the attempt's number over the delivery's life
    status_code: int | None = None
    next_attempt_in: float | None = None


def deliver(
    delivery_id: str,
    *,
    store: SqlStore,
    subscriptions: Mapping[str, Subscription],
    sink_for: Callable[[Subscription], Sink],
    enqueuer: Enqueuer,
    clock: Clock,
    rng: RandomSource,
    schedule_for: Callable[[Subscription], RetrySchedule] | None = None,
    metrics: RelayMetrics | None = None,
    event: Event | None = None,
) -> DeliveryOutcome:
    """Make one attempt at one delivery and record what happened.

    Safe to run twice: the delivery is claimed first (atomically), so a delivered, finished, not
    yet due or in-flight delivery is left alone and nothing is sent. A retry is written to SQL
    (`next_attempt_at`) and enqueued with its delay; if that message is lost the sweeper finds
    the row. Retries follow the subscription's schedule; Dramatiq's own retries are only for
    unexpected errors (a database outage, a bug). `metrics` counts runs that return, by result,
    and times the attempt. `event` is the delivery's event when the caller has just stored it
    (process_completion): the claim then does not read it again.
    """
    outcome = _attempt_delivery(
        delivery_id,
        store=store,
        subscriptions=subscriptions,
        sink_for=sink_for,
        enqueuer=enqueuer,
        clock=clock,
        rng=rng,
        schedule_for=schedule_for,
        metrics=metrics,
        known_event=event,
    )
    if metrics is not None:
        metrics.record_delivery(outcome.result)
    return outcome


def deliver_first_attempts(
    new: Sequence[tuple[Event, Sequence[Delivery]]],
    *,
    pool: Executor,
    store: SqlStore,
    subscriptions: Mapping[str, Subscription],
    sink_for: Callable[[Subscription], Sink],
    enqueuer: Enqueuer,
    clock: Clock,
    rng: RandomSource,
    schedule_for: Callable[[Subscription], RetrySchedule] | None = None,
    metrics: RelayMetrics | None = None,
    claimed: bool = False,
) -> dict[str, DeliveryOutcome]:
    """The first attempts at the deliveries of new events (each event, its deliveries), just
    stored: `deliver` for each, side by side, with one transaction claiming them all and one
    recording every delivered attempt (two per batch of events instead of two per delivery);
    the others are recorded as `deliver` records them. The last is sent in this thread, the
    rest in `pool`. With `claimed`, the deliveries were written already claimed, their disabled
    subscriptions left out (`SqlStore.store_completions(claim=True)`): no claim is made, one
    transaction per batch.

    The same guarantees as `deliver`: each delivery is claimed before it is sent (one not
    claimable is left alone: NOTHING_TO_DO), and an attempt interrupted by the job's time limit
    or a shutdown is still waited for and recorded before the interruption goes on. Returns
    each id's outcome; raises (nothing sent) when the claim cannot be made.
    """
    now = clock()
    every = [delivery for _, deliveries in new for delivery in deliveries]
    claims = (
        {delivery.id: ClaimedDelivery(delivery, None, False) for delivery in every}
        if claimed
        else store.claim_attempts([delivery.id for delivery in every], now)
    )
    outcomes: dict[str, DeliveryOutcome] = {}
    ready: list[_Ready] = []
    for event, deliveries in new:
        envelope = envelope_from_payload(event.id, event.payload)  # encoded once for all
        for delivery in deliveries:
            claim = claims.get(delivery.id)
            if claim is None:
                log.info("delivery_skipped", delivery_id=delivery.id, reason="not_claimable")
                outcomes[delivery.id] = DeliveryOutcome(DeliveryResult.NOTHING_TO_DO)
                continue
            prepared = _prepare(claim, event, store, subscriptions, sink_for, now, envelope)
            if isinstance(prepared, DeliveryOutcome):
                outcomes[delivery.id] = prepared
            else:
                ready.append(prepared)
    sent, interrupted = _send_side_by_side(ready, pool, clock, metrics)
    for each, attempt, done_at in _record(store, sent, clock):
        outcomes[each.ready.delivery.id] = _finish(
            each,
            attempt,
            done_at,
            store=store,
            enqueuer=enqueuer,
            rng=rng,
            schedule_for=schedule_for,
        )
    if metrics is not None:
        for outcome in outcomes.values():
            metrics.record_delivery(outcome.result)
    if interrupted is not None:
        raise interrupted
    return outcomes


@dataclass(frozen=True, slots=True)
class _Ready:
    """A claimed delivery about to be sent: everything its attempt needs."""

    delivery: Delivery
    event: Event
    envelope: EventEnvelope
    subscription: Subscription
    sink: Sink


@dataclass(frozen=True, slots=True)
class _Sent:
    """An attempt made, not yet recorded."""

    ready: _Ready
    result: AttemptResult
    record: AttemptRecord
    interrupted: BaseException | None


def _attempt_delivery(
    delivery_id: str,
    *,
    store: SqlStore,
    subscriptions: Mapping[str, Subscription],
    sink_for: Callable[[Subscription], Sink],
    enqueuer: Enqueuer,
    clock: Clock,
    rng: RandomSource,
    schedule_for: Callable[[Subscription], RetrySchedule] | None,
    metrics: RelayMetrics | None,
    known_event: Event | None,
) -> DeliveryOutcome:
    now = clock()
    claimed = store.claim_attempt(delivery_id, now, read_event=known_event is None)
    if claimed is None:
        log.info("delivery_skipped", delivery_id=delivery_id, reason="not_claimable")
        return DeliveryOutcome(DeliveryResult.NOTHING_TO_DO)
    prepared = _prepare(claimed, claimed.event or known_event, store, subscriptions, sink_for, now)
    if isinstance(prepared, DeliveryOutcome):
        return prepared
    [(sent, attempt, done_at)] = _record(store, [_send(prepared, clock, metrics)], clock)
    outcome = _finish(
        sent, attempt, done_at, store=store, enqueuer=enqueuer, rng=rng, schedule_for=schedule_for
    )
    if sent.interrupted is not None:
        raise sent.interrupted
    return outcome


def _prepare(
    claimed: ClaimedDelivery,
    event: Event | None,
    store: SqlStore,
    subscriptions: Mapping[str, Subscription],
    sink_for: Callable[[Subscription], Sink],
    now: datetime,
    envelope: EventEnvelope | None = None,
) -> _Ready | DeliveryOutcome:
    """What the claimed delivery's attempt needs, or the outcome of cancelling it."""
    delivery = claimed.delivery
    subscription = subscriptions.get(delivery.subscription)
    if subscription is None or not subscription.enabled:
        return _cancel(store, delivery, "subscription_not_configured", now)
    if claimed.subscription_disabled:
        return _cancel(store, delivery, "subscription_disabled", now)
    if event is None or event.purged_at is not None:
        return _cancel(store, delivery, "event_purged", now)
    if envelope is None:
        envelope = envelope_from_payload(event.id, event.payload)
    return _Ready(delivery, event, envelope, subscription, sink_for(subscription))


def _send(ready: _Ready, clock: Clock, metrics: RelayMetrics | None) -> _Sent:
    """One attempt through the sink; never raises (an interruption is kept in the result)."""
    attempt_at = clock()
    interrupted: BaseException | None = None
    try:
        result = ready.sink.send(ready.envelope, attempt_at=attempt_at)
    except BaseException as exc:
        # Dramatiq's time limit (or a worker stopping) raises in this thread wherever it runs:
        # the attempt is recorded as timed out and retried on the schedule like any other, so
        # the row does not sit in `delivering` until its lease expires. Re-raised by the caller.
        interrupted = exc
        result = _interrupted_attempt(exc, (clock() - attempt_at).total_seconds() * 1000)
    if metrics is not None:
        metrics.record_attempt(ready.subscription.name, result.outcome, result.duration_ms / 1000)
    return _Sent(ready, result, _attempt_record(result, attempt_at), interrupted)


def _record(
    store: SqlStore, sent: Sequence[_Sent], clock: Clock
) -> list[tuple[_Sent, Attempt, datetime]]:
    """Store each attempt made, with the time it was stored at: the delivered ones in one
    transaction (the common case: each attempt, its delivery delivered, its subscription's
    success), any other on its own."""
    delivered = [each for each in sent if each.result.outcome is AttemptOutcome.DELIVERED]
    done_at = clock()
    stored = store.record_delivered_attempts(
        [(each.ready.delivery.id, each.ready.subscription.name, each.record) for each in delivered],
        done_at,
    )
    attempts = {
        each.ready.delivery.id: attempt for each, attempt in zip(delivered, stored, strict=True)
    }
    recorded = []
    for each in sent:
        attempt = attempts.get(each.ready.delivery.id)
        if attempt is None:
            attempt = store.record_attempt(each.ready.delivery.id, each.record)
            recorded.append((each, attempt, clock()))
        else:
            recorded.append((each, attempt, done_at))
    return recorded


def _send_side_by_side(
    ready: Sequence[_Ready], pool: Executor, clock: Clock, metrics: RelayMetrics | None
) -> tuple[list[_Sent], BaseException | None]:
    """`_send` each, the last in this thread and the others in `pool`; all are waited for even
    when this thread is interrupted (returned, to be raised once they are recorded)."""
    if not ready:
        return [], None
    futures = [
        pool.submit(contextvars.copy_context().run, _send, each, clock, metrics)
        for each in ready[:-1]
    ]
    interrupted: BaseException | None = None
    last: _Sent | None = None
    try:
        last = _send(ready[-1], clock, metrics)
        for future in futures:
            future.exception()
    except BaseException as exc:
        # Interrupted while waiting: the attempts in the pool still end (their sinks' deadlines
        # bound them) and must be recorded. (Interrupted outside its sink's send, the last one
        # stays claimed: its lease expires and the sweeper sends it.)
        interrupted = exc
        for future in futures:
            future.exception()
    sent = [future.result() for future in futures]
    if last is not None:
        sent.append(last)
    for each in sent:
        interrupted = interrupted or each.interrupted
    return sent, interrupted


def _finish(
    sent: _Sent,
    attempt: Attempt,
    done_at: datetime,
    *,
    store: SqlStore,
    enqueuer: Enqueuer,
    rng: RandomSource,
    schedule_for: Callable[[Subscription], RetrySchedule] | None,
) -> DeliveryOutcome:
    """After the attempt is recorded: the retry, failure or disabling it leads to, and its log."""
    delivery, subscription, result = sent.ready.delivery, sent.ready.subscription, sent.result
    next_attempt_in: float | None = None
    match result.outcome:
        case AttemptOutcome.DELIVERED:
            outcome = DeliveryResult.DELIVERED
        case AttemptOutcome.RETRY:
            schedule = (schedule_for or _schedule)(subscription)
            next_attempt_in = schedule.next_delay(
                delivery.attempt_count + 1,
                retry_after=result.retry_after,
                status_code=result.status_code,
                timed_out=result.timed_out,
                rng=rng,
            )
            if next_attempt_in is None:
                store.mark_failed(delivery.id, _error(result, "retries exhausted"), done_at)
                outcome = DeliveryResult.FAILED
            else:
                store.schedule_retry(
                    delivery.id,
                    done_at + timedelta(seconds=next_attempt_in),
                    _error(result),
                    done_at,
                )
                enqueuer.delivery(delivery.id, delay_seconds=next_attempt_in)
                outcome = DeliveryResult.RETRY_SCHEDULED
        case AttemptOutcome.FAILED:
            store.mark_failed(delivery.id, _error(result), done_at)
            outcome = DeliveryResult.FAILED
        case AttemptOutcome.GONE:
            store.mark_failed(delivery.id, _error(result, "410 Gone"), done_at)
            _disable(store, subscription, "target answered 410 Gone", done_at)
            outcome = DeliveryResult.SUBSCRIPTION_DISABLED

    if result.outcome in (AttemptOutcome.RETRY, AttemptOutcome.FAILED):
        state = store.record_subscription_failure(subscription.name, done_at)
        failing_for = done_at - (state.failing_since or done_at)
        if failing_for >= timedelta(days=subscription.disable_after_days):
            _disable(
                store,
                subscription,
                f"failing continuously for {subscription.disable_after_days:g} days",
                done_at,
            )
            outcome = DeliveryResult.SUBSCRIPTION_DISABLED

    log.info(
        "delivery_attempt",
        delivery_id=delivery.id,
        event_id=sent.ready.event.id,
        subscription=subscription.name,
        attempt=attempt.number,
        status=result.status_code,
        outcome=result.outcome.value,
        result=outcome.value,
        duration_ms=round(result.duration_ms),
        next_attempt_in=None if next_attempt_in is None else round(next_attempt_in, 1),
    )
    return DeliveryOutcome(
        outcome,
        attempt=attempt.number,
        status_code=result.status_code,
        next_attempt_in=next_attempt_in,
    )


def _interrupted_attempt(exc: BaseException, duration_ms: float) -> AttemptResult:
    return AttemptResult(
        AttemptOutcome.RETRY,
        None,
        duration_ms,
        error=f"attempt interrupted by the job's time limit or a shutdown ({type(exc).__name__})",
        timed_out=True,
    )


def _schedule(subscription: Subscription) -> RetrySchedule:
    return RetrySchedule(subscription.retry_schedule)


def _cancel(store: SqlStore, delivery: Delivery, reason: str, now: datetime) -> DeliveryOutcome:
    store.cancel_delivery(delivery.id, reason, now)
    log.info(
        "delivery_cancelled",
        delivery_id=delivery.id,
        subscription=delivery.subscription,
        reason=reason,
    )
    return DeliveryOutcome(DeliveryResult.CANCELLED)


def _disable(store: SqlStore, subscription: Subscription, reason: str, now: datetime) -> None:
    before = store.subscription_state(subscription.name)
    store.disable_subscription(subscription.name, reason, now)
    if not before.disabled:
        log.warning("subscription_disabled", subscription=subscription.name, reason=reason)


def _attempt_record(result: AttemptResult, started_at: datetime) -> AttemptRecord:
    return AttemptRecord(
        started_at=started_at,
        duration_ms=round(result.duration_ms),
        outcome=result.outcome,
        status_code=result.status_code,
        error=result.error,
        response_body=result.response_body or None,
    )


def _error(result: AttemptResult, prefix: str | None = None) -> str:
    parts = [prefix] if prefix else []
    if result.status_code is not None:
        parts.append(f"HTTP {result.status_code}")
    if result.error:
        parts.append(result.error)
    return "; ".join(parts) or result.outcome.value
