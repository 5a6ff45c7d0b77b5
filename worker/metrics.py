"""Metrics: the relay's Prometheus metrics, defined once, on a registry each process owns.

Counters and histograms are process-local: the web process counts callbacks and exposes them on
`/metrics`, a worker counts completions and deliveries and exposes them on METRICS_PORT. The
gauges of what the database and the broker hold (deliveries by status, queued messages) are read
at scrape time by a `StateCollector`, cached for a few seconds; the web process registers it.

Labels are low-cardinality on purpose: results, reasons and outcomes are the code's own constants
and the subscription is its configured name. No invitation id, email or URL is ever a label.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Protocol

import structlog
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, start_http_server
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from worker.storage.records import DeliveryStatus

log = structlog.get_logger(__name__)

PREFIX = "isograd_relay"
# The classic text format (0.0.4) every Prometheus version scrapes.
CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4
STATE_TTL_SECONDS = 5.0
DELAYED_SUFFIX = ".DQ"  # Dramatiq's delay queue of a queue: messages waiting for their time

# Seconds. Callbacks answer in milliseconds; Isograd calls and webhook attempts take up to their
# timeouts (10 s per Isograd request, retried; a subscription's timeout_seconds, <= 300).
CALLBACK_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
COMPLETION_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
# A batch of callback receipts (webhooks.receipts): its size, then the seconds of its SQL
# transaction and of its broker round trip, each a few milliseconds when all is well.
RECEIPT_BATCH_SIZES = (1, 2, 4, 8, 16, 32, 64, 128, 256)
RECEIPT_BATCH_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
ATTEMPT_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 15.0, 30.0, 60.0, 300.0)


class RelayMetrics:
    """The relay's counters and histograms on `registry` (a fresh one if omitted).

    Build one per process and pass it to what records; tests build their own, so no state is
    shared. The `record_*` methods are thread-safe and cheap.
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.callbacks = Counter(
            f"{PREFIX}_callbacks",
            "Isograd callbacks received, by result (accepted, rejected) and reason.",
            ["result", "reason"],
            registry=self.registry,
        )
        self.callback_seconds = Histogram(
            f"{PREFIX}_callback_duration_seconds",
            "Time to verify, record and enqueue one Isograd callback.",
            ["result"],
            buckets=CALLBACK_BUCKETS,
            registry=self.registry,
        )
        self._callback_children: dict[tuple[str, str], tuple[Counter, Histogram]] = {}
        self.receipt_batch_size = Histogram(
            f"{PREFIX}_callback_batch_receipts",
            "Callback receipts stored per transaction (the web's group commit).",
            buckets=RECEIPT_BATCH_SIZES,
            registry=self.registry,
        )
        self.receipt_batch_seconds = Histogram(
            f"{PREFIX}_callback_batch_duration_seconds",
            "Time of one batch of callback receipts, by stage: store (its SQL transaction) "
            "and enqueue (its broker round trip, when it enqueued anything).",
            ["stage"],
            buckets=RECEIPT_BATCH_BUCKETS,
            registry=self.registry,
        )
        self._batch_stages = (
            self.receipt_batch_seconds.labels("store"),
            self.receipt_batch_seconds.labels("enqueue"),
        )
        self.completions = Counter(
            f"{PREFIX}_completions",
            "Completion jobs run, by result (completed, not_confirmed, marking_pending, ...).",
            ["result"],
            registry=self.registry,
        )
        self.completion_seconds = Histogram(
            f"{PREFIX}_completion_duration_seconds",
            "Time of one completion job, Isograd calls included.",
            ["result"],
            buckets=COMPLETION_BUCKETS,
            registry=self.registry,
        )
        self.events = Counter(
            f"{PREFIX}_events_created",
            "Events stored, by event type.",
            ["type"],
            registry=self.registry,
        )
        self.deliveries = Counter(
            f"{PREFIX}_deliveries",
            "Delivery jobs run, by result (delivered, retry_scheduled, failed, cancelled, ...).",
            ["result"],
            registry=self.registry,
        )
        self.attempt_seconds = Histogram(
            f"{PREFIX}_delivery_attempt_duration_seconds",
            "Time of one webhook attempt, by subscription and outcome "
            "(delivered, retry, failed, gone); its _count counts attempts.",
            ["subscription", "outcome"],
            buckets=ATTEMPT_BUCKETS,
            registry=self.registry,
        )

    def record_callback(
        self, *, accepted: bool, enqueued: bool, reason: str | None, seconds: float
    ) -> None:
        """One callback answered; `reason` is the endpoint's constant (None when enqueued)."""
        result = "accepted" if accepted else "rejected"
        if reason is None:
            reason = "enqueued" if enqueued else result
        children = self._callback_children.get((result, reason))
        if children is None:
            # labels() validates and locks on every call: a few us a callback, so the children
            # (one pair per result and reason, both the code's constants) are kept.
            children = (self.callbacks.labels(result, reason), self.callback_seconds.labels(result))
            self._callback_children[(result, reason)] = children
        counter, histogram = children
        counter.inc()
        histogram.observe(seconds)

    def record_receipt_batch(
        self, *, receipts: int, store_seconds: float, enqueue_seconds: float | None
    ) -> None:
        """One batch of callback receipts stored (webhooks.receipts.BatchObserver)."""
        store, enqueue = self._batch_stages
        self.receipt_batch_size.observe(receipts)
        store.observe(store_seconds)
        if enqueue_seconds is not None:
            enqueue.observe(enqueue_seconds)

    def record_completion(self, result: str, seconds: float) -> None:
        self.completions.labels(result=result).inc()
        self.completion_seconds.labels(result=result).observe(seconds)

    def record_event_created(self, event_type: str) -> None:
        self.events.labels(type=event_type).inc()

    def record_delivery(self, result: str) -> None:
        self.deliveries.labels(result=result).inc()

    def record_attempt(self, subscription: str, outcome: str, seconds: float) -> None:
        self.attempt_seconds.labels(subscription=subscription, outcome=outcome).observe(seconds)

    def exposition(self) -> bytes:
        """Every metric of the registry in the Prometheus text format (CONTENT_TYPE); this runs
        the registered collectors, so it may block on SQL or the broker: call it in a thread."""
        return generate_latest(self.registry)

    def watch_state(
        self,
        store: DeliveryCounts,
        *,
        queue_depths: Callable[[], Mapping[str, int]] | None = None,
        ttl: float = STATE_TTL_SECONDS,
    ) -> StateCollector:
        """Register a StateCollector reading `store` (and the broker's `queue_depths`)."""
        collector = StateCollector(store, queue_depths=queue_depths, ttl=ttl)
        self.registry.register(collector)
        return collector

    def serve(self, port: int, host: str = "127.0.0.1") -> MetricsServer:
        """Serve this registry on http://host:port/ (any path) in a daemon thread."""
        server, thread = start_http_server(port, addr=host, registry=self.registry)
        bound_port = server.server_address[1]
        log.info("metrics_serving", host=host, port=bound_port)
        return MetricsServer(server.shutdown, server.server_close, thread, bound_port)


