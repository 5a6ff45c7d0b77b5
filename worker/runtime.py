"""The runtime: the collaborators a worker process builds once and its jobs share."""

from __future__ import annotations

import random
import threading
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import httpx2

from worker.catalogue import AssessmentCatalogue
from worker.clock import Clock, utc_now
from worker.isograd.client import IsogradClient
from worker.jobs import Enqueuer
from worker.metrics import RelayMetrics
from worker.retries import RetrySchedule
from worker.settings import Settings
from worker.sinks.base import Sink
from worker.sinks.deadline import DeadlineTransport
from worker.sinks.registry import make_sink
from worker.storage.store import SqlStore
from worker.subscriptions import Subscription
from worker.transports import ThreadTransports

# Threads for what completions do side by side (worker.jobs.completions: acts 4, 5 and 6 beside
# act 10, all four acts of every invitation of a batch, then all but one of the first attempts);
# started on demand, so a worker with few jobs in flight starts few. A batch of 16 asks 64 acts
# at once: with 32 threads a burst topped out at ~130 completions/s with Isograd at 50 ms.
FETCH_THREADS = 128


class Runtime:
    """Store, Isograd client, sinks and the rest, built once per process; `close()` releases them.

    Thread-safe: the worker's threads share one runtime. Sinks are built on first use and kept.
    """

    def __init__(
        self,
        *,
        store: SqlStore,
        client: IsogradClient,
        http: httpx2.Client,
        subscriptions: tuple[Subscription, ...],
        enqueuer: Enqueuer,
        clock: Clock = utc_now,
        rng: random.Random | None = None,
        metrics: RelayMetrics | None = None,
        test_names: Mapping[int, str] | None = None,
    ) -> None:
        self.store = store
        self.client = client
        self.catalogue = AssessmentCatalogue(client, configured=test_names)
        self.http = http
        self.subscriptions = subscriptions
        self.subscriptions_by_name: Mapping[str, Subscription] = {
            subscription.name: subscription for subscription in subscriptions
        }
        self.enqueuer = enqueuer
        self.clock = clock
        self.rng = rng if rng is not None else random.Random()
        self.metrics = metrics
        self._sinks: dict[str, Sink] = {}
        self._lock = threading.Lock()
        self.fetch_pool = ThreadPoolExecutor(FETCH_THREADS, thread_name_prefix="isograd-fetch")

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        enqueuer: Enqueuer,
        *,
        clock: Clock = utc_now,
        rng: random.Random | None = None,
        isograd_transport: httpx2.BaseTransport | None = None,
        sink_transport: httpx2.BaseTransport | None = None,
        metrics: RelayMetrics | None = None,
    ) -> Runtime:
        """Build everything from settings; the transports are the test seams."""
        store = SqlStore.from_url(
            settings.database_url,
            clock=clock,
            lease=timedelta(seconds=settings.delivery_lease_seconds),
        )
        client = IsogradClient(
            api_url=settings.isograd_api_url,
            auth_url=settings.isograd_auth_url,
            client_id=settings.isograd_client_id,
            client_secret=settings.isograd_client_secret,
            sub_com_id=settings.isograd_sub_com_id,
            transport=isograd_transport,
            timeout=settings.http_timeout,
        )
        # One sync client for every sink: deliveries run in the worker's threads, and a shared
        # sync client in threads measured fastest on these machines (httpx's AsyncClient was 3-4x
        # slower under concurrency). Its transport is per thread, as a thread sends one request
        # at a time; the deadline transport makes a subscription's timeout_seconds bound a whole
        # attempt.
        http = httpx2.Client(
            transport=sink_transport
            or ThreadTransports(lambda context: DeadlineTransport(ssl_context=context)),
            follow_redirects=False,
        )
        return cls(
            store=store,
            client=client,
            http=http,
            subscriptions=settings.subscriptions,
            test_names=settings.test_names,
            enqueuer=enqueuer,
            clock=clock,
            rng=rng,
            metrics=metrics,
        )

    def sink_for(self, subscription: Subscription) -> Sink:
        with self._lock:
            sink = self._sinks.get(subscription.name)
            if sink is None:
                sink = make_sink(subscription, self.http)
                self._sinks[subscription.name] = sink
            return sink

    def schedule_for(self, subscription: Subscription) -> RetrySchedule:
        return RetrySchedule(subscription.retry_schedule)

    def close(self) -> None:
        self.fetch_pool.shutdown()
        self.http.close()
        self.client.close()
        self.store.close()
