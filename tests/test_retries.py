"""The retry schedule: Svix's delays, jitter, Retry-After clamping, the 429/timeout floor."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.fakes import FixedRandom
from worker.retries import DEFAULT_SCHEDULE, SVIX_DELAYS, RetrySchedule
from worker.sinks.webhook import WebhookTarget
from worker.subscriptions import Subscription

NO_JITTER = FixedRandom(0.5)
LOWEST = FixedRandom(0.0)
HIGHEST = FixedRandom(1.0)


def test_the_default_schedule_allows_eight_attempts() -> None:
    assert DEFAULT_SCHEDULE.max_attempts == 8


def test_the_default_schedule_spans_about_27_6_hours() -> None:
    assert DEFAULT_SCHEDULE.total_seconds() == 99_305
    assert DEFAULT_SCHEDULE.total_seconds() / 3600 == pytest.approx(27.6, abs=0.05)


@pytest.mark.parametrize(
    ("attempt_number", "expected_seconds"),
    [(1, 5), (2, 300), (3, 1800), (4, 7200), (5, 18_000), (6, 36_000), (7, 36_000)],
)
def test_each_failed_attempt_waits_svix_delay_before_the_next(
    attempt_number: int, expected_seconds: float
) -> None:
    assert DEFAULT_SCHEDULE.next_delay(attempt_number, rng=NO_JITTER) == pytest.approx(
        expected_seconds
    )


def test_the_eighth_failed_attempt_exhausts_the_schedule() -> None:
    assert DEFAULT_SCHEDULE.next_delay(8, rng=NO_JITTER) is None


def test_attempts_beyond_the_schedule_stay_exhausted() -> None:
    assert DEFAULT_SCHEDULE.next_delay(50, rng=NO_JITTER) is None


def test_attempt_numbers_count_from_one() -> None:
    with pytest.raises(ValueError, match="counts from 1"):
        DEFAULT_SCHEDULE.next_delay(0)


def test_jitter_reaches_minus_twenty_percent() -> None:
    assert DEFAULT_SCHEDULE.next_delay(2, rng=LOWEST) == pytest.approx(240)


def test_jitter_reaches_plus_twenty_percent() -> None:
    assert DEFAULT_SCHEDULE.next_delay(2, rng=HIGHEST) == pytest.approx(360)


@given(attempt_number=st.integers(1, 7), seed=st.integers(0, 2**32))
def test_jittered_delays_stay_within_twenty_percent(attempt_number: int, seed: int) -> None:
    nominal = SVIX_DELAYS[attempt_number - 1]

    delay = DEFAULT_SCHEDULE.next_delay(attempt_number, rng=random.Random(seed))

    assert delay is not None
    assert nominal * 0.8 <= delay <= nominal * 1.2


def test_jitter_uses_the_module_random_source_when_none_is_given() -> None:
    delays = {DEFAULT_SCHEDULE.next_delay(7) for _ in range(20)}

    assert len(delays) > 1
    assert all(d is not None and 28_800 <= d <= 43_200 for d in delays)


def test_retry_after_below_the_scheduled_delay_waits_the_scheduled_delay() -> None:
    assert DEFAULT_SCHEDULE.next_delay(3, retry_after=10, rng=NO_JITTER) == pytest.approx(1800)


def test_retry_after_within_the_window_is_honoured() -> None:
    assert DEFAULT_SCHEDULE.next_delay(3, retry_after=2500, rng=NO_JITTER) == pytest.approx(2500)


def test_retry_after_above_twice_the_scheduled_delay_waits_twice_the_scheduled_delay() -> None:
    assert DEFAULT_SCHEDULE.next_delay(3, retry_after=86_400, rng=NO_JITTER) == pytest.approx(3600)


def test_retry_after_is_clamped_around_the_jittered_delay() -> None:
    assert DEFAULT_SCHEDULE.next_delay(3, retry_after=86_400, rng=LOWEST) == pytest.approx(2880)


def test_an_infinite_retry_after_is_ignored() -> None:
    assert DEFAULT_SCHEDULE.next_delay(3, retry_after=float("inf"), rng=NO_JITTER) == pytest.approx(
        1800
    )


def test_a_429_waits_at_least_sixty_seconds() -> None:
    assert DEFAULT_SCHEDULE.next_delay(1, status_code=429, rng=NO_JITTER) == pytest.approx(60)


def test_a_timeout_waits_at_least_sixty_seconds() -> None:
    assert DEFAULT_SCHEDULE.next_delay(1, timed_out=True, rng=NO_JITTER) == pytest.approx(60)


def test_a_503_keeps_the_short_scheduled_delay() -> None:
    assert DEFAULT_SCHEDULE.next_delay(1, status_code=503, rng=NO_JITTER) == pytest.approx(5)


def test_the_sixty_second_floor_does_not_shorten_longer_delays() -> None:
    assert DEFAULT_SCHEDULE.next_delay(2, status_code=429, rng=NO_JITTER) == pytest.approx(300)


def test_a_429_retry_after_is_clamped_from_the_sixty_second_floor() -> None:
    # scheduled 5 s is raised to 60 s, so Retry-After 100 falls inside [60, 120] and is honoured.
    delay = DEFAULT_SCHEDULE.next_delay(1, status_code=429, retry_after=100, rng=NO_JITTER)

    assert delay == pytest.approx(100)


def test_a_429_retry_after_cannot_exceed_twice_the_floor() -> None:
    delay = DEFAULT_SCHEDULE.next_delay(1, status_code=429, retry_after=3600, rng=NO_JITTER)

    assert delay == pytest.approx(120)


def test_a_custom_schedule_from_a_subscription_tuple_sets_its_attempt_count() -> None:
    schedule = RetrySchedule((1.0, 2.0))

    assert schedule.max_attempts == 3
    assert schedule.next_delay(2, rng=NO_JITTER) == pytest.approx(2.0)
    assert schedule.next_delay(3, rng=NO_JITTER) is None


def test_a_subscription_schedule_builds_a_retry_schedule() -> None:
    subscription = Subscription(
        name="crm",
        kind="webhook",
        target=WebhookTarget("https://hooks.example.com/", ()),
        retry_schedule=(1.0, 2.0),
    )

    schedule = RetrySchedule(subscription.retry_schedule)

    assert schedule.max_attempts == 3


def test_a_subscription_defaults_to_the_svix_schedule() -> None:
    subscription = Subscription(
        name="crm", kind="webhook", target=WebhookTarget("https://hooks.example.com/", ())
    )

    assert RetrySchedule(subscription.retry_schedule) == DEFAULT_SCHEDULE


def test_an_empty_schedule_allows_a_single_attempt() -> None:
    assert RetrySchedule(()).next_delay(1, rng=NO_JITTER) is None


def test_a_schedule_accepts_integer_seconds_from_configuration() -> None:
    assert RetrySchedule((5, 300)).delays == (5.0, 300.0)


@pytest.mark.parametrize("bad", [-1.0, float("nan"), float("inf")])
def test_a_schedule_refuses_negative_or_non_finite_delays(bad: float) -> None:
    with pytest.raises(ValueError, match="finite and >= 0"):
        RetrySchedule((5.0, bad))


def test_fixed_random_refuses_a_fraction_outside_the_unit_interval() -> None:
    with pytest.raises(ValueError, match="within"):
        FixedRandom(1.5)


def test_fixed_random_returns_the_requested_point_of_the_range() -> None:
    assert FixedRandom(0.25).uniform(10.0, 20.0) == pytest.approx(12.5)
