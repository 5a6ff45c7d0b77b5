"""Erasures: the audit trail of candidate erasure requests (counts and a salted hash).

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "erasures",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("requested_by", sa.String(200), nullable=False),
        sa.Column("email_hash", sa.String(128), nullable=False),
        sa.Column("email_salt", sa.String(64), nullable=False),
        sa.Column("invitations", sa.Integer(), nullable=False),
        sa.Column("events", sa.Integer(), nullable=False),
        sa.Column("callbacks", sa.Integer(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("deliveries_cancelled", sa.Integer(), nullable=False),
        sa.Column("isograd", sa.String(200), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_erasures")),
    )
    op.create_index(op.f("ix_erasures_requested_at"), "erasures", ["requested_at"])


def downgrade() -> None:
    op.drop_index(op.f("ix_erasures_requested_at"), table_name="erasures")
    op.drop_table("erasures")