class MetricsServer:
    """A running metrics HTTP server; `close()` stops it and frees the port."""

    def __init__(
        self,
        shutdown: Callable[[], None],
        server_close: Callable[[], None],
        thread: threading.Thread,
        port: int,
    ) -> None:
        self._shutdown = shutdown
        self._server_close = server_close
        self._thread = thread
        self.port = port

    def close(self) -> None:
        self._shutdown()
        self._server_close()
        self._thread.join()


class DeliveryCounts(Protocol):
    """What the collector reads from the database (SqlStore has it)."""

    def count_deliveries(self) -> Mapping[DeliveryStatus, int]: ...


class StateCollector(Collector):
    """Gauges of the database's deliveries by status and the broker's queued messages.

    Read when scraped, at most once per `ttl` seconds (scrapes in between get the cached values),
    so frequent scrapes or several Prometheus servers cost one cheap query. A source that fails
    is reported by `isograd_relay_state_up{source=...} 0` and its gauges are left out; the error
    is logged, never raised, so the counters are still scraped.
    """

    def __init__(
        self,
        store: DeliveryCounts,
        *,
        queue_depths: Callable[[], Mapping[str, int]] | None = None,
        ttl: float = STATE_TTL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._queue_depths = queue_depths
        self._ttl = ttl
        self._clock = clock
        self._lock = threading.Lock()
        self._cached: list[Metric] | None = None
        self._read_at = 0.0

    def describe(self) -> list[Metric]:
        # Registration asks for names: answer without touching the database.
        return list(self._families())

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            now = self._clock()
            if self._cached is None or now - self._read_at >= self._ttl:
                self._cached = self._read()
                self._read_at = now
            yield from self._cached

    def _families(self) -> tuple[GaugeMetricFamily, GaugeMetricFamily, GaugeMetricFamily]:
        return (
            GaugeMetricFamily(
                f"{PREFIX}_state_up",
                "1 if the source (database, broker) answered the last state read, else 0.",
                labels=["source"],
            ),
            GaugeMetricFamily(
                f"{PREFIX}_deliveries_by_status",
                "Deliveries in the database, by status (pending, delivering, retrying, ...).",
                labels=["status"],
            ),
            GaugeMetricFamily(
                f"{PREFIX}_queue_messages",
                "Messages in the broker's queues: ready (waiting for a worker) or delayed "
                "(retries and re-checks waiting for their time).",
                labels=["queue", "state"],
            ),
        )

    def _read(self) -> list[Metric]:
        up, deliveries, queues = self._families()
        try:
            counts = self._store.count_deliveries()
        except Exception as exc:
            log.warning("metrics_state_failed", source="database", error=repr(exc))
            up.add_metric(["database"], 0)
        else:
            up.add_metric(["database"], 1)
            for status, count in sorted(counts.items()):
                deliveries.add_metric([status.value], count)
        families: list[Metric] = [up, deliveries]
        if self._queue_depths is not None:
            try:
                depths = self._queue_depths()
            except Exception as exc:
                log.warning("metrics_state_failed", source="broker", error=repr(exc))
                up.add_metric(["broker"], 0)
            else:
                up.add_metric(["broker"], 1)
                for name, depth in sorted(depths.items()):
                    queue, state = _queue_state(name)
                    queues.add_metric([queue, state], depth)
            families.append(queues)
        return families


def _queue_state(name: str) -> tuple[str, str]:
    if name.endswith(DELAYED_SUFFIX):
        return name.removesuffix(DELAYED_SUFFIX), "delayed"
    return name, "ready"
