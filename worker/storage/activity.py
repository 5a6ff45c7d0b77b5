"""Delivery activity: attempts per subscription and hour, with their latency (dashboard charts)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Integer, case, cast, func, select

from worker.outcomes import AttemptOutcome
from worker.storage.tables import attempts, deliveries
from worker.storage.transactions import SqlStoreBase

HOUR = timedelta(hours=1)


@dataclass(frozen=True, slots=True)
class HourlyAttempts:
    """The attempts made for one subscription in the hour starting at `hour` (UTC).

    `delivered` counts attempts the target accepted; `failed` every other outcome (retry,
    failed, gone): what an operator sees as an outage. Durations are in milliseconds.
    """

    subscription: str
    hour: datetime
    delivered: int
    failed: int
    total_ms: int
    max_ms: int

    @property
    def attempts(self) -> int:
        return self.delivered + self.failed

    @property
    def mean_ms(self) -> float | None:
        return self.total_ms / self.attempts if self.attempts else None


class ActivityMixin(SqlStoreBase):
    def hourly_attempts(self, since: datetime, until: datetime) -> list[HourlyAttempts]:
        """Attempts started in [since, until), per subscription and whole UTC hour, in order.

        Hours without an attempt are left out. Counted in the database, so a day of attempts
        comes back as at most 24 rows per subscription.
        """
        hour = _hour_number(self._engine.dialect.name)
        delivered = case((attempts.c.outcome == AttemptOutcome.DELIVERED.value, 1), else_=0)
        query = (
            select(
                deliveries.c.subscription,
                hour.label("hour"),
                func.sum(delivered).label("delivered"),
                func.count().label("attempts"),
                func.sum(attempts.c.duration_ms).label("total_ms"),
                func.max(attempts.c.duration_ms).label("max_ms"),
            )
            .select_from(attempts.join(deliveries, deliveries.c.id == attempts.c.delivery_id))
            .where(attempts.c.started_at >= since, attempts.c.started_at < until)
            .group_by(deliveries.c.subscription, hour)
            .order_by(deliveries.c.subscription, hour)
        )
        with self._read() as connection:
            return [
                HourlyAttempts(
                    subscription=row.subscription,
                    hour=datetime.fromtimestamp(int(row.hour) * 3600, UTC),
                    delivered=int(row.delivered),
                    failed=int(row.attempts) - int(row.delivered),
                    total_ms=int(row.total_ms),
                    max_ms=int(row.max_ms),
                )
                for row in connection.execute(query)
            ]


def _hour_number(dialect: str) -> Any:
    """Whole hours since the Unix epoch of an attempt's start, in SQL."""
    started = attempts.c.started_at
    if dialect == "postgresql":
        # https://www.postgresql.org/docs/current/functions-datetime.html (EXTRACT epoch)
        return cast(func.floor(func.extract("epoch", started) / 3600), Integer)
    # SQLite stores UTC text ("YYYY-MM-DD HH:MM:SS.ffffff"); strftime('%s') reads it as UTC.
    # https://www.sqlite.org/lang_datefunc.html
    return cast(func.strftime("%s", started), Integer) // 3600
