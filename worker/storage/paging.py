"""Keyset pagination: listings ordered by (created_at, id), continued from an opaque cursor.

A cursor names the last row of the previous page, not an offset, so rows inserted meanwhile
neither repeat nor go missing (https://use-the-index-luke.com/no-offset).
"""

from __future__ import annotations

import base64
import binascii
import json
from datetime import datetime
from typing import Any

from sqlalchemy import and_, or_


class InvalidCursorError(ValueError):
    """The cursor was not made by `encode_cursor` (edited, truncated, from another listing)."""


def encode_cursor(created_at: datetime, row_id: str) -> str:
    text = json.dumps([created_at.isoformat(), row_id], separators=(",", ":"))
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        created_at, row_id = json.loads(base64.urlsafe_b64decode(padded.encode()))
        moment = datetime.fromisoformat(created_at)
    except (binascii.Error, ValueError, TypeError, UnicodeDecodeError) as exc:
        raise InvalidCursorError("invalid cursor") from exc
    if moment.tzinfo is None or not isinstance(row_id, str) or "\x00" in row_id:
        raise InvalidCursorError("invalid cursor")
    return moment, row_id


def newest_first_after(created_at: Any, row_id: Any, cursor: str) -> Any:
    """The condition of rows after the cursor in (created_at, id) descending order."""
    moment, last_id = decode_cursor(cursor)
    return or_(created_at < moment, and_(created_at == moment, row_id < last_id))


def oldest_first_after(created_at: Any, row_id: Any, after: tuple[datetime, str]) -> Any:
    """The condition of rows after `after` in (created_at, id) ascending order."""
    moment, last_id = after
    return or_(created_at > moment, and_(created_at == moment, row_id > last_id))
