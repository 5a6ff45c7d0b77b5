"""Tests of the Prometheus metrics: what the callback endpoint, the pipeline and the state
collector record, /metrics and the worker's metrics server, the broker's queue depths."""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx2
import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient

from tests.fakes import FakeClock, FixedRandom, RecordingEnqueuer
from tests.fixtures.pipeline import EMAIL, ScriptedTarget, Simulated, invite, subscription
from tests.fixtures.web import KEYS, PUBLIC_URL, edge_settings
from tests.harness.processes import free_port
from webhooks.app import create_app
from worker.broker import make_broker, queue_depths
from worker.errors import ConfigurationError, RetryableError
from worker.jobs.actors import DramatiqEnqueuer, declare_actors
from worker.jobs.completions import process_completion
from worker.jobs.deliveries import deliver
from worker.jobs.process import run_worker
from worker.metrics import CONTENT_TYPE, RelayMetrics, StateCollector
from worker.runtime import Runtime
from worker.settings import Settings
from worker.sinks.registry import make_sink
from worker.storage.records import DeliveryStatus, NewInvitation, new_id
from worker.storage.store import SqlStore
from worker.tokens import callback_url

METRICS_TOKEN = "metrics-token-for-tests-0123"


@pytest.fixture
def metrics() -> RelayMetrics:
    return RelayMetrics()


@pytest.fixture
def web(runtime: Runtime, metrics: RelayMetrics) -> Iterator[TestClient]:
    app = create_app(edge_settings(), runtime=runtime, broker_ping=lambda: None, metrics=metrics)
    with TestClient(app, base_url=PUBLIC_URL) as client:
        yield client


def value(metrics: RelayMetrics, name: str, **labels: str) -> float:
    """A sample's value, 0 when the labelled series does not exist yet."""
    found = metrics.registry.get_sample_value(name, labels)
    return 0.0 if found is None else found


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of an exposition, by name and sorted labels (parsing proves the format)."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def add_delivery(store: SqlStore, subscription_name: str = "hr", pla_tst_id: int = 456) -> str:
    invitation = store.create_invitation(
        NewInvitation(tst_frm_id=101, email=EMAIL, pla_tst_id=pla_tst_id)
    )
    event_id = new_id("evt")
    _, deliveries, _ = store.create_event(
        event_id,
        invitation.id,
        pla_tst_id,
        "assessment.completed",
        {
            "type": "assessment.completed",
            "timestamp": "2026-01-01T00:00:00Z",
            "data": {"event_id": event_id},
        },
        [subscription_name],
    )
    return deliveries[0].id


# -- the registry -----------------------------------------------------------------------------


def test_each_relay_metrics_has_its_own_registry() -> None:
    first, second = RelayMetrics(), RelayMetrics()

    first.record_delivery("delivered")

    assert value(first, "isograd_relay_deliveries_total", result="delivered") == 1
    assert value(second, "isograd_relay_deliveries_total", result="delivered") == 0


def test_an_enqueued_callback_is_counted_as_accepted_with_reason_enqueued(
    metrics: RelayMetrics,
) -> None:
    metrics.record_callback(accepted=True, enqueued=True, reason=None, seconds=0.01)

    assert (
        value(metrics, "isograd_relay_callbacks_total", result="accepted", reason="enqueued") == 1
    )
    assert value(metrics, "isograd_relay_callback_duration_seconds_count", result="accepted") == 1


