"""Stored callbacks: every inbound Isograd callback as received, and whether it was processed."""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, and_, bindparam, delete, insert, or_, select, update

from worker.storage.invitations import invitation_statuses
from worker.storage.records import CallbackReceipt, InvitationStatus
from worker.storage.shapes import padded
from worker.storage.tables import callbacks
from worker.storage.transactions import SqlStoreBase


@dataclass(frozen=True, slots=True)
class NewCallback:
    """One inbound callback to store, as `record_callback` takes it."""

    invitation_id: str | None
    method: str
    query: Mapping[str, str]
    remote_addr: str | None
    accepted: bool
    reason: str | None
    received_at: datetime


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

    def record_callbacks(
        self,
        invitation_ids: Collection[str],
        receipts_for: Callable[[Mapping[str, InvitationStatus]], Sequence[NewCallback]],
    ) -> None:
        """Group commit of receipts: in ONE write transaction, read the status of each of
        `invitation_ids` that is stored, hand them to `receipts_for` and insert all the receipts
        it returns (one executemany).

        `receipts_for` runs inside the transaction (on SQLite, holding the write lock): it must
        only compute, not wait. When this raises, nothing was stored.
        """
        with self._write() as connection:
            statuses = invitation_statuses(connection, invitation_ids)
            rows = [
                {
                    "invitation_id": receipt.invitation_id,
                    "received_at": receipt.received_at,
                    "method": receipt.method,
                    "query": dict(receipt.query),
                    "remote_addr": receipt.remote_addr,
                    "accepted": receipt.accepted,
                    "reason": receipt.reason,
                }
                for receipt in receipts_for(statuses)
            ]
            if rows:
                connection.execute(_INSERT_MANY, rows)

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
    .where(
        callbacks.c.invitation_id.in_(bindparam("p_ids", expanding=True)),
        callbacks.c.processed_at.is_(None),
    )
    .values(processed_at=bindparam("p_now"))
)
_INSERT = insert(callbacks).returning(callbacks.c.id)
# No RETURNING, no ids back: an executemany (psycopg pipelines it; SQLite runs it row by row in
# one call). Unlike the worker's batches, the web's writer thread shares its GIL only with the
# event loop, which the batch delay keeps apart (webhooks/receipts.py).
_INSERT_MANY = insert(callbacks)


def mark_processed(connection: Connection, invitation_id: str, now: datetime) -> int:
    """Mark the invitation's unprocessed callbacks processed at `now`; returns how many."""
    return connection.execute(_PROCESSED, {"p_ids": [invitation_id], "p_now": now}).rowcount


def mark_all_processed(
    connection: Connection, invitation_ids: Sequence[str], now: datetime
) -> None:
    """`mark_processed` of each invitation, in one UPDATE … WHERE invitation_id IN."""
    if invitation_ids:
        connection.execute(_PROCESSED, {"p_ids": padded(invitation_ids), "p_now": now})
