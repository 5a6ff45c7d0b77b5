"""The relay's processes: how `worker`, `scheduler`, `migrate`, `check-config` start and stop."""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Mapping
from datetime import timedelta
from typing import TextIO

import structlog

from worker.actors import DramatiqEnqueuer, RuntimeMiddleware, declare_actors, start_worker
from worker.broker import make_broker
from worker.errors import ConfigurationError
from worker.logs import configure_logging
from worker.metrics import MetricsServer, RelayMetrics
from worker.reconciler import ReconcileReport, ReconcileSchedule, TokenBucket, reconcile
from worker.runtime import Runtime
from worker.scheduler import DEFAULT_LOCK_TTL, PeriodicJob, Scheduler, make_scheduler_lock
from worker.settings import Settings
from worker.storage import migrate
from worker.storage.records import PurgeCounts
from worker.sweeper import Sweeper

log = structlog.get_logger(__name__)

CONFIG_ERROR_EXIT = 2


def load_settings(
    environ: Mapping[str, str], *, config_path: str | None = None, out: TextIO | None = None
) -> Settings | None:
    """Settings from the environment, or None after printing every problem to `out` (stderr)."""
    out = out or sys.stderr
    try:
        return Settings.from_env(environ, config_path=config_path)
    except ConfigurationError as exc:
        print(f"isograd-relay: invalid configuration ({len(exc.problems)} problem(s)):", file=out)
        for problem in exc.problems:
            print(f"  - {problem}", file=out)
        return None


def start_logging(settings: Settings) -> None:
    """Configure logging for a process and report the settings' notices once."""
    configure_logging(
        json=settings.log_json, level=settings.log_level, secrets=settings.redacted_secrets()
    )
    for notice in settings.notices:
        log.warning("configuration_notice", notice=notice)


def check_config(settings: Settings, *, out: TextIO | None = None) -> None:
    """Print a summary of valid settings to `out` (stdout), never a secret."""
    out = out or sys.stdout
    print("configuration OK", file=out)
    print(f"  isograd:       {settings.isograd_env} ({settings.isograd_api_url})", file=out)
    print(f"  public URL:    {settings.public_url}", file=out)
    print(f"  callback keys: {', '.join(key.kid for key in settings.callback_keys)}", file=out)
    print(
        f"  admin API:     {'enabled' if settings.admin_token else 'closed (no ADMIN_TOKEN)'}",
        file=out,
    )
    print(f"  database:      {_scheme(settings.database_url)}", file=out)
    print(
        f"  broker:        {_scheme(settings.broker_url) if settings.broker_url else 'embedded'}",
        file=out,
    )
    print(f"  subscriptions: {len(settings.subscriptions)} from {settings.config_path}", file=out)
    for subscription in settings.subscriptions:
        state = "enabled" if subscription.enabled else "disabled"
        print(f"    - {subscription.name} ({subscription.kind}, {state})", file=out)
    for notice in settings.notices:
        print(f"  notice: {notice}", file=out)


def run_migrate(settings: Settings) -> None:
    migrate(settings.database_url)
    log.info("migrations_applied", database=_scheme(settings.database_url))


def run_worker(
    settings: Settings,
    *,
    threads: int,
    stop: threading.Event | None = None,
    metrics: RelayMetrics | None = None,
) -> None:
    """Consume the relay's queues until SIGINT/SIGTERM (or `stop` is set), then drain and exit.

    With METRICS_PORT set, `metrics` (a new registry if omitted) is served on
    http://METRICS_HOST:METRICS_PORT/ for Prometheus while the worker runs.
    """
    stop = stop or stop_on_signals()
    metrics = metrics if metrics is not None else RelayMetrics()
    server: MetricsServer | None = None
    broker = make_broker(settings.broker_url)
    actors = declare_actors(broker)
    runtime = Runtime.from_settings(settings, DramatiqEnqueuer(actors), metrics=metrics)
    broker.add_middleware(RuntimeMiddleware(runtime))
    worker = start_worker(broker, threads=threads)
    try:
        if settings.metrics_port is not None:
            server = metrics.serve(settings.metrics_port, settings.metrics_host)
        log.info(
            "worker_ready", threads=threads, broker=_scheme(settings.broker_url), pid=os.getpid()
        )
        stop.wait()
    finally:
        log.info("worker_stopping")
        worker.stop()
        runtime.close()
        broker.close()
        if server is not None:
            server.close()
        log.info("worker_stopped")


# Periodic jobs of the scheduler: seconds between runs come from the settings
# (RECONCILE_INTERVAL_SECONDS, SWEEP_INTERVAL_SECONDS, default 60). The reconciler's own schedule
# decides which invitations are due; running it every minute just keeps the backoff's granularity.
PURGE_EVERY = 6 * 3600.0


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

    jobs = [
        PeriodicJob("reconcile", reconcile_every, run_reconcile),
        PeriodicJob("sweep", settings.sweep_interval_seconds, sweeper.sweep),
    ]
    retention_days = settings.pii_retention_days
    if retention_days is not None:

        def run_purge(halt: threading.Event) -> PurgeCounts:
            cutoff = runtime.clock() - timedelta(days=retention_days)
            return runtime.store.purge_pii(cutoff)

        jobs.append(PeriodicJob("purge_pii", PURGE_EVERY, run_purge))
    return jobs


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


def stop_on_signals() -> threading.Event:
    """An event set by SIGINT or SIGTERM (call from the main thread)."""
    stop = threading.Event()

    def handle(signum: int, frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGINT, handle)
    signal.signal(signal.SIGTERM, handle)
    return stop


def _scheme(url: str | None) -> str:
    # Only the scheme: URLs may carry passwords.
    return (url or "").split(":", 1)[0] or "none"
