"""The `worker` process: consume the relay's queues until SIGINT/SIGTERM, then drain and exit."""

from __future__ import annotations

import os
import threading

import structlog

from worker.broker import make_broker
from worker.jobs.actors import DramatiqEnqueuer, RuntimeMiddleware, declare_actors, start_worker
from worker.metrics import MetricsServer, RelayMetrics
from worker.processes import freeze_heap, stop_on_signals, url_scheme
from worker.runtime import Runtime
from worker.settings import Settings

log = structlog.get_logger(__name__)


def run_worker(
    settings: Settings,
    *,
    threads: int,
    stop: threading.Event | None = None,
    metrics: RelayMetrics | None = None,
    freeze: bool = False,
) -> None:
    """Consume the relay's queues until SIGINT/SIGTERM (or `stop` is set), then drain and exit.

    With METRICS_PORT set, `metrics` (a new registry if omitted) is served on
    http://METRICS_HOST:METRICS_PORT/ for Prometheus while the worker runs. With `freeze`
    (the `worker` command), what is built before the threads start is frozen out of the garbage
    collector's reach (worker.processes.freeze_heap).
    """
    stop = stop or stop_on_signals()
    metrics = metrics if metrics is not None else RelayMetrics()
    server: MetricsServer | None = None
    broker = make_broker(settings.broker_url)
    actors = declare_actors(broker)
    runtime = Runtime.from_settings(settings, DramatiqEnqueuer(actors), metrics=metrics)
    broker.add_middleware(RuntimeMiddleware(runtime))
    if freeze:
        freeze_heap()
    worker = start_worker(broker, threads=threads)
    try:
        if settings.metrics_port is not None:
            server = metrics.serve(settings.metrics_port, settings.metrics_host)
        log.info(
            "worker_ready", threads=threads, broker=url_scheme(settings.broker_url), pid=os.getpid()
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
