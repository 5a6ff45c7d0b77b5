"""The actors: thin Dramatiq wrappers that run the jobs' plain functions with the process runtime.

Actors are declared on a given broker by `declare_actors` (not at import time), so the web
process, the worker and each test choose their broker explicitly. In a worker the collaborators
come from the `RuntimeMiddleware` added to that broker at boot.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Collection, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import dramatiq
import structlog
from dramatiq.middleware import Middleware, TimeLimitExceeded

from worker.broker import enqueue_all
from worker.errors import PermanentError, RetryableError
from worker.jobs.completions import DeliverNow
from worker.jobs.completions import process_completion as run_completion
from worker.jobs.completions import process_completions as run_completions
from worker.jobs.deliveries import deliver as run_delivery
from worker.jobs.deliveries import deliver_first_attempts as run_first_attempts
from worker.runtime import Runtime
from worker.storage.records import Delivery, Event

log = structlog.get_logger(__name__)

COMPLETIONS_QUEUE = "completions"
DELIVERIES_QUEUE = "deliveries"
QUEUES = (COMPLETIONS_QUEUE, DELIVERIES_QUEUE)

# The most invitations one process_completions message carries: the web's batches of callbacks
# are cut to this size. Its acts (four per invitation) then wait at most a few rounds for the
# worker's fetch threads (worker.runtime.FETCH_THREADS).
COMPLETION_BATCH = 16

# Time limits cover the slowest legitimate run: a delivery waits at most its subscription's
# timeout (≤ 300 s) once; a completion makes four Isograd calls, each retried by the client
# (3 attempts, 10 s timeout), then its deliveries' first attempts side by side.
DELIVERY_TIME_LIMIT_MS = 6 * 60 * 1000
COMPLETION_TIME_LIMIT_MS = 5 * 60 * 1000 + DELIVERY_TIME_LIMIT_MS
# A batch's acts queue for the fetch threads: twice a completion's.
BATCH_TIME_LIMIT_MS = 2 * COMPLETION_TIME_LIMIT_MS


class RuntimeMiddleware(Middleware):
    """Holds the process's Runtime so the actors declared on this broker can reach it."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime


@dataclass(frozen=True)
class RelayActors:
    process_completion: dramatiq.Actor[[str, int], None]
    process_completions: dramatiq.Actor[[list[str]], None]
    deliver: dramatiq.Actor[[str], None]


def declare_actors(broker: dramatiq.Broker) -> RelayActors:
    """Declare the relay's actors on `broker` (once per broker)."""

    def process_completion(invitation_id: str, recheck: int = 0) -> None:
        """Confirm a completion (act 10) and store its event; see worker.jobs.completions.

        Queue "completions". Idempotency key: the invitation id (a second run for a completed
        invitation asks nothing and creates nothing). Dramatiq retries only transient errors
        (Isograd or the database unavailable): up to 10 times, backing off 5 s to 10 min, and
        honouring a Retry-After hint; permanent errors are not retried. Status re-checks are new
        messages with a delay, not retries.
        """
        runtime = runtime_of(broker)
        with _transient_as_retry():
            run_completion(
                invitation_id,
                store=runtime.store,
                client=runtime.client,
                subscriptions=runtime.subscriptions,
                enqueuer=runtime.enqueuer,
                clock=runtime.clock,
                recheck=recheck,
                metrics=runtime.metrics,
                catalogue=runtime.catalogue,
                fetch_pool=runtime.fetch_pool,
                deliver_now=first_attempts(runtime),
            )

    def process_completions(invitation_ids: list[str]) -> None:
        """`process_completion` of callbacks that arrived together (at most COMPLETION_BATCH);
        see worker.jobs.completions.process_completions.

        Queue "completions". Idempotency key: each invitation id, as for process_completion. An
        invitation Isograd cannot answer for is retried by a process_completion of its own;
        Dramatiq retries the whole batch only when the database is unavailable (as
        process_completion's retries), which re-runs harmlessly the ones already done.
        """
        runtime = runtime_of(broker)
        with _transient_as_retry():
            run_completions(
                invitation_ids,
                store=runtime.store,
                client=runtime.client,
                subscriptions=runtime.subscriptions,
                enqueuer=runtime.enqueuer,
                clock=runtime.clock,
                metrics=runtime.metrics,
                catalogue=runtime.catalogue,
                fetch_pool=runtime.fetch_pool,
                deliver_now=first_attempts(runtime),
            )

    def deliver(delivery_id: str) -> None:
        """Make one attempt at a delivery; see worker.jobs.deliveries.

        Queue "deliveries". Idempotency key: the delivery id (the row is claimed first, so a
        delivered or in-flight delivery is never sent again). The retry schedule lives in SQL and
        is enqueued as a delayed message; Dramatiq retries only unexpected transient errors (the
        database unavailable): up to 5 times, backing off 1 s to 5 min.
        """
        with _transient_as_retry(), _time_limit_handled(delivery_id):
            attempt_delivery(runtime_of(broker), delivery_id)

    return RelayActors(
        process_completion=dramatiq.actor(
            broker=broker,
            actor_name="process_completion",
            queue_name=COMPLETIONS_QUEUE,
            max_retries=10,
            min_backoff=5_000,
            max_backoff=10 * 60 * 1000,
            time_limit=COMPLETION_TIME_LIMIT_MS,
            throws=(PermanentError,),
        )(process_completion),
        process_completions=dramatiq.actor(
            broker=broker,
            actor_name="process_completions",
            queue_name=COMPLETIONS_QUEUE,
            max_retries=10,
            min_backoff=5_000,
            max_backoff=10 * 60 * 1000,
            time_limit=BATCH_TIME_LIMIT_MS,
            throws=(PermanentError,),
        )(process_completions),
        deliver=dramatiq.actor(
            broker=broker,
            actor_name="deliver",
            queue_name=DELIVERIES_QUEUE,
            max_retries=5,
            min_backoff=1_000,
            max_backoff=5 * 60 * 1000,
            time_limit=DELIVERY_TIME_LIMIT_MS,
            throws=(PermanentError,),
        )(deliver),
    )


