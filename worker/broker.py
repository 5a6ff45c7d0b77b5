"""The message broker: which Dramatiq broker a URL names, and the correlation id it carries."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from typing import Any

import dramatiq
import redis
import structlog
from dramatiq.broker import MessageProxy
from dramatiq.brokers.redis import RedisBroker
from dramatiq.brokers.stub import StubBroker
from dramatiq.middleware import Middleware

from worker.errors import ConfigurationError, RetryableError

STUB_URL = "stub"
# Crash recovery (Redis). A worker's unacked messages are requeued by "maintenance", which runs
# inside dramatiq's dispatch script on a random `maintenance_chance` per million calls for the
# queue named in that call, and only for workers silent for `heartbeat_timeout` (dramatiq
# brokers/redis/dispatch.lua). Dramatiq's defaults (60 s, 1 000 per million) leave a SIGKILLed
# worker's message waiting ~17 min on average on a quiet queue, where each idle consumer calls
# fetch about once a second. Live workers call the script at least that often (the delay-queue
# consumers always fetch), so 15 s is a wide margin; at 25 % an idle queue runs maintenance
# within seconds (P(none in 30 fetches) = 0.75^30 < 0.02 %). The re-run delay after a SIGKILL
# is measured by tests/test_crash_recovery.py.
# Maintenance is two ZRANGEBYSCOREs, plus a KEYS scan per dead worker found: keep the broker's
# Redis database to itself.
HEARTBEAT_TIMEOUT_MS = 15_000
MAINTENANCE_CHANCE = 250_000
DEFAULT_NAMESPACE = "isograd-relay"
CORRELATION_KEY = "correlation_id"

# Keys CorrelationMiddleware binds in structlog's context while a message is processed.
_BOUND_KEYS = (CORRELATION_KEY, "message_id", "actor")


class CorrelationMiddleware(Middleware):
    """Carries a correlation id from the enqueuing code to the actor's log lines.

    On enqueue the id bound in structlog's context (under `correlation_id`) is copied into the
    message options, or a new one is made; Dramatiq's own retries re-enqueue the same options, so
    the id survives them. While the message is processed, the id, the message id and the actor
    name are bound in structlog's context, and removed afterwards so the next message on the same
    worker thread starts clean.
    """

    def before_enqueue(
        self, broker: dramatiq.Broker, message: dramatiq.Message[Any], delay: int
    ) -> None:
        if CORRELATION_KEY not in message.options:
            bound = structlog.contextvars.get_contextvars().get(CORRELATION_KEY)
            message.options[CORRELATION_KEY] = str(bound) if bound else new_correlation_id()

    def before_process_message(self, broker: dramatiq.Broker, message: MessageProxy) -> None:
        structlog.contextvars.bind_contextvars(
            correlation_id=message.options.get(CORRELATION_KEY) or new_correlation_id(),
            message_id=message.message_id,
            actor=message.actor_name,
        )

    def after_process_message(
        self,
        broker: dramatiq.Broker,
        message: MessageProxy,
        *,
        result: Any = None,
        exception: BaseException | None = None,
    ) -> None:
        structlog.contextvars.unbind_contextvars(*_BOUND_KEYS)

    def after_skip_message(self, broker: dramatiq.Broker, message: MessageProxy) -> None:
        structlog.contextvars.unbind_contextvars(*_BOUND_KEYS)


def new_correlation_id() -> str:
    return uuid.uuid4().hex


class _OwnedClientRedisBroker(RedisBroker):
    """A RedisBroker that closes the Redis client we built for it (Dramatiq's close is a no-op)."""

    def close(self) -> None:
        super().close()
        self.client.close()


def make_broker(
    url: str | None,
    *,
    namespace: str = DEFAULT_NAMESPACE,
    middleware: Sequence[Middleware] = (),
    socket_timeout: float = 10.0,
    socket_connect_timeout: float = 5.0,
    health_check_interval: int = 30,
    heartbeat_timeout_ms: int = HEARTBEAT_TIMEOUT_MS,
    dead_message_ttl_ms: int = 7 * 24 * 3600 * 1000,
    maintenance_chance: int = MAINTENANCE_CHANCE,
) -> dramatiq.Broker:
    """Build the broker `url` names and make it Dramatiq's global broker (the one place that does).

    `redis://` / `rediss://` / `unix://` → RedisBroker on a client we configure (timeouts, health
    checks; raw bytes, never `decode_responses`, which Dramatiq's scripts need); `amqp://` /
    `amqps://` → RabbitmqBroker; `"stub"` → StubBroker for tests. `namespace` prefixes every Redis
    key, so tests can use their own. The correlation middleware is always added, after Dramatiq's
    defaults, then `middleware` in order. Close the broker with `broker.close()`.
    """
    if not url:
        raise ConfigurationError(
            "no broker URL: set BROKER_URL or REDIS_URL (the dev command starts an embedded Redis)"
        )
    broker: dramatiq.Broker
    scheme = url.split(":", 1)[0].lower()
    if url == STUB_URL:
        broker = StubBroker()
    elif scheme in {"redis", "rediss", "unix"}:
        client = redis.Redis.from_url(
            url,
            socket_timeout=socket_timeout,
            socket_connect_timeout=socket_connect_timeout,
            health_check_interval=health_check_interval,
            retry_on_timeout=True,
        )
        broker = _OwnedClientRedisBroker(  # type: ignore[no-untyped-call]
            client=client,
            namespace=namespace,
            heartbeat_timeout=heartbeat_timeout_ms,
            dead_message_ttl=dead_message_ttl_ms,
            maintenance_chance=maintenance_chance,
        )
    elif scheme in {"amqp", "amqps"}:
        # Imported here: pika is the optional `rabbitmq` extra.
        from dramatiq.brokers.rabbitmq import RabbitmqBroker

        broker = RabbitmqBroker(url=url)
    else:
        raise ConfigurationError(
            f"unsupported broker URL scheme {scheme!r}: use redis://, amqp:// or stub"
        )
    broker.add_middleware(CorrelationMiddleware())
    for extra in middleware:
        broker.add_middleware(extra)
    dramatiq.set_broker(broker)
    return broker


def enqueue_all(broker: dramatiq.Broker, messages: Sequence[dramatiq.Message[Any]]) -> None:
    """Enqueue `messages` now (no delay) as `broker.enqueue` would, in one round trip on Redis.

    Other brokers (RabbitMQ, the StubBroker): one `broker.enqueue` per message. Raises what the
    broker raises; on Redis either every message is stored or none is (one MULTI/EXEC), but a
    failure while reading the answer leaves unknown which, so take none as sent (the relay's
    jobs are idempotent: a second one is harmless).
    """
    if not isinstance(broker, RedisBroker):
        for message in messages:
            broker.enqueue(message)
        return
    # What RedisBroker.enqueue does for delay=None (dramatiq 2.2.1, dramatiq/brokers/redis.py):
    # copy the message with a fresh `redis_message_id` (a Redis id must be unique per enqueue),
    # run the middleware's before_enqueue, store it, then after_enqueue.
    enqueued = [
        message.copy(options={"redis_message_id": str(uuid.uuid4())}) for message in messages
    ]
    for message in enqueued:
        broker.emit_before("enqueue", message, None)
    # Storing it is what the dispatch script's "enqueue" command does
    # (dramatiq/brokers/redis/dispatch.lua): HSET "<ns>:<queue>.msgs" id data, then RPUSH
    # "<ns>:<queue>" id. Here each queue's messages go in one HSET and one RPUSH, inside
    # MULTI/EXEC so a consumer never pops an id whose data is not stored yet: two commands a
    # batch instead of one script call (~16 us of Redis, ~25 us of redis-py packing and parsing)
    # per message. Left out, as harmless for a process that only enqueues: the script's
    # heartbeat (it registers the caller as a worker, which only matters for a consumer's acks)
    # and its maintenance draw (requeueing dead workers' messages; every consumer's fetch
    # draws it, see HEARTBEAT_TIMEOUT_MS, and without a consumer nothing would run them
    # anyway). tests/test_broker.py checks the stored messages against what `send` stores and
    # has a real worker run them, so a Dramatiq upgrade that changes the layout shows up there.
    by_queue: dict[str, list[dramatiq.Message[Any]]] = {}
    for message in enqueued:
        by_queue.setdefault(message.queue_name, []).append(message)
    pipeline = broker.client.pipeline(transaction=True)
    for queue_name, queued in by_queue.items():
        key = f"{broker.namespace}:{queue_name}"
        fields: list[str | bytes] = []  # id, data, id, data, ...
        for message in queued:
            fields += (message.options["redis_message_id"], message.encode())
        pipeline.hset(f"{key}.msgs", items=fields)
        pipeline.rpush(key, *fields[::2])
    pipeline.execute()
    for message in enqueued:
        broker.emit_after("enqueue", message, None)


def broker_probe(broker: dramatiq.Broker) -> Callable[[], None] | None:
    """The readiness check of `broker`: it returns when the broker answers and raises
    RetryableError when it does not. None where there is none: RabbitMQ's connections are per
    thread, so a probe run in a thread pool would open one connection per thread."""
    if not isinstance(broker, RedisBroker):
        return None
    client = broker.client

    def ping() -> None:
        try:
            client.ping()
        except redis.RedisError as exc:
            raise RetryableError(f"broker unavailable: {type(exc).__name__}") from exc

    return ping


def queue_depths(broker: dramatiq.Broker) -> dict[str, int]:
    """Messages waiting in each declared queue, by Dramatiq queue name; one Redis round trip.

    Redis: `"{queue}"` counts ready messages no worker has fetched yet (LLEN of the queue's
    list); `"{queue}.DQ"` counts delayed messages not yet due (HLEN of the delay queue's message
    hash: workers prefetch delayed messages and hold them until due, so the list alone would
    miss them). Key layout from Dramatiq's brokers/redis/dispatch.lua. StubBroker: its in-memory
    queues' sizes. RabbitMQ: {} (RabbitMQ exposes queue depths itself). Raises RetryableError
    when Redis does not answer.
    """
    if isinstance(broker, RedisBroker):
        names = sorted(broker.queues | broker.delay_queues)
        pipe = broker.client.pipeline(transaction=False)
        for name in names:
            key = f"{broker.namespace}:{name}"
            if name.endswith(".DQ"):
                pipe.hlen(f"{key}.msgs")
            else:
                pipe.llen(key)
        try:
            sizes = pipe.execute()
        except redis.RedisError as exc:
            raise RetryableError(f"broker unavailable: {type(exc).__name__}") from exc
        return {name: int(size) for name, size in zip(names, sizes, strict=True)}
    if isinstance(broker, StubBroker):
        return {name: queue.qsize() for name, queue in sorted(broker.queues.items())}
    return {}
