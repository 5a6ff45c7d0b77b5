"""Throttle: how many failures a client address may make in a sliding window before it waits.

Used for credentials guessed over HTTP (the API's bearer token, the dashboard's sign-in) and for
rejected Isograd callbacks. Only failures are counted: a caller that succeeds is never slowed, and
`retry_after` is checked before the credential so a blocked address learns nothing from trying.

In memory and per process, thread-safe, bounded: at most `max_keys` addresses are remembered (the
least recently failing are forgotten first), each with at most `limit` timestamps.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable

DEFAULT_MAX_KEYS = 10_000


class FailureThrottle:
    """At most `limit` failures per key within `window_seconds`; then the key waits.

    `clock` is monotonic seconds (time.monotonic unless a test passes its own).
    """

    def __init__(
        self,
        *,
        limit: int,
        window_seconds: float,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = DEFAULT_MAX_KEYS,
    ) -> None:
        if limit < 1 or window_seconds <= 0 or max_keys < 1:
            raise ValueError("limit and max_keys must be >= 1 and window_seconds > 0")
        self.limit = limit
        self.window_seconds = window_seconds
        self._clock = clock
        self._max_keys = max_keys
        self._lock = threading.Lock()
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def retry_after(self, key: str) -> int | None:
        """Whole seconds `key` must wait before its next try, or None when it may try now."""
        now = self._clock()
        with self._lock:
            failures = self._failures.get(key)
            if failures is None:
                return None
            self._expire(failures, now)
            if len(failures) < self.limit:
                return None
            return max(1, math.ceil(failures[0] + self.window_seconds - now))

    def record_failure(self, key: str) -> None:
        """Count one failure of `key` now."""
        now = self._clock()
        with self._lock:
            failures = self._failures.pop(key, None)
            if failures is None:
                failures = deque(maxlen=self.limit)
            self._expire(failures, now)
            failures.append(now)
            self._failures[key] = failures  # most recent at the end
            while len(self._failures) > self._max_keys:
                self._failures.popitem(last=False)

    def clear(self, key: str) -> None:
        """Forget the failures of `key` (e.g. after it signed in)."""
        with self._lock:
            self._failures.pop(key, None)

    def _expire(self, failures: deque[float], now: float) -> None:
        while failures and failures[0] <= now - self.window_seconds:
            failures.popleft()
