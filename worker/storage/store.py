"""The SQL store: the relay's source of truth (invitations, callbacks, events, deliveries)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import (
    Connection,
    Engine,
    Row,
    and_,
    func,
    insert,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError, OperationalError, SQLAlchemyError

from worker.errors import PermanentError, RetryableError
from worker.storage.engine import WRITE_OPTION, make_engine
from worker.storage.migrations import upgrade_engine
from worker.storage.records import (
    Attempt,
    AttemptOutcome,
    AttemptRecord,
    CallbackReceipt,
    Delivery,
    DeliveryStatus,
    Event,
    Invitation,
    InvitationSource,
    InvitationStatus,
    JsonObject,
    NewInvitation,
    PurgeCounts,
    SubscriptionState,
    new_id,
)
from worker.storage.tables import (
    attempts,
    callbacks,
    deliveries,
    events,
    invitations,
    subscription_state,
)

Clock = Callable[[], datetime]

# DESIGN §3.4: response bodies are stored truncated to 20 kB.
MAX_RESPONSE_BODY_BYTES = 20_000
# A "delivering" row not finished within this time is taken to belong to a crashed worker.
# Longer than the deliver actor's time limit (6 min), so a live attempt is never re-claimed.
DEFAULT_LEASE = timedelta(minutes=10)
# Candidate fields blanked by purge_pii in invitations and in event payloads (DESIGN §3.8).
PII_FIELDS = ("email", "first_name", "last_name")

_CLAIMABLE = (DeliveryStatus.PENDING, DeliveryStatus.RETRYING)
_UNFINISHED = (DeliveryStatus.PENDING, DeliveryStatus.DELIVERING, DeliveryStatus.RETRYING)


def utc_now() -> datetime:
    return datetime.now(UTC)


class SqlStore:
    """Every method is one short transaction; ``now`` defaults to the injected clock.

    Methods that change a row by id raise LookupError when the id is unknown. Database outages
    (connection refused, lock timeouts) raise RetryableError.
    """

    def __init__(
        self, engine: Engine, *, clock: Clock = utc_now, lease: timedelta = DEFAULT_LEASE
    ) -> None:
        self._engine = engine
        self._clock = clock
        self._lease = lease
        # SQLite admits one writer at a time; writers of this process queue on a lock instead of
        # in SQLite's busy handler, whose growing sleeps gave callbacks a p99 of ~1 s under load
        # (bench/callback_edge.py). Other processes still wait through busy_timeout.
        self._write_lock: AbstractContextManager[object] = (
            threading.Lock() if engine.dialect.name == "sqlite" else nullcontext()
        )

    @classmethod
    def from_url(
        cls, database_url: str, *, clock: Clock = utc_now, lease: timedelta = DEFAULT_LEASE
    ) -> SqlStore:
        return cls(make_engine(database_url), clock=clock, lease=lease)

    @property
    def engine(self) -> Engine:
        return self._engine

    def migrate(self) -> None:
        """Upgrade the schema to the latest migration; safe to run twice."""
        with self._translated_errors():
            upgrade_engine(self._engine)

    def ping(self) -> None:
        """Raise RetryableError unless the database answers a trivial query."""
        try:
            with self._engine.connect() as connection:
                connection.execute(text("SELECT 1"))
        except SQLAlchemyError as exc:
            raise RetryableError("database unreachable") from exc

    def close(self) -> None:
        self._engine.dispose()

    # -- invitations -------------------------------------------------------------------------

    def create_invitation(self, new: NewInvitation, now: datetime | None = None) -> Invitation:
        """Insert a pending invitation.

        Idempotent on `idempotency_key`: if an invitation with that key exists, it is returned
        unchanged. Raises PermanentError if the id or `pla_tst_id` is already stored.
        """
        now = self._now(now)
        values = {
            "id": new.id,
            "pla_tst_id": new.pla_tst_id,
            "tst_frm_id": new.tst_frm_id,
            "can_id": new.can_id,
            "email": new.email,
            "first_name": new.first_name,
            "last_name": new.last_name,
            "ext_id": new.ext_id,
            "sub_com_id": new.sub_com_id,
            "context": dict(new.context),
            "test_url": new.test_url,
            "status": InvitationStatus.PENDING.value,
            "source": new.source.value,
            "idempotency_key": new.idempotency_key,
            "created_at": now,
            "next_check_at": new.next_check_at,
            "check_count": 0,
        }
        key = new.idempotency_key
        try:
            with self._write() as connection:
                if key is not None and (existing := self._invitation_by_key(connection, key)):
                    return existing
                connection.execute(insert(invitations).values(values))
                return self._invitation(connection, new.id)
        except IntegrityError as exc:
            # A concurrent request with the same key won the race: answer with its row.
            if key is not None and (found := self.get_invitation_by_idempotency_key(key)):
                return found
            raise PermanentError(f"invitation {new.id} conflicts with a stored one") from exc

    def get_invitation(self, invitation_id: str) -> Invitation | None:
        with self._read() as connection:
            row = connection.execute(
                select(invitations).where(invitations.c.id == invitation_id)
            ).first()
        return None if row is None else _invitation(row)

    def get_invitation_by_pla_tst_id(self, pla_tst_id: int) -> Invitation | None:
        with self._read() as connection:
            row = connection.execute(
                select(invitations).where(invitations.c.pla_tst_id == pla_tst_id)
            ).first()
        return None if row is None else _invitation(row)

    def get_invitation_by_idempotency_key(self, key: str) -> Invitation | None:
        with self._read() as connection:
            return self._invitation_by_key(connection, key)

    def attach_assessment(
        self,
        invitation_id: str,
        *,
        pla_tst_id: int,
        can_id: int | None = None,
        test_url: str | None = None,
    ) -> Invitation:
        """Record what Isograd answered for an invitation stored before calling it."""
        changes: dict[str, Any] = {"pla_tst_id": pla_tst_id}
        if can_id is not None:
            changes["can_id"] = can_id
        if test_url is not None:
            changes["test_url"] = test_url
        try:
            with self._write() as connection:
                self._update_one(connection, invitations, invitation_id, changes)
                return self._invitation(connection, invitation_id)
        except IntegrityError as exc:
            raise PermanentError(f"pla_tst_id {pla_tst_id} already belongs to another") from exc

    def record_status_check(
        self,
        invitation_id: str,
        sta_id: int,
        next_check_at: datetime | None,
        now: datetime | None = None,
    ) -> Invitation:
        """Note one act 10 answer and when to ask again (None: stop asking)."""
        changes = {
            "check_count": invitations.c.check_count + 1,
            "last_status": sta_id,
            "next_check_at": next_check_at,
            "last_checked_at": self._now(now),
        }
        with self._write() as connection:
            self._update_one(connection, invitations, invitation_id, changes)
            return self._invitation(connection, invitation_id)

    def mark_invitation(
        self, invitation_id: str, status: InvitationStatus, now: datetime | None = None
    ) -> Invitation:
        """Set the status; leaving `pending` stops the reconciler. Safe to run twice."""
        now = self._now(now)
        changes: dict[str, Any] = {"status": status.value}
        if status is InvitationStatus.COMPLETED:
            changes["completed_at"] = func.coalesce(invitations.c.completed_at, now)
        if status is not InvitationStatus.PENDING:
            changes["next_check_at"] = None
        with self._write() as connection:
            self._update_one(connection, invitations, invitation_id, changes)
            return self._invitation(connection, invitation_id)

    def due_invitations(self, now: datetime | None = None, limit: int = 100) -> list[Invitation]:
        """Pending invitations whose next status check is due, oldest-due first."""
        query = (
            select(invitations)
            .where(
                invitations.c.status == InvitationStatus.PENDING.value,
                invitations.c.next_check_at <= self._now(now),
            )
            .order_by(invitations.c.next_check_at, invitations.c.id)
            .limit(limit)
        )
        with self._read() as connection:
            return [_invitation(row) for row in connection.execute(query)]

    # -- callbacks ---------------------------------------------------------------------------

    def record_callback(
        self,
        invitation_id: str | None,
        method: str,
        query: Mapping[str, str],
        remote_addr: str | None,
        accepted: bool,
        reason: str | None,
        now: datetime | None = None,
    ) -> int:
        """Store one inbound callback as received; returns its id."""
        values = {
            "invitation_id": invitation_id,
            "received_at": self._now(now),
            "method": method,
            "query": dict(query),
            "remote_addr": remote_addr,
            "accepted": accepted,
            "reason": reason,
        }
        statement = insert(callbacks).values(values).returning(callbacks.c.id)
        with self._write() as connection:
            return int(connection.execute(statement).scalar_one())

    def mark_callbacks_processed(self, invitation_id: str, now: datetime | None = None) -> int:
        """Mark the invitation's unprocessed callbacks processed; returns how many."""
        query = (
            update(callbacks)
            .where(callbacks.c.invitation_id == invitation_id, callbacks.c.processed_at.is_(None))
            .values(processed_at=self._now(now))
        )
        with self._write() as connection:
            return connection.execute(query).rowcount

    def unprocessed_callbacks(
        self, older_than: datetime, limit: int = 100
    ) -> list[CallbackReceipt]:
        """Accepted callbacks received before `older_than` and never processed, oldest first."""
        query = (
            select(callbacks)
            .where(
                callbacks.c.processed_at.is_(None),
                callbacks.c.received_at <= older_than,
                callbacks.c.accepted.is_(True),
                callbacks.c.invitation_id.is_not(None),
            )
            .order_by(callbacks.c.received_at, callbacks.c.id)
            .limit(limit)
        )
        with self._read() as connection:
            return [_callback(row) for row in connection.execute(query)]

    # -- events ------------------------------------------------------------------------------

    def create_event(
        self,
        event_id: str,
        invitation_id: str | None,
        pla_tst_id: int,
        type: str,
        payload: JsonObject,
        deliveries_for: Sequence[str],
        now: datetime | None = None,
    ) -> tuple[Event, list[Delivery], bool]:
        """Insert the event and one pending delivery per subscription name, atomically.

        Idempotent on `pla_tst_id`: if an event for it exists (even one a concurrent caller has
        just inserted), nothing is written and ``(existing event, its deliveries, False)`` is
        returned; otherwise ``(event, deliveries, True)``.
        """
        now = self._now(now)
        names = list(dict.fromkeys(deliveries_for))
        try:
            with self._write() as connection:
                existing = self._event_for_test(connection, pla_tst_id)
                if existing is not None:
                    return existing, self._deliveries_of(connection, existing.id), False
                connection.execute(
                    insert(events).values(
                        id=event_id,
                        type=type,
                        invitation_id=invitation_id,
                        pla_tst_id=pla_tst_id,
                        payload=payload,
                        created_at=now,
                    )
                )
                if names:
                    connection.execute(
                        insert(deliveries),
                        [_new_delivery(event_id, name, now) for name in names],
                    )
                event = self._event_for_test(connection, pla_tst_id)
                assert event is not None
                return event, self._deliveries_of(connection, event_id), True
        except IntegrityError as exc:
            # PostgreSQL: a concurrent transaction inserted the same pla_tst_id first; ours
            # waited for it on the unique index, then failed. Its row is committed now.
            with self._read() as connection:
                existing = self._event_for_test(connection, pla_tst_id)
                if existing is None:
                    raise PermanentError(f"event {event_id} conflicts with a stored row") from exc
                return existing, self._deliveries_of(connection, existing.id), False

    def get_event(self, event_id: str) -> Event | None:
        with self._read() as connection:
            row = connection.execute(select(events).where(events.c.id == event_id)).first()
        return None if row is None else _event(row)

    def get_event_by_pla_tst_id(self, pla_tst_id: int) -> Event | None:
        with self._read() as connection:
            return self._event_for_test(connection, pla_tst_id)

    def list_events(self, limit: int = 50, before: str | None = None) -> list[Event]:
        """Newest first; `before` is the id of the last event of the previous page."""
        query = select(events).order_by(events.c.created_at.desc(), events.c.id.desc())
        with self._read() as connection:
            if before is not None:
                cursor = connection.execute(
                    select(events.c.created_at).where(events.c.id == before)
                ).scalar_one_or_none()
                if cursor is None:
                    return []
                query = query.where(
                    or_(
                        events.c.created_at < cursor,
                        and_(events.c.created_at == cursor, events.c.id < before),
                    )
                )
            return [_event(row) for row in connection.execute(query.limit(limit))]

    # -- deliveries --------------------------------------------------------------------------

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
        now = self._now(now)
        claimable = or_(
            and_(
                deliveries.c.status.in_([status.value for status in _CLAIMABLE]),
                or_(deliveries.c.next_attempt_at.is_(None), deliveries.c.next_attempt_at <= now),
            ),
            self._lease_expired(now),
        )
        query = (
            update(deliveries)
            .where(deliveries.c.id == delivery_id, claimable)
            .values(status=DeliveryStatus.DELIVERING.value, updated_at=now)
        )
        with self._write() as connection:
            if connection.execute(query).rowcount != 1:
                return None
            return self._delivery(connection, delivery_id)

    def record_attempt(self, delivery_id: str, record: AttemptRecord) -> Attempt:
        """Store one attempt (numbered 1, 2, …) and count it on the delivery."""
        with self._write() as connection:
            # Updating first locks the delivery row, so concurrent attempts number in turn.
            self._update_one(
                connection,
                deliveries,
                delivery_id,
                {"attempt_count": deliveries.c.attempt_count + 1},
            )
            number = connection.execute(
                select(func.coalesce(func.max(attempts.c.number), 0) + 1).where(
                    attempts.c.delivery_id == delivery_id
                )
            ).scalar_one()
            values = {
                "delivery_id": delivery_id,
                "number": number,
                "started_at": record.started_at,
                "duration_ms": round(record.duration_ms),
                "status_code": record.status_code,
                "outcome": record.outcome.value,
                "error": _clean(record.error),
                "response_body": _truncate(record.response_body),
                "response_headers": {
                    _clean(name) or "": _clean(value) or ""
                    for name, value in record.response_headers.items()
                },
            }
            row = connection.execute(insert(attempts).values(values).returning(*attempts.c)).one()
            return _attempt(row)

    def list_attempts(self, delivery_id: str) -> list[Attempt]:
        query = (
            select(attempts)
            .where(attempts.c.delivery_id == delivery_id)
            .order_by(attempts.c.number)
        )
        with self._read() as connection:
            return [_attempt(row) for row in connection.execute(query)]

    def mark_delivered(self, delivery_id: str, now: datetime | None = None) -> Delivery:
        """Delivered is final; marking it again keeps the first `delivered_at`."""
        now = self._now(now)
        changes = {
            "status": DeliveryStatus.DELIVERED.value,
            "delivered_at": now,
            "next_attempt_at": None,
            "last_error": None,
            "updated_at": now,
        }
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
            "last_error": _clean(error),
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
            "last_error": _clean(error),
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
            "last_error": _clean(reason),
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

    def requeue_delivery(self, delivery_id: str, now: datetime | None = None) -> Delivery | None:
        """Replay: back to `pending`, due now, with a fresh retry budget (attempt_count 0).

        Returns None (nothing changed) while the delivery is being delivered.
        """
        now = self._now(now)
        query = (
            update(deliveries)
            .where(
                deliveries.c.id == delivery_id,
                or_(
                    deliveries.c.status != DeliveryStatus.DELIVERING.value,
                    self._lease_expired(now),
                ),
            )
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

    # -- subscription state ------------------------------------------------------------------

    def subscription_state(self, name: str) -> SubscriptionState:
        with self._read() as connection:
            return self._subscription(connection, name)

    def list_subscription_states(self) -> list[SubscriptionState]:
        query = select(subscription_state).order_by(subscription_state.c.name)
        with self._read() as connection:
            return [_subscription(row) for row in connection.execute(query)]

    def disable_subscription(
        self, name: str, reason: str, now: datetime | None = None
    ) -> SubscriptionState:
        """Safe to run twice: the first `disabled_at` and reason are kept."""
        now = self._now(now)
        column = subscription_state.c
        return self._upsert_subscription(
            name,
            {"disabled_at": now, "disabled_reason": reason},
            {
                "disabled_at": func.coalesce(column.disabled_at, now),
                "disabled_reason": func.coalesce(column.disabled_reason, reason),
            },
        )

    def enable_subscription(self, name: str) -> SubscriptionState:
        """Undo a disable; the failure streak starts over."""
        cleared = {"disabled_at": None, "disabled_reason": None, "failing_since": None}
        return self._upsert_subscription(name, cleared, cleared)

    def record_subscription_success(
        self, name: str, now: datetime | None = None
    ) -> SubscriptionState:
        """Ends the failure streak."""
        values = {"last_success_at": self._now(now), "failing_since": None}
        return self._upsert_subscription(name, values, values)

    def record_subscription_failure(
        self, name: str, now: datetime | None = None
    ) -> SubscriptionState:
        """Starts the failure streak (`failing_since`) unless one is running."""
        now = self._now(now)
        return self._upsert_subscription(
            name,
            {"failing_since": now},
            {"failing_since": func.coalesce(subscription_state.c.failing_since, now)},
        )

    # -- retention ---------------------------------------------------------------------------

    def purge_pii(
        self, older_than: datetime, now: datetime | None = None, batch_size: int = 500
    ) -> PurgeCounts:
        """Blank candidate PII created before `older_than` (DESIGN §3.8); safe to run twice.

        Invitations: email and names, once no longer pending (act 4 needs the email until the
        completion is processed). Events: the payload's candidate email and names. Callbacks:
        the remote address and the query parameters (Isograd's may carry personal data).
        Attempts: the stored response body (receivers often echo the payload); not counted.
        """
        now = self._now(now)
        with self._write() as connection:
            blanked = dict.fromkeys(PII_FIELDS)
            invitation_count = connection.execute(
                update(invitations)
                .where(
                    invitations.c.created_at < older_than,
                    invitations.c.status != InvitationStatus.PENDING.value,
                    invitations.c.purged_at.is_(None),
                )
                .values(**blanked, purged_at=now)
            ).rowcount
            callback_count = connection.execute(
                update(callbacks)
                .where(
                    callbacks.c.received_at < older_than,
                    callbacks.c.remote_addr.is_not(None) | (callbacks.c.query != {}),
                )
                .values(remote_addr=None, query={})
            ).rowcount
            connection.execute(
                update(attempts)
                .where(attempts.c.started_at < older_than, attempts.c.response_body.is_not(None))
                .values(response_body=None)
            )
        event_count = 0
        while True:
            with self._write() as connection:
                rows = connection.execute(
                    select(events.c.id, events.c.payload)
                    .where(events.c.created_at < older_than, events.c.purged_at.is_(None))
                    .limit(batch_size)
                ).all()
                for event_id, payload in rows:
                    connection.execute(
                        update(events)
                        .where(events.c.id == event_id)
                        .values(payload=_without_pii(payload), purged_at=now)
                    )
            event_count += len(rows)
            if len(rows) < batch_size:
                break
        return PurgeCounts(
            invitations=invitation_count, events=event_count, callbacks=callback_count
        )

    # -- scheduler: reconciler and sweeper ---------------------------------------------------

    def postpone_status_check(
        self, invitation_id: str, next_check_at: datetime | None
    ) -> Invitation:
        """Move the next reconciler check without recording an answer (no act 10 was made)."""
        with self._write() as connection:
            self._update_one(
                connection, invitations, invitation_id, {"next_check_at": next_check_at}
            )
            return self._invitation(connection, invitation_id)

    def expire_invitation(self, invitation_id: str, now: datetime | None = None) -> bool:
        """Pending → expired (the reconciler stops); False if it was no longer pending.

        Conditional, so a completion stored concurrently is never overwritten.
        """
        query = (
            update(invitations)
            .where(
                invitations.c.id == invitation_id,
                invitations.c.status == InvitationStatus.PENDING.value,
            )
            .values(status=InvitationStatus.EXPIRED.value, next_check_at=None)
        )
        with self._write() as connection:
            return connection.execute(query).rowcount == 1

    def reopen_expired_invitation(self, invitation_id: str) -> bool:
        """Expired → pending (the reconciler polls it again); False if it was not expired.

        Conditional, so a completion stored concurrently is never overwritten.
        """
        query = (
            update(invitations)
            .where(
                invitations.c.id == invitation_id,
                invitations.c.status == InvitationStatus.EXPIRED.value,
            )
            .values(status=InvitationStatus.PENDING.value)
        )
        with self._write() as connection:
            return connection.execute(query).rowcount == 1

    def mark_callback_receipts_processed(
        self, callback_ids: Sequence[int], now: datetime | None = None
    ) -> int:
        """Mark exactly these callback receipts processed (if not already); returns how many."""
        if not callback_ids:
            return 0
        query = (
            update(callbacks)
            .where(callbacks.c.id.in_(list(callback_ids)), callbacks.c.processed_at.is_(None))
            .values(processed_at=self._now(now))
        )
        with self._write() as connection:
            return connection.execute(query).rowcount

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

    # -- dashboard reads ---------------------------------------------------------------------

    def count_invitations(self) -> dict[InvitationStatus, int]:
        """How many invitations are in each status; every status is a key (0 when none)."""
        query = select(invitations.c.status, func.count()).group_by(invitations.c.status)
        with self._read() as connection:
            found = {str(status): int(n) for status, n in connection.execute(query)}
        return {status: found.get(status.value, 0) for status in InvitationStatus}

    def count_events(self) -> int:
        with self._read() as connection:
            return int(connection.execute(select(func.count()).select_from(events)).scalar_one())

    def count_deliveries(self) -> dict[DeliveryStatus, int]:
        """How many deliveries are in each status; every status is a key (0 when none)."""
        query = select(deliveries.c.status, func.count()).group_by(deliveries.c.status)
        with self._read() as connection:
            found = {str(status): int(n) for status, n in connection.execute(query)}
        return {status: found.get(status.value, 0) for status in DeliveryStatus}

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

    # -- plumbing ----------------------------------------------------------------------------

    def _now(self, now: datetime | None) -> datetime:
        return self._clock() if now is None else now

    @contextmanager
    def _translated_errors(self) -> Iterator[None]:
        try:
            yield
        except OperationalError as exc:
            # Connection refused, server gone, SQLite lock timeout: the same call may work later.
            raise RetryableError(f"database unavailable: {type(exc.orig).__name__}") from exc

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        with self._translated_errors(), self._engine.connect() as connection, connection.begin():
            yield connection

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        with self._write_lock, self._translated_errors(), self._engine.connect() as connection:
            connection.execution_options(**{WRITE_OPTION: True})
            with connection.begin():
                yield connection

    def _lease_expired(self, now: datetime) -> Any:
        return and_(
            deliveries.c.status == DeliveryStatus.DELIVERING.value,
            deliveries.c.updated_at <= now - self._lease,
        )

    @staticmethod
    def _update_one(connection: Connection, table: Any, row_id: str, changes: Any) -> None:
        result = connection.execute(update(table).where(table.c.id == row_id).values(changes))
        if result.rowcount != 1:
            raise LookupError(f"no {table.name} row with id {row_id!r}")

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

    def _upsert_subscription(
        self, name: str, insert_values: dict[str, Any], update_values: dict[str, Any]
    ) -> SubscriptionState:
        dialect = postgresql if self._engine.dialect.name == "postgresql" else sqlite
        query = (
            dialect.insert(subscription_state)
            .values(name=name, **insert_values)
            .on_conflict_do_update(index_elements=["name"], set_=update_values)
        )
        with self._write() as connection:
            connection.execute(query)
            return self._subscription(connection, name)

    @staticmethod
    def _invitation(connection: Connection, invitation_id: str) -> Invitation:
        row = connection.execute(select(invitations).where(invitations.c.id == invitation_id)).one()
        return _invitation(row)

    @staticmethod
    def _invitation_by_key(connection: Connection, key: str) -> Invitation | None:
        row = connection.execute(
            select(invitations).where(invitations.c.idempotency_key == key)
        ).first()
        return None if row is None else _invitation(row)

    @staticmethod
    def _event_for_test(connection: Connection, pla_tst_id: int) -> Event | None:
        row = connection.execute(select(events).where(events.c.pla_tst_id == pla_tst_id)).first()
        return None if row is None else _event(row)

    @staticmethod
    def _deliveries_of(connection: Connection, event_id: str) -> list[Delivery]:
        query = (
            select(deliveries)
            .where(deliveries.c.event_id == event_id)
            .order_by(deliveries.c.subscription)
        )
        return [_delivery(row) for row in connection.execute(query)]

    @staticmethod
    def _delivery_or_none(connection: Connection, delivery_id: str) -> Delivery | None:
        row = connection.execute(select(deliveries).where(deliveries.c.id == delivery_id)).first()
        return None if row is None else _delivery(row)

    def _delivery(self, connection: Connection, delivery_id: str) -> Delivery:
        delivery = self._delivery_or_none(connection, delivery_id)
        if delivery is None:
            raise LookupError(f"no deliveries row with id {delivery_id!r}")
        return delivery

    @staticmethod
    def _subscription(connection: Connection, name: str) -> SubscriptionState:
        row = connection.execute(
            select(subscription_state).where(subscription_state.c.name == name)
        ).first()
        return SubscriptionState(name=name) if row is None else _subscription(row)


def _new_delivery(event_id: str, subscription: str, now: datetime) -> dict[str, Any]:
    return {
        "id": new_id("dlv"),
        "event_id": event_id,
        "subscription": subscription,
        "status": DeliveryStatus.PENDING.value,
        "attempt_count": 0,
        "next_attempt_at": now,
        "created_at": now,
        "updated_at": now,
    }


def _clean(value: str | None) -> str | None:
    # PostgreSQL text cannot hold NUL characters; a misbehaving endpoint may send them.
    return None if value is None else value.replace("\x00", "")


def _truncate(body: str | None) -> str | None:
    body = _clean(body)
    if body is None:
        return None
    encoded = body.encode("utf-8")
    if len(encoded) <= MAX_RESPONSE_BODY_BYTES:
        return body
    # Cutting bytes may split a character: drop the partial one.
    return encoded[:MAX_RESPONSE_BODY_BYTES].decode("utf-8", errors="ignore")


def _without_pii(payload: JsonObject) -> JsonObject:
    data = payload.get("data")
    if not isinstance(data, dict) or not isinstance(data.get("candidate"), dict):
        return payload
    candidate = {**data["candidate"], **dict.fromkeys(PII_FIELDS)}
    return {**payload, "data": {**data, "candidate": candidate}}


def _invitation(row: Row[Any]) -> Invitation:
    values = row._asdict()
    values["status"] = InvitationStatus(values["status"])
    values["source"] = InvitationSource(values["source"])
    return Invitation(**values)


def _callback(row: Row[Any]) -> CallbackReceipt:
    return CallbackReceipt(**row._asdict())


def _event(row: Row[Any]) -> Event:
    return Event(**row._asdict())


def _delivery(row: Row[Any]) -> Delivery:
    values = row._asdict()
    values["status"] = DeliveryStatus(values["status"])
    return Delivery(**values)


def _attempt(row: Row[Any]) -> Attempt:
    values = row._asdict()
    values["outcome"] = AttemptOutcome(values["outcome"])
    return Attempt(**values)


def _subscription(row: Row[Any]) -> SubscriptionState:
    return SubscriptionState(**row._asdict())
