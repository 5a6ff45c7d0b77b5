"""The `scheduler` process: the periodic jobs (reconciler, sweeper, retention) under the lock."""

from __future__ import annotations

import signal
import threading
from datetime import timedelta

from worker.broker import make_broker
from worker.jobs.actors import DramatiqEnqueuer, declare_actors
from worker.runtime import Runtime
from worker.scheduler import PeriodicJob, Scheduler
from worker.scheduler.locks import DEFAULT_LOCK_TTL, make_scheduler_lock
from worker.scheduler.orders import kombo_jobs
from worker.scheduler.reconciler import ReconcileReport, ReconcileSchedule, TokenBucket, reconcile
from worker.scheduler.sweeper import Sweeper
from worker.settings import Settings
from worker.sinks.kombo import KomboApi, KomboTarget
from worker.storage.records import PurgeCounts
from worker.subscriptions import Subscription

# Periodic jobs of the scheduler: seconds between runs come from the settings
# (RECONCILE_INTERVAL_SECONDS, SWEEP_INTERVAL_SECONDS, default 60). The reconciler's own schedule
# decides which invitations are due; running it every minute just keeps the backoff's granularity.
PURGE_EVERY = 6 * 3600.0
# Rejected callback receipts (forged or unknown tokens) are deleted after a day, checked hourly:
# anyone can send them, so they must not accumulate (the callbacks metric still counts them).
REJECTED_CALLBACK_RETENTION = timedelta(days=1)
PURGE_REJECTED_EVERY = 3600.0


def scheduler_jobs(settings: Settings, runtime: Runtime) -> list[PeriodicJob]:
    """The jobs of the scheduler process, run in it directly (see README "Reliability").

    They are cheap SQL scans plus, for the reconciler, rate-limited act 10 calls: running them in
    the one scheduler process is what keeps the rate limit global. Work they find is enqueued
    for the workers (process_completion, deliver), never done here.
    """
    limiter = TokenBucket(settings.reconcile_rate, burst=max(1.0, settings.reconcile_rate))
    schedule = ReconcileSchedule.with_first_interval(
        timedelta(seconds=settings.reconcile_check_interval_seconds),
        horizon=timedelta(days=settings.reconcile_horizon_days),
        completed_recheck=timedelta(seconds=settings.reconcile_completed_recheck_seconds),
    )
    reconcile_every = settings.reconcile_interval_seconds
    # As many checks per run as the rate allows in one interval: a run ends before the next.
    reconcile_limit = max(1, int(settings.reconcile_rate * reconcile_every))
    sweeper = Sweeper(
        store=runtime.store,
        enqueuer=runtime.enqueuer,
        clock=runtime.clock,
        grace=timedelta(seconds=settings.sweep_grace_seconds),
    )

    def run_reconcile(halt: threading.Event) -> ReconcileReport:
        return reconcile(
            store=runtime.store,
            client=runtime.client,
            enqueuer=runtime.enqueuer,
            clock=runtime.clock,
            limiter=limiter,
            wait=halt.wait,
            schedule=schedule,
            limit=reconcile_limit,
        )

    def run_purge_rejected(halt: threading.Event) -> int:
        return runtime.store.purge_rejected_callbacks(runtime.clock() - REJECTED_CALLBACK_RETENTION)

    jobs = [
        PeriodicJob("reconcile", reconcile_every, run_reconcile),
        PeriodicJob("sweep", settings.sweep_interval_seconds, sweeper.sweep),
        PeriodicJob("purge_rejected_callbacks", PURGE_REJECTED_EVERY, run_purge_rejected),
    ]
    retention_days = settings.pii_retention_days
    if retention_days is not None:

        def run_purge(halt: threading.Event) -> PurgeCounts:
            cutoff = runtime.clock() - timedelta(days=retention_days)
            return runtime.store.purge_pii(cutoff)

        jobs.append(PeriodicJob("purge_pii", PURGE_EVERY, run_purge))
    jobs += kombo_jobs(
        runtime.subscriptions,
        make_api=lambda subscription: kombo_api(subscription, runtime),
        client=runtime.client,
        store=runtime.store,
        callback_keys=settings.callback_keys,
        public_url=settings.public_url,
        clock=runtime.clock,
        first_check_after=timedelta(seconds=settings.reconcile_first_check_seconds),
    )
    return jobs


def kombo_api(subscription: Subscription, runtime: Runtime) -> KomboApi:
    """The Kombo API of a `kombo` subscription, on the runtime's shared HTTP client."""
    target = subscription.target
    assert isinstance(target, KomboTarget)
    return KomboApi(
        target, client=runtime.http, timeout=subscription.timeout_seconds, name=subscription.name
    )


def run_scheduler(
    settings: Settings, *, lock_ttl: float = DEFAULT_LOCK_TTL, scheduler_name: str | None = None
) -> None:
    """Run the periodic jobs while holding the scheduler lock, until SIGINT/SIGTERM."""
    broker = make_broker(settings.broker_url)
    runtime = Runtime.from_settings(settings, DramatiqEnqueuer(declare_actors(broker)))
    scheduler = Scheduler(
        make_scheduler_lock(settings, ttl=lock_ttl),
        scheduler_jobs(settings, runtime),
        ttl=lock_ttl,
        name=scheduler_name,
    )

    def handle(signum: int, frame: object) -> None:
        scheduler.stop()

    signal.signal(signal.SIGINT, handle)
    signal.signal(signal.SIGTERM, handle)
    try:
        scheduler.run()
    finally:
        runtime.close()
        broker.close()
