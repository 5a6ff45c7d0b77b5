"""Operator queries: filters of the listings and the bulk replay, read from a query string or
CLI flags into the store's filter values, every problem at once (field → message)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from enum import StrEnum
from typing import Any, TypeVar

from worker.requests import parse_positive_int, parse_text
from worker.storage.records import (
    DeliveryFilter,
    DeliveryStatus,
    EventFilter,
    InvitationFilter,
    InvitationStatus,
)

DEFAULT_LIMIT = 50
MAX_LIMIT = 200
# Isograd ids are stored as BIGINT: a larger number could only fail in the database (a 500).
MAX_ID = 2**63 - 1

E = TypeVar("E", bound=StrEnum)
T = TypeVar("T")


class FieldReader:
    """Reads the fields of `data`, collecting every problem in `errors` (field → message).

    A `data` that is not an object gives the single problem "body"; unknown fields are problems
    too (a typo must not be silently ignored).
    """

    def __init__(self, data: object, known: frozenset[str]) -> None:
        self.errors: dict[str, str] = {}
        self._data: Mapping[Any, Any] = data if isinstance(data, Mapping) else {}
        if not isinstance(data, Mapping):
            self.errors["body"] = "must be a JSON object"
            return
        for name in sorted(set(data) - known, key=str):
            self.errors[str(name)] = "is not a known field"

    def take(self, name: str, parse: Callable[[object], T], *, required: bool = False) -> T | None:
        """The parsed value of `name`, or None when absent or invalid (the problem is noted)."""
        value = self._data.get(name)
        if value is None:
            if required and "body" not in self.errors:
                self.errors[name] = "is required"
            return None
        try:
            return parse(value)
        except ValueError as exc:
            self.errors[name] = str(exc)
            return None


_COMMON: frozenset[str] = frozenset(
    {"email", "pla_tst_id", "tst_frm_id", "created_from", "created_until", "limit", "cursor"}
)
INVITATION_FIELDS = _COMMON | {"status"}
EVENT_FIELDS = _COMMON | {"status", "subscription"}
REPLAY_FIELDS = frozenset({"subscription", "status", "created_from", "created_until"})
REPLAYABLE_STATUSES = (DeliveryStatus.FAILED, DeliveryStatus.CANCELLED)


class InvalidQueryError(ValueError):
    """Filter values were invalid; `errors` maps each field to what is wrong with it."""

    def __init__(self, errors: dict[str, str]) -> None:
        self.errors = errors
        super().__init__("; ".join(f"{name}: {message}" for name, message in errors.items()))


@dataclass(frozen=True, slots=True)
class Listing:
    """A listing request: which rows, how many, from where."""

    limit: int = DEFAULT_LIMIT
    cursor: str | None = None


def parse_time(value: object) -> datetime:
    """ISO 8601 with a UTC offset (`2026-12-03T22:00:00Z`), or a date (midnight UTC)."""
    text = parse_text(value)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError("must be an ISO 8601 time with an offset, or a date") from None
    if len(text) == 10:
        return datetime.combine(date.fromisoformat(text), datetime.min.time(), UTC)
    if moment.tzinfo is None:
        raise ValueError("must say its UTC offset (e.g. 2026-12-03T22:00:00Z)")
    return moment.astimezone(UTC)


def parse_id(value: object) -> int:
    number = parse_positive_int(value)
    if number > MAX_ID:
        raise ValueError(f"must be at most {MAX_ID}")
    return number


def parse_filter_text(value: object) -> str:
    text = parse_text(value)
    # PostgreSQL text cannot hold NUL: refused here rather than failing in the query.
    if any(ord(character) < 32 for character in text):
        raise ValueError("must not contain control characters")
    return text


def parse_limit(value: object) -> int:
    number = parse_positive_int(value)
    if number > MAX_LIMIT:
        raise ValueError(f"must be at most {MAX_LIMIT}")
    return number


def one_of(allowed: Sequence[E]) -> Callable[[object], E]:
    """A parser of one of `allowed`, by value (any case)."""

    def parse(value: object) -> E:
        for member in allowed:
            if isinstance(value, str) and value.strip().lower() == member.value:
                return member
        raise ValueError(f"must be one of: {', '.join(member.value for member in allowed)}")

    return parse


def _created_between(reader: FieldReader) -> tuple[datetime | None, datetime | None]:
    created_from = reader.take("created_from", parse_time)
    created_until = reader.take("created_until", parse_time)
    if created_from and created_until and created_until <= created_from:
        reader.errors["created_until"] = "must be after created_from"
    return created_from, created_until


def _listing(reader: FieldReader) -> Listing:
    limit = reader.take("limit", parse_limit)
    return Listing(limit=limit or DEFAULT_LIMIT, cursor=reader.take("cursor", parse_filter_text))


def _checked(reader: FieldReader) -> None:
    if reader.errors:
        raise InvalidQueryError(reader.errors)


def read_invitation_query(values: Mapping[str, object]) -> tuple[InvitationFilter, Listing]:
    """Raises InvalidQueryError listing every invalid or unknown field."""
    reader = FieldReader(values, INVITATION_FIELDS)
    created_from, created_until = _created_between(reader)
    filters = InvitationFilter(
        status=reader.take("status", one_of(tuple(InvitationStatus))),
        email=reader.take("email", parse_filter_text),
        pla_tst_id=reader.take("pla_tst_id", parse_id),
        tst_frm_id=reader.take("tst_frm_id", parse_id),
        created_from=created_from,
        created_until=created_until,
    )
    listing = _listing(reader)
    _checked(reader)
    return filters, listing


def read_event_query(values: Mapping[str, object]) -> tuple[EventFilter, Listing]:
    """Raises InvalidQueryError listing every invalid or unknown field."""
    reader = FieldReader(values, EVENT_FIELDS)
    created_from, created_until = _created_between(reader)
    filters = EventFilter(
        status=reader.take("status", one_of(tuple(DeliveryStatus))),
        email=reader.take("email", parse_filter_text),
        pla_tst_id=reader.take("pla_tst_id", parse_id),
        tst_frm_id=reader.take("tst_frm_id", parse_id),
        subscription=reader.take("subscription", parse_filter_text),
        created_from=created_from,
        created_until=created_until,
    )
    listing = _listing(reader)
    _checked(reader)
    return filters, listing


def read_replay_filter(values: Mapping[str, object]) -> DeliveryFilter:
    """`status` is failed (the default), cancelled, or a list of both.

    Raises InvalidQueryError listing every invalid or unknown field.
    """
    reader = FieldReader(values, REPLAY_FIELDS)
    created_from, created_until = _created_between(reader)
    statuses = reader.take("status", _replayable_statuses)
    filters = DeliveryFilter(
        statuses=statuses or (DeliveryStatus.FAILED,),
        subscription=reader.take("subscription", parse_filter_text),
        created_from=created_from,
        created_until=created_until,
    )
    _checked(reader)
    return filters


def _replayable_statuses(value: object) -> tuple[DeliveryStatus, ...]:
    parse = one_of(REPLAYABLE_STATUSES)
    values = value if isinstance(value, list) else [value]
    if not values:
        raise ValueError("must name at least one status")
    return tuple(dict.fromkeys(parse(item) for item in values))
