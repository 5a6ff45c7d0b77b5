"""Crash recovery: work held by a SIGKILLed worker runs again, and a stranded delivery is swept."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import dramatiq
import pytest
import redis

from tests.fakes import FakeClock, FakeSink, FixedRandom, RecordingEnqueuer
from tests.fixtures.pipeline import subscription
from tests.harness.crash_worker import QUEUE
from tests.polling import wait_until as wait_for
from worker.broker import make_broker
from worker.jobs.deliveries import DeliveryResult, deliver
from worker.scheduler.sweeper import DEFAULT_GRACE, Sweeper
from worker.storage.records import DeliveryStatus, NewInvitation
from worker.storage.store import DEFAULT_LEASE, SqlStore

ROOT = Path(__file__).resolve().parent.parent
RERUN_DEADLINE = 60.0
WORKER_COMMAND = (sys.executable, "-m", "tests.harness.crash_worker")
PAYLOAD = {"type": "assessment.completed", "timestamp": "2026-11-27T10:15:00Z", "data": {}}


class Workers:
    """Real worker processes (tests/harness/crash_worker.py) on a private Redis namespace."""

    def __init__(self, url: str, namespace: str, marks: Path, logs: Path) -> None:
        self.url, self.namespace, self.marks, self.logs = url, namespace, marks, logs
        self.processes: list[subprocess.Popen[bytes]] = []

    def start(self) -> subprocess.Popen[bytes]:
        log = (self.logs / f"worker-{len(self.processes)}.log").open("wb")
        with log:
            process = subprocess.Popen(
                [*WORKER_COMMAND, self.url, self.namespace, str(self.marks)],
                cwd=ROOT,
                env={**os.environ, "PYTHONPATH": str(ROOT)},
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.processes.append(process)
        wait_for(lambda: (self.marks / f"ready.{process.pid}").exists(), 30, "a worker to start")
        return process

    def runs_of(self, job_id: str) -> dict[int, Path]:
        """The processes that started `job_id`, by pid."""
        return {int(path.suffix[1:]): path for path in self.marks.glob(f"{job_id}.*")}

    def kill_all(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.kill()
            process.wait()


@pytest.fixture
def workers(redis_url: str, tmp_path: Path) -> Iterator[Workers]:
    namespace = f"crash-test-{uuid.uuid4().hex[:8]}"
    marks = tmp_path / "marks"
    marks.mkdir()
    pool = Workers(redis_url, namespace, marks, tmp_path)
    yield pool
    pool.kill_all()
    with redis.Redis.from_url(redis_url) as client:
        for key in client.scan_iter(f"{namespace}:*"):
            client.delete(key)


def test_a_job_held_by_a_sigkilled_worker_runs_again_on_another_within_60_seconds(
    workers: Workers,
) -> None:
    first, second = workers.start(), workers.start()
    broker = make_broker(workers.url, namespace=workers.namespace)
    try:
        send = dramatiq.actor(broker=broker, actor_name="slow_job", queue_name=QUEUE)(
            lambda job_id: None
        )
        send.send("job-1")
        wait_for(lambda: workers.runs_of("job-1"), 30, "a worker to start the job")
        [holder_pid] = workers.runs_of("job-1")
        holder = first if first.pid == holder_pid else second
        survivor = second if holder is first else first

        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()
        delay = wait_for(
            lambda: survivor.pid in workers.runs_of("job-1"),
            RERUN_DEADLINE + 30,
            "the survivor to run the job again",
        )
    finally:
        broker.close()

    print(f"\nre-run delay after SIGKILL: {delay:.1f} s")
    assert delay < RERUN_DEADLINE


# -- the delivery lease: a re-run delivery waits for it, then the sweeper takes over ----------


def stored_delivery(store: SqlStore) -> str:
    invitation = store.create_invitation(NewInvitation(tst_frm_id=101, email="a@example.org"))
    _, deliveries, _ = store.create_event(
        "evt_1", invitation.id, 456, "assessment.completed", PAYLOAD, ["hr"]
    )
    return deliveries[0].id


def run_deliver(
    delivery_id: str, store: SqlStore, sink: FakeSink, enqueuer: RecordingEnqueuer, clock: FakeClock
) -> DeliveryResult:
    hr = subscription("hr")
    return deliver(
        delivery_id,
        store=store,
        subscriptions={"hr": hr},
        sink_for=lambda _: sink,
        enqueuer=enqueuer,
        clock=clock,
        rng=FixedRandom(),
    ).result


def test_a_delivery_stranded_by_a_killed_worker_is_swept_and_delivered_after_the_lease(
    store: SqlStore, clock: FakeClock
) -> None:
    delivery_id = stored_delivery(store)
    store.claim_delivery(delivery_id)  # the worker that claimed it is SIGKILLed mid-attempt
    sink, enqueuer = FakeSink(), RecordingEnqueuer()
    sweeper = Sweeper(store=store, enqueuer=enqueuer, clock=clock)

    clock.advance(20)  # Dramatiq requeues the message: it arrives within the lease
    requeued = run_deliver(delivery_id, store, sink, enqueuer, clock)
    clock.advance((DEFAULT_LEASE - timedelta(seconds=21)).total_seconds())
    before_lease = sweeper.sweep()
    clock.advance(2)
    after_lease = sweeper.sweep()
    swept = run_deliver(enqueuer.of_kind("delivery")[0].id, store, sink, enqueuer, clock)

    assert requeued is DeliveryResult.NOTHING_TO_DO
    assert before_lease.deliveries == 0
    assert after_lease.deliveries == 1
    assert swept is DeliveryResult.DELIVERED
    assert len(sink.sent) == 1
    delivery = store.get_delivery(delivery_id)
    assert delivery is not None
    assert delivery.status is DeliveryStatus.DELIVERED
    assert DEFAULT_GRACE < DEFAULT_LEASE
