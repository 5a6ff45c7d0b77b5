"""Activity charts: a subscription's last 24 hours of attempts as SVG geometry, drawn server-side.

Each hour is a bar: attempts the target accepted (delivered) at the bottom, every other outcome
(failed) stacked on top; a line shows the mean attempt latency of each hour on its own scale.
An outage reads at a glance as a run of red bars. No script: the template draws these numbers.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from worker.storage.activity import HourlyAttempts

HOURS = 24
BAR_WIDTH = 10
BAR_GAP = 2
HEIGHT = 48


@dataclass(frozen=True, slots=True)
class ChartBar:
    hour: datetime
    x: int
    delivered_y: float
    delivered_height: float
    failed_y: float
    failed_height: float
    delivered: int
    failed: int
    mean_ms: float | None

    @property
    def label(self) -> str:
        latency = "no attempt" if self.mean_ms is None else f"mean latency {self.mean_ms:.0f} ms"
        return (
            f"{self.hour:%Y-%m-%d %H:00} UTC: {self.delivered} delivered, "
            f"{self.failed} failed, {latency}"
        )


@dataclass(frozen=True, slots=True)
class ActivityChart:
    subscription: str
    bars: Sequence[ChartBar]
    latency_points: str  # SVG polyline points; "" when no hour had an attempt
    max_attempts: int
    max_mean_ms: float
    width: int = HOURS * (BAR_WIDTH + BAR_GAP)
    height: int = HEIGHT

    @property
    def delivered(self) -> int:
        return sum(bar.delivered for bar in self.bars)

    @property
    def failed(self) -> int:
        return sum(bar.failed for bar in self.bars)

    @property
    def summary(self) -> str:
        return (
            f"{self.subscription}, last 24 h: {self.delivered} delivered, {self.failed} failed "
            f"attempts; slowest hour's mean latency {self.max_mean_ms:.0f} ms"
        )


def chart_window(now: datetime) -> tuple[datetime, datetime]:
    """The 24 whole UTC hours a chart shows, the current one last: [since, until)."""
    current = now.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    return current - timedelta(hours=HOURS - 1), current + timedelta(hours=1)


def build_charts(
    subscriptions: Iterable[str], activity: Iterable[HourlyAttempts], now: datetime
) -> dict[str, ActivityChart]:
    """One chart per subscription name, empty hours included."""
    since, _ = chart_window(now)
    by_key = {(row.subscription, row.hour): row for row in activity}
    hours = [since + timedelta(hours=n) for n in range(HOURS)]
    return {
        name: _chart(name, [by_key.get((name, hour)) for hour in hours], hours)
        for name in subscriptions
    }


def _chart(
    subscription: str, rows: Sequence[HourlyAttempts | None], hours: Sequence[datetime]
) -> ActivityChart:
    max_attempts = max((row.attempts for row in rows if row), default=0)
    means = [row.mean_ms for row in rows if row and row.mean_ms is not None]
    max_mean = max(means, default=0.0)
    scale = HEIGHT / max(max_attempts, 1)
    bars = []
    points = []
    for slot, (hour, row) in enumerate(zip(hours, rows, strict=True)):
        x = slot * (BAR_WIDTH + BAR_GAP)
        delivered = row.delivered if row else 0
        failed = row.failed if row else 0
        mean_ms = row.mean_ms if row else None
        delivered_height = delivered * scale
        failed_height = failed * scale
        bars.append(
            ChartBar(
                hour=hour,
                x=x,
                delivered_y=HEIGHT - delivered_height,
                delivered_height=delivered_height,
                failed_y=HEIGHT - delivered_height - failed_height,
                failed_height=failed_height,
                delivered=delivered,
                failed=failed,
                mean_ms=mean_ms,
            )
        )
        if mean_ms is not None and max_mean > 0:
            points.append(f"{x + BAR_WIDTH / 2:g},{HEIGHT - mean_ms / max_mean * HEIGHT:.1f}")
    return ActivityChart(
        subscription=subscription,
        bars=bars,
        latency_points=" ".join(points),
        max_attempts=max_attempts,
        max_mean_ms=max_mean,
    )
