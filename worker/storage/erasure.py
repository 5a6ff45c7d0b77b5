"""Erasure: blanking one candidate's personal data in every table, on request (GDPR art. 17)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, func, insert, or_, select, update

from worker.storage.records import DeliveryStatus, ErasureRecord, InvitationStatus, JsonObject
from worker.storage.tables import attempts, callbacks, deliveries, erasures, events, invitations
from worker.storage.transactions import SqlStoreBase

# What identifies the candidate in an invitation row and in an event payload's `candidate`.
CANDIDATE_FIELDS = ("email", "first_name", "last_name", "ext_id")
ERASED_REASON = "candidate erased"
_UNFINISHED = (DeliveryStatus.PENDING, DeliveryStatus.DELIVERING, DeliveryStatus.RETRYING)


class ErasureMixin(SqlStoreBase):
    def erase_candidate(
        self,
        email: str,
        *,
        erasure_id: str,
        requested_by: str,
        email_hash: str,
        email_salt: str,
        now: datetime | None = None,
    ) -> ErasureRecord:
        """Blank everything about the candidate with this email (any case), in one transaction,
        and store the audit row; safe to run twice (the second finds nothing left to blank).

        Invitations: email, names, ext_id, context and test URL (a pending one becomes failed:
        its result can no longer be fetched by email). Events (the candidate's invitations', or
        naming the email): the payload's candidate identity, context and report URL. Callbacks
        of those invitations: query and remote address. Attempts of their deliveries: response
        bodies and headers (receivers often echo the payload). Unfinished deliveries of those
        events are cancelled, so nothing about the candidate is sent after this.
        """
        now = self._now(now)
        wanted = email.strip().lower()
        with self._write() as connection:
            invitation_ids = list(
                connection.execute(
                    select(invitations.c.id).where(func.lower(invitations.c.email) == wanted)
                ).scalars()
            )
            event_rows = self._events_of_candidate(connection, wanted, invitation_ids)
            invitation_count = _erase_invitations(connection, invitation_ids, now)
            for event_id, payload in event_rows:
                connection.execute(
                    update(events)
                    .where(events.c.id == event_id)
                    .values(payload=_erased_payload(payload), purged_at=now)
                )
            event_ids = [event_id for event_id, _ in event_rows]
            callback_count = (
                connection.execute(
                    update(callbacks)
                    .where(callbacks.c.invitation_id.in_(invitation_ids))
                    .values(query={}, remote_addr=None)
                ).rowcount
                if invitation_ids
                else 0
            )
            delivery_ids = select(deliveries.c.id).where(deliveries.c.event_id.in_(event_ids))
            attempt_count = (
                connection.execute(
                    update(attempts)
                    .where(attempts.c.delivery_id.in_(delivery_ids))
                    .values(response_body=None, response_headers={})
                ).rowcount
                if event_ids
                else 0
            )
            cancelled = (
                connection.execute(
                    update(deliveries)
                    .where(
                        deliveries.c.event_id.in_(event_ids),
                        deliveries.c.status.in_([status.value for status in _UNFINISHED]),
                    )
                    .values(
                        status=DeliveryStatus.CANCELLED.value,
                        next_attempt_at=None,
                        last_error=ERASED_REASON,
                        updated_at=now,
                    )
                ).rowcount
                if event_ids
                else 0
            )
            record = {
                "id": erasure_id,
                "requested_at": now,
                "requested_by": requested_by,
                "email_hash": email_hash,
                "email_salt": email_salt,
                "invitations": invitation_count,
                "events": len(event_rows),
                "callbacks": callback_count,
                "attempts": attempt_count,
                "deliveries_cancelled": cancelled,
                "isograd": None,
            }
            connection.execute(insert(erasures).values(record))
            return self._erasure(connection, erasure_id)

    def record_erasure_isograd(self, erasure_id: str, outcome: str) -> ErasureRecord:
        """Note what Isograd's act 12 answered for this erasure."""
        with self._write() as connection:
            self._update_one(connection, erasures, erasure_id, {"isograd": outcome[:200]})
            return self._erasure(connection, erasure_id)

    def list_erasures(self, limit: int = 50) -> list[ErasureRecord]:
        """The audit trail, newest first."""
        query = (
            select(erasures)
            .order_by(erasures.c.requested_at.desc(), erasures.c.id.desc())
            .limit(limit)
        )
        with self._read() as connection:
            return [_erasure(row) for row in connection.execute(query)]

    @staticmethod
    def _events_of_candidate(
        connection: Connection, email: str, invitation_ids: list[str]
    ) -> list[tuple[str, JsonObject]]:
        named = events.c.payload[("data", "candidate", "email")].as_string()
        matches = [func.lower(named) == email]
        if invitation_ids:
            matches.append(events.c.invitation_id.in_(invitation_ids))
        rows = connection.execute(select(events.c.id, events.c.payload).where(or_(*matches)))
        return [(str(event_id), payload) for event_id, payload in rows]

    @staticmethod
    def _erasure(connection: Connection, erasure_id: str) -> ErasureRecord:
        row = connection.execute(select(erasures).where(erasures.c.id == erasure_id)).one()
        return _erasure(row)


def _erase_invitations(connection: Connection, invitation_ids: list[str], now: datetime) -> int:
    if not invitation_ids:
        return 0
    blanked: dict[str, Any] = {
        **dict.fromkeys(CANDIDATE_FIELDS),
        "context": {},
        "test_url": None,
        "purged_at": now,
    }
    # A pending invitation's result is fetched by email (acts 4, 5, 6): stop checking it.
    connection.execute(
        update(invitations)
        .where(
            invitations.c.id.in_(invitation_ids),
            invitations.c.status == InvitationStatus.PENDING.value,
        )
        .values(status=InvitationStatus.FAILED.value, next_check_at=None)
    )
    return connection.execute(
        update(invitations).where(invitations.c.id.in_(invitation_ids)).values(blanked)
    ).rowcount


def _erased_payload(payload: JsonObject) -> JsonObject:
    data = payload.get("data")
    if not isinstance(data, dict):
        return payload
    erased = dict(data)
    if isinstance(data.get("candidate"), dict):
        erased["candidate"] = {**data["candidate"], **dict.fromkeys(CANDIDATE_FIELDS)}
    if "context" in data:
        erased["context"] = {}
    if isinstance(data.get("report"), dict):
        erased["report"] = {**data["report"], "pdf_url": None}
    return {**payload, "data": erased}


def _erasure(row: Row[Any]) -> ErasureRecord:
    return ErasureRecord(**row._asdict())
