"""The scheduler: one instance holds the lock and runs the jobs; another takes over."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from sqlalchemy import create_engine

from tests.fakes import RecordingEnqueuer
from tests.polling import wait_until as wait_for
from worker.runtime import Runtime
from worker.scheduler import PeriodicJob, Scheduler
from worker.scheduler.locks import FileLock, PostgresAdvisoryLock, RedisLock, make_scheduler_lock
from worker.scheduler.process import scheduler_jobs
from worker.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
TTL = 1.0


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    with redis.Redis.from_url(redis_url) as connection:
        yield connection


@pytest.fixture
def key(client: redis.Redis) -> Iterator[str]:
    name = f"scheduler-test:{uuid.uuid4().hex}"
    yield name
    client.delete(name)


def redis_lock(redis_url: str, key: str, ttl: float = TTL) -> RedisLock:
    return RedisLock.from_url(redis_url, key, ttl)


# -- RedisLock ---------------------------------------------------------------------------------


def test_a_redis_lock_is_held_by_one_instance_only(redis_url: str, key: str) -> None:
    first, second = redis_lock(redis_url, key), redis_lock(redis_url, key)
    try:
        assert first.acquire() is True
        assert second.acquire() is False
    finally:
        first.close()
        second.close()


def test_renewing_a_redis_lock_keeps_it_past_its_ttl(
    redis_url: str, key: str, client: redis.Redis
) -> None:
    lock = redis_lock(redis_url, key, ttl=60)
    try:
        lock.acquire()
        client.pexpire(key, 50)  # as if the TTL were nearly over
        renewed = lock.renew()
        assert renewed is True
        assert client.pttl(key) > 50_000
    finally:
        lock.close()


def test_a_redis_lock_taken_over_after_expiry_cannot_be_renewed_or_released_by_the_old_holder(
    redis_url: str, key: str, client: redis.Redis
) -> None:
    old, new = redis_lock(redis_url, key), redis_lock(redis_url, key)
    try:
        old.acquire()
        client.delete(key)  # the TTL ran out
        new.acquire()
        assert old.renew() is False
        old.release()
        assert new.renew() is True
    finally:
        old.close()
        new.close()


def test_releasing_a_redis_lock_frees_it_at_once(redis_url: str, key: str) -> None:
    first, second = redis_lock(redis_url, key, ttl=60), redis_lock(redis_url, key, ttl=60)
    try:
        first.acquire()
        first.release()
        assert second.acquire() is True
    finally:
        first.close()
        second.close()


def test_a_redis_lock_reports_an_unreachable_redis_as_not_acquired() -> None:
    lock = RedisLock.from_url("redis://127.0.0.1:1/0", "k", TTL)
    try:
        assert lock.acquire() is False
        assert lock.renew() is False
    finally:
        lock.close()


# -- the SQL fallbacks --------------------------------------------------------------------------


def test_a_postgresql_advisory_lock_is_held_by_one_session_until_released(
    postgres_url: str,
) -> None:
    name = f"scheduler-test:{uuid.uuid4().hex}"
    first = PostgresAdvisoryLock(create_engine(postgres_url), name)
    second = PostgresAdvisoryLock(create_engine(postgres_url), name)
    try:
        assert first.acquire() is True
        assert second.acquire() is False
        assert first.renew() is True
        first.release()
        assert second.acquire() is True
    finally:
        first.close()
        second.close()


def test_a_file_lock_is_held_by_one_instance_until_released(tmp_path: Path) -> None:
    first, second = FileLock(tmp_path / "s.lock"), FileLock(tmp_path / "s.lock")
    try:
        assert first.acquire() is True
        assert second.acquire() is False
        first.release()
        assert second.acquire() is True
    finally:
        first.close()
        second.close()


@pytest.mark.parametrize(
    ("broker_url", "database_url", "kind"),
    [
        ("redis://127.0.0.1:6379/0", "sqlite:///x.db", "redis"),
        ("amqp://guest:guest@127.0.0.1:5672/", "postgresql+psycopg://u@h/db", "postgresql"),
        ("amqp://guest:guest@127.0.0.1:5672/", "sqlite:///x.db", "file"),
    ],
)
def test_the_lock_follows_the_broker_then_the_database(
    broker_url: str, database_url: str, kind: str, tmp_path: Path
) -> None:
    settings = Settings(broker_url=broker_url, database_url=database_url, var_dir=str(tmp_path))
    lock = make_scheduler_lock(settings)
    try:
        assert lock.kind == kind
    finally:
        lock.close()


# -- Scheduler ----------------------------------------------------------------------------------


class Recorder:
    """A job body that records which scheduler ran it, and whether two runs ever overlapped."""

    def __init__(self) -> None:
        self.runs: list[str] = []
        self.overlapped = False
        self.active = 0
        self._guard = threading.Lock()

    def job(self, name: str, *, work: float = 0.0) -> PeriodicJob:
        def run(halt: threading.Event) -> None:
            with self._guard:
                self.active += 1
                self.overlapped |= self.active > 1
                self.runs.append(name)
            halt.wait(work)
            with self._guard:
                self.active -= 1

        return PeriodicJob("record", 0.01, run)


class Running:
    def __init__(self, scheduler: Scheduler) -> None:
        self.scheduler = scheduler
        self.thread = threading.Thread(target=scheduler.run)
        self.thread.start()

    def stop(self) -> None:
        self.scheduler.stop()
        self.thread.join(10)
        assert not self.thread.is_alive()


@pytest.fixture
def running() -> Iterator[list[Running]]:
    started: list[Running] = []
    yield started
    for item in started:
        item.scheduler.stop()
        item.thread.join(10)


def start(running: list[Running], scheduler: Scheduler) -> Running:
    item = Running(scheduler)
    running.append(item)
    return item


def test_only_the_scheduler_holding_the_lock_runs_jobs(
    redis_url: str, key: str, running: list[Running]
) -> None:
    recorder = Recorder()
    a = start(running, Scheduler(redis_lock(redis_url, key), [recorder.job("a")], ttl=TTL))
    wait_for(lambda: recorder.runs, 5, "a first run")
    start(running, Scheduler(redis_lock(redis_url, key), [recorder.job("b")], ttl=TTL))
    count = len(recorder.runs)
    wait_for(lambda: len(recorder.runs) > count + 20, 5, "more runs")

    a.stop()

    assert set(recorder.runs) == {"a"}


def test_a_stopped_scheduler_hands_over_to_the_waiting_one(
    redis_url: str, key: str, running: list[Running]
) -> None:
    recorder = Recorder()
    a = start(running, Scheduler(redis_lock(redis_url, key, 30), [recorder.job("a")], ttl=30))
    wait_for(lambda: recorder.runs, 5, "a first run")
    start(running, Scheduler(redis_lock(redis_url, key, 30), [recorder.job("b")], ttl=3))

    a.stop()

    wait_for(lambda: "b" in recorder.runs, 5, "the waiting scheduler to take over")
    assert not recorder.overlapped


def test_a_scheduler_that_dies_holding_the_lock_is_replaced_within_the_ttl(
    redis_url: str, key: str, client: redis.Redis, running: list[Running]
) -> None:
    recorder = Recorder()
    dead = redis_lock(redis_url, key, TTL)
    dead.acquire()  # a holder that never renews: it died
    start(running, Scheduler(redis_lock(redis_url, key), [recorder.job("b")], ttl=TTL))
    started = time.monotonic()

    wait_for(lambda: "b" in recorder.runs, 5, "the survivor to take over")

    assert time.monotonic() - started < TTL + TTL / 3 + 1
    dead.close()


def test_a_scheduler_that_loses_its_lock_halts_its_job_and_waits_for_the_lock_again(
    redis_url: str, key: str, client: redis.Redis, running: list[Running]
) -> None:
    recorder = Recorder()
    start(running, Scheduler(redis_lock(redis_url, key), [recorder.job("a", work=60)], ttl=TTL))
    wait_for(lambda: recorder.runs, 5, "a first run")
    usurper = redis_lock(redis_url, key, ttl=60)
    client.delete(key)  # as if our lock had expired while Redis was unreachable
    usurper.acquire()

    wait_for(lambda: recorder.active == 0, 5, "the job to be halted")
    runs_while_usurped = list(recorder.runs)
    usurper.release()
    wait_for(lambda: len(recorder.runs) == 2, 5, "the scheduler to take the lock back")

    assert runs_while_usurped == ["a"]
    usurper.close()


def test_a_failing_job_does_not_stop_the_scheduler(
    redis_url: str, key: str, running: list[Running]
) -> None:
    runs: list[int] = []

    def fail(halt: threading.Event) -> None:
        runs.append(1)
        raise RuntimeError("database down")

    start(running, Scheduler(redis_lock(redis_url, key), [PeriodicJob("f", 0.01, fail)], ttl=TTL))

    wait_for(lambda: len(runs) >= 3, 5, "runs after a failure")


def test_a_job_is_told_to_halt_when_the_scheduler_stops(
    redis_url: str, key: str, running: list[Running]
) -> None:
    recorder = Recorder()
    a = start(
        running,
        Scheduler(redis_lock(redis_url, key), [recorder.job("a", work=60)], ttl=TTL),
    )
    wait_for(lambda: recorder.runs, 5, "a first run")
    started = time.monotonic()

    a.stop()

    assert time.monotonic() - started < 5


# -- the process ---------------------------------------------------------------------------------


def scheduler_process(redis_url: str, tmp_path: Path, name: str) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "BROKER_URL": redis_url,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'relay.db'}",
        "VAR_DIR": str(tmp_path / "var"),
        "RELAY_CONFIG": "",
        "LOG_FORMAT": "json",
        "PYTHONPATH": str(ROOT),
    }
    with (tmp_path / f"{name}.log").open("wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "worker.cli", "scheduler", "--lock-ttl", "2"],
            cwd=tmp_path,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )


def log_of(tmp_path: Path, name: str) -> str:
    return (tmp_path / f"{name}.log").read_text()


def test_a_sigkilled_scheduler_process_is_replaced_by_the_waiting_one(
    redis_url: str, tmp_path: Path
) -> None:
    with redis.Redis.from_url(redis_url) as client:
        client.delete("isograd-relay:scheduler")
    subprocess.run(
        [sys.executable, "-m", "worker.cli", "migrate"],
        cwd=tmp_path,
        env={**os.environ, "DATABASE_URL": f"sqlite:///{tmp_path / 'relay.db'}"},
        check=True,
        capture_output=True,
    )
    first = scheduler_process(redis_url, tmp_path, "first")
    second: subprocess.Popen[bytes] | None = None
    try:
        wait_for(lambda: "scheduler_ready" in log_of(tmp_path, "first"), 30, "the first")
        second = scheduler_process(redis_url, tmp_path, "second")
        wait_for(
            lambda: "scheduler_waiting_for_lock" in log_of(tmp_path, "second"), 30, "the second"
        )

        os.kill(first.pid, signal.SIGKILL)

        wait_for(lambda: "scheduler_ready" in log_of(tmp_path, "second"), 10, "the takeover")
        second.send_signal(signal.SIGTERM)
        assert second.wait(10) == 0
        assert "scheduler_stopped" in log_of(tmp_path, "second")
    finally:
        for process in (first, second):
            if process is not None:
                if process.poll() is None:
                    process.kill()
                process.wait()


def test_the_scheduler_runs_reconcile_and_sweep_and_purges_only_with_a_retention(
    tmp_path: Path,
) -> None:
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'relay.db'}", var_dir=str(tmp_path))
    runtime = Runtime.from_settings(settings, RecordingEnqueuer())
    try:
        default = [job.name for job in scheduler_jobs(settings, runtime)]
        with_retention = scheduler_jobs(
            Settings(database_url=settings.database_url, pii_retention_days=90), runtime
        )
    finally:
        runtime.close()

    assert default == ["reconcile", "sweep", "purge_rejected_callbacks"]
    assert [job.name for job in with_retention] == [
        "reconcile",
        "sweep",
        "purge_rejected_callbacks",
        "purge_pii",
    ]
