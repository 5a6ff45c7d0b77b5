"""The relay's SQL schema: SQLAlchemy Core tables (migrations/ must create exactly these)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.types import TypeDecorator

from worker.storage.records import (
    AttemptOutcome,
    DeliveryStatus,
    InvitationSource,
    InvitationStatus,
)

# Stable constraint names, so later migrations can refer to them (Alembic "naming conventions").
metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


class UtcDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC datetime on every backend.

    SQLite has no time zone type: SQLAlchemy stores the text without an offset and reads back a
    naive value, so we store UTC and re-attach UTC on the way out. Naive values are refused.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime: the store only accepts timezone-aware datetimes")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def json_type() -> Any:
    """JSON everywhere, JSONB on PostgreSQL (smaller, indexable)."""
    return JSON().with_variant(JSONB(), "postgresql")


def _one_of(column: str, values: type[Any]) -> CheckConstraint:
    allowed = ", ".join(f"'{member.value}'" for member in values)
    return CheckConstraint(f"{column} IN ({allowed})", name=f"{column}_valid")


invitations = Table(
    "invitations",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("pla_tst_id", BigInteger, nullable=True, unique=True),
    Column("tst_frm_id", BigInteger, nullable=False),
    Column("can_id", BigInteger, nullable=True),
    Column("email", String(320), nullable=True),
    Column("first_name", String(200), nullable=True),
    Column("last_name", String(200), nullable=True),
    Column("ext_id", String(200), nullable=True),
    Column("sub_com_id", BigInteger, nullable=True),
    Column("context", json_type(), nullable=False),
    Column("test_url", Text, nullable=True),
    Column("status", String(16), nullable=False),
    Column("source", String(16), nullable=False),
    Column("idempotency_key", String(200), nullable=True, unique=True),
    Column("created_at", UtcDateTime, nullable=False),
    Column("completed_at", UtcDateTime, nullable=True),
    Column("next_check_at", UtcDateTime, nullable=True),
    Column("last_checked_at", UtcDateTime, nullable=True),
    Column("check_count", Integer, nullable=False),
    Column("last_status", Integer, nullable=True),
    Column("purged_at", UtcDateTime, nullable=True),
    _one_of("status", InvitationStatus),
    _one_of("source", InvitationSource),
    # due_invitations: pending and next_check_at <= now, oldest-due first.
    Index(None, "status", "next_check_at"),
    # purge_pii: old rows not yet purged.
    Index(None, "created_at"),
)

callbacks = Table(
    "callbacks",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    # No foreign key: a correctly signed token may name an invitation this database never stored.
    Column("invitation_id", String(64), nullable=True),
    Column("received_at", UtcDateTime, nullable=False),
    Column("method", String(16), nullable=False),
    Column("query", json_type(), nullable=False),
    Column("remote_addr", String(64), nullable=True),
    Column("accepted", Boolean, nullable=False),
    Column("reason", String(200), nullable=True),
    Column("processed_at", UtcDateTime, nullable=True),
    Index(None, "invitation_id"),
    # unprocessed_callbacks: not processed yet, oldest first.
    Index(None, "processed_at", "received_at"),
)

events = Table(
    "events",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("type", String(100), nullable=False),
    Column("invitation_id", String(64), ForeignKey("invitations.id"), nullable=True),
    Column("pla_tst_id", BigInteger, nullable=False, unique=True),
    Column("payload", json_type(), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("purged_at", UtcDateTime, nullable=True),
    Index(None, "invitation_id"),
    # list_events pages newest first.
    Index(None, "created_at", "id"),
)

deliveries = Table(
    "deliveries",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("event_id", String(64), ForeignKey("events.id"), nullable=False),
    Column("subscription", String(200), nullable=False),
    Column("status", String(16), nullable=False),
    Column("attempt_count", Integer, nullable=False),
    Column("next_attempt_at", UtcDateTime, nullable=True),
    Column("last_error", Text, nullable=True),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    Column("delivered_at", UtcDateTime, nullable=True),
    UniqueConstraint("event_id", "subscription"),
    _one_of("status", DeliveryStatus),
    # The sweeper: due rows by status.
    Index(None, "status", "next_attempt_at"),
    Index(None, "subscription", "created_at"),
    Index(None, "created_at"),
)

attempts = Table(
    "attempts",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("delivery_id", String(64), ForeignKey("deliveries.id"), nullable=False),
    Column("number", Integer, nullable=False),
    Column("started_at", UtcDateTime, nullable=False),
    Column("duration_ms", Integer, nullable=False),
    Column("status_code", Integer, nullable=True),
    Column("outcome", String(16), nullable=False),
    Column("error", Text, nullable=True),
    Column("response_body", Text, nullable=True),
    Column("response_headers", json_type(), nullable=False),
    UniqueConstraint("delivery_id", "number"),
    # The dashboard's charts: attempts of the last 24 hours (migration 0003).
    Index(None, "started_at"),
    _one_of("outcome", AttemptOutcome),
)

subscription_state = Table(
    "subscription_state",
    metadata,
    Column("name", String(200), primary_key=True),
    Column("disabled_at", UtcDateTime, nullable=True),
    Column("disabled_reason", Text, nullable=True),
    Column("failing_since", UtcDateTime, nullable=True),
    Column("last_success_at", UtcDateTime, nullable=True),
)

erasures = Table(
    "erasures",
    metadata,
    # The audit trail of erasure requests: counts and a salted hash, never the email itself.
    Column("id", String(64), primary_key=True),
    Column("requested_at", UtcDateTime, nullable=False),
    Column("requested_by", String(200), nullable=False),
    Column("email_hash", String(128), nullable=False),
    Column("email_salt", String(64), nullable=False),
    Column("invitations", Integer, nullable=False),
    Column("events", Integer, nullable=False),
    Column("callbacks", Integer, nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("deliveries_cancelled", Integer, nullable=False),
    Column("isograd", String(200), nullable=True),
    Index(None, "requested_at"),
)
