"""Stored invitations: created by the API, checked by the reconciler, finished by the pipeline."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, bindparam, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from worker.errors import PermanentError
from worker.storage.paging import encode_cursor, newest_first_after
from worker.storage.records import (
    Invitation,
    InvitationFilter,
    InvitationSource,
    InvitationStatus,
    NewInvitation,
    Page,
)
from worker.storage.shapes import padded
from worker.storage.tables import events, invitations
from worker.storage.transactions import SqlStoreBase


class InvitationsMixin(SqlStoreBase):
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
            row = connection.execute(_BY_ID, {"p_id": invitation_id}).first()
        return None if row is None else _invitation(row)

    def get_invitations(self, invitation_ids: Collection[str]) -> dict[str, Invitation]:
        """The invitations of `invitation_ids` that exist, by id, read in one statement."""
        if not invitation_ids:
            return {}
        with self._read() as connection:
            rows = connection.execute(_BY_IDS, {"p_ids": list(invitation_ids)})
            return {invitation.id: invitation for invitation in map(_invitation, rows)}

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

    def list_invitations(
        self,
        filters: InvitationFilter | None = None,
        *,
        limit: int = 50,
        cursor: str | None = None,
    ) -> Page[Invitation]:
        """Newest first (created_at, then id: a stable order), `limit` a page.

        Raises InvalidCursorError for a cursor this listing did not make.
        """
        filters = filters or InvitationFilter()
        column = invitations.c
        query = select(invitations).order_by(column.created_at.desc(), column.id.desc())
        if filters.status is not None:
            query = query.where(column.status == filters.status.value)
        if filters.email is not None:
            query = query.where(func.lower(column.email) == filters.email.strip().lower())
        if filters.pla_tst_id is not None:
            query = query.where(column.pla_tst_id == filters.pla_tst_id)
        if filters.tst_frm_id is not None:
            query = query.where(column.tst_frm_id == filters.tst_frm_id)
        if filters.created_from is not None:
            query = query.where(column.created_at >= filters.created_from)
        if filters.created_until is not None:
            query = query.where(column.created_at < filters.created_until)
        if cursor is not None:
            query = query.where(newest_first_after(column.created_at, column.id, cursor))
        with self._read() as connection:
            rows = [_invitation(row) for row in connection.execute(query.limit(limit + 1))]
        return _page(rows, limit)

    def find_invitations(self, term: str, limit: int = 20) -> list[Invitation]:
        """The search box: invitations whose id, email (any case), `pla_tst_id` or event id is
        `term`, newest first. Blank terms find nothing."""
        term = term.strip()
        if not term:
            return []
        column = invitations.c
        matches = [
            column.id == term,
            func.lower(column.email) == term.lower(),
            column.id.in_(select(events.c.invitation_id).where(events.c.id == term)),
        ]
        if term.isdigit() and len(term) <= 18:
            matches.append(column.pla_tst_id == int(term))
        query = (
            select(invitations)
            .where(or_(*matches))
            .order_by(column.created_at.desc(), column.id.desc())
            .limit(limit)
        )
        with self._read() as connection:
            return [_invitation(row) for row in connection.execute(query)]

    def count_invitations(self) -> dict[InvitationStatus, int]:
        """How many invitations are in each status; every status is a key (0 when none)."""
        query = select(invitations.c.status, func.count()).group_by(invitations.c.status)
        with self._read() as connection:
            found = {str(status): int(n) for status, n in connection.execute(query)}
        return {status: found.get(status.value, 0) for status in InvitationStatus}

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


def _invitation(row: Row[Any]) -> Invitation:
    values = row._asdict()
    values["status"] = InvitationStatus(values["status"])
    values["source"] = InvitationSource(values["source"])
    return Invitation(**values)


def _page(rows: list[Invitation], limit: int) -> Page[Invitation]:
    if len(rows) <= limit:
        return Page(rows)
    last = rows[limit - 1]
    return Page(rows[:limit], encode_cursor(last.created_at, last.id))


# `record_status_check(sta_id, next_check_at=None)` and `mark_invitation(COMPLETED)` in one
# UPDATE (the check counted, the first `completed_at` kept); built once, as worker.storage.
# deliveries says why, like the invitation read every callback and completion makes.
_COMPLETED = (
    update(invitations)
    .where(invitations.c.id.in_(bindparam("p_ids", expanding=True)))
    .values(
        check_count=invitations.c.check_count + 1,
        last_status=bindparam("p_sta_id"),
        last_checked_at=bindparam("p_now"),
        next_check_at=None,
        status=InvitationStatus.COMPLETED.value,
        completed_at=func.coalesce(invitations.c.completed_at, bindparam("p_now")),
    )
)
_BY_ID = select(invitations).where(invitations.c.id == bindparam("p_id"))
_BY_IDS = select(invitations).where(invitations.c.id.in_(bindparam("p_ids", expanding=True)))
_STATUSES = select(invitations.c.id, invitations.c.status).where(
    invitations.c.id.in_(bindparam("p_ids", expanding=True))
)


def invitation_statuses(
    connection: Connection, invitation_ids: Collection[str]
) -> dict[str, InvitationStatus]:
    """The status of each of `invitation_ids` that is stored, in one SELECT ... WHERE id IN."""
    if not invitation_ids:
        return {}
    rows = connection.execute(_STATUSES, {"p_ids": list(invitation_ids)})
    return {str(invitation_id): InvitationStatus(status) for invitation_id, status in rows}


def mark_completed(connection: Connection, invitation_id: str, sta_id: int, now: datetime) -> None:
    """See `_COMPLETED`; LookupError when there is no such invitation."""
    mark_all_completed(connection, [(invitation_id, sta_id)], now)


def mark_all_completed(
    connection: Connection, checked: Sequence[tuple[str, int]], now: datetime
) -> None:
    """`mark_completed` of each (invitation id, sta_id): one UPDATE … WHERE id IN per sta_id
    (one in practice, 3 "completed"), not one per row (worker.storage.events says why);
    LookupError when one of them does not exist."""
    by_status: dict[int, set[str]] = {}
    for invitation_id, sta_id in checked:
        by_status.setdefault(sta_id, set()).add(invitation_id)
    for sta_id, ids in by_status.items():
        parameters = {"p_ids": padded(ids), "p_sta_id": sta_id, "p_now": now}
        if connection.execute(_COMPLETED, parameters).rowcount != len(ids):
            missing = ", ".join(repr(invitation_id) for invitation_id in sorted(ids))
            raise LookupError(f"no invitations row for one of {missing}")
