"""Initial schema: invitations, callbacks, events, deliveries, attempts, subscription_state.

Revision ID: 0001
Revises:
Create Date: 2026-11-27
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _utc() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def _json() -> sa.types.TypeEngine[Any]:
    return sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "invitations",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("pla_tst_id", sa.BigInteger(), nullable=True),
        sa.Column("tst_frm_id", sa.BigInteger(), nullable=False),
        sa.Column("can_id", sa.BigInteger(), nullable=True),
        sa.Column("email", sa.String(320), nullable=True),
        sa.Column("first_name", sa.String(200), nullable=True),
        sa.Column("last_name", sa.String(200), nullable=True),
        sa.Column("ext_id", sa.String(200), nullable=True),
        sa.Column("sub_com_id", sa.BigInteger(), nullable=True),
        sa.Column("context", _json(), nullable=False),
        sa.Column("test_url", sa.Text(), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("idempotency_key", sa.String(200), nullable=True),
        sa.Column("created_at", _utc(), nullable=False),
        sa.Column("completed_at", _utc(), nullable=True),
        sa.Column("next_check_at", _utc(), nullable=True),
        sa.Column("last_checked_at", _utc(), nullable=True),
        sa.Column("check_count", sa.Integer(), nullable=False),
        sa.Column("last_status", sa.Integer(), nullable=True),
        sa.Column("purged_at", _utc(), nullable=True),
        sa.CheckConstraint(
            "status IN ('pending', 'completed', 'expired', 'failed')",
            name=op.f("ck_invitations_status_valid"),
        ),
        sa.CheckConstraint(
            "source IN ('invited', 'watched')", name=op.f("ck_invitations_source_valid")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_invitations")),
        sa.UniqueConstraint("idempotency_key", name=op.f("uq_invitations_idempotency_key")),
        sa.UniqueConstraint("pla_tst_id", name=op.f("uq_invitations_pla_tst_id")),
    )
    op.create_index(
        op.f("ix_invitations_status_next_check_at"), "invitations", ["status", "next_check_at"]
    )
    op.create_index(op.f("ix_invitations_created_at"), "invitations", ["created_at"])

    op.create_table(
        "callbacks",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("invitation_id", sa.String(64), nullable=True),
        sa.Column("received_at", _utc(), nullable=False),
        sa.Column("method", sa.String(16), nullable=False),
        sa.Column("query", _json(), nullable=False),
        sa.Column("remote_addr", sa.String(64), nullable=True),
        sa.Column("accepted", sa.Boolean(), nullable=False),
        sa.Column("reason", sa.String(200), nullable=True),
        sa.Column("processed_at", _utc(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_callbacks")),
    )
    op.create_index(op.f("ix_callbacks_invitation_id"), "callbacks", ["invitation_id"])
    op.create_index(
        op.f("ix_callbacks_processed_at_received_at"), "callbacks", ["processed_at", "received_at"]
    )

    op.create_table(
        "events",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("type", sa.String(100), nullable=False),
        sa.Column("invitation_id", sa.String(64), nullable=True),
        sa.Column("pla_tst_id", sa.BigInteger(), nullable=False),
        sa.Column("payload", _json(), nullable=False),
        sa.Column("created_at", _utc(), nullable=False),
        sa.Column("purged_at", _utc(), nullable=True),
        sa.ForeignKeyConstraint(
            ["invitation_id"],
            ["invitations.id"],
            name=op.f("fk_events_invitation_id_invitations"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_events")),
        sa.UniqueConstraint("pla_tst_id", name=op.f("uq_events_pla_tst_id")),
    )
    op.create_index(op.f("ix_events_invitation_id"), "events", ["invitation_id"])
    op.create_index(op.f("ix_events_created_at_id"), "events", ["created_at", "id"])

    op.create_table(
        "deliveries",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("event_id", sa.String(64), nullable=False),
        sa.Column("subscription", sa.String(200), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempt_count", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", _utc(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", _utc(), nullable=False),
        sa.Column("updated_at", _utc(), nullable=False),
        sa.Column("delivered_at", _utc(), nullable=True),
        sa.CheckConstraint(
            "status IN ('pending', 'delivering', 'delivered', 'retrying', 'failed', 'cancelled')",
            name=op.f("ck_deliveries_status_valid"),
        ),
        sa.ForeignKeyConstraint(
            ["event_id"], ["events.id"], name=op.f("fk_deliveries_event_id_events")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_deliveries")),
        sa.UniqueConstraint(
            "event_id", "subscription", name=op.f("uq_deliveries_event_id_subscription")
        ),
    )
    op.create_index(
        op.f("ix_deliveries_status_next_attempt_at"), "deliveries", ["status", "next_attempt_at"]
    )
    op.create_index(
        op.f("ix_deliveries_subscription_created_at"), "deliveries", ["subscription", "created_at"]
    )
    op.create_index(op.f("ix_deliveries_created_at"), "deliveries", ["created_at"])

    op.create_table(
        "attempts",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("delivery_id", sa.String(64), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("started_at", _utc(), nullable=False),
        sa.Column("duration_ms", sa.Integer(), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("response_body", sa.Text(), nullable=True),
        sa.Column("response_headers", _json(), nullable=False),
        sa.CheckConstraint(
            "outcome IN ('delivered', 'retry', 'failed', 'gone')",
            name=op.f("ck_attempts_outcome_valid"),
        ),
        sa.ForeignKeyConstraint(
            ["delivery_id"], ["deliveries.id"], name=op.f("fk_attempts_delivery_id_deliveries")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_attempts")),
        sa.UniqueConstraint("delivery_id", "number", name=op.f("uq_attempts_delivery_id_number")),
    )

    op.create_table(
        "subscription_state",
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("disabled_at", _utc(), nullable=True),
        sa.Column("disabled_reason", sa.Text(), nullable=True),
        sa.Column("failing_since", _utc(), nullable=True),
        sa.Column("last_success_at", _utc(), nullable=True),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_subscription_state")),
    )


def downgrade() -> None:
    op.drop_table("subscription_state")
    op.drop_table("attempts")
    op.drop_table("deliveries")
    op.drop_table("events")
    op.drop_table("callbacks")
    op.drop_table("invitations")
