"""Retention: blanking candidate PII once it is older than the retention period."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select, update

from worker.storage.records import InvitationStatus, JsonObject, PurgeCounts
from worker.storage.tables import attempts, callbacks, events, invitations
from worker.storage.transactions import SqlStoreBase

# Candidate fields blanked by purge_pii in invitations and in event payloads.
PII_FIELDS = ("email", "first_name", "last_name")


class RetentionMixin(SqlStoreBase):
    def purge_pii(
        self, older_than: datetime, now: datetime | None = None, batch_size: int = 500
    ) -> PurgeCounts:
        """Blank candidate PII created before `older_than`; safe to run twice.

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


def _without_pii(payload: JsonObject) -> JsonObject:
    data = payload.get("data")
    if not isinstance(data, dict) or not isinstance(data.get("candidate"), dict):
        return payload
    candidate = {**data["candidate"], **dict.fromkeys(PII_FIELDS)}
    return {**payload, "data": {**data, "candidate": candidate}}
