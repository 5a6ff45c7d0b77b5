"""The SQL store: the relay's source of truth (invitations, callbacks, events, deliveries)."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import Engine, text
from sqlalchemy.exc import SQLAlchemyError

from worker.clock import Clock, utc_now
from worker.errors import RetryableError
from worker.storage.activity import ActivityMixin
from worker.storage.attempts import MAX_RESPONSE_BODY_BYTES, AttemptsMixin
from worker.storage.callbacks import CallbacksMixin
from worker.storage.deliveries import DeliveriesMixin
from worker.storage.engine import make_engine
from worker.storage.erasure import ErasureMixin
from worker.storage.events import EventsMixin
from worker.storage.invitations import InvitationsMixin
from worker.storage.migrations import upgrade_engine
from worker.storage.retention import RetentionMixin
from worker.storage.subscriptions import SubscriptionStatesMixin
from worker.storage.transactions import DEFAULT_LEASE, SqliteWriteLock

__all__ = ["DEFAULT_LEASE", "MAX_RESPONSE_BODY_BYTES", "SqlStore"]


class SqlStore(
    InvitationsMixin,
    CallbacksMixin,
    EventsMixin,
    DeliveriesMixin,
    AttemptsMixin,
    SubscriptionStatesMixin,
    RetentionMixin,
    ErasureMixin,
    ActivityMixin,
):
    """Every method is one short transaction; ``now`` defaults to the injected clock.

    Methods that change a row by id raise LookupError when the id is unknown. Database outages
    (connection refused, lock timeouts) raise RetryableError.
    """

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
        if isinstance(self._write_lock, SqliteWriteLock):
            self._write_lock.close()
