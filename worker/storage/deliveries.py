"""Stored deliveries: one per event and subscription, claimed, retried and finished by workers."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Row, and_, bindparam, case, func, or_, select, update

from worker.storage.paging import oldest_first_after
from worker.storage.records import (
    ClaimedDelivery,
    Delivery,
    DeliveryFilter,
    DeliveryStatus,
    Event,
    SubscriptionCounts,
    new_id,
)
from worker.storage.shapes import padded
from worker.storage.subscriptions import disabled_among
from worker.storage.tables import deliveries, events
from worker.storage.transactions import SqlStoreBase

_CLAIMABLE = (DeliveryStatus.PENDING, DeliveryStatus.RETRYING)
_UNFINISHED = (DeliveryStatus.PENDING, DeliveryStatus.DELIVERING, DeliveryStatus.RETRYING)

# The statements every attempt runs, built once with bound parameters (p_*): SQLAlchemy then
# skips building the statement and its cache key on each call, most of a statement's cost here.
# Claimable now: pending or retrying and due, or `delivering` with an expired lease.
_CLAIMABLE_NOW = or_(
    and_(
        deliveries.c.status.in_([status.value for status in _CLAIMABLE]),
        or_(
            deliveries.c.next_attempt_at.is_(None),
            deliveries.c.next_attempt_at <= bindparam("p_now"),
        ),
    ),
    and_(
        deliveries.c.status == DeliveryStatus.DELIVERING.value,
        deliveries.c.updated_at <= bindparam("p_lease_cutoff"),
    ),
)
_CLAIM = (
    update(deliveries)
    .where(deliveries.c.id == bindparam("p_id"), _CLAIMABLE_NOW)
    .values(status=DeliveryStatus.DELIVERING.value, updated_at=bindparam("p_now"))
)
_CLAIM_MANY = (
    update(deliveries)
    .where(deliveries.c.id.in_(bindparam("p_ids", expanding=True)), _CLAIMABLE_NOW)
    .values(status=DeliveryStatus.DELIVERING.value, updated_at=bindparam("p_now"))
    .returning(*deliveries.c)
)
_CLAIM_RETURNING = _CLAIM.returning(*deliveries.c)
_EVENT_BY_ID = select(events).where(events.c.id == bindparam("p_id"))
_ALREADY_DELIVERED = deliveries.c.status == DeliveryStatus.DELIVERED.value
# Count one attempt and mark the delivery delivered (`record_attempt`'s count, then
# `mark_delivered`: a row already delivered keeps its first `delivered_at`).
_DELIVERED = (
    update(deliveries)
    .where(deliveries.c.id.in_(bindparam("p_ids", expanding=True)))
    .values(
        attempt_count=deliveries.c.attempt_count + 1,
        status=DeliveryStatus.DELIVERED.value,
        delivered_at=case(
            (_ALREADY_DELIVERED, deliveries.c.delivered_at), else_=bindparam("p_now")
        ),
        next_attempt_at=None,
        last_error=None,
        updated_at=case((_ALREADY_DELIVERED, deliveries.c.updated_at), else_=bindparam("p_now")),
    )
)


class DeliveriesMixin(SqlStoreBase):
    def get_delivery(self, delivery_id: str) -> Delivery | None:
        with self._read() as connection:
            return self._delivery_or_none(connection, delivery_id)

    def list_deliveries(
        self,
        status: DeliveryStatus | None = None,
        subscription: str | None = None,
        event_id: str | None = None,
        limit: int = 100,
    ) -> list[Delivery]:
        """Newest first, optionally filtered."""
        query = select(deliveries).order_by(deliveries.c.created_at.desc(), deliveries.c.id.desc())
        if status is not None:
            query = query.where(deliveries.c.status == status.value)
        if subscription is not None:
            query = query.where(deliveries.c.subscription == subscription)
        if event_id is not None:
            query = query.where(deliveries.c.event_id == event_id)
        with self._read() as connection:
            return [_delivery(row) for row in connection.execute(query.limit(limit))]

    def claim_delivery(self, delivery_id: str, now: datetime | None = None) -> Delivery | None:
        """Move a due pending/retrying delivery to `delivering` and return it, atomically.

        Returns None (and changes nothing) when the delivery is delivered, failed, cancelled,
        not due yet, or being delivered by someone else: of two concurrent claims one wins.
        A `delivering` row whose lease expired (a crashed worker) can be claimed again.
        """
        with self._write() as connection:
            if connection.execute(_CLAIM, self._claim(delivery_id, now)).rowcount != 1:
                return None
            return self._delivery(connection, delivery_id)

    def claim_attempt(
        self, delivery_id: str, now: datetime | None = None, *, read_event: bool = True
    ) -> ClaimedDelivery | None:
        """`claim_delivery`, plus the delivery's event (unless not `read_event`: None then) and
        its subscription's disabled state, read in the same transaction (one round of the store
        per attempt instead of three)."""
        with self._write() as connection:
            claimed = connection.execute(_CLAIM_RETURNING, self._claim(delivery_id, now)).first()
            if claimed is None:
                return None
            delivery = _delivery(claimed)
            row = (
                connection.execute(_EVENT_BY_ID, {"p_id": delivery.event_id}).first()
                if read_event
                else None
            )
            disabled = delivery.subscription in disabled_among(connection, [delivery.subscription])
        return ClaimedDelivery(
            delivery,
            event=None if row is None else Event(**row._asdict()),
            subscription_disabled=disabled,
        )

    def claim_attempts(
        self, delivery_ids: Sequence[str], now: datetime | None = None
    ) -> dict[str, ClaimedDelivery]:
        """`claim_attempt` of several deliveries (their event not read) in one transaction: the
        ones claimed, by id; a delivery not claimable is left out, as `claim_attempt` answers
        None for it. One statement claims them all, one reads their subscriptions' state."""
        if not delivery_ids:
            return {}
        parameters = {"p_ids": padded(delivery_ids), **self._claimable_now(now)}
        with self._write() as connection:
            rows = [_delivery(row) for row in connection.execute(_CLAIM_MANY, parameters)]
            disabled = disabled_among(connection, (delivery.subscription for delivery in rows))
        return {
            delivery.id: ClaimedDelivery(delivery, None, delivery.subscription in disabled)
            for delivery in rows
        }

    def _claim(self, delivery_id: str, now: datetime | None) -> dict[str, Any]:
        """The parameters of `_CLAIM`."""
        return {"p_id": delivery_id, **self._claimable_now(now)}

    def _claimable_now(self, now: datetime | None) -> dict[str, Any]:
        """The parameters of `_CLAIMABLE_NOW`."""
        now = self._now(now)
        return {"p_now": now, "p_lease_cutoff": now - self._lease}

    def mark_delivered(self, delivery_id: str, now: datetime | None = None) -> Delivery:
        """Delivered is final; marking it again keeps the first `delivered_at`."""
        changes = delivered_values(self._now(now))
        return self._transition(delivery_id, changes, allowed_from=None)

    def schedule_retry(
        self,
        delivery_id: str,
        next_attempt_at: datetime,
        error: str | None,
        now: datetime | None = None,
    ) -> Delivery:
        """Set `retrying`, due at `next_attempt_at`; no effect on a finished row."""
        changes = {
            "status": DeliveryStatus.RETRYING.value,
            "next_attempt_at": next_attempt_at,
            "last_error": without_nul(error),
            "updated_at": self._now(now),
        }
        return self._transition(delivery_id, changes, allowed_from=_UNFINISHED)

    def mark_failed(
        self, delivery_id: str, error: str | None, now: datetime | None = None
    ) -> Delivery:
        """Dead-letter the delivery (replayable); no effect on a delivered/cancelled row."""
        changes = {
            "status": DeliveryStatus.FAILED.value,
            "next_attempt_at": None,
            "last_error": without_nul(error),
            "updated_at": self._now(now),
        }
        return self._transition(
            delivery_id, changes, allowed_from=(*_UNFINISHED, DeliveryStatus.FAILED)
        )

    def cancel_delivery(
        self, delivery_id: str, reason: str | None, now: datetime | None = None
    ) -> Delivery:
        """Give up on an unfinished delivery without sending it (e.g. subscription disabled)."""
        changes = {
            "status": DeliveryStatus.CANCELLED.value,
            "next_attempt_at": None,
            "last_error": without_nul(reason),
            "updated_at": self._now(now),
        }
        return self._transition(delivery_id, changes, allowed_from=_UNFINISHED)

    def overdue_deliveries(
        self, now: datetime | None = None, grace: timedelta = timedelta(0), limit: int = 100
    ) -> list[Delivery]:
        """For the sweeper: due more than `grace` ago and not started, or stranded by a crash."""
        now = self._now(now)
        query = (
            select(deliveries)
            .where(
                or_(
                    and_(
                        deliveries.c.status.in_([status.value for status in _CLAIMABLE]),
                        deliveries.c.next_attempt_at <= now - grace,
                    ),
                    self._lease_expired(now),
                )
            )
            .order_by(deliveries.c.next_attempt_at, deliveries.c.id)
            .limit(limit)
        )
        with self._read() as connection:
            return [_delivery(row) for row in connection.execute(query)]

    def requeue_delivery(
        self,
        delivery_id: str,
        now: datetime | None = None,
        *,
        allow_delivered: bool = True,
        only_from: Sequence[DeliveryStatus] | None = None,
    ) -> Delivery | None:
        """Replay: back to `pending`, due now, with a fresh retry budget (attempt_count 0).

        Returns None (nothing changed) while the delivery is being delivered, when it is
        delivered and `allow_delivered` is false, or when `only_from` is given and its status is
        not one of them — checked in the UPDATE itself, so a worker delivering it (or a
        concurrent replay requeuing it) after the caller read its status cannot make it be sent
        twice or counted twice.
        """
        now = self._now(now)
        conditions = [
            deliveries.c.id == delivery_id,
            or_(
                deliveries.c.status != DeliveryStatus.DELIVERING.value,
                self._lease_expired(now),
            ),
        ]
        if not allow_delivered:
            conditions.append(deliveries.c.status != DeliveryStatus.DELIVERED.value)
        if only_from is not None:
            conditions.append(deliveries.c.status.in_([status.value for status in only_from]))
        query = (
            update(deliveries)
            .where(*conditions)
            .values(
                status=DeliveryStatus.PENDING.value,
                attempt_count=0,
                next_attempt_at=now,
                last_error=None,
                delivered_at=None,
                updated_at=now,
            )
        )
        with self._write() as connection:
            changed = connection.execute(query).rowcount == 1
            delivery = self._delivery(connection, delivery_id)
            return delivery if changed else None

    def reset_overdue_delivery(
        self, delivery_id: str, grace: timedelta, now: datetime | None = None
    ) -> Delivery | None:
        """For the sweeper: make an overdue delivery due `now`, so it is swept once per grace.

        A pending/retrying row due more than `grace` ago gets `next_attempt_at = now`; a
        `delivering` row whose lease expired (its worker crashed) goes back to `retrying`, due
        now. Returns the row, or None (nothing changed) when it is no longer overdue: claimed,
        finished, or already reset by a concurrent sweep.
        """
        now = self._now(now)
        overdue = and_(
            deliveries.c.status.in_([status.value for status in _CLAIMABLE]),
            deliveries.c.next_attempt_at <= now - grace,
        )
        with self._write() as connection:
            changed = connection.execute(
                update(deliveries)
                .where(deliveries.c.id == delivery_id, overdue)
                .values(next_attempt_at=now, updated_at=now)
            ).rowcount
            if not changed:
                changed = connection.execute(
                    update(deliveries)
                    .where(deliveries.c.id == delivery_id, self._lease_expired(now))
                    .values(
                        status=DeliveryStatus.RETRYING.value,
                        next_attempt_at=now,
                        last_error="worker lost during the attempt (lease expired)",
                        updated_at=now,
                    )
                ).rowcount
            return self._delivery_or_none(connection, delivery_id) if changed else None

    def count_deliveries(self) -> dict[DeliveryStatus, int]:
        """How many deliveries are in each status; every status is a key (0 when none)."""
        query = select(deliveries.c.status, func.count()).group_by(deliveries.c.status)
        with self._read() as connection:
            found = {str(status): int(n) for status, n in connection.execute(query)}
        return {status: found.get(status.value, 0) for status in DeliveryStatus}

    def deliveries_matching(
        self,
        filters: DeliveryFilter,
        *,
        after: tuple[datetime, str] | None = None,
        limit: int = 200,
    ) -> list[Delivery]:
        """For a bulk replay: matching deliveries oldest first (created_at, id); `after` is the
        (created_at, id) of the last one of the previous batch."""
        column = deliveries.c
        query = (
            select(deliveries)
            .where(column.status.in_([status.value for status in filters.statuses]))
            .order_by(column.created_at, column.id)
            .limit(limit)
        )
        if filters.subscription is not None:
            query = query.where(column.subscription == filters.subscription)
        if filters.created_from is not None:
            query = query.where(column.created_at >= filters.created_from)
        if filters.created_until is not None:
            query = query.where(column.created_at < filters.created_until)
        if after is not None:
            query = query.where(oldest_first_after(column.created_at, column.id, after))
        with self._read() as connection:
            return [_delivery(row) for row in connection.execute(query)]

    def count_deliveries_by_subscription(self) -> list[SubscriptionCounts]:
        """Per subscription name ever delivered to, how many deliveries are in each status."""
        query = select(deliveries.c.subscription, deliveries.c.status, func.count()).group_by(
            deliveries.c.subscription, deliveries.c.status
        )
        found: dict[str, dict[DeliveryStatus, int]] = {}
        with self._read() as connection:
            for name, status, number in connection.execute(query):
                counts = found.setdefault(str(name), dict.fromkeys(DeliveryStatus, 0))
                counts[DeliveryStatus(status)] = int(number)
        return [SubscriptionCounts(name, found[name]) for name in sorted(found)]

    def list_deliveries_of_events(self, event_ids: Sequence[str]) -> list[Delivery]:
        """Every delivery of these events (one query for a page of events), by subscription."""
        if not event_ids:
            return []
        query = (
            select(deliveries)
            .where(deliveries.c.event_id.in_(list(event_ids)))
            .order_by(deliveries.c.event_id, deliveries.c.subscription)
        )
        with self._read() as connection:
            return [_delivery(row) for row in connection.execute(query)]

    def _lease_expired(self, now: datetime) -> Any:
        return and_(
            deliveries.c.status == DeliveryStatus.DELIVERING.value,
            deliveries.c.updated_at <= now - self._lease,
        )

    def _transition(
        self,
        delivery_id: str,
        changes: dict[str, Any],
        allowed_from: Sequence[DeliveryStatus] | None,
    ) -> Delivery:
        """Apply `changes` if the status is in `allowed_from` (None: anything but the target)."""
        target = changes["status"]
        query = update(deliveries).where(deliveries.c.id == delivery_id).values(changes)
        if allowed_from is None:
            query = query.where(deliveries.c.status != target)
        else:
            query = query.where(deliveries.c.status.in_([status.value for status in allowed_from]))
        with self._write() as connection:
            connection.execute(query)
            return self._delivery(connection, delivery_id)

    @staticmethod
    def _delivery_or_none(connection: Connection, delivery_id: str) -> Delivery | None:
        row = connection.execute(select(deliveries).where(deliveries.c.id == delivery_id)).first()
        return None if row is None else _delivery(row)

    def _delivery(self, connection: Connection, delivery_id: str) -> Delivery:
        delivery = self._delivery_or_none(connection, delivery_id)
        if delivery is None:
            raise LookupError(f"no deliveries row with id {delivery_id!r}")
        return delivery