def test_callbacks_are_counted_by_their_own_result_and_reason_each_time() -> None:
    metrics = RelayMetrics()
    metrics.record_callback(accepted=True, enqueued=True, reason=None, seconds=0.01)
    metrics.record_callback(accepted=True, enqueued=False, reason="duplicate", seconds=0.01)
    metrics.record_callback(accepted=True, enqueued=True, reason=None, seconds=0.01)
    metrics.record_callback(accepted=False, enqueued=False, reason="bad_mac", seconds=0.01)

    assert (
        value(metrics, "isograd_relay_callbacks_total", result="accepted", reason="enqueued") == 2
    )
    assert (
        value(metrics, "isograd_relay_callbacks_total", result="accepted", reason="duplicate") == 1
    )
    assert value(metrics, "isograd_relay_callbacks_total", result="rejected", reason="bad_mac") == 1
    assert value(metrics, "isograd_relay_callback_duration_seconds_count", result="accepted") == 3
    assert value(metrics, "isograd_relay_callback_duration_seconds_count", result="rejected") == 1


# -- the callback endpoint --------------------------------------------------------------------


def test_a_valid_callback_increments_the_accepted_enqueued_counter(
    web: TestClient, store: SqlStore, metrics: RelayMetrics
) -> None:
    invitation = store.create_invitation(
        NewInvitation(tst_frm_id=101, email=EMAIL, pla_tst_id=4242)
    )

    web.get(callback_url(PUBLIC_URL, KEYS, invitation.id).removeprefix(PUBLIC_URL))

    assert (
        value(metrics, "isograd_relay_callbacks_total", result="accepted", reason="enqueued") == 1
    )


def test_a_forged_callback_is_counted_as_rejected_with_its_reason(
    web: TestClient, metrics: RelayMetrics
) -> None:
    response = web.get(f"/callbacks/isograd/{KEYS[0].kid}.inv_forged.AAAAAAAAAAAAAAAAAAAAAA")

    assert response.status_code == 404
    assert value(metrics, "isograd_relay_callbacks_total", result="rejected", reason="bad_mac") == 1
    assert value(metrics, "isograd_relay_callback_duration_seconds_count", result="rejected") == 1


def test_a_callback_for_an_unknown_invitation_is_counted_with_that_reason(
    web: TestClient, metrics: RelayMetrics
) -> None:
    web.get(callback_url(PUBLIC_URL, KEYS, "inv_nobody").removeprefix(PUBLIC_URL))

    reason = "unknown_invitation"
    assert value(metrics, "isograd_relay_callbacks_total", result="rejected", reason=reason) == 1


def test_a_callback_reports_its_batch_size_and_the_time_of_its_store_and_enqueue(
    web: TestClient, store: SqlStore, metrics: RelayMetrics
) -> None:
    invitation = store.create_invitation(
        NewInvitation(tst_frm_id=101, email=EMAIL, pla_tst_id=4343)
    )

    web.get(callback_url(PUBLIC_URL, KEYS, invitation.id).removeprefix(PUBLIC_URL))
    web.get(callback_url(PUBLIC_URL, KEYS, "inv_nobody").removeprefix(PUBLIC_URL))
    exposed = samples(web.get("/metrics").text)

    # Two batches of one (each written at once); only the first enqueued anything.
    assert exposed[("isograd_relay_callback_batch_receipts_count", ())] == 2
    assert exposed[("isograd_relay_callback_batch_receipts_sum", ())] == 2
    store_count = ("isograd_relay_callback_batch_duration_seconds_count", (("stage", "store"),))
    enqueue_count = (
        "isograd_relay_callback_batch_duration_seconds_count",
        (("stage", "enqueue"),),
    )
    assert exposed[store_count] == 2
    assert exposed[enqueue_count] == 1
    store_sum = ("isograd_relay_callback_batch_duration_seconds_sum", (("stage", "store"),))
    assert exposed[store_sum] > 0


# -- /metrics ---------------------------------------------------------------------------------


def test_metrics_answers_the_prometheus_text_format_with_the_relay_metrics(
    web: TestClient,
) -> None:
    response = web.get("/metrics")

    assert response.status_code == 200
    assert response.headers["content-type"] == CONTENT_TYPE
    names = {family.name for family in text_string_to_metric_families(response.text)}
    assert {
        "isograd_relay_callbacks",
        "isograd_relay_callback_duration_seconds",
        "isograd_relay_completions",
        "isograd_relay_completion_duration_seconds",
        "isograd_relay_events_created",
        "isograd_relay_deliveries",
        "isograd_relay_delivery_attempt_duration_seconds",
        "isograd_relay_state_up",
        "isograd_relay_deliveries_by_status",
    } <= names


