"""Stored callbacks: every inbound Isograd callback as received, and whether it was processed."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, and_, bindparam, delete, insert, or_, select, update

from worker.storage.records import CallbackReceipt
from worker.storage.tables import callbacks
from worker.storage.transactions import SqlStoreBase


class CallbacksMixin(SqlStoreBase):
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
        with self._write() as connection:
            return int(connection.execute(_INSERT, values).scalar_one())

    def purge_rejected_callbacks(self, older_than: datetime) -> int:
        """Delete rejected receipts received before `older_than`; returns how many.

        Rejected receipts (forged or unknown tokens) are kept only briefly, for investigation:
        anyone can send them, so keeping them for ever lets anyone fill the database.
        """
        query = delete(callbacks).where(
            callbacks.c.accepted.is_(False), callbacks.c.received_at < older_than
        )
        with self._write() as connection:
            return connection.execute(query).rowcount

    def mark_callbacks_processed(self, invitation_id: str, now: datetime | None = None) -> int:
        """Mark the invitation's unprocessed callbacks processed; returns how many."""
        with self._write() as connection:
            return mark_processed(connection, invitation_id, self._now(now))

    def unprocessed_callbacks(
        self,
        older_than: datetime,
        limit: int = 100,
        *,
        after: tuple[datetime, int] | None = None,
    ) -> list[CallbackReceipt]:
        """Accepted callbacks received before `older_than` and never processed, oldest first.

        `after` is the (received_at, id) of the last receipt of the previous page.
        """
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
        if after is not None:
            received_at, callback_id = after
            query = query.where(
                or_(
                    callbacks.c.received_at > received_at,
                    and_(callbacks.c.received_at == received_at, callbacks.c.id > callback_id),
                )
            )
        with self._read() as connection:
            return [_callback(row) for row in connection.execute(query)]

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


def _callback(row: Row[Any]) -> CallbackReceipt:
    return CallbackReceipt(**row._asdict())


# Built once (worker.storage.deliveries says why): every callback and completion runs them.
_PROCESSED = (
    update(callbacks)
    .where(callbacks.c.invitation_id == bindparam("p_id"), callbacks.c.processed_at.is_(None))
    .values(processed_at=bindparam("p_now"))
)
_INSERT = insert(callbacks).returning(callbacks.c.id)


def mark_processed(connection: Connection, invitation_id: str, now: datetime) -> int:
    """Mark the invitation's unprocessed callbacks processed at `now`; returns how many."""
    return connection.execute(_PROCESSED, {"p_id": invitation_id, "p_now": now}).rowcount
