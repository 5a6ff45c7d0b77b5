"""Stored records: the rows of the SQL store as frozen dataclasses and StrEnums."""

from __future__ import annotations

import dataclasses
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum, StrEnum
from typing import Any, Generic, TypeVar

from worker.outcomes import AttemptOutcome as AttemptOutcome

JsonObject = dict[str, Any]

T = TypeVar("T")


def jsonable(record: object) -> Any:
    """A record (any frozen dataclass) as JSON-ready values: ISO 8601 times in UTC with a Z,
    enum values; what the admin API answers and the CLI's --json prints."""
    if dataclasses.is_dataclass(record) and not isinstance(record, type):
        return {f.name: jsonable(getattr(record, f.name)) for f in dataclasses.fields(record)}
    if isinstance(record, datetime):
        return record.isoformat().replace("+00:00", "Z")
    if isinstance(record, Enum):
        return record.value
    if isinstance(record, dict):
        return {jsonable(key): jsonable(value) for key, value in record.items()}
    if isinstance(record, list | tuple):
        return [jsonable(value) for value in record]
    return record


def new_id(prefix: str) -> str:
    """A fresh random id such as ``evt_3q2…``: 128 random bits, url-safe, never a ``.``.

    The callback token uses ``.`` as its separator (worker/tokens.py), so ids must not contain one.
    """
    return f"{prefix}_{secrets.token_urlsafe(16)}"


class InvitationStatus(StrEnum):
    PENDING = "pending"
    COMPLETED = "completed"
    EXPIRED = "expired"
    FAILED = "failed"


class InvitationSource(StrEnum):
    """Who created the assessment: us (an invitation) or someone else (a watched test)."""

    INVITED = "invited"
    WATCHED = "watched"


class DeliveryStatus(StrEnum):
    PENDING = "pending"
    DELIVERING = "delivering"
    DELIVERED = "delivered"
    RETRYING = "retrying"
    FAILED = "failed"
    CANCELLED = "cancelled"


@dataclass(frozen=True, slots=True)
class NewInvitation:
    """What `SqlStore.create_invitation` needs; `id` defaults to a fresh ``inv_…`` id.

    `next_check_at` is when the reconciler should first ask Isograd for the status (None: never).
    """

    tst_frm_id: int
    email: str | None
    id: str = field(default_factory=lambda: new_id("inv"))
    pla_tst_id: int | None = None
    can_id: int | None = None
    first_name: str | None = None
    last_name: str | None = None
    ext_id: str | None = None
    sub_com_id: int | None = None
    context: JsonObject = field(default_factory=dict)
    test_url: str | None = None
    next_check_at: datetime | None = None
    source: InvitationSource = InvitationSource.INVITED
    idempotency_key: str | None = None


@dataclass(frozen=True, slots=True)
class Invitation:
    id: str
    pla_tst_id: int | None
    tst_frm_id: int
    can_id: int | None
    email: str | None  # None once purged (retention)
    first_name: str | None
    last_name: str | None
    ext_id: str | None
    sub_com_id: int | None
    context: JsonObject
    test_url: str | None
    status: InvitationStatus
    source: InvitationSource
    idempotency_key: str | None
    created_at: datetime
    completed_at: datetime | None
    next_check_at: datetime | None
    last_checked_at: datetime | None
    check_count: int
    last_status: int | None  # last act 10 `sta_id` seen
    purged_at: datetime | None


@dataclass(frozen=True, slots=True)
class CallbackReceipt:
    """One inbound Isograd callback as received, accepted or not."""

    id: int
    invitation_id: str | None
    received_at: datetime
    method: str
    query: dict[str, str]
    remote_addr: str | None
    accepted: bool
    reason: str | None
    processed_at: datetime | None


@dataclass(frozen=True, slots=True)
class Event:
    """A completion to deliver; `payload` is the delivered document (worker/events.py)."""

    id: str
    type: str
    invitation_id: str | None
    pla_tst_id: int
    payload: JsonObject
    created_at: datetime
    purged_at: datetime | None


@dataclass(frozen=True, slots=True)
class NewCompletion:
    """A completion act 10 confirmed, to store with its event (SqlStore.store_completions)."""

    event_id: str
    invitation_id: str
    pla_tst_id: int
    sta_id: int
    type: str
    payload: JsonObject
    deliveries_for: Sequence[str]  # subscription names; disabled ones are left out