def test_metrics_reports_deliveries_by_status_from_the_store(
    web: TestClient, store: SqlStore
) -> None:
    add_delivery(store)

    found = samples(web.get("/metrics").text)

    assert found[("isograd_relay_deliveries_by_status", (("status", "pending"),))] == 1
    assert found[("isograd_relay_deliveries_by_status", (("status", "failed"),))] == 0
    assert found[("isograd_relay_state_up", (("source", "database"),))] == 1


def test_metrics_shows_no_invitation_id_or_email(web: TestClient, store: SqlStore) -> None:
    invitation = store.create_invitation(
        NewInvitation(tst_frm_id=101, email=EMAIL, pla_tst_id=4242)
    )
    web.get(callback_url(PUBLIC_URL, KEYS, invitation.id).removeprefix(PUBLIC_URL))
    web.get(callback_url(PUBLIC_URL, KEYS, "inv_nobody").removeprefix(PUBLIC_URL))

    text = web.get("/metrics").text

    assert invitation.id not in text
    assert "inv_nobody" not in text
    assert EMAIL not in text


def test_metrics_is_open_without_a_metrics_token(web: TestClient) -> None:
    assert web.get("/metrics").status_code == 200


@pytest.fixture
def guarded_web(runtime: Runtime) -> Iterator[TestClient]:
    settings = replace(edge_settings(), metrics_token=METRICS_TOKEN)
    app = create_app(settings, runtime=runtime, broker_ping=lambda: None)
    with TestClient(app, base_url=PUBLIC_URL) as client:
        yield client


def test_metrics_with_a_token_refuses_a_scrape_without_it(guarded_web: TestClient) -> None:
    response = guarded_web.get("/metrics")

    assert response.status_code == 401
    assert "isograd_relay" not in response.text


def test_metrics_with_a_token_answers_a_scrape_with_it(guarded_web: TestClient) -> None:
    response = guarded_web.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})

    assert response.status_code == 200
    assert "isograd_relay_callbacks" in response.text


# -- the pipeline -----------------------------------------------------------------------------


def complete(
    invitation_id: str,
    *,
    store: SqlStore,
    simulated: Simulated,
    enqueuer: RecordingEnqueuer,
    clock: FakeClock,
    metrics: RelayMetrics,
) -> None:
    process_completion(
        invitation_id,
        store=store,
        client=simulated.client,
        subscriptions=(subscription(),),
        enqueuer=enqueuer,
        clock=clock,
        metrics=metrics,
    )


def test_a_confirmed_completion_counts_its_result_and_one_new_event(
    store: SqlStore,
    simulated: Simulated,
    enqueuer: RecordingEnqueuer,
    clock: FakeClock,
    metrics: RelayMetrics,
) -> None:
    invitation = invite(simulated, store)
    simulated.move(invitation.pla_tst_id or 0, "complete")

    complete(
        invitation.id,
        store=store,
        simulated=simulated,
        enqueuer=enqueuer,
        clock=clock,
        metrics=metrics,
    )

    assert value(metrics, "isograd_relay_completions_total", result="completed") == 1
    assert (
        value(metrics, "isograd_relay_completion_duration_seconds_count", result="completed") == 1
    )
    event = "assessment.completed"
    assert value(metrics, "isograd_relay_events_created_total", type=event) == 1


