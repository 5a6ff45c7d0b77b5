"""Stored events: one per completed test, created with its deliveries in one transaction."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Row, bindparam, func, insert, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError

from worker.errors import PermanentError
from worker.storage.callbacks import mark_all_processed
from worker.storage.deliveries import deliveries_of, new_deliveries, new_delivery_row
from worker.storage.invitations import mark_all_completed
from worker.storage.paging import encode_cursor, newest_first_after
from worker.storage.records import (
    Delivery,
    Event,
    EventFilter,
    JsonObject,
    NewCompletion,
    Page,
)
from worker.storage.shapes import insert_in_chunks
from worker.storage.subscriptions import disabled_among
from worker.storage.tables import deliveries, events
from worker.storage.transactions import SqlStoreBase

# Built once (worker.storage.deliveries says why).
_EVENT_FOR_TEST = select(events).where(events.c.pla_tst_id == bindparam("p_pla_tst_id"))
_INSERT_EVENT = insert(events)
# INSERT … ON CONFLICT (pla_tst_id) DO NOTHING, which both backends have
# (https://www.sqlite.org/lang_upsert.html, https://www.postgresql.org/docs/current/sql-insert.html).
# RETURNING tells whether the row was written: psycopg's rowcount for it was -1 after an
# executemany in the same transaction.
_INSERT_EVENT_UNLESS_STORED = {
    "sqlite": sqlite.insert(events)
    .on_conflict_do_nothing(index_elements=[events.c.pla_tst_id])
    .returning(events.c.id),
    "postgresql": postgresql.insert(events)
    .on_conflict_do_nothing(index_elements=[events.c.pla_tst_id])
    .returning(events.c.id),
}
# RETURNING only so that a list of rows goes as multi-row INSERTs (insert_in_chunks); the ids
# it returns are not needed.
_INSERT_DELIVERIES = insert(deliveries).returning(deliveries.c.id)


class EventsMixin(SqlStoreBase):
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
                    return existing, deliveries_of(connection, existing.id), False
                row = _event_row(event_id, invitation_id, pla_tst_id, type, payload, now)
                connection.execute(_INSERT_EVENT, row)
                rows = [new_delivery_row(event_id, name, now) for name in names]
                insert_in_chunks(connection, _INSERT_DELIVERIES, rows)
                event = self._event_for_test(connection, pla_tst_id)
                assert event is not None
                return event, deliveries_of(connection, event_id), True
        except IntegrityError as exc:
            # PostgreSQL: a concurrent transaction inserted the same pla_tst_id first; ours
            # waited for it on the unique index, then failed. Its row is committed now.
            with self._read() as connection:
                existing = self._event_for_test(connection, pla_tst_id)
                if existing is None:
                    raise PermanentError(f"event {event_id} conflicts with a stored row") from exc
                return existing, deliveries_of(connection, existing.id), False

    def store_completion(
        self,
        *,
        event_id: str,
        invitation_id: str,
        pla_tst_id: int,
        sta_id: int,
        type: str,
        payload: JsonObject,
        deliveries_for: Sequence[str],
        now: datetime | None = None,
        claim: bool = False,
    ) -> tuple[Event, list[Delivery], bool]:
        """A confirmed completion in one transaction: `create_event` (deliveries only for the
        subscriptions of `deliveries_for` not stored as disabled), the status check counted, the
        invitation marked completed and its callbacks processed.

        With `claim`, the new deliveries are written already claimed for their first attempt
        (`delivering` since `now`, as `claim_attempts` leaves them): the caller makes it without
        a transaction of its own to claim them. A caller that cannot make it leaves them to the
        sweeper once their lease expires, as a crashed attempt.

        Idempotent as `create_event`: with the event already stored (even by a concurrent
        caller) no event or delivery is written or claimed, the invitation is still marked, and
        ``(existing event, its deliveries, False)`` is returned.
        """
        completion = NewCompletion(
            event_id, invitation_id, pla_tst_id, sta_id, type, payload, deliveries_for
        )
        [stored] = self.store_completions([completion], now, claim=claim)
        return stored

    def store_completions(
        self,
        completions: Sequence[NewCompletion],
        now: datetime | None = None,
        *,
        claim: bool = False,
    ) -> list[tuple[Event, list[Delivery], bool]]:
        """`store_completion` of each, in order, all in one transaction (one per batch of
        completions instead of one each). Should one of them fail (LookupError: its invitation
        is gone; a conflicting row), nothing is written and the error is raised; the caller may
        then store them one by one."""
        now = self._now(now)
        try:
            with self._write() as connection:
                wanted = {name for each in completions for name in each.deliveries_for}
                disabled = disabled_among(connection, wanted)
                # A few statements each for the batch's invitations, callbacks, events and
                # deliveries, not one per row. Each statement is a point where, on SQLite, this
                # thread gives up the GIL while it holds the write lock, so one INSERT per event
                # made a burst's transactions hold it for ~100 ms (bench/README.md, "fifth
                # pass").
                _mark_completed(connection, completions, now)
                written = _insert_events(connection, completions, now)
                stored = [
                    self._stored_event(connection, each, now, claim, disabled, written)
                    for each in completions
                ]
                rows = [row for _, new_rows in stored for row in new_rows]
                insert_in_chunks(connection, _INSERT_DELIVERIES, rows)
                return [found for found, _ in stored]
        except IntegrityError as exc:
            # Not the race on an event for one test (the INSERT settles that: ON CONFLICT DO
            # NOTHING, waiting for the concurrent transaction); any other conflict is permanent.
            raise PermanentError("a completion conflicts with a stored row") from exc

    def _stored_event(
        self,
        connection: Connection,
        completion: NewCompletion,
        now: datetime,
        claim: bool,
        disabled: Collection[str],
        written: Collection[str],
    ) -> tuple[tuple[Event, list[Delivery], bool], list[dict[str, Any]]]:
        """What store_completion answers for `completion` (its event written if its id is in
        `written`, else the one stored before), and the delivery rows to insert: none when the
        event was already stored."""
        if completion.event_id not in written:
            existing = self._event_for_test(connection, completion.pla_tst_id)
            if existing is None:
                raise PermanentError(f"event {completion.event_id} conflicts with a stored row")
            return (existing, deliveries_of(connection, existing.id), False), []
        names = [name for name in dict.fromkeys(completion.deliveries_for) if name not in disabled]
        rows = [new_delivery_row(completion.event_id, name, now, claimed=claim) for name in names]
        # Built from what was written rather than read back (two statements less).
        event = Event(
            completion.event_id,
            completion.type,
            completion.invitation_id,
            completion.pla_tst_id,
            completion.payload,
            now.astimezone(UTC),
            None,
        )
        return (event, new_deliveries(rows), True), rows

    def get_event(self, event_id: str) -> Event | None:
        with self._read() as connection:
            row = connection.execute(select(events).where(events.c.id == event_id)).first()
        return None if row is None else _event(row)

    def get_event_by_pla_tst_id(self, pla_tst_id: int) -> Event | None:
        with self._read() as connection:
            return self._event_for_test(connection, pla_tst_id)

    def list_events(
        self,
        filters: EventFilter | None = None,
        *,
        limit: int = 50,
        cursor: str | None = None,
    ) -> Page[Event]:
        """Newest first (created_at, then id: a stable order), `limit` a page.

        Raises InvalidCursorError for a cursor this listing did not make.
        """
        filters = filters or EventFilter()
        column = events.c
        query = select(events).order_by(column.created_at.desc(), column.id.desc())
        candidate = column.payload[("data", "candidate", "email")].as_string()
        test_form = column.payload[("data", "test", "tst_frm_id")].as_integer()
        if filters.email is not None:
            query = query.where(func.lower(candidate) == filters.email.strip().lower())
        if filters.pla_tst_id is not None:
            query = query.where(column.pla_tst_id == filters.pla_tst_id)
        if filters.tst_frm_id is not None:
            query = query.where(test_form == filters.tst_frm_id)
        if filters.created_from is not None:
            query = query.where(column.created_at >= filters.created_from)
        if filters.created_until is not None:
            query = query.where(column.created_at < filters.created_until)
        if filters.status is not None or filters.subscription is not None:
            matching = select(deliveries.c.event_id)
            if filters.status is not None:
                matching = matching.where(deliveries.c.status == filters.status.value)
            if filters.subscription is not None:
                matching = matching.where(deliveries.c.subscription == filters.subscription)
            query = query.where(column.id.in_(matching))
        if cursor is not None:
            query = query.where(newest_first_after(column.created_at, column.id, cursor))
        with self._read() as connection:
            rows = [_event(row) for row in connection.execute(query.limit(limit + 1))]
        if len(rows) <= limit:
            return Page(rows)
        last = rows[limit - 1]
        return Page(rows[:limit], encode_cursor(last.created_at, last.id))

    def count_events(self) -> int:
        with self._read() as connection:
            return int(connection.execute(select(func.count()).select_from(events)).scalar_one())

    @staticmethod
    def _event_for_test(connection: Connection, pla_tst_id: int) -> Event | None:
        row = connection.execute(_EVENT_FOR_TEST, {"p_pla_tst_id": pla_tst_id}).first()
        return None if row is None else _event(row)


def _event_row(
    event_id: str,
    invitation_id: str | None,
    pla_tst_id: int,
    type: str,
    payload: JsonObject,
    now: datetime,
) -> dict[str, Any]:
    return {
        "id": event_id,
        "type": type,
        "invitation_id": invitation_id,
        "pla_tst_id": pla_tst_id,
        "payload": payload,
        "created_at": now,
    }


def _insert_events(
    connection: Connection, completions: Sequence[NewCompletion], now: datetime
) -> set[str]:
    """Insert each completion's event unless one is stored for its `pla_tst_id` (even by a
    concurrent transaction, which this one waits for: the conflict is settled by the INSERT
    itself, not by a SELECT before it); the ids of the events written.

    A few statements for the batch (insert_in_chunks); the ids say which were written, so the
    order of the rows it returns does not matter.
    """
    rows = [
        _event_row(each.event_id, each.invitation_id, each.pla_tst_id, each.type, each.payload, now)
        for each in completions
    ]
    statement = _INSERT_EVENT_UNLESS_STORED[connection.dialect.name]
    return {str(event_id) for (event_id,) in insert_in_chunks(connection, statement, rows)}


def _mark_completed(
    connection: Connection, completions: Sequence[NewCompletion], now: datetime
) -> None:
    """Their invitations completed (the status check counted) and callbacks processed."""
    mark_all_completed(connection, [(each.invitation_id, each.sta_id) for each in completions], now)
    mark_all_processed(connection, [each.invitation_id for each in completions], now)


def _event(row: Row[Any]) -> Event:
    return Event(**row._asdict())
