"""Benchmark: how long an actor limited to 1 s runs when its work takes 4 s, in our worker.

Run from the repository root:

    .venv/bin/python -m bench.time_limit

One actor with `time_limit=1000` (ms) loops for 4 s in small Python steps, on a stub broker,
consumed by `worker.actors.start_worker` as `isograd-relay worker` and `dev` start it. Prints the
seconds the job ran and whether it was interrupted. Dramatiq's watchdog checks deadlines once a
second, so an enforced limit of 1 s ends the job within about 1-2 s.
"""

from __future__ import annotations

import threading
import time

import dramatiq

from worker.broker import make_broker
from worker.jobs.actors import start_worker

WORK_SECONDS = 4.0


def main() -> None:
    broker = make_broker("stub")
    ran: dict[str, float | bool] = {}
    done = threading.Event()

    def busy() -> None:
        started = time.monotonic()
        try:
            while time.monotonic() - started < WORK_SECONDS:
                time.sleep(0.01)
            ran["interrupted"] = False
        except BaseException:
            ran["interrupted"] = True
            raise
        finally:
            ran["seconds"] = time.monotonic() - started
            done.set()

    actor = dramatiq.actor(broker=broker, queue_name="bench", time_limit=1000, max_retries=0)(busy)
    worker = start_worker(broker, threads=1, queues=("bench",))
    try:
        actor.send()
        done.wait(WORK_SECONDS * 3)
    finally:
        worker.stop()
        broker.close()
    print(
        f"limit 1.0 s, work {WORK_SECONDS:.1f} s: ran {ran['seconds']:.2f} s, "
        f"interrupted={ran['interrupted']}"
    )


if __name__ == "__main__":
    main()
