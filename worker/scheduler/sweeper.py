"""The sweeper: re-enqueue work whose broker message was lost, from what SQL says is unfinished.

Nothing waits only in Redis (ARCHITECTURE.md, "Reliability"). A message can be lost: Redis
restarted without the data, an enqueue failed after the row was written, or Dramatiq acked a
message whose retry it could not enqueue while Redis was down
(https://github.com/Bogdanp/dramatiq/pull/545). The sweeper runs in the scheduler and finds
that work in SQL:

- deliveries due more than `grace` ago and never claimed, or stranded `delivering` by a worker
  that died mid-attempt (its lease expired): reset to due now and enqueued, so each is swept at
  most once per grace period (a long queue backlog gets one extra message, not one per sweep);
- accepted callbacks never processed: their invitation's completion is enqueued again, unless a
  status check has happened since the callback arrived (then the callback has done its job and
  is marked processed; the re-checks and the reconciler take over from there). A callback whose
  invitation has no Isograd test attached (act 8's answer lost, or the invite stopped midway)
  cannot be confirmed by any job: it is closed with `callback_unconfirmable`.

The callback list is read oldest first in pages, and only enqueued completions count against
the limit, so old receipts that need no job (swept recently, or closed) never starve newer ones.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta

import structlog

from worker.clock import Clock
from worker.jobs import Enqueuer
from worker.storage.records import CallbackReceipt, Invitation, InvitationStatus
from worker.storage.store import SqlStore

log = structlog.get_logger(__name__)

DEFAULT_GRACE = timedelta(minutes=5)
# The invitation states process_completion returns from without asking Isograd.
_FINISHED = (InvitationStatus.COMPLETED, InvitationStatus.FAILED)


@dataclass(frozen=True, slots=True)
class SweepReport:
    deliveries: int = 0  # deliveries re-enqueued
    completions: int = 0  # completions re-enqueued for unprocessed callbacks
    callbacks_closed: int = 0  # unprocessed callbacks found handled, marked processed


class Sweeper:
    """Sweeps with `sweep()`; keeps, per invitation, when it last re-enqueued a completion.

    That memory is only an optimisation (one sweep per grace period per invitation): a fresh
    scheduler sweeps once more, which costs one idempotent job.
    """

    def __init__(
        self,
        *,
        store: SqlStore,
        enqueuer: Enqueuer,
        clock: Clock,
        grace: timedelta = DEFAULT_GRACE,
        limit: int = 500,
    ) -> None:
        self._store = store
        self._enqueuer = enqueuer
        self._clock = clock
        self._grace = grace
        self._limit = limit
        self._swept_completions: dict[str, datetime] = {}

    def sweep(self, halt: threading.Event | None = None) -> SweepReport:
        """One pass over overdue deliveries, then over unprocessed callbacks; safe to run twice."""
        halt = halt or threading.Event()
        deliveries = self._sweep_deliveries(halt)
        completions, closed = self._sweep_callbacks(halt)
        return SweepReport(deliveries=deliveries, completions=completions, callbacks_closed=closed)

    def _sweep_deliveries(self, halt: threading.Event) -> int:
        now = self._clock()
        swept = 0
        for overdue in self._store.overdue_deliveries(now, self._grace, self._limit):
            if halt.is_set():
                break
            delivery = self._store.reset_overdue_delivery(overdue.id, self._grace, now)
            if delivery is None:
                continue  # claimed or finished since the query
            self._enqueuer.delivery(delivery.id)
            swept += 1
            log.info(
                "delivery_swept",
                delivery_id=delivery.id,
                subscription=delivery.subscription,
                was=overdue.status.value,
                overdue_seconds=round((now - (overdue.next_attempt_at or now)).total_seconds()),
            )
        return swept

    def _sweep_callbacks(self, halt: threading.Event) -> tuple[int, int]:
        now = self._clock()
        self._forget_before(now - self._grace)
        enqueued = closed = 0
        after: tuple[datetime, int] | None = None
        while enqueued < self._limit and not halt.is_set():
            receipts = self._store.unprocessed_callbacks(
                now - self._grace, self._limit, after=after
            )
            if not receipts:
                break
            after = (receipts[-1].received_at, receipts[-1].id)
            by_invitation: dict[str, list[CallbackReceipt]] = defaultdict(list)
            for receipt in receipts:
                if receipt.invitation_id is not None:
                    by_invitation[receipt.invitation_id].append(receipt)
            for invitation_id, pending in by_invitation.items():
                if halt.is_set() or enqueued >= self._limit:
                    break
                was_enqueued, was_closed = self._sweep_invitation(invitation_id, pending, now)
                enqueued += int(was_enqueued)
                closed += was_closed
            if len(receipts) < self._limit:
                break
        return enqueued, closed

    def _sweep_invitation(
        self, invitation_id: str, pending: list[CallbackReceipt], now: datetime
    ) -> tuple[bool, int]:
        """Close what needs no job, enqueue a completion for the rest: (enqueued, closed)."""
        invitation = self._store.get_invitation(invitation_id)
        if (
            invitation is not None
            and invitation.status not in _FINISHED
            and invitation.pla_tst_id is None
        ):
            # process_completion has no test to ask Isograd about: enqueueing it again would
            # repeat every grace period until expiry. Resuming the invitation (same idempotency
            # key) attaches the test, and the reconciler then polls it.
            log.warning(
                "callback_unconfirmable",
                invitation_id=invitation_id,
                reason="no_test_id",
                callbacks=len(pending),
            )
            return False, self._close(pending, now)
        handled = self._handled(invitation, pending)
        closed = self._close(handled, now) if handled else 0
        if len(handled) == len(pending) or invitation_id in self._swept_completions:
            return False, closed
        self._enqueuer.completion(invitation_id)
        self._swept_completions[invitation_id] = now
        log.info("callback_swept", invitation_id=invitation_id, callbacks=len(pending))
        return True, closed

    def _close(self, receipts: list[CallbackReceipt], now: datetime) -> int:
        return self._store.mark_callback_receipts_processed(
            [receipt.id for receipt in receipts], now
        )

    def _handled(
        self, invitation: Invitation | None, receipts: list[CallbackReceipt]
    ) -> list[CallbackReceipt]:
        """The receipts nothing more can come of: their invitation is completed, failed or
        unknown, or Isograd was asked about it after they arrived. An expired invitation still
        completes late (process_completion checks it), so its receipts count like pending ones."""
        if invitation is None or invitation.status in _FINISHED:
            return receipts
        checked = invitation.last_checked_at
        return [receipt for receipt in receipts if checked and checked >= receipt.received_at]

    def _forget_before(self, cutoff: datetime) -> None:
        for invitation_id, swept_at in list(self._swept_completions.items()):
            if swept_at <= cutoff:
                del self._swept_completions[invitation_id]
