"""The clock seam: the current time, timezone-aware (UTC)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

Clock = Callable[[], datetime]  # the current time, timezone-aware (UTC)


def utc_now() -> datetime:
    return datetime.now(UTC)