def test_a_completion_run_twice_counts_two_runs_and_one_event(
    store: SqlStore,
    simulated: Simulated,
    enqueuer: RecordingEnqueuer,
    clock: FakeClock,
    metrics: RelayMetrics,
) -> None:
    invitation = invite(simulated, store)
    simulated.move(invitation.pla_tst_id or 0, "complete")

    for _ in range(2):
        complete(
            invitation.id,
            store=store,
            simulated=simulated,
            enqueuer=enqueuer,
            clock=clock,
            metrics=metrics,
        )

    assert value(metrics, "isograd_relay_completions_total", result="completed") == 1
    assert value(metrics, "isograd_relay_completions_total", result="already_completed") == 1
    event = "assessment.completed"
    assert value(metrics, "isograd_relay_events_created_total", type=event) == 1


def test_a_premature_completion_counts_as_not_confirmed(
    store: SqlStore,
    simulated: Simulated,
    enqueuer: RecordingEnqueuer,
    clock: FakeClock,
    metrics: RelayMetrics,
) -> None:
    invitation = invite(simulated, store)

    complete(
        invitation.id,
        store=store,
        simulated=simulated,
        enqueuer=enqueuer,
        clock=clock,
        metrics=metrics,
    )

    assert value(metrics, "isograd_relay_completions_total", result="not_confirmed") == 1
    assert value(metrics, "isograd_relay_events_created_total", type="assessment.completed") == 0


@pytest.fixture
def run_delivery(
    store: SqlStore, clock: FakeClock, metrics: RelayMetrics
) -> Iterator[Callable[..., None]]:
    clients: list[httpx2.Client] = []

    def run(*answers: httpx2.Response, runs: int = 1) -> None:
        target = ScriptedTarget(*answers)
        client = httpx2.Client(transport=target.transport, follow_redirects=False)
        clients.append(client)
        sub = subscription()
        delivery_id = add_delivery(store, sub.name)
        for _ in range(runs):
            deliver(
                delivery_id,
                store=store,
                subscriptions={sub.name: sub},
                sink_for=lambda s: make_sink(s, client),
                enqueuer=RecordingEnqueuer(),
                clock=clock,
                rng=FixedRandom(0.5),
                metrics=metrics,
            )

    yield run
    for client in clients:
        client.close()


def test_a_delivered_webhook_counts_the_delivery_and_times_the_attempt(
    run_delivery: Callable[..., None], metrics: RelayMetrics
) -> None:
    run_delivery(httpx2.Response(200))

    assert value(metrics, "isograd_relay_deliveries_total", result="delivered") == 1
    attempts = "isograd_relay_delivery_attempt_duration_seconds_count"
    assert value(metrics, attempts, subscription="hr", outcome="delivered") == 1


def test_a_500_counts_a_scheduled_retry_and_a_retry_attempt(
    run_delivery: Callable[..., None], metrics: RelayMetrics
) -> None:
    run_delivery(httpx2.Response(500))

    assert value(metrics, "isograd_relay_deliveries_total", result="retry_scheduled") == 1
    attempts = "isograd_relay_delivery_attempt_duration_seconds_count"
    assert value(metrics, attempts, subscription="hr", outcome="retry") == 1
    assert value(metrics, attempts, subscription="hr", outcome="delivered") == 0


def test_a_delivery_run_again_counts_nothing_to_do_without_an_attempt(
    run_delivery: Callable[..., None], metrics: RelayMetrics
) -> None:
    run_delivery(httpx2.Response(200), runs=2)

    assert value(metrics, "isograd_relay_deliveries_total", result="nothing_to_do") == 1
    attempts = "isograd_relay_delivery_attempt_duration_seconds_count"
    assert value(metrics, attempts, subscription="hr", outcome="delivered") == 1


# -- the state collector ----------------------------------------------------------------------


class Monotonic:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def collected(collector: StateCollector) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in collector.collect()
        for sample in family.samples
    }


def pending(found: Mapping[tuple[str, tuple[tuple[str, str], ...]], float]) -> float:
    return found[("isograd_relay_deliveries_by_status", (("status", "pending"),))]