@dataclass(frozen=True, slots=True)
class Delivery:
    """One event going to one subscription.

    `attempt_count` counts attempts since the delivery was created or last requeued.
    """

    id: str
    event_id: str
    subscription: str
    status: DeliveryStatus
    attempt_count: int
    next_attempt_at: datetime | None
    last_error: str | None
    created_at: datetime
    updated_at: datetime
    delivered_at: datetime | None


@dataclass(frozen=True, slots=True)
class AttemptRecord:
    """What a sink reports about one HTTP attempt; the store truncates `response_body`."""

    started_at: datetime
    duration_ms: float  # stored rounded to whole milliseconds
    outcome: AttemptOutcome
    status_code: int | None = None
    error: str | None = None
    response_body: str | None = None
    response_headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Attempt:
    id: int
    delivery_id: str
    number: int  # 1, 2, … over the delivery's whole life (requeues included)
    started_at: datetime
    duration_ms: int
    outcome: AttemptOutcome
    status_code: int | None
    error: str | None
    response_body: str | None
    response_headers: dict[str, str]


@dataclass(frozen=True, slots=True)
class SubscriptionState:
    """Health of one subscription; all None for a subscription never used."""

    name: str
    disabled_at: datetime | None = None
    disabled_reason: str | None = None
    failing_since: datetime | None = None
    last_success_at: datetime | None = None

    @property
    def disabled(self) -> bool:
        return self.disabled_at is not None


@dataclass(frozen=True, slots=True)
class ClaimedDelivery:
    """A delivery just claimed for an attempt, with what the attempt needs, read with the claim.

    `event` is None when the event row is gone; `subscription_disabled` is the stored state.
    """

    delivery: Delivery
    event: Event | None
    subscription_disabled: bool


@dataclass(frozen=True, slots=True)
class PurgeCounts:
    """How many rows `SqlStore.purge_pii` blanked."""

    invitations: int
    events: int
    callbacks: int


@dataclass(frozen=True, slots=True)
class InvitationFilter:
    """Which invitations `SqlStore.list_invitations` answers; None matches anything.

    `email` matches case-insensitively; `created_from` is inclusive, `created_until` exclusive.
    """

    status: InvitationStatus | None = None
    email: str | None = None
    pla_tst_id: int | None = None
    tst_frm_id: int | None = None
    created_from: datetime | None = None
    created_until: datetime | None = None


@dataclass(frozen=True, slots=True)
class EventFilter:
    """Which events `SqlStore.list_events` answers; None matches anything.

    `status` matches events with at least one delivery in that status (e.g. failed); `email` and
    `tst_frm_id` are read from the payload (the candidate and test it was delivered with).
    """

    status: DeliveryStatus | None = None
    email: str | None = None
    pla_tst_id: int | None = None
    tst_frm_id: int | None = None
    subscription: str | None = None
    created_from: datetime | None = None
    created_until: datetime | None = None


@dataclass(frozen=True, slots=True)
class DeliveryFilter:
    """Which deliveries a bulk replay takes: these statuses, one subscription, created between."""

    statuses: tuple[DeliveryStatus, ...] = (DeliveryStatus.FAILED,)
    subscription: str | None = None
    created_from: datetime | None = None
    created_until: datetime | None = None


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    """One page of a listing; `next_cursor` fetches the next one (None: this was the last)."""

    items: list[T]
    next_cursor: str | None = None


@dataclass(frozen=True, slots=True)
class SubscriptionCounts:
    """How many deliveries of one subscription are in each status (every status is a key)."""

    name: str
    by_status: dict[DeliveryStatus, int]


@dataclass(frozen=True, slots=True)
class ErasureRecord:
    """The audit row of one erasure request: who, when, how many rows; never the email.

    `email_hash` is scrypt(normalised email, `email_salt`): whoever holds the email can prove it
    was erased, the row alone does not reveal it. `isograd` is what act 12 answered (None: not
    asked).
    """

    id: str
    requested_at: datetime
    requested_by: str
    email_hash: str
    email_salt: str
    invitations: int
    events: int
    callbacks: int
    attempts: int
    deliveries_cancelled: int
    isograd: str | None
