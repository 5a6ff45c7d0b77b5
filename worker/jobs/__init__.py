"""The `worker` process's jobs: completions and deliveries, keyed by row ids, run by Dramatiq.

completions.py   process_completion(s): confirm with act 10, fetch, store the event
fetches.py       acts 10, 4, 5 and 6 of a completion, asked side by side
deliveries.py    deliver: one attempt at one delivery through its sink
actors.py        the Dramatiq actors wrapping both, and DramatiqEnqueuer
process.py       run_worker: the process itself
"""

from __future__ import annotations

from typing import Protocol


class Enqueuer(Protocol):
    """Asks for a job to run later; the broker behind it is transport, SQL holds the truth.

    `delay_seconds` is the least time before the job runs. `recheck` counts how many times a
    completion has already been re-checked without being confirmed (0 for a callback or the
    reconciler); it only picks the next wait, the job is still keyed by the invitation id.
    """

    def completion(
        self, invitation_id: str, *, delay_seconds: float = 0.0, recheck: int = 0
    ) -> None: ...

    def delivery(self, delivery_id: str, *, delay_seconds: float = 0.0) -> None: ...
