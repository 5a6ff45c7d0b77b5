"""The retry schedule: how long a delivery waits after a failed attempt, and when it gives up."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Protocol

# Svix's schedule, the default (https://docs.svix.com/retries): the first attempt
# is immediate, then each delay starts when the preceding attempt failed.
# 8 attempts, 99 305 s ≈ 27.6 h in total.
SVIX_DELAYS: tuple[float, ...] = (
    5.0,  # 5 s
    5 * 60.0,  # 5 min
    30 * 60.0,  # 30 min
    2 * 3600.0,  # 2 h
    5 * 3600.0,  # 5 h
    10 * 3600.0,  # 10 h
    10 * 3600.0,  # 10 h
)
JITTER = 0.2  # each delay is drawn uniformly within ±20 % of its nominal value
THROTTLED_FLOOR_SECONDS = 60.0  # after a 429 or a timeout the target is struggling: back off more
THROTTLED_STATUS = 429


class RandomSource(Protocol):
    """The part of `random.Random` the schedule uses; inject a fixed one in tests."""

    def uniform(self, a: float, b: float) -> float: ...


_default_rng = random.Random()


@dataclass(frozen=True)
class RetrySchedule:
    """Delays between delivery attempts, in seconds.

    `delays[i]` is the nominal wait between attempt i+1 and attempt i+2 (attempts count from 1; the
    first is made immediately). A schedule with n delays allows n+1 attempts in total; an empty one
    allows a single attempt. A subscription's `retry_schedule` has exactly this meaning, so
    `RetrySchedule(subscription.retry_schedule)` is its schedule.
    """

    delays: tuple[float, ...] = SVIX_DELAYS

    def __post_init__(self) -> None:
        delays = tuple(float(delay) for delay in self.delays)
        for delay in delays:
            if not math.isfinite(delay) or delay < 0:
                raise ValueError(f"retry delays must be finite and >= 0, got {delay!r}")
        object.__setattr__(self, "delays", delays)

    @property
    def max_attempts(self) -> int:
        """How many attempts a delivery gets in total, the immediate first one included."""
        return len(self.delays) + 1

    def total_seconds(self) -> float:
        """The nominal time from the first to the last attempt, without jitter or Retry-After."""
        return sum(self.delays)

    def next_delay(
        self,
        attempt_number: int,
        *,
        retry_after: float | None = None,
        status_code: int | None = None,
        timed_out: bool = False,
        rng: RandomSource | None = None,
    ) -> float | None:
        """Seconds to wait before the next attempt, or None when the schedule is exhausted.

        `attempt_number` is the 1-based number of the attempt that has just failed with a
        retryable outcome: 1 for the first (immediate) attempt, so `next_delay(1)` is the wait
        before attempt 2 (nominally 5 s) and `next_delay(max_attempts)` is None — the delivery is
        then failed (dead letter).

        The nominal delay gets ±20 % jitter from `rng`. A 429 answer or a timeout raises it to at
        least 60 s. A `retry_after` hint (seconds, from the target's Retry-After header) is
        honoured but clamped to [scheduled, 2 * scheduled], so a target can slow us
        down, never make us hammer it or stall a delivery for days.
        """
        if attempt_number < 1:
            raise ValueError(f"attempt_number counts from 1, got {attempt_number}")
        if attempt_number > len(self.delays):
            return None
        nominal = self.delays[attempt_number - 1]
        source = rng if rng is not None else _default_rng
        scheduled = source.uniform(nominal * (1 - JITTER), nominal * (1 + JITTER))
        if timed_out or status_code == THROTTLED_STATUS:
            scheduled = max(scheduled, THROTTLED_FLOOR_SECONDS)
        if retry_after is not None and math.isfinite(retry_after):
            return min(max(retry_after, scheduled), 2 * scheduled)
        return scheduled


DEFAULT_SCHEDULE = RetrySchedule()
