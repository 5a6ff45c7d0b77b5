"""The reconciler: poll Isograd (act 10) for pending invitations whose callback never came.

Runs in the scheduler, not in the workers: one process owns the rate limit on Isograd calls.
Each due invitation (oldest-due first) costs one act 10 call. A completed test is handed to the
worker's `process_completion` (enqueued), the same job a callback starts, so a missed callback
and a received one give the same single event. Anything else is checked again on a schedule
that backs off with the invitation's age, until a horizon after which it is marked expired
(unless the test awaits manual marking: the candidate has finished, so it is never expired).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

import structlog

from worker.clock import Clock
from worker.errors import PermanentError, RetryableError
from worker.isograd.errors import AssessmentNotFoundError, IsogradAuthError
from worker.isograd.models import AssessmentStatus
from worker.jobs import Enqueuer
from worker.storage.records import Invitation, InvitationStatus
from worker.storage.store import SqlStore

log = structlog.get_logger(__name__)

# (age below which, check every): fresh invitations are likely to complete soon.
DEFAULT_STEPS: tuple[tuple[timedelta, timedelta], ...] = (
    (timedelta(hours=6), timedelta(minutes=5)),
    (timedelta(days=3), timedelta(hours=1)),
)
DEFAULT_LAST_STEP = timedelta(days=1)
# After a "completed" answer the completion job is enqueued; if that message is lost, the
# invitation is still pending and due again this soon.
COMPLETED_RECHECK = timedelta(minutes=10)
# Wait function: sleep up to the given seconds; True means "stop now" (shutdown, lock lost).
Wait = Callable[[float], bool]


class StatusSource(Protocol):
    def get_test_status(
        self, pla_tst_id: int, *, sub_com_id: int | None = None
    ) -> AssessmentStatus: ...


@dataclass(frozen=True, slots=True)
class ReconcileSchedule:
    """When to check a pending invitation again, by its age; expired past `horizon`."""

    horizon: timedelta = timedelta(days=30)
    steps: tuple[tuple[timedelta, timedelta], ...] = DEFAULT_STEPS
    last_step: timedelta = DEFAULT_LAST_STEP
    completed_recheck: timedelta = COMPLETED_RECHECK

    @classmethod
    def with_first_interval(
        cls, first_interval: timedelta, *, horizon: timedelta, completed_recheck: timedelta
    ) -> ReconcileSchedule:
        """The default backoff with another first interval (RECONCILE_CHECK_INTERVAL_SECONDS)."""
        (below, _every), *rest = DEFAULT_STEPS
        return cls(
            horizon=horizon,
            steps=((below, first_interval), *rest),
            completed_recheck=completed_recheck,
        )

    def interval(self, age: timedelta) -> timedelta:
        for below, every in self.steps:
            if age < below:
                return every
        return self.last_step

    def next_check_at(self, created_at: datetime, now: datetime) -> datetime:
        """The next check; never later than the horizon, so the last check happens on it."""
        return min(now + self.interval(now - created_at), created_at + self.horizon)

    def expired(self, created_at: datetime, now: datetime) -> bool:
        return now >= created_at + self.horizon


class TokenBucket:
    """Allows `rate` calls per second on average, bursts up to `burst`; `clock` is monotonic."""

    def __init__(
        self, rate: float, *, burst: float = 1.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be > 0 and burst >= 1")
        self._rate = rate
        self._burst = burst
        self._clock = clock
        self._tokens = burst
        self._updated = clock()

    def delay(self) -> float:
        """Take a token and return 0.0, or return the seconds until one is available."""
        now = self._clock()
        self._tokens = min(self._burst, self._tokens + (now - self._updated) * self._rate)
        self._updated = now
        if self._tokens >= 1:
            self._tokens -= 1
            return 0.0
        return (1 - self._tokens) / self._rate


@dataclass(frozen=True, slots=True)
class ReconcileReport:
    checked: int = 0  # act 10 calls made
    completed: int = 0  # completions enqueued
    expired: int = 0
    failed: int = 0  # unknown to Isograd
    postponed: int = 0  # not checkable now (no pla_tst_id yet, a permanent API error)
    interrupted: bool = False  # stopped early: shutdown, lock lost, or Isograd unavailable


def reconcile(
    *,
    store: SqlStore,
    client: StatusSource,
    enqueuer: Enqueuer,
    clock: Clock,
    limiter: TokenBucket,
    wait: Wait,
    schedule: ReconcileSchedule | None = None,
    limit: int = 100,
) -> ReconcileReport:
    """Check up to `limit` due invitations, oldest-due first, within the rate limit.

    Safe to run twice, or concurrently with callbacks: enqueuing `process_completion` for a test
    already processed creates nothing, and expiry only changes a still-pending invitation.
    Isograd unavailable (RetryableError) or refusing our credentials ends the run: the
    invitations stay due.
    """
    schedule = schedule or ReconcileSchedule()
    tally: Counter[str] = Counter()
    for invitation in store.due_invitations(clock(), limit=limit):
        if invitation.pla_tst_id is None:
            # Act 8 never answered for it: nothing to ask Isograd about yet.
            tally[_postpone_or_expire(store, schedule, clock, invitation)] += 1
            continue
        if _wait_for_token(limiter, wait):
            return _report(tally, interrupted=True)
        try:
            outcome = _check(store, client, enqueuer, clock, schedule, invitation)
        except (RetryableError, IsogradAuthError) as exc:
            # Affects every call, not this invitation: leave them all due for the next run.
            log.warning("reconcile_isograd_unavailable", error=type(exc).__name__)
            return _report(tally, interrupted=True)
        tally["checked"] += 1
        tally[outcome] += 1
    return _report(tally)


def _report(tally: Counter[str], *, interrupted: bool = False) -> ReconcileReport:
    return ReconcileReport(
        checked=tally["checked"],
        completed=tally["completed"],
        expired=tally["expired"],
        failed=tally["failed"],
        postponed=tally["postponed"],
        interrupted=interrupted,
    )


def _wait_for_token(limiter: TokenBucket, wait: Wait) -> bool:
    """Wait for the rate limit; True if told to stop meanwhile."""
    while (delay := limiter.delay()) > 0:
        if wait(delay):
            return True
    return wait(0.0)


def _check(
    store: SqlStore,
    client: StatusSource,
    enqueuer: Enqueuer,
    clock: Clock,
    schedule: ReconcileSchedule,
    invitation: Invitation,
) -> str:
    assert invitation.pla_tst_id is not None
    try:
        status = client.get_test_status(invitation.pla_tst_id, sub_com_id=invitation.sub_com_id)
    except AssessmentNotFoundError:
        store.mark_invitation(invitation.id, InvitationStatus.FAILED, clock())
        log.error(
            "reconcile_unknown_test",
            invitation_id=invitation.id,
            pla_tst_id=invitation.pla_tst_id,
        )
        return "failed"
    except IsogradAuthError:
        raise
    except PermanentError as exc:
        log.error("reconcile_check_failed", invitation_id=invitation.id, error=type(exc).__name__)
        return _postpone_or_expire(store, schedule, clock, invitation)
    now = clock()
    if status is AssessmentStatus.COMPLETED:
        store.record_status_check(
            invitation.id, status.value, now + schedule.completed_recheck, now
        )
        enqueuer.completion(invitation.id)
        log.info(
            "reconcile_found_completion",
            invitation_id=invitation.id,
            pla_tst_id=invitation.pla_tst_id,
        )
        return "completed"
    if status is AssessmentStatus.MARKING_PENDING:
        # The candidate has finished and no callback comes when the marking does: never expire
        # it, keep asking at the age's interval (past the horizon too, so not clamped to it).
        next_check_at = now + schedule.interval(now - invitation.created_at)
        store.record_status_check(invitation.id, status.value, next_check_at, now)
        return "rescheduled"
    if schedule.expired(invitation.created_at, now):
        store.record_status_check(invitation.id, status.value, None, now)
        return _expire(store, clock, invitation)
    store.record_status_check(
        invitation.id, status.value, schedule.next_check_at(invitation.created_at, now), now
    )
    return "rescheduled"


def _postpone_or_expire(
    store: SqlStore, schedule: ReconcileSchedule, clock: Clock, invitation: Invitation
) -> str:
    now = clock()
    if schedule.expired(invitation.created_at, now):
        return _expire(store, clock, invitation)
    store.postpone_status_check(invitation.id, schedule.next_check_at(invitation.created_at, now))
    return "postponed"


def _expire(store: SqlStore, clock: Clock, invitation: Invitation) -> str:
    if store.expire_invitation(invitation.id, clock()):
        log.info("invitation_expired", invitation_id=invitation.id, checks=invitation.check_count)
    return "expired"
