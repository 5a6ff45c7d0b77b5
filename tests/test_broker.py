"""make_broker and the correlation id: enqueued with a message, bound while the actor runs."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import dramatiq
import pytest
import redis
import structlog
from dramatiq.brokers.rabbitmq import RabbitmqBroker
from dramatiq.brokers.redis import RedisBroker
from dramatiq.brokers.stub import StubBroker
from structlog.testing import LogCapture

from worker.broker import (
    CORRELATION_KEY,
    CorrelationMiddleware,
    broker_probe,
    enqueue_all,
    make_broker,
)
from worker.errors import ConfigurationError, RetryableError

PROBE_QUEUE = "probe"


@pytest.fixture
def captured() -> Iterator[LogCapture]:
    """Log entries as the real configuration sees them: with structlog's context merged in."""
    capture = LogCapture()
    structlog.configure(processors=[structlog.contextvars.merge_contextvars, capture])
    yield capture
    structlog.reset_defaults()


@pytest.fixture(autouse=True)
def clean_context() -> Iterator[None]:
    structlog.contextvars.clear_contextvars()
    yield
    structlog.contextvars.clear_contextvars()


def declare_probe(broker: dramatiq.Broker, *, fail_first: bool = False) -> dramatiq.Actor[Any, Any]:
    """An actor that logs `probe_ran`; with `fail_first`, its first run raises."""
    runs: list[int] = []

    def probe(number: int) -> None:
        runs.append(number)
        structlog.get_logger().info("probe_ran", number=number)
        if fail_first and len(runs) == 1:
            raise RuntimeError("first run fails")

    return dramatiq.actor(
        broker=broker, actor_name="probe", queue_name=PROBE_QUEUE, max_retries=1, min_backoff=1
    )(probe)


def run_worker(broker: dramatiq.Broker) -> None:
    worker = dramatiq.Worker(broker, worker_threads=1, worker_timeout=100)
    worker.start()
    try:
        broker.join(PROBE_QUEUE)
        worker.join()
    finally:
        worker.stop()


def test_the_stub_url_gives_a_stub_broker_made_global(stub_broker: dramatiq.Broker) -> None:
    assert isinstance(stub_broker, StubBroker)
    assert dramatiq.get_broker() is stub_broker


def test_every_broker_carries_the_correlation_middleware(stub_broker: dramatiq.Broker) -> None:
    assert any(isinstance(m, CorrelationMiddleware) for m in stub_broker.middleware)


@pytest.mark.parametrize("url", [None, ""])
def test_no_broker_url_is_a_configuration_error(url: str | None) -> None:
    with pytest.raises(ConfigurationError, match="BROKER_URL"):
        make_broker(url)


def test_an_unknown_scheme_is_a_configuration_error_that_hides_the_url() -> None:
    with pytest.raises(ConfigurationError, match="'kafka'") as caught:
        make_broker("kafka://user:hunter2@kafka.example:9092")

    assert "hunter2" not in str(caught.value)


def test_a_redis_url_gives_a_redis_broker_on_our_configured_client() -> None:
    broker = make_broker("redis://127.0.0.1:6379/0", namespace="ns-test", socket_timeout=7.0)
    try:
        assert isinstance(broker, RedisBroker)
        assert broker.namespace == "ns-test"
        kwargs = broker.client.connection_pool.connection_kwargs
        assert kwargs["socket_timeout"] == 7.0
        assert kwargs["health_check_interval"] == 30
        assert kwargs["retry_on_timeout"] is True
        assert not kwargs.get("decode_responses", False)
    finally:
        broker.close()


def test_an_amqp_url_gives_a_rabbitmq_broker() -> None:
    broker = make_broker("amqp://guest:guest@127.0.0.1:5672/")
    try:
        assert isinstance(broker, RabbitmqBroker)
    finally:
        broker.close()


def test_enqueuing_takes_the_correlation_id_bound_in_the_context(
    stub_broker: dramatiq.Broker,
) -> None:
    probe = declare_probe(stub_broker)
    structlog.contextvars.bind_contextvars(correlation_id="req-42")

    message = probe.send(1)

    assert message.options[CORRELATION_KEY] == "req-42"


