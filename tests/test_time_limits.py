"""Job time limits: a job over its limit is interrupted and handled like any other failure."""

from __future__ import annotations

import threading
import time

import dramatiq
import httpx2

from tests.fakes import FakeClock, RecordingEnqueuer
from tests.fixtures.pipeline import Simulated, invite, subscription
from tests.polling import wait_until
from worker.jobs.actors import RuntimeMiddleware, declare_actors
from worker.jobs.actors import start_worker as start_relay_worker
from worker.runtime import Runtime
from worker.storage.records import DeliveryStatus
from worker.storage.store import SqlStore

HANG_SECONDS = 20.0


class HangingTarget:
    """A webhook target whose handler never answers within a job's limit (Python code, so a
    time limit's asynchronous exception can reach the thread running it)."""

    def __init__(self) -> None:
        self.started = threading.Event()
        self.finished = threading.Event()
        self.transport = httpx2.MockTransport(self._handle)

    def _handle(self, request: httpx2.Request) -> httpx2.Response:
        self.started.set()
        deadline = time.monotonic() + HANG_SECONDS
        while time.monotonic() < deadline:
            time.sleep(0.01)  # a slow receiver, in small steps the interrupt can land between
        self.finished.set()
        return httpx2.Response(200, text="too late")


def test_a_delivery_over_its_time_limit_is_interrupted_and_rescheduled(
    stub_broker: dramatiq.Broker, store: SqlStore, simulated: Simulated, clock: FakeClock
) -> None:
    target = HangingTarget()
    actors = declare_actors(stub_broker)
    enqueuer = RecordingEnqueuer()
    with httpx2.Client(transport=target.transport) as http:
        runtime = Runtime(
            store=store,
            client=simulated.client,
            http=http,
            subscriptions=(subscription(),),
            enqueuer=enqueuer,
            clock=clock,
        )
        stub_broker.add_middleware(RuntimeMiddleware(runtime))
        invitation = invite(simulated, store)
        payload = {"type": "assessment.completed", "timestamp": "2026-12-01T10:00:00Z", "data": {}}
        _, deliveries, _ = store.create_event(
            "evt_limit", invitation.id, 1, "assessment.completed", payload, ["hr"]
        )
        delivery_id = deliveries[0].id
        worker = start_relay_worker(stub_broker, threads=1)
        try:
            actors.deliver.send_with_options(args=(delivery_id,), time_limit=300)
            wait_until(lambda: store.list_attempts(delivery_id), timeout=10, what="an attempt")
        finally:
            worker.stop()

    delivery = store.get_delivery(delivery_id)
    assert delivery is not None
    assert target.started.is_set()
    assert not target.finished.is_set()
    assert delivery.status is DeliveryStatus.RETRYING
    [attempt] = store.list_attempts(delivery_id)
    assert "time limit" in (attempt.error or "")
    # The retry is on its way (a delayed message), not left to the lease and the sweeper.
    [retry] = enqueuer.of_kind("delivery")
    assert retry.id == delivery_id
    assert retry.delay_seconds >= 60  # a timed-out attempt waits like a 429