def first_attempts(runtime: Runtime) -> DeliverNow:
    """worker.jobs.deliveries.deliver_first_attempts of deliveries stored claimed, with the
    process's collaborators: what process_completion(s) hands its new events to."""

    def deliver_now(new: Sequence[tuple[Event, Sequence[Delivery]]]) -> Collection[str]:
        return run_first_attempts(
            new,
            pool=runtime.fetch_pool,
            store=runtime.store,
            subscriptions=runtime.subscriptions_by_name,
            sink_for=runtime.sink_for,
            enqueuer=runtime.enqueuer,
            clock=runtime.clock,
            rng=runtime.rng,
            schedule_for=runtime.schedule_for,
            metrics=runtime.metrics,
            claimed=True,
        ).keys()

    return deliver_now


def attempt_delivery(runtime: Runtime, delivery_id: str) -> None:
    """One attempt at a delivery with the process's collaborators (the deliver actor's body)."""
    run_delivery(
        delivery_id,
        store=runtime.store,
        subscriptions=runtime.subscriptions_by_name,
        sink_for=runtime.sink_for,
        enqueuer=runtime.enqueuer,
        clock=runtime.clock,
        rng=runtime.rng,
        schedule_for=runtime.schedule_for,
        metrics=runtime.metrics,
    )


def runtime_of(broker: dramatiq.Broker) -> Runtime:
    """The Runtime of the RuntimeMiddleware on `broker`; RuntimeError when there is none."""
    for middleware in broker.middleware:
        if isinstance(middleware, RuntimeMiddleware):
            return middleware.runtime
    raise RuntimeError("this broker has no RuntimeMiddleware: actors run only in a worker")


@contextmanager
def _time_limit_handled(delivery_id: str) -> Iterator[None]:
    """A delivery over its time limit: deliveries.deliver recorded the attempt and scheduled the
    retry before letting the interruption through, so Dramatiq must not retry it again."""
    try:
        yield
    except TimeLimitExceeded:
        log.warning("delivery_time_limit_exceeded", delivery_id=delivery_id)


@contextmanager
def _transient_as_retry() -> Iterator[None]:
    """Hand a transient error to Dramatiq's retries as `Retry`, with its Retry-After as delay."""
    try:
        yield
    except RetryableError as exc:
        log.warning("job_will_retry", error=type(exc).__name__, retry_after=exc.retry_after)
        delay = None if exc.retry_after is None else max(0, round(exc.retry_after * 1000))
        raise dramatiq.Retry(str(exc), delay=delay) from exc


class DramatiqEnqueuer:
    """The Enqueuer that sends the relay's actors' messages on their broker."""

    def __init__(self, actors: RelayActors) -> None:
        self._actors = actors

    def completion(
        self, invitation_id: str, *, delay_seconds: float = 0.0, recheck: int = 0
    ) -> None:
        self._actors.process_completion.send_with_options(
            args=(invitation_id, recheck), delay=_delay_ms(delay_seconds)
        )

    def completions(self, invitation_ids: Sequence[str]) -> None:
        """A first run of each id's completion, now: one process_completions message per
        COMPLETION_BATCH ids (a lone id: process_completion), all in one broker round trip on
        Redis (see worker.broker.enqueue_all); on failure take none as sent."""
        ids = list(invitation_ids)
        if len(ids) == 1:
            single = self._actors.process_completion
            enqueue_all(single.broker, [single.message_with_options(args=(ids[0], 0))])
            return
        batch = self._actors.process_completions
        messages = [
            batch.message_with_options(args=(ids[start : start + COMPLETION_BATCH],))
            for start in range(0, len(ids), COMPLETION_BATCH)
        ]
        enqueue_all(batch.broker, messages)

    def delivery(self, delivery_id: str, *, delay_seconds: float = 0.0) -> None:
        self._actors.deliver.send_with_options(args=(delivery_id,), delay=_delay_ms(delay_seconds))


def _delay_ms(seconds: float) -> int | None:
    # No delay means the ready queue; a delay of 0 would take the detour through the delay queue.
    if seconds <= 0:
        return None
    # Rounded up, plus the millisecond Dramatiq's eta loses by truncating the send time: a retry
    # must not run before the next_attempt_at stored with it, or its claim finds it not yet due
    # and only the sweeper runs it, minutes later.
    return math.ceil(seconds * 1000) + 1


def start_worker(
    broker: dramatiq.Broker, *, threads: int = 8, queues: Iterable[str] = QUEUES
) -> dramatiq.Worker:
    """Start consuming `queues` in `threads` threads; stop it with `worker.stop()`.

    The broker needs a RuntimeMiddleware (add it before starting) and the declared actors.
    """
    if broker not in _booted:
        # Dramatiq's own CLI emits process_boot once per worker process; TimeLimit starts its
        # watchdog thread on it, so without it no actor's time_limit is ever enforced
        # (dramatiq/cli.py: `broker.emit_after("process_boot")`; middleware/time_limit.py).
        broker.emit_after("process_boot")
        _booted.add(broker)
    worker = dramatiq.Worker(broker, queues=set(queues), worker_threads=threads)
    worker.start()
    return worker


# Brokers whose process_boot was emitted: TimeLimit's watchdog is a thread, started only once.
_booted: weakref.WeakSet[dramatiq.Broker] = weakref.WeakSet()