def test_the_collector_reports_every_delivery_status_from_a_real_store(store: SqlStore) -> None:
    add_delivery(store, pla_tst_id=1)
    add_delivery(store, pla_tst_id=2)

    found = collected(StateCollector(store))

    assert pending(found) == 2
    statuses = {
        labels[0][1] for name, labels in found if name == "isograd_relay_deliveries_by_status"
    }
    assert statuses == {status.value for status in DeliveryStatus}


def test_the_collector_reuses_its_reading_within_the_ttl(store: SqlStore) -> None:
    monotonic = Monotonic()
    collector = StateCollector(store, ttl=5.0, clock=monotonic)
    collected(collector)
    add_delivery(store)
    monotonic.now += 4.9

    assert pending(collected(collector)) == 0


def test_the_collector_reads_again_after_the_ttl(store: SqlStore) -> None:
    monotonic = Monotonic()
    collector = StateCollector(store, ttl=5.0, clock=monotonic)
    collected(collector)
    add_delivery(store)
    monotonic.now += 5.0

    assert pending(collected(collector)) == 1


class BrokenStore:
    def count_deliveries(self) -> Mapping[DeliveryStatus, int]:
        raise RetryableError("database unavailable: OperationalError")


def test_a_failing_database_reads_as_state_down_and_the_counters_still_scrape(
    metrics: RelayMetrics,
) -> None:
    metrics.watch_state(BrokenStore())
    metrics.record_delivery("delivered")

    found = samples(metrics.exposition().decode())

    assert found[("isograd_relay_state_up", (("source", "database"),))] == 0
    assert found[("isograd_relay_deliveries_total", (("result", "delivered"),))] == 1
    assert not any(name == "isograd_relay_deliveries_by_status" for name, _ in found)


def test_queue_depths_are_reported_as_ready_and_delayed(store: SqlStore) -> None:
    def depths() -> Mapping[str, int]:
        return {"deliveries": 3, "deliveries.DQ": 7}

    found = collected(StateCollector(store, queue_depths=depths))

    ready = (("queue", "deliveries"), ("state", "ready"))
    delayed = (("queue", "deliveries"), ("state", "delayed"))
    assert found[("isograd_relay_queue_messages", ready)] == 3
    assert found[("isograd_relay_queue_messages", delayed)] == 7
    assert found[("isograd_relay_state_up", (("source", "broker"),))] == 1


def test_a_failing_broker_reads_as_state_down(store: SqlStore) -> None:
    def depths() -> Mapping[str, int]:
        raise RetryableError("broker unavailable: ConnectionError")

    found = collected(StateCollector(store, queue_depths=depths))

    assert found[("isograd_relay_state_up", (("source", "broker"),))] == 0
    assert found[("isograd_relay_state_up", (("source", "database"),))] == 1


# -- the broker's queue depths ----------------------------------------------------------------


@pytest.fixture
def redis_broker(redis_url: str) -> Iterator[Any]:
    namespace = f"test-metrics-{uuid.uuid4().hex}"
    broker = make_broker(redis_url, namespace=namespace)
    yield broker
    client = redis.Redis.from_url(redis_url)
    keys = list(client.scan_iter(f"{namespace}:*"))
    if keys:
        client.delete(*keys)
    client.close()
    broker.close()


def test_queue_depths_on_redis_count_ready_and_delayed_messages(redis_broker: Any) -> None:
    enqueuer = DramatiqEnqueuer(declare_actors(redis_broker))
    enqueuer.completion("inv_a")
    enqueuer.completion("inv_b")
    enqueuer.delivery("dlv_a", delay_seconds=600)

    depths = queue_depths(redis_broker)

    assert depths == {
        "completions": 2,
        "completions.DQ": 0,
        "deliveries": 0,
        "deliveries.DQ": 1,
    }


def test_queue_depths_on_an_unreachable_redis_raise_retryable_error() -> None:
    broker = make_broker(f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=1.0)
    declare_actors(broker)
    try:
        with pytest.raises(RetryableError):
            queue_depths(broker)
    finally:
        broker.close()


