"""Tests of the dashboard's activity charts: 24 hourly bars and a latency line, as SVG geometry."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from webhooks.dashboard.charts import HEIGHT, HOURS, build_charts, chart_window
from worker.storage.activity import HourlyAttempts

NOW = datetime(2026, 11, 27, 10, 15, tzinfo=UTC)
CURRENT_HOUR = datetime(2026, 11, 27, 10, tzinfo=UTC)


def hourly(hour: datetime, delivered: int, failed: int, total_ms: int) -> HourlyAttempts:
    return HourlyAttempts("hr", hour, delivered, failed, total_ms, total_ms)


def test_the_window_is_the_last_24_whole_hours_ending_with_the_current_one() -> None:
    assert chart_window(NOW) == (
        CURRENT_HOUR - timedelta(hours=23),
        CURRENT_HOUR + timedelta(hours=1),
    )


def test_bars_stack_failed_on_delivered_scaled_to_the_busiest_hour() -> None:
    rows = [hourly(CURRENT_HOUR, 3, 1, 400), hourly(CURRENT_HOUR - timedelta(hours=1), 0, 2, 100)]

    chart = build_charts(["hr"], rows, NOW)["hr"]

    assert len(chart.bars) == HOURS
    last, before = chart.bars[-1], chart.bars[-2]
    assert (last.delivered_height, last.failed_height) == (HEIGHT * 3 / 4, HEIGHT / 4)
    assert last.failed_y == 0
    assert (before.delivered_height, before.failed_height) == (0, HEIGHT / 2)
    assert all(bar.delivered == bar.failed == 0 for bar in chart.bars[:-2])
    assert (chart.delivered, chart.failed, chart.max_attempts) == (3, 3, 4)


def test_the_latency_line_joins_the_hours_with_attempts_on_its_own_scale() -> None:
    rows = [hourly(CURRENT_HOUR, 2, 0, 400), hourly(CURRENT_HOUR - timedelta(hours=2), 1, 0, 100)]

    chart = build_charts(["hr"], rows, NOW)["hr"]

    # Slot 21 (mean 100 ms of a 200 ms top) then slot 23 (the top).
    assert chart.latency_points == f"257,{HEIGHT / 2:.1f} 281,0.0"
    assert chart.max_mean_ms == 200


def test_a_subscription_without_attempts_gets_an_empty_chart() -> None:
    chart = build_charts(["ats"], [hourly(CURRENT_HOUR, 1, 0, 5)], NOW)["ats"]

    assert (chart.delivered, chart.failed, chart.latency_points) == (0, 0, "")
    assert "ats, last 24 h: 0 delivered, 0 failed" in chart.summary
