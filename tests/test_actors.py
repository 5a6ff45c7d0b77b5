"""The actors through a broker: a completion becomes a delivered webhook (stub and real Redis),
DramatiqEnqueuer's messages, retry translation, and the Runtime the actors run with."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import dramatiq
import httpx2
import pytest
from dramatiq.brokers.redis import RedisBroker
from dramatiq.brokers.stub import StubBroker

from tests.fakes import FakeClock, RecordingEnqueuer
from tests.fixtures.pipeline import ScriptedTarget, Simulated, invite, subscription
from tests.receiver import RecordingReceiver
from worker.broker import make_broker
from worker.errors import IsogradUnavailableError
from worker.jobs.actors import (
    COMPLETION_BATCH,
    COMPLETIONS_QUEUE,
    DELIVERIES_QUEUE,
    DramatiqEnqueuer,
    RelayActors,
    RuntimeMiddleware,
    declare_actors,
    runtime_of,
)
from worker.metrics import RelayMetrics
from worker.runtime import Runtime
from worker.settings import Settings
from worker.sinks.webhook import WebhookSink
from worker.storage.records import DeliveryStatus
from worker.storage.store import SqlStore
from worker.subscriptions import Subscription


@pytest.fixture
def target() -> ScriptedTarget:
    return ScriptedTarget()


@pytest.fixture
def sink_http(target: ScriptedTarget) -> Iterator[httpx2.Client]:
    with httpx2.Client(transport=target.transport, follow_redirects=False) as client:
        yield client


def attach_runtime(
    broker: dramatiq.Broker,
    *,
    store: SqlStore,
    simulated: Simulated,
    http: httpx2.Client,
    subscriptions: tuple[Subscription, ...],
    clock: FakeClock,
    metrics: RelayMetrics | None = None,
) -> RelayActors:
    """What the worker does at boot: declare the actors, build the runtime, attach it."""
    actors = declare_actors(broker)
    runtime = Runtime(
        store=store,
        client=simulated.client,
        http=http,
        subscriptions=subscriptions,
        enqueuer=DramatiqEnqueuer(actors),
        clock=clock,
        metrics=metrics,
    )
    broker.add_middleware(RuntimeMiddleware(runtime))
    return actors


def drain(broker: dramatiq.Broker) -> None:
    """Run a worker until both queues are empty (completions feed deliveries)."""
    worker = dramatiq.Worker(broker, worker_threads=2, worker_timeout=100)
    worker.start()
    try:
        broker.join(COMPLETIONS_QUEUE)
        worker.join()
        broker.join(DELIVERIES_QUEUE)
        worker.join()
    finally:
        worker.stop()


def test_a_completion_sent_through_the_broker_ends_as_a_delivered_webhook(
    stub_broker: dramatiq.Broker,
    store: SqlStore,
    simulated: Simulated,
    sink_http: httpx2.Client,
    target: ScriptedTarget,
    clock: FakeClock,
) -> None:
    actors = attach_runtime(
        stub_broker,
        store=store,
        simulated=simulated,
        http=sink_http,
        subscriptions=(subscription(),),
        clock=clock,
    )
    invitation = invite(simulated, store)
    simulated.move(invitation.pla_tst_id or 0, "complete")

    DramatiqEnqueuer(actors).completion(invitation.id)
    drain(stub_broker)

    [delivery] = store.list_deliveries()
    assert delivery.status is DeliveryStatus.DELIVERED
    assert len(target.requests) == 1


def test_jobs_run_by_the_worker_are_counted_in_the_runtimes_metrics(
    stub_broker: dramatiq.Broker,
    store: SqlStore,
    simulated: Simulated,
    sink_http: httpx2.Client,
    clock: FakeClock,
) -> None:
    metrics = RelayMetrics()
    actors = attach_runtime(
        stub_broker,
        store=store,
        simulated=simulated,
        http=sink_http,
        subscriptions=(subscription(),),
        clock=clock,
        metrics=metrics,
    )
    invitation = invite(simulated, store)
    simulated.move(invitation.pla_tst_id or 0, "complete")

    DramatiqEnqueuer(actors).completion(invitation.id)
    drain(stub_broker)

    registry = metrics.registry
    events_created = registry.get_sample_value(
        "isograd_relay_events_created_total", {"type": "assessment.completed"}
    )
    assert events_created == 1
    assert registry.get_sample_value("isograd_relay_deliveries_total", {"result": "delivered"}) == 1


def test_the_same_completion_enqueued_twice_delivers_once(
    stub_broker: dramatiq.Broker,
    store: SqlStore,
    simulated: Simulated,
    sink_http: httpx2.Client,
    target: ScriptedTarget,
    clock: FakeClock,
) -> None:
    actors = attach_runtime(
        stub_broker,
        store=store,
        simulated=simulated,
        http=sink_http,
        subscriptions=(subscription(),),
        clock=clock,
    )
    invitation = invite(simulated, store)
    simulated.move(invitation.pla_tst_id or 0, "complete")
    enqueuer = DramatiqEnqueuer(actors)

    enqueuer.completion(invitation.id)
    enqueuer.completion(invitation.id)
    drain(stub_broker)

    assert len(store.list_events().items) == 1
    assert len(target.requests) == 1


def test_a_transient_isograd_error_is_handed_to_dramatiq_as_a_retry(
    stub_broker: dramatiq.Broker,
    store: SqlStore,
    simulated: Simulated,
    sink_http: httpx2.Client,
    clock: FakeClock,
) -> None:
    actors = attach_runtime(
        stub_broker,
        store=store,
        simulated=simulated,
        http=sink_http,
        subscriptions=(),
        clock=clock,
    )
    invitation = invite(simulated, store)
    simulated.faults(fail_next=5, error_status=503)

    with pytest.raises(dramatiq.Retry) as caught:
        actors.process_completion(invitation.id)  # type: ignore[call-arg]  # recheck defaults

    assert isinstance(caught.value.__cause__, IsogradUnavailableError)


def test_each_actor_declares_its_queue_retries_and_time_limit(
    stub_broker: dramatiq.Broker,
) -> None:
    actors = declare_actors(stub_broker)

    for actor, queue in (
        (actors.process_completion, "completions"),
        (actors.process_completions, "completions"),
        (actors.deliver, "deliveries"),
    ):
        assert actor.queue_name == queue
        assert {"max_retries", "min_backoff", "max_backoff", "time_limit", "throws"} <= set(
            actor.options
        )
        assert actor.fn.__doc__
        assert queue in actor.fn.__doc__


def test_the_enqueuer_sends_a_delivery_without_delay_to_the_ready_queue(
    stub_broker: dramatiq.Broker,
) -> None:
    assert isinstance(stub_broker, StubBroker)
    enqueuer = DramatiqEnqueuer(declare_actors(stub_broker))

    enqueuer.delivery("dlv_1")

    assert stub_broker.queues[DELIVERIES_QUEUE].qsize() == 1
    assert stub_broker.queues[f"{DELIVERIES_QUEUE}.DQ"].qsize() == 0


def test_the_enqueuer_sends_a_delayed_delivery_with_its_delay_in_milliseconds(
    stub_broker: dramatiq.Broker,
) -> None:
    assert isinstance(stub_broker, StubBroker)
    enqueuer = DramatiqEnqueuer(declare_actors(stub_broker))

    enqueuer.delivery("dlv_1", delay_seconds=5)

    [message] = list(stub_broker.queues[f"{DELIVERIES_QUEUE}.DQ"].queue)
    decoded = dramatiq.Message.decode(message)
    assert decoded.args == ("dlv_1",)
    assert 0 < decoded.options["eta"] - decoded.message_timestamp <= 5_000 + 1_000


def test_a_delayed_delivery_never_runs_before_the_time_its_retry_is_due(
    stub_broker: dramatiq.Broker, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Dramatiq's eta is the send time truncated to the millisecond plus the delay: rounding the
    # delay to the nearest millisecond let the message run up to 1.5 ms before next_attempt_at,
    # where the claim finds the retry not yet due and only the sweeper runs it, minutes late.
    assert isinstance(stub_broker, StubBroker)
    sent_at = 1_000_000.0009
    monkeypatch.setattr(dramatiq.common, "time", lambda: sent_at)
    enqueuer = DramatiqEnqueuer(declare_actors(stub_broker))

    enqueuer.delivery("dlv_1", delay_seconds=5.0004)

    [message] = list(stub_broker.queues[f"{DELIVERIES_QUEUE}.DQ"].queue)
    assert dramatiq.Message.decode(message).options["eta"] / 1000 >= sent_at + 5.0004


def test_the_enqueuer_passes_the_recheck_count_to_the_completion(
    stub_broker: dramatiq.Broker,
) -> None:
    assert isinstance(stub_broker, StubBroker)
    enqueuer = DramatiqEnqueuer(declare_actors(stub_broker))

    enqueuer.completion("inv_1", recheck=2)

    [message] = list(stub_broker.queues[COMPLETIONS_QUEUE].queue)
    assert dramatiq.Message.decode(message).args == ("inv_1", 2)


def test_the_enqueuer_sends_callbacks_arriving_together_as_batches_of_ids(
    stub_broker: dramatiq.Broker,
) -> None:
    assert isinstance(stub_broker, StubBroker)
    enqueuer = DramatiqEnqueuer(declare_actors(stub_broker))
    ids = [f"inv_{n}" for n in range(COMPLETION_BATCH + 3)]

    enqueuer.completions(ids)

    messages = [dramatiq.Message.decode(m) for m in stub_broker.queues[COMPLETIONS_QUEUE].queue]
    assert [m.actor_name for m in messages] == ["process_completions"] * 2
    assert [m.args for m in messages] == [(ids[:COMPLETION_BATCH],), (ids[COMPLETION_BATCH:],)]


def test_the_enqueuer_sends_a_lone_callback_as_a_single_completion(
    stub_broker: dramatiq.Broker,
) -> None:
    assert isinstance(stub_broker, StubBroker)
    enqueuer = DramatiqEnqueuer(declare_actors(stub_broker))

    enqueuer.completions(["inv_1"])

    [message] = list(stub_broker.queues[COMPLETIONS_QUEUE].queue)
    decoded = dramatiq.Message.decode(message)
    assert (decoded.actor_name, decoded.args) == ("process_completion", ("inv_1", 0))


def test_a_batch_of_completions_through_the_broker_ends_as_delivered_webhooks(
    stub_broker: dramatiq.Broker,
    store: SqlStore,
    simulated: Simulated,
    sink_http: httpx2.Client,
    target: ScriptedTarget,
    clock: FakeClock,
) -> None:
    actors = attach_runtime(
        stub_broker,
        store=store,
        simulated=simulated,
        http=sink_http,
        subscriptions=(subscription("hr"), subscription("lms")),
        clock=clock,
    )
    invitations = [invite(simulated, store, email=f"c{n}@example.org") for n in range(3)]
    for invitation in invitations:
        simulated.move(invitation.pla_tst_id or 0, "complete")

    DramatiqEnqueuer(actors).completions([i.id for i in invitations])
    drain(stub_broker)

    deliveries = store.list_deliveries()
    assert len(deliveries) == 6
    assert {d.status for d in deliveries} == {DeliveryStatus.DELIVERED}
    assert len(target.requests) == 6


def test_a_broker_without_runtime_middleware_refuses_to_run_the_actors(
    stub_broker: dramatiq.Broker,
) -> None:
    declare_actors(stub_broker)

    with pytest.raises(RuntimeError, match="RuntimeMiddleware"):
        runtime_of(stub_broker)


def test_the_runtime_from_settings_builds_one_webhook_sink_per_subscription(
    tmp_path: Path,
) -> None:
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'relay.db'}", subscriptions=(subscription(),)
    )
    runtime = Runtime.from_settings(settings, RecordingEnqueuer())
    try:
        sink = runtime.sink_for(settings.subscriptions[0])

        assert isinstance(sink, WebhookSink)
        assert runtime.sink_for(settings.subscriptions[0]) is sink
        assert runtime.subscriptions_by_name == {"hr": settings.subscriptions[0]}
    finally:
        runtime.close()


def test_the_runtime_names_tests_from_the_settings_test_names(tmp_path: Path) -> None:
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'relay.db'}", test_names={101: "TOSA Excel"}
    )
    runtime = Runtime.from_settings(settings, RecordingEnqueuer())
    try:
        assert runtime.catalogue.name(101) == "TOSA Excel"
    finally:
        runtime.close()


def test_the_runtime_schedule_follows_the_subscription(tmp_path: Path) -> None:
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'relay.db'}")
    runtime = Runtime.from_settings(settings, RecordingEnqueuer())
    try:
        schedule = runtime.schedule_for(subscription(retry_schedule=(1.0, 2.0)))

        assert schedule.delays == (1.0, 2.0)
    finally:
        runtime.close()


@pytest.mark.redis
def test_a_completion_through_real_redis_reaches_a_real_receiver(
    redis_url: str, store: SqlStore, simulated: Simulated, clock: FakeClock
) -> None:
    namespace = f"relay-test-{uuid.uuid4().hex}"
    broker = make_broker(redis_url, namespace=namespace)
    assert isinstance(broker, RedisBroker)
    with RecordingReceiver() as receiver, httpx2.Client(follow_redirects=False) as http:
        try:
            actors = attach_runtime(
                broker,
                store=store,
                simulated=simulated,
                http=http,
                subscriptions=(subscription(url=receiver.url("/hook")),),
                clock=clock,
            )
            invitation = invite(simulated, store)
            simulated.move(invitation.pla_tst_id or 0, "complete")

            DramatiqEnqueuer(actors).completion(invitation.id)
            drain(broker)

            [request] = receiver.wait_for_requests(1)
            [delivery] = store.list_deliveries()
            assert request.headers["webhook-id"] == delivery.event_id
            assert delivery.status is DeliveryStatus.DELIVERED
        finally:
            # Only our own keys: everything under this run's namespace.
            keys = list(broker.client.scan_iter(match=f"{namespace}*"))
            if keys:
                broker.client.delete(*keys)
            broker.close()