def deliveries_of(connection: Connection, event_id: str) -> list[Delivery]:
    query = (
        select(deliveries)
        .where(deliveries.c.event_id == event_id)
        .order_by(deliveries.c.subscription)
    )
    return [_delivery(row) for row in connection.execute(query)]


def new_delivery_row(
    event_id: str, subscription: str, now: datetime, *, claimed: bool = False
) -> dict[str, Any]:
    """A new delivery's row: pending, due `now`; with `claimed`, already `delivering` (claimed
    by its creator at `now`, as `claim_delivery` would leave it)."""
    status = DeliveryStatus.DELIVERING if claimed else DeliveryStatus.PENDING
    return {
        "id": new_id("dlv"),
        "event_id": event_id,
        "subscription": subscription,
        "status": status.value,
        "attempt_count": 0,
        "next_attempt_at": now,
        "created_at": now,
        "updated_at": now,
    }


def delivered_values(now: datetime) -> dict[str, Any]:
    return {
        "status": DeliveryStatus.DELIVERED.value,
        "delivered_at": now,
        "next_attempt_at": None,
        "last_error": None,
        "updated_at": now,
    }


def mark_attempts_delivered(
    connection: Connection, delivery_ids: Sequence[str], now: datetime
) -> None:
    """Count one attempt of each and mark them delivered (see `_DELIVERED`; one UPDATE … WHERE
    id IN, so each id once); LookupError when one of them does not exist (the caller's
    transaction is then rolled back).
    """
    parameters = {"p_ids": padded(delivery_ids), "p_now": now}
    if connection.execute(_DELIVERED, parameters).rowcount != len(set(delivery_ids)):
        missing = ", ".join(repr(delivery_id) for delivery_id in delivery_ids)
        raise LookupError(f"no deliveries row for one of {missing}")


def new_deliveries(rows: Sequence[dict[str, Any]]) -> list[Delivery]:
    """The deliveries `new_delivery_row` made, as `deliveries_of` would read them back."""
    found = []
    for row in sorted(rows, key=lambda row: str(row["subscription"])):
        values: dict[str, Any] = {
            name: value.astimezone(UTC) if isinstance(value, datetime) else value
            for name, value in row.items()
        }
        values["status"] = DeliveryStatus(values["status"])
        found.append(Delivery(**values, last_error=None, delivered_at=None))
    return found


def without_nul(value: str | None) -> str | None:
    # PostgreSQL text cannot hold NUL characters; a misbehaving endpoint may send them.
    return None if value is None else value.replace("\x00", "")


def _delivery(row: Row[Any]) -> Delivery:
    values = row._asdict()
    values["status"] = DeliveryStatus(values["status"])
    return Delivery(**values)
