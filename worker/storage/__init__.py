"""The SQL store (SQLAlchemy Core + Alembic): the relay's source of truth."""

from worker.storage.migrations import migrate
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
    NewInvitation,
    PurgeCounts,
    SubscriptionState,
    new_id,
)
from worker.storage.store import DEFAULT_LEASE, SqlStore

__all__ = [
    "DEFAULT_LEASE",
    "Attempt",
    "AttemptOutcome",
    "AttemptRecord",
    "CallbackReceipt",
    "Delivery",
    "DeliveryStatus",
    "Event",
    "Invitation",
    "InvitationSource",
    "InvitationStatus",
    "NewInvitation",
    "PurgeCounts",
    "SqlStore",
    "SubscriptionState",
    "migrate",
    "new_id",
]
