"""Stored attempts: each send of a delivery, numbered, with the receiver's answer."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Row, bindparam, func, insert, select

from worker.storage.deliveries import mark_attempts_delivered, without_nul
from worker.storage.records import Attempt, AttemptOutcome, AttemptRecord
from worker.storage.shapes import insert_in_chunks
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
# Several at once (worker.storage.shapes.insert_in_chunks). Their RETURNING rows are matched to
# the parameters by delivery id (one attempt per delivery in a batch): asking for them in the
# order of the parameters (sort_by_parameter_order) makes SQLAlchemy send one INSERT per row on
# SQLite, whose rowids it cannot correlate with the parameters
# (https://docs.sqlalchemy.org/en/20/core/connections.html#engine-insertmanyvalues).
_INSERT_MANY = _INSERT.returning(attempts.c.delivery_id)


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
        ids = [delivery_id for delivery_id, _, _ in delivered]
        if len(set(ids)) != len(ids):
            # Numbered in one INSERT, two attempts of one delivery would get the same number.
            raise ValueError("record_delivered_attempts: a delivery appears twice")
        with self._write() as connection:
            # Updating first locks the delivery rows, so concurrent attempts number in turn.
            mark_attempts_delivered(connection, ids, now)
            values = [_attempt_values(delivery_id, record) for delivery_id, _, record in delivered]
            parameters = [{f"p_{name}": value for name, value in each.items()} for each in values]
            inserted = insert_in_chunks(connection, _INSERT_MANY, parameters)
            rows = {row.delivery_id: row for row in inserted}
            names = [name for _, name, _ in delivered]
            record_success(connection, self._engine.dialect.name, names, now)
        return [
            _written(each, record, rows[delivery_id])
            for each, (delivery_id, _, record) in zip(values, delivered, strict=True)
        ]

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
        values = _attempt_values(delivery_id, record)
        row = connection.execute(
            _INSERT, {f"p_{name}": value for name, value in values.items()}
        ).one()
        return _written(values, record, row)

    def list_attempts(self, delivery_id: str) -> list[Attempt]:
        query = (
            select(attempts)
            .where(attempts.c.delivery_id == delivery_id)
            .order_by(attempts.c.number)
        )
        with self._read() as connection:
            return [_attempt(row) for row in connection.execute(query)]


def _attempt_values(delivery_id: str, record: AttemptRecord) -> dict[str, Any]:
    """The columns of an attempt's row but its id and number (the INSERT numbers it)."""
    return {
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


def _written(values: dict[str, Any], record: AttemptRecord, row: Row[Any]) -> Attempt:
    """The attempt as stored, built from what was written rather than read back (one
    statement less per attempt) and the id and number the INSERT returned."""
    written = {**values, "started_at": record.started_at.astimezone(UTC)}
    written["outcome"] = record.outcome
    return Attempt(id=int(row.id), number=int(row.number), **written)


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