def test_queue_depths_on_the_stub_broker_are_its_queue_sizes() -> None:
    broker = make_broker("stub")
    DramatiqEnqueuer(declare_actors(broker)).delivery("dlv_a")
    try:
        depths = queue_depths(broker)
    finally:
        broker.close()

    assert depths["deliveries"] == 1
    assert depths["completions"] == 0


# -- the worker's metrics server ---------------------------------------------------------------


def scrape_when_up(url: str, deadline: float) -> httpx2.Response:
    with httpx2.Client() as client:
        while True:
            try:
                return client.get(url)
            except httpx2.TransportError:
                if time.monotonic() > deadline:
                    raise
            time.sleep(0.05)  # polling interval while the server starts, not synchronisation


def test_the_worker_serves_its_metrics_on_metrics_port(tmp_path: Path) -> None:
    port = free_port()
    settings = Settings(
        broker_url="stub", database_url=f"sqlite:///{tmp_path / 'relay.db'}", metrics_port=port
    )
    metrics = RelayMetrics()
    metrics.record_delivery("delivered")
    stop = threading.Event()
    thread = threading.Thread(
        target=run_worker, args=(settings,), kwargs={"threads": 1, "stop": stop, "metrics": metrics}
    )
    thread.start()
    try:
        response = scrape_when_up(f"http://127.0.0.1:{port}/metrics", time.monotonic() + 30)
    finally:
        stop.set()
        thread.join(timeout=60)

    assert response.status_code == 200
    assert (
        samples(response.text)[("isograd_relay_deliveries_total", (("result", "delivered"),))] == 1
    )


def test_the_worker_metrics_server_is_closed_when_the_worker_stops(tmp_path: Path) -> None:
    port = free_port()
    settings = Settings(
        broker_url="stub", database_url=f"sqlite:///{tmp_path / 'relay.db'}", metrics_port=port
    )
    stop = threading.Event()
    thread = threading.Thread(
        target=run_worker, args=(settings,), kwargs={"threads": 1, "stop": stop}
    )
    thread.start()
    try:
        scrape_when_up(f"http://127.0.0.1:{port}/", time.monotonic() + 30)
    finally:
        stop.set()
        thread.join(timeout=60)

    with socket.socket() as sock:
        assert sock.connect_ex(("127.0.0.1", port)) != 0


# -- settings ---------------------------------------------------------------------------------


def settings_from(environ: dict[str, str], tmp_path: Path) -> Settings:
    """Settings in the simulator environment, with no relay.toml and local state in tmp_path."""
    config = tmp_path / "empty.toml"
    config.write_text("")
    return Settings.from_env({"VAR_DIR": str(tmp_path), **environ}, config_path=str(config))


def test_metrics_port_and_host_are_read_from_the_environment(tmp_path: Path) -> None:
    settings = settings_from({"METRICS_PORT": "9464", "METRICS_HOST": "10.0.0.5"}, tmp_path)

    assert (settings.metrics_port, settings.metrics_host) == (9464, "10.0.0.5")


def test_the_worker_serves_no_metrics_and_binds_loopback_by_default(tmp_path: Path) -> None:
    settings = settings_from({}, tmp_path)

    assert (settings.metrics_port, settings.metrics_host) == (None, "127.0.0.1")


@pytest.mark.parametrize("port", ["0", "65536", "http"])
def test_an_invalid_metrics_port_is_a_configuration_problem(port: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="METRICS_PORT"):
        settings_from({"METRICS_PORT": port}, tmp_path)


def test_a_short_metrics_token_is_a_configuration_problem(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="METRICS_TOKEN"):
        settings_from({"METRICS_TOKEN": "short"}, tmp_path)


def test_the_metrics_token_is_redacted_from_logs(tmp_path: Path) -> None:
    settings = settings_from({"METRICS_TOKEN": METRICS_TOKEN}, tmp_path)

    assert METRICS_TOKEN in settings.redacted_secrets()
