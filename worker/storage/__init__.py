"""The SQL store (SQLAlchemy Core + Alembic): the relay's source of truth."""

from worker.storage.migrations import migrate
from worker.storage.paging import InvalidCursorError
from worker.storage.records import (
    Attempt,
    AttemptOutcome,
    AttemptRecord,
    CallbackReceipt,
    Delivery,
    DeliveryFilter,
    DeliveryStatus,
    ErasureRecord,
    Event,
    EventFilter,
    Invitation,
    InvitationFilter,
    InvitationSource,
    InvitationStatus,
    NewInvitation,
    Page,
    PurgeCounts,
    SubscriptionCounts,
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
    "DeliveryFilter",
    "DeliveryStatus",
    "ErasureRecord",
    "Event",
    "EventFilter",
    "InvalidCursorError",
    "Invitation",
    "InvitationFilter",
    "InvitationSource",
    "InvitationStatus",
    "NewInvitation",
    "Page",
    "PurgeCounts",
    "SqlStore",
    "SubscriptionCounts",
    "SubscriptionState",
    "migrate",
    "new_id",
]
