"""Polling with a deadline: how tests wait for another thread or process (never a bare sleep)."""

from __future__ import annotations

import time
from collections.abc import Callable

POLL_INTERVAL = 0.02


def wait_until(
    condition: Callable[[], object],
    timeout: float = 20.0,
    what: str = "the condition",
    *,
    interval: float = POLL_INTERVAL,
) -> float:
    """Poll `condition` until it is truthy and return the seconds it took.

    AssertionError after `timeout` seconds, naming `what` was awaited.
    """
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)  # a poll interval, bounded by the deadline above
    return time.monotonic() - started