def test_enqueuing_without_a_bound_id_makes_a_new_one_per_message(
    stub_broker: dramatiq.Broker,
) -> None:
    probe = declare_probe(stub_broker)

    first, second = probe.send(1), probe.send(2)

    assert len(first.options[CORRELATION_KEY]) == 32
    assert first.options[CORRELATION_KEY] != second.options[CORRELATION_KEY]


def test_an_id_already_in_the_options_is_kept(stub_broker: dramatiq.Broker) -> None:
    probe = declare_probe(stub_broker)
    structlog.contextvars.bind_contextvars(correlation_id="req-42")

    message = probe.send_with_options(args=(1,), correlation_id="original")

    assert message.options[CORRELATION_KEY] == "original"


def test_the_correlation_id_travels_to_the_actors_log_lines(
    stub_broker: dramatiq.Broker, captured: LogCapture
) -> None:
    probe = declare_probe(stub_broker)
    structlog.contextvars.bind_contextvars(correlation_id="req-42")
    message = probe.send(1)
    structlog.contextvars.clear_contextvars()

    run_worker(stub_broker)

    [line] = [entry for entry in captured.entries if entry["event"] == "probe_ran"]
    assert line["correlation_id"] == "req-42"
    assert line["message_id"] == message.message_id
    assert line["actor"] == "probe"


def test_a_retried_message_keeps_its_correlation_id(
    stub_broker: dramatiq.Broker, captured: LogCapture
) -> None:
    probe = declare_probe(stub_broker, fail_first=True)
    structlog.contextvars.bind_contextvars(correlation_id="req-7")
    probe.send(1)
    structlog.contextvars.clear_contextvars()

    run_worker(stub_broker)

    lines = [entry for entry in captured.entries if entry["event"] == "probe_ran"]
    assert [line["correlation_id"] for line in lines] == ["req-7", "req-7"]


def test_the_bound_keys_are_removed_once_the_message_is_processed(
    stub_broker: dramatiq.Broker,
) -> None:
    probe = declare_probe(stub_broker)
    message = dramatiq.broker.MessageProxy(
        probe.message_with_options(args=(1,), correlation_id="c")
    )
    middleware = CorrelationMiddleware()
    middleware.before_process_message(stub_broker, message)
    bound = structlog.contextvars.get_contextvars()

    middleware.after_process_message(stub_broker, message, result=None)

    assert bound == {"correlation_id": "c", "message_id": message.message_id, "actor": "probe"}
    assert structlog.contextvars.get_contextvars() == {}


def test_the_bound_keys_are_removed_when_a_message_is_skipped(
    stub_broker: dramatiq.Broker,
) -> None:
    probe = declare_probe(stub_broker)
    message = dramatiq.broker.MessageProxy(
        probe.message_with_options(args=(1,), correlation_id="c")
    )
    middleware = CorrelationMiddleware()
    middleware.before_process_message(stub_broker, message)

    middleware.after_skip_message(stub_broker, message)

    assert structlog.contextvars.get_contextvars() == {}


@pytest.mark.redis
def test_the_correlation_id_travels_through_real_redis(
    redis_url: str, captured: LogCapture
) -> None:
    namespace = f"relay-test-{uuid.uuid4().hex}"
    broker = make_broker(redis_url, namespace=namespace)
    assert isinstance(broker, RedisBroker)
    try:
        probe = declare_probe(broker)
        structlog.contextvars.bind_contextvars(correlation_id="req-redis")
        probe.send(1)
        structlog.contextvars.clear_contextvars()

        run_worker(broker)

        [line] = [entry for entry in captured.entries if entry["event"] == "probe_ran"]
        assert line["correlation_id"] == "req-redis"
    finally:
        # Only our own keys: everything under this run's namespace.
        keys = list(broker.client.scan_iter(match=f"{namespace}*"))
        if keys:
            broker.client.delete(*keys)
        broker.close()


def test_the_redis_broker_probe_answers_when_redis_does(redis_url: str) -> None:
    broker = make_broker(redis_url, namespace=f"relay-test-{uuid.uuid4().hex}")
    try:
        probe = broker_probe(broker)

        assert probe is not None
        probe()  # returns: Redis answered
    finally:
        broker.close()


