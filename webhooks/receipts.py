"""Group commit of callback receipts: one transaction and one enqueue round trip per batch.

Each callback request hands its receipt to the process's `ReceiptWriter` and awaits the outcome.
The writer takes every receipt queued so far (at most `max_batch`) and, in a worker thread, in
ONE SQL transaction reads the invitations of the batch and inserts all the receipts, commits,
then enqueues the batch's new completions in ONE broker round trip, and answers each request.
Receipts that arrive while a batch is being written form the next batch; a lone request is
written at once (no timer, no sleep), so batching costs nothing at low load and grows with it.

Under load, when the batch just written held more than one receipt, the writer waits
`batch_delay` (BATCH_DELAY, 1 ms) before it takes the next one, unless `max_batch` are already
waiting: PostgreSQL's `commit_delay` does the same when other transactions are active
(https://www.postgresql.org/docs/current/runtime-config-wal.html). Meanwhile the loop answers
the previous batch and reads the next requests while the writer's thread is idle. Without the
pause the two ran side by side and handed the GIL to each other at every socket call: 2.4-2.6
context switches per callback against 0.15-0.3 with it, and 399-454 against 280-305 us of CPU
per callback (bench/callback_edge.py, three alternated pairs). A burst's first batch and a
lone callback are not delayed.

Why on the event loop rather than a writer thread of its own: the queue is only touched by the
loop's thread (no lock), a batch crosses to a thread and back once (not each request), and there
is no thread to start, stop or leak: a batch is one `run_in_threadpool` call.
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Protocol, runtime_checkable

import structlog
from starlette.concurrency import run_in_threadpool

from worker.storage.callbacks import NewCallback
from worker.storage.records import InvitationStatus

log = structlog.get_logger(__name__)

DUPLICATE_WINDOW = timedelta(seconds=60)
MAX_BATCH = 256
BATCH_DELAY = timedelta(milliseconds=1)


class ReceiptStore(Protocol):
    def record_callbacks(
        self,
        invitation_ids: Collection[str],
        receipts_for: Callable[[Mapping[str, InvitationStatus]], Sequence[NewCallback]],
    ) -> None: ...


class CompletionEnqueuer(Protocol):
    def completion(self, invitation_id: str, *, delay_seconds: float = 0.0) -> None: ...


@runtime_checkable
class BatchEnqueuer(Protocol):
    """An enqueuer that sends many completions at once (DramatiqEnqueuer: one Redis round
    trip); it raises if any may not have been sent."""

    def completions(self, invitation_ids: Sequence[str]) -> None: ...


class BatchObserver(Protocol):
    """Told of each batch written (RelayMetrics): how many receipts, the seconds of its SQL
    transaction and of its enqueue (None when the batch had nothing to enqueue)."""

    def record_receipt_batch(
        self, *, receipts: int, store_seconds: float, enqueue_seconds: float | None
    ) -> None: ...


@dataclass(frozen=True, slots=True)
class CallbackOutcome:
    """What became of one callback; `reason` says why it was rejected or not enqueued."""

    invitation_id: str | None
    accepted: bool
    enqueued: bool
    reason: str | None
    retry_after: int | None = None  # seconds, when the reason is "throttled"


@dataclass(frozen=True, slots=True)
class PendingReceipt:
    """A callback whose token was checked, waiting to be stored.

    `rejection` is the reason its token was refused (stored as rejected, nothing read or
    enqueued), None when the token verified.
    """

    invitation_id: str
    method: str
    query: Mapping[str, str]
    remote_addr: str | None
    received_at: datetime
    rejection: str | None = None


class RecentCompletions:
    """When each invitation's processing was last enqueued by this process, for `window`.

    Thread-safe; `claim` checks and records in one step, so concurrent duplicate callbacks in one
    process enqueue once. Entries older than the window are dropped as new ones come in.
    """

    def __init__(self, window: timedelta = DUPLICATE_WINDOW) -> None:
        self.window = window
        self._lock = threading.Lock()
        # Claim order, oldest first: stale entries are forgotten from the front, O(1) each.
        self._enqueued_at: OrderedDict[str, datetime] = OrderedDict()

    def claim(self, invitation_id: str, now: datetime) -> bool:
        """True if no enqueue for `invitation_id` happened within the window (and note this one)."""
        with self._lock:
            last = self._enqueued_at.get(invitation_id)
            if last is not None and now - last < self.window:
                return False
            self._forget_before(now - self.window)
            self._enqueued_at[invitation_id] = now
            self._enqueued_at.move_to_end(invitation_id)
            return True

    def release(self, invitation_id: str) -> None:
        """Forget a claim whose enqueue failed, so the next callback tries again."""
        with self._lock:
            self._enqueued_at.pop(invitation_id, None)

    def _forget_before(self, cutoff: datetime) -> None:
        # Only the front is looked at (copying the whole table on each claim made a burst of
        # unique callbacks quadratic: most of the edge's CPU at 15,000 claims a minute).
        entries = self._enqueued_at
        while entries:
            invitation_id, at = next(iter(entries.items()))
            if at >= cutoff:
                break
            del entries[invitation_id]


@dataclass
class _Queue:
    """The receipts waiting on one event loop, and whether a batch is being written."""

    waiting: list[tuple[PendingReceipt, asyncio.Future[CallbackOutcome]]] = field(
        default_factory=list
    )
    writing: asyncio.Task[None] | None = None


class ReceiptWriter:
    """Stores callback receipts in batches and enqueues their completions; see the module.

    `batches` counts the transactions written (a batch is one), for tests and benchmarks.
    Safe to share between requests of one process; each event loop batches its own requests.
    `batch_delay` is the pause under load (zero: none); `pause` sleeps for it (asyncio.sleep).
    `observer` is told the size and timings of each batch stored (`timer`: perf_counter), so a
    slow callback can be traced to the database, the broker or the web's own queue.
    """

    def __init__(
        self,
        *,
        store: ReceiptStore,
        enqueuer: CompletionEnqueuer,
        recent: RecentCompletions | None = None,
        max_batch: int = MAX_BATCH,
        batch_delay: timedelta = BATCH_DELAY,
        pause: Callable[[float], Awaitable[None]] = asyncio.sleep,
        observer: BatchObserver | None = None,
        timer: Callable[[], float] = time.perf_counter,
    ) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be >= 1")
        if batch_delay < timedelta(0):
            raise ValueError("batch_delay must be >= 0")
        self.recent = recent if recent is not None else RecentCompletions()
        self.max_batch = max_batch
        self.batch_delay = batch_delay
        self._pause = pause
        self._observer = observer
        self._timer = timer
        self.batches = 0
        self._store = store
        self._enqueuer = enqueuer
        self._batch_enqueuer = enqueuer if isinstance(enqueuer, BatchEnqueuer) else None
        self._queues: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Queue] = (
            weakref.WeakKeyDictionary()
        )

    @property
    def pending(self) -> int:
        """Receipts queued and not yet taken into a batch (on every event loop)."""
        return sum(len(queue.waiting) for queue in list(self._queues.values()))

    async def submit(self, receipt: PendingReceipt) -> CallbackOutcome:
        """Store `receipt` (committed when this returns) and enqueue its completion if due.

        Raises what storing the batch raised (e.g. RetryableError when the database is down):
        then nothing of the batch was stored or enqueued.
        """
        loop = asyncio.get_running_loop()
        queue = self._queues.get(loop)
        if queue is None:
            queue = self._queues[loop] = _Queue()
        future: asyncio.Future[CallbackOutcome] = loop.create_future()
        queue.waiting.append((receipt, future))
        if queue.writing is None:
            # A fresh context: the batch serves many requests, so none of their log context.
            queue.writing = loop.create_task(self._drain(queue), context=contextvars.Context())
        return await future

    async def _drain(self, queue: _Queue) -> None:
        delay = self.batch_delay.total_seconds()
        previous = 0  # receipts in the batch this task wrote last
        try:
            while queue.waiting:
                if previous > 1 and delay and len(queue.waiting) < self.max_batch:
                    await self._pause(delay)  # under load: let the next batch fill (module doc)
                batch = queue.waiting[: self.max_batch]
                del queue.waiting[: self.max_batch]
                previous = len(batch)
                try:
                    outcomes = await run_in_threadpool(self.write, [r for r, _ in batch])
                except Exception as exc:
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                except BaseException:  # cancelled: the loop is closing
                    for _, future in batch:
                        future.cancel()
                    raise
                else:
                    for (_, future), outcome in zip(batch, outcomes, strict=True):
                        if not future.done():
                            future.set_result(outcome)
        finally:
            queue.writing = None
            for _, future in queue.waiting:  # only when cancelled: the loop is closing
                future.cancel()
            queue.waiting.clear()

    def write(self, receipts: Sequence[PendingReceipt]) -> list[CallbackOutcome]:
        """Store `receipts` in one transaction, then enqueue their new completions at once;
        blocking (SQL, broker). The outcomes are in the order of `receipts`.

        Safe to run twice: a callback for an invitation whose processing this process enqueued
        within `recent.window` (or earlier in the same batch) is stored as accepted with reason
        "duplicate" and enqueues nothing. The window is per process (several web processes may
        each enqueue once), which is harmless because process_completion is idempotent per
        invitation; the window only spares the queue.

        The receipts are committed before anything is enqueued: if the broker is down the
        outcome is "enqueue_failed" (claims released) and the sweeper finds the unprocessed
        receipts, so Isograd (and the waiting candidate) get their 200 regardless.
        """
        self.batches += 1
        outcomes: list[CallbackOutcome] = []
        claimed: list[str] = []

        def receipts_for(statuses: Mapping[str, InvitationStatus]) -> list[NewCallback]:
            rows = []
            for receipt in receipts:
                outcome = self._outcome(receipt, statuses.get(receipt.invitation_id), claimed)
                outcomes.append(outcome)
                rows.append(
                    NewCallback(
                        invitation_id=receipt.invitation_id,
                        method=receipt.method,
                        query=receipt.query,
                        remote_addr=receipt.remote_addr,
                        accepted=outcome.accepted,
                        reason=outcome.reason,
                        received_at=receipt.received_at,
                    )
                )
            return rows

        verified = {receipt.invitation_id for receipt in receipts if receipt.rejection is None}
        started = self._timer()
        try:
            self._store.record_callbacks(verified, receipts_for)
        except BaseException:
            # Nothing was stored, so nothing will be enqueued: the next callback must try again.
            for invitation_id in claimed:
                self.recent.release(invitation_id)
            raise
        stored = self._timer()
        due = [o.invitation_id for o in outcomes if o.enqueued and o.invitation_id]
        failed = self._enqueue(due)
        if self._observer is not None:
            self._observer.record_receipt_batch(
                receipts=len(receipts),
                store_seconds=stored - started,
                enqueue_seconds=self._timer() - stored if due else None,
            )
        if not failed:
            return outcomes
        return [
            replace(outcome, enqueued=False, reason="enqueue_failed")
            if outcome.invitation_id in failed and outcome.enqueued
            else outcome
            for outcome in outcomes
        ]

    def _outcome(
        self, receipt: PendingReceipt, status: InvitationStatus | None, claimed: list[str]
    ) -> CallbackOutcome:
        invitation_id = receipt.invitation_id
        if receipt.rejection is not None:
            return CallbackOutcome(invitation_id, False, False, receipt.rejection)
        if status is None:
            return CallbackOutcome(invitation_id, False, False, "unknown_invitation")
        if status is InvitationStatus.COMPLETED:
            return CallbackOutcome(invitation_id, True, False, "already_completed")
        if not self.recent.claim(invitation_id, receipt.received_at):
            return CallbackOutcome(invitation_id, True, False, "duplicate")
        claimed.append(invitation_id)
        return CallbackOutcome(invitation_id, True, True, None)

    def _enqueue(self, invitation_ids: list[str]) -> set[str]:
        """Enqueue process_completion for each id; the ids that failed (their claims released).

        An enqueuer with `completions` sends them all in one round trip, and on failure none is
        taken as sent; any other is asked once per id, each failing on its own.
        """
        if not invitation_ids:
            return set()
        failures: dict[str, Exception] = {}
        if self._batch_enqueuer is not None:
            try:
                self._batch_enqueuer.completions(invitation_ids)
            except Exception as exc:
                failures = dict.fromkeys(invitation_ids, exc)
        else:
            for invitation_id in invitation_ids:
                try:
                    self._enqueuer.completion(invitation_id)
                except Exception as exc:
                    failures[invitation_id] = exc
        for invitation_id, error in failures.items():
            self.recent.release(invitation_id)
            log.error("callback_enqueue_failed", invitation_id=invitation_id, error=repr(error))
        return set(failures)
