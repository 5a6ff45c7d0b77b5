"""The scheduler: one active instance, held by a lock with a TTL, running periodic jobs in turn.

Every `scheduler` process runs `Scheduler.run`: it tries the lock; the one that holds it logs
`scheduler_ready` and runs the jobs, the others log `scheduler_waiting_for_lock` and try again
every `ttl / 3`. The holder renews the lock every `ttl / 3` from a separate thread, so a long job
does not let it lapse. If the holder dies, its lock expires and another instance takes over
within `ttl + ttl / 3`; a clean stop releases it at once.

Jobs run one after another in the scheduler's own thread, so no job ever runs twice at the same
time in one instance, and the lock keeps other instances out. A job gets an Event that is set
when it must stop early (shutdown, or the lock was lost): jobs check it between items, and are
idempotent anyway, since a lock can be lost while a job is running.

The lock itself is in worker.scheduler.locks.
"""

from __future__ import annotations

import dataclasses
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import structlog

from worker.scheduler.locks import DEFAULT_LOCK_TTL, SchedulerLock

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class PeriodicJob:
    """`run(halt)` every `interval` seconds (start to start); it should return soon once `halt`
    is set. Its return value (a dataclass report, say) is logged."""

    name: str
    interval: float
    run: Callable[[threading.Event], object]


class Scheduler:
    """Runs `jobs` while holding `lock`; see the module docstring. `stop()` is thread-safe."""

    def __init__(
        self,
        lock: SchedulerLock,
        jobs: Sequence[PeriodicJob],
        *,
        ttl: float = DEFAULT_LOCK_TTL,
        monotonic: Callable[[], float] = time.monotonic,
        name: str | None = None,
    ) -> None:
        self._lock = lock
        self._jobs = tuple(jobs)
        self._renew_every = ttl / 3
        self._monotonic = monotonic
        self.name = name or f"{os.uname().nodename}:{os.getpid()}"
        self._stopping = threading.Event()
        self._halt = threading.Event()
        self._guard = threading.Lock()

    def stop(self) -> None:
        """Ask `run` to finish the current job's item, release the lock and return."""
        with self._guard:
            self._stopping.set()
            self._halt.set()

    def run(self) -> None:
        """Wait for the lock, run the jobs while holding it; return after `stop()`."""
        waiting_logged = False
        try:
            while not self._stopping.is_set():
                if not self._lock.acquire():
                    if not waiting_logged:
                        log.info("scheduler_waiting_for_lock", lock=self._lock.kind, name=self.name)
                        waiting_logged = True
                    self._stopping.wait(self._renew_every)
                    continue
                waiting_logged = False
                self._lead()
        finally:
            self._lock.close()
            log.info("scheduler_stopped", name=self.name)

    def _lead(self) -> None:
        with self._guard:
            self._halt = halt = threading.Event()
            if self._stopping.is_set():
                halt.set()
        renewer = threading.Thread(
            target=self._keep_lock, args=(halt,), name="scheduler-lock", daemon=True
        )
        renewer.start()
        log.info(
            "scheduler_ready",
            lock=self._lock.kind,
            name=self.name,
            jobs=[job.name for job in self._jobs],
        )
        try:
            self._run_jobs(halt)
        finally:
            halt.set()
            renewer.join()
            if self._stopping.is_set():
                self._lock.release()

    def _keep_lock(self, halt: threading.Event) -> None:
        while not halt.wait(self._renew_every):
            if not self._lock.renew():
                log.warning("scheduler_lock_lost", lock=self._lock.kind, name=self.name)
                halt.set()

    def _run_jobs(self, halt: threading.Event) -> None:
        next_run = dict.fromkeys((job.name for job in self._jobs), self._monotonic())
        while not halt.is_set():
            for job in self._jobs:
                if halt.is_set():
                    return
                if self._monotonic() >= next_run[job.name]:
                    next_run[job.name] = self._monotonic() + job.interval
                    self._run_job(job, halt)
            if not next_run:
                halt.wait()
                return
            halt.wait(max(0.0, min(next_run.values()) - self._monotonic()))

    def _run_job(self, job: PeriodicJob, halt: threading.Event) -> None:
        started = self._monotonic()
        try:
            report = job.run(halt)
        except Exception:
            # One failing run (database or Isograd down) must not stop the others or the next.
            log.exception("scheduler_job_failed", job=job.name)
            return
        details = (
            dataclasses.asdict(report)
            if dataclasses.is_dataclass(report) and not isinstance(report, type)
            else {}
        )
        log.info(
            "scheduler_job_done",
            job=job.name,
            duration_ms=round((self._monotonic() - started) * 1000),
            **details,
        )