def test_the_redis_broker_probe_raises_a_retryable_error_when_redis_is_gone() -> None:
    # Port 1 on loopback: nothing listens there, the connection is refused at once.
    broker = make_broker("redis://127.0.0.1:1/0", socket_connect_timeout=1.0)
    try:
        probe = broker_probe(broker)
        assert probe is not None

        with pytest.raises(RetryableError, match="broker unavailable"):
            probe()
    finally:
        broker.close()


def test_brokers_without_a_probe_say_so(stub_broker: dramatiq.Broker) -> None:
    assert broker_probe(stub_broker) is None


# -- enqueue_all: many messages in one round trip ------------------------------------------------


@pytest.fixture
def redis_broker(redis_url: str) -> Iterator[RedisBroker]:
    namespace = f"relay-test-{uuid.uuid4().hex}"
    broker = make_broker(redis_url, namespace=namespace)
    assert isinstance(broker, RedisBroker)
    yield broker
    keys = list(broker.client.scan_iter(match=f"{namespace}*"))  # only this run's keys
    if keys:
        broker.client.delete(*keys)
    broker.close()


def stored_messages(broker: RedisBroker, queue: str) -> list[dramatiq.Message[Any]]:
    """The messages waiting in `queue`, in queue order (dispatch.lua's key layout)."""
    key = f"{broker.namespace}:{queue}"
    ids = broker.client.lrange(key, 0, -1)
    encoded = [broker.client.hget(f"{key}.msgs", i) for i in ids]
    return [dramatiq.Message.decode(data) for data in encoded if isinstance(data, bytes)]


@pytest.mark.redis
def test_enqueue_all_stores_what_send_stores_in_one_round_trip(
    redis_broker: RedisBroker,
) -> None:
    probe = declare_probe(redis_broker)
    sent = probe.send(1)

    enqueue_all(redis_broker, [probe.message(2), probe.message(3)])

    [by_send, *by_batch] = stored_messages(redis_broker, PROBE_QUEUE)
    assert [m.args for m in by_batch] == [(2,), (3,)]
    for message in by_batch:
        assert (message.queue_name, message.actor_name, message.kwargs) == (
            by_send.queue_name,
            by_send.actor_name,
            by_send.kwargs,
        )
        # Same options as send's (redis_message_id unique per enqueue, correlation id added by
        # the before_enqueue middleware hook).
        assert set(message.options) == set(sent.options) == {"redis_message_id", CORRELATION_KEY}
    redis_ids = {m.options["redis_message_id"] for m in (by_send, *by_batch)}
    assert len(redis_ids) == 3


@pytest.mark.redis
def test_messages_enqueued_together_are_each_run_once_by_a_real_worker(
    redis_broker: RedisBroker, captured: LogCapture
) -> None:
    probe = declare_probe(redis_broker)

    enqueue_all(redis_broker, [probe.message(n) for n in range(20)])
    run_worker(redis_broker)

    ran = sorted(e["number"] for e in captured.entries if e["event"] == "probe_ran")
    assert ran == list(range(20))


@pytest.mark.redis
def test_enqueue_all_stores_each_queue_s_messages_in_the_order_given(
    redis_broker: RedisBroker,
) -> None:
    probe = declare_probe(redis_broker)
    other = dramatiq.actor(broker=redis_broker, actor_name="other", queue_name="other")(
        lambda number: None
    )

    enqueue_all(
        redis_broker, [probe.message(1), other.message(10), probe.message(2), other.message(20)]
    )

    assert [m.args for m in stored_messages(redis_broker, PROBE_QUEUE)] == [(1,), (2,)]
    assert [m.args for m in stored_messages(redis_broker, "other")] == [(10,), (20,)]


def test_enqueue_all_sends_one_by_one_on_other_brokers(stub_broker: dramatiq.Broker) -> None:
    probe = declare_probe(stub_broker)

    enqueue_all(stub_broker, [probe.message(1), probe.message(2)])

    assert stub_broker.queues[PROBE_QUEUE].qsize() == 2


def test_enqueue_all_raises_when_redis_is_gone() -> None:
    broker = make_broker("redis://127.0.0.1:1/0", socket_connect_timeout=1.0)
    try:
        probe = declare_probe(broker)

        with pytest.raises(redis.ConnectionError):
            enqueue_all(broker, [probe.message(1)])
    finally:
        broker.close()
