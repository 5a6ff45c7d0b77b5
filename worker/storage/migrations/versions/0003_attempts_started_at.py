"""Attempts by start time: the dashboard's charts read the last 24 hours of attempts.

Without it every overview scans the whole attempts table (bench/dashboard_charts.py: 200,000
attempts, the chart query 2-5x slower than with the index, and growing with the table).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(op.f("ix_attempts_started_at"), "attempts", ["started_at"])


def downgrade() -> None:
    op.drop_index(op.f("ix_attempts_started_at"), table_name="attempts")
