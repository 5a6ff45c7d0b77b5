"""A worker process for tests/test_crash_recovery.py: one slow actor on a private queue.

Run as `python -m tests.harness.crash_worker REDIS_URL NAMESPACE MARKS_DIR`. The broker comes
from worker.broker.make_broker, so it has the relay's crash-recovery tuning. When the actor
starts a job it writes `MARKS_DIR/<job id>.<pid>`, then works for minutes: the test SIGKILLs it.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import dramatiq

from worker.broker import make_broker

QUEUE = "crash"


def main(url: str, namespace: str, marks: Path) -> None:
    broker = make_broker(url, namespace=namespace)

    def slow_job(job_id: str) -> None:
        (marks / f"{job_id}.{os.getpid()}").write_text(str(time.time()))
        time.sleep(600)  # the job's "work": this process is killed long before it ends

    dramatiq.actor(broker=broker, actor_name="slow_job", queue_name=QUEUE, max_retries=0)(slow_job)
    worker = dramatiq.Worker(broker, queues={QUEUE}, worker_threads=1)
    worker.start()
    (marks / f"ready.{os.getpid()}").write_text("")
    signal.sigwait({signal.SIGTERM, signal.SIGINT})
    worker.stop(timeout=1000)
    broker.close()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], Path(sys.argv[3]))
