"""Routing data: what a record sink reads from the invitation's `context` (the event's
`data.context`) to know where a result goes (an employee id, an LTI sourcedId, a line item).

The inviter attaches it (`POST /api/invitations` with `"context": {...}`, `invite --context`); a
sink that misses a key answers a permanent failure naming it, never a crash.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from worker.errors import MissingRoutingError
from worker.sinks.base import AttemptOutcome, AttemptResult, EventEnvelope
from worker.sinks.options import is_http_url

__all__ = [
    "MissingRoutingError",
    "context_table",
    "context_text",
    "not_sent",
    "text_field",
    "url_field",
]


def context_table(envelope: EventEnvelope, key: str) -> Mapping[str, Any]:
    """`data.context[key]` as a table; MissingRoutingError when absent or not an object."""
    value = _context(envelope).get(key)
    if value is None:
        raise MissingRoutingError(f"context.{key} is missing")
    if not isinstance(value, Mapping):
        raise MissingRoutingError(f"context.{key} must be an object")
    return value


def text_field(table: Mapping[str, Any], key: str, *, where: str) -> str:
    """A non-empty string (a number is accepted and written in decimal) at `table[key]`."""
    value = table.get(key)
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, str) or not value.strip():
        state = "is missing" if value is None else "must be a non-empty string"
        raise MissingRoutingError(f"{where}.{key} {state}")
    return value.strip()


def url_field(table: Mapping[str, Any], key: str, *, where: str) -> str:
    url = text_field(table, key, where=where)
    if not is_http_url(url):
        raise MissingRoutingError(f"{where}.{key} must be an http(s) URL")
    return url


def context_text(envelope: EventEnvelope, key: str) -> str:
    """`data.context[key]` as a non-empty string (or an integer, written in decimal)."""
    return text_field(_context(envelope), key, where="context")


def _context(envelope: EventEnvelope) -> Mapping[str, Any]:
    context = envelope.data.get("context")
    return context if isinstance(context, Mapping) else {}


def not_sent(reason: str) -> AttemptResult:
    """The permanent failure of an event its sink cannot send (missing routing data, no grade)."""
    return AttemptResult(AttemptOutcome.FAILED, status_code=None, duration_ms=0.0, error=reason)
