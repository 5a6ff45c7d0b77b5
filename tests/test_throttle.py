"""FailureThrottle: a sliding window of failures per client address."""

from __future__ import annotations

import pytest

from webhooks.throttle import FailureThrottle


class ManualClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_key_may_fail_limit_times_before_it_waits() -> None:
    clock = ManualClock()
    throttle = FailureThrottle(limit=3, window_seconds=60, clock=clock)
    for _ in range(2):
        throttle.record_failure("10.0.0.1")
        assert throttle.retry_after("10.0.0.1") is None
    throttle.record_failure("10.0.0.1")

    assert throttle.retry_after("10.0.0.1") == 60


def test_the_wait_ends_when_the_oldest_failure_leaves_the_window() -> None:
    clock = ManualClock()
    throttle = FailureThrottle(limit=2, window_seconds=60, clock=clock)
    throttle.record_failure("a")
    clock.now += 30
    throttle.record_failure("a")
    assert throttle.retry_after("a") == 30

    clock.now += 30
    assert throttle.retry_after("a") is None


def test_keys_are_counted_separately() -> None:
    throttle = FailureThrottle(limit=1, window_seconds=60, clock=ManualClock())
    throttle.record_failure("a")

    assert throttle.retry_after("a") == 60
    assert throttle.retry_after("b") is None


def test_clear_forgets_a_keys_failures() -> None:
    throttle = FailureThrottle(limit=1, window_seconds=60, clock=ManualClock())
    throttle.record_failure("a")
    throttle.clear("a")

    assert throttle.retry_after("a") is None


def test_memory_is_bounded_by_forgetting_the_least_recently_failing_keys() -> None:
    throttle = FailureThrottle(limit=1, window_seconds=60, clock=ManualClock(), max_keys=2)
    throttle.record_failure("a")
    throttle.record_failure("b")
    throttle.record_failure("c")

    assert throttle.retry_after("a") is None
    assert throttle.retry_after("b") == 60
    assert throttle.retry_after("c") == 60


@pytest.mark.parametrize(("limit", "window"), [(0, 60), (1, 0)])
def test_a_throttle_that_could_never_allow_or_never_expire_is_refused(
    limit: int, window: float
) -> None:
    with pytest.raises(ValueError, match="limit"):
        FailureThrottle(limit=limit, window_seconds=window)
