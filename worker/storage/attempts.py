"""Stored attempts: each send of a delivery, numbered, with the receiver's answer."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Row, bindparam, func, insert, select

from worker.storage.deliveries import mark_attempt_delivered, without_nul
from worker.storage.records import Attempt, AttemptOutcome, AttemptRecord
from worker.storage.subscriptions import record_success
from worker.storage.tables import attempts, deliveries
from worker.storage.transactions import SqlStoreBase

# Response bodies are stored truncated to 20 kB (worker.sinks.base.MAX_RESPONSE_BODY_BYTES).
MAX_RESPONSE_BODY_BYTES = 20_000


_COLUMNS = (
    "delivery_id",
    "started_at",
    "duration_ms",
    "status_code",
    "outcome",
    "error",
    "response_body",
    "response_headers",
)
# Numbered in the INSERT itself; built once (worker.storage.deliveries says why).
_INSERT = (
    insert(attempts)
    .values(
        number=select(func.coalesce(func.max(attempts.c.number), 0) + 1)
        .where(attempts.c.delivery_id == bindparam("p_delivery_id"))
        .scalar_subquery(),
        **{name: bindparam(f"p_{name}") for name in _COLUMNS},
    )
    .returning(attempts.c.id, attempts.c.number)
)


class AttemptsMixin(SqlStoreBase):
    def record_attempt(self, delivery_id: str, record: AttemptRecord) -> Attempt:
        """Store one attempt (numbered 1, 2, …) and count it on the delivery."""
        with self._write() as connection:
            return self._insert_attempt(connection, delivery_id, record)

    def record_delivered_attempt(
        self, delivery_id: str, subscription: str, record: AttemptRecord, now: datetime
    ) -> Attempt:
        """`record_attempt`, `mark_delivered` and `record_subscription_success` of a delivered
        attempt, in one transaction: the attempt is never stored without its delivery's state."""
        [attempt] = self.record_delivered_attempts([(delivery_id, subscription, record)], now)
        return attempt

    def record_delivered_attempts(
        self, delivered: Sequence[tuple[str, str, AttemptRecord]], now: datetime
    ) -> list[Attempt]:
        """`record_delivered_attempt` of each (delivery id, subscription, record), all in one
        transaction (LookupError, and nothing stored, if one delivery is missing); the attempts
        in that order."""
        if not delivered:
            return []
        stored = []
        with self._write() as connection:
            for delivery_id, _, record in delivered:
                # Updating first locks the delivery row, so concurrent attempts number in turn.
                mark_attempt_delivered(connection, delivery_id, now)
                stored.append(self._insert_attempt(connection, delivery_id, record, counted=True))
            names = [name for _, name, _ in delivered]
            record_success(connection, self._engine.dialect.name, names, now)
        return stored

    def _insert_attempt(
        self,
        connection: Connection,
        delivery_id: str,
        record: AttemptRecord,
        *,
        counted: bool = False,
    ) -> Attempt:
        if not counted:
            # Updating first locks the delivery row, so concurrent attempts number in turn.
            self._update_one(
                connection,
                deliveries,
                delivery_id,
                {"attempt_count": deliveries.c.attempt_count + 1},
            )
        values: dict[str, Any] = {
            "delivery_id": delivery_id,
            "started_at": record.started_at,
            "duration_ms": round(record.duration_ms),
            "status_code": record.status_code,
            "outcome": record.outcome.value,
            "error": without_nul(record.error),
            "response_body": _truncate(record.response_body),
            "response_headers": {
                without_nul(name) or "": without_nul(value) or ""
                for name, value in record.response_headers.items()
            },
        }
        row = connection.execute(
            _INSERT, {f"p_{name}": value for name, value in values.items()}
        ).one()
        # Built from what was written rather than read back: one statement less per attempt.
        written = {**values, "started_at": record.started_at.astimezone(UTC)}
        written["outcome"] = record.outcome
        return Attempt(id=int(row.id), number=int(row.number), **written)

    def list_attempts(self, delivery_id: str) -> list[Attempt]:
        query = (
            select(attempts)
            .where(attempts.c.delivery_id == delivery_id)
            .order_by(attempts.c.number)
        )
        with self._read() as connection:
            return [_attempt(row) for row in connection.execute(query)]


def _truncate(body: str | None) -> str | None:
    body = without_nul(body)
    if body is None:
        return None
    encoded = body.encode("utf-8")
    if len(encoded) <= MAX_RESPONSE_BODY_BYTES:
        return body
    # Cutting bytes may split a character: drop the partial one.
    return encoded[:MAX_RESPONSE_BODY_BYTES].decode("utf-8", errors="ignore")


def _attempt(row: Row[Any]) -> Attempt:
    values = row._asdict()
    values["outcome"] = AttemptOutcome(values["outcome"])
    return Attempt(**values)
