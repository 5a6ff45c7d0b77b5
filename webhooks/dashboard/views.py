"""Dashboard views: the values a page template shows, the filters it formats them with, and the
template environment.

Nothing here reads a request or the store: the routes gather records and pass them in. Jinja2
autoescapes every value (autoescape is on for every template, whatever its extension), so a
candidate named `<script>` is shown, never run; the Content-Security-Policy set by the routes
forbids scripts anyway. URLs we build go through `path` and `with_query`, which percent-encode.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode

import jinja2
from starlette.templating import Jinja2Templates

from webhooks.dashboard.charts import ActivityChart
from worker.storage.records import (
    Delivery,
    DeliveryStatus,
    Event,
    InvitationStatus,
    SubscriptionState,
)

ROOT = "/dashboard"
# Attempts keep up to 20 kB of the receiver's answer; the page shows the start of it.
MAX_SHOWN_BODY_CHARS = 2_000
# Failed first: what an operator opens the deliveries page for.
STATUS_ORDER = (
    DeliveryStatus.FAILED,
    DeliveryStatus.RETRYING,
    DeliveryStatus.PENDING,
    DeliveryStatus.DELIVERING,
    DeliveryStatus.DELIVERED,
    DeliveryStatus.CANCELLED,
)


@dataclass(frozen=True, slots=True)
class SubscriptionRow:
    """A subscription as the overview shows it; `target` is the URL's host only (URLs of
    chat webhooks carry their secret in the path)."""

    name: str
    target: str | None  # None: in the database but no longer in relay.toml
    state: SubscriptionState


@dataclass(frozen=True, slots=True)
class Overview:
    invitations: Mapping[InvitationStatus, int]
    events: int
    deliveries: Mapping[DeliveryStatus, int]
    subscriptions: Sequence[SubscriptionRow]
    recent_failures: Sequence[Delivery]
    charts: Mapping[str, ActivityChart]


@dataclass(frozen=True, slots=True)
class Form:
    """What every POST form of a page needs: the session's CSRF token and where to come back."""

    csrf_token: str
    here: str


# Test names by (tst_frm_id, sub_com_id), looked up before a page renders (act 14 is I/O).
TestNames = Mapping[tuple[int, int | None], str]


@dataclass(frozen=True, slots=True)
class Candidate:
    name: str | None
    email: str | None


def path(*parts: str) -> str:
    """A dashboard URL path with each part percent-encoded."""
    return "/".join([ROOT, *(quote(part, safe="") for part in parts)])


def with_query(base: str, **params: str | None) -> str:
    """`base` with these query parameters set (replaced if present; None or "" removes them)."""
    path_part, _, query = base.partition("?")
    kept = [(key, value) for key, value in parse_qsl(query) if key not in params]
    kept += [(key, value) for key, value in params.items() if value]
    return f"{path_part}?{urlencode(kept)}" if kept else path_part


# -- filters: one stored value → the text a page shows -----------------------------------------


def format_time(value: datetime | None) -> str:
    if value is None:
        return "—"
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def event_data(event: Event) -> dict[str, Any]:
    data = event.payload.get("data")
    return data if isinstance(data, dict) else {}


def candidate_of(event: Event) -> Candidate | None:
    candidate = event_data(event).get("candidate")
    if not isinstance(candidate, dict):
        return None
    parts = (candidate.get("first_name"), candidate.get("last_name"))
    name = " ".join(str(part) for part in parts if part)
    email = candidate.get("email")
    return Candidate(name or None, str(email) if email else None)


def assessment_of(event: Event) -> tuple[int | None, int | None, str | None]:
    """The event's (tst_frm_id, sub_com_id, test name as delivered) from its payload."""
    data = event_data(event)
    test = data.get("test")
    test = test if isinstance(test, dict) else {}
    form_id, sub_com_id, name = test.get("tst_frm_id"), data.get("sub_com_id"), test.get("name")
    return (
        form_id if isinstance(form_id, int) else None,
        sub_com_id if isinstance(sub_com_id, int) else None,
        name if isinstance(name, str) and name else None,
    )


def assessment_label(event: Event, names: TestNames | None = None) -> str:
    """The test's name (as delivered, else from act 14's catalogue), else its tst_frm_id."""
    form_id, sub_com_id, name = assessment_of(event)
    if name is None and form_id is not None:
        name = (names or {}).get((form_id, sub_com_id))
    shown = name or f"test {form_id if form_id is not None else '?'}"
    return f"{shown} · session {event.pla_tst_id}"


def form_label(tst_frm_id: int, sub_com_id: int | None, names: TestNames) -> str:
    return names.get((tst_frm_id, sub_com_id)) or f"test {tst_frm_id}"


def grade_text(event: Event) -> str:
    grade = event_data(event).get("grade")
    if not isinstance(grade, dict):
        return "—"
    if grade.get("text"):
        return str(grade["text"])
    value, top = grade.get("value"), grade.get("max")
    return f"{value} / {top}" if top is not None else str(value)


def format_age(age: timedelta) -> str:
    """How long ago, to the minute: "5 min", "3 h 12 min", "2 d 4 h"."""
    minutes = max(0, int(age.total_seconds() // 60))
    days, minutes = divmod(minutes, 24 * 60)
    hours, minutes = divmod(minutes, 60)
    if days:
        return f"{days} d {hours} h"
    if hours:
        return f"{hours} h {minutes} min"
    return f"{minutes} min"


def pretty_json(value: object) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False)


def shown_body(body: str) -> str:
    """The start of a receiver's answer, saying how much was left out."""
    shown = body[:MAX_SHOWN_BODY_CHARS]
    more = len(body) - len(shown)
    return shown + (f"\n… ({more} more characters)" if more else "")


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("webhooks.dashboard", "templates"),
        # On for every template, not only *.html (Jinja2's select_autoescape default).
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        time=format_time,
        age=format_age,
        candidate=candidate_of,
        test_label=assessment_label,
        form_label=form_label,
        grade=grade_text,
        pretty_json=pretty_json,
        shown_body=shown_body,
    )
    env.globals.update(
        path=path,
        with_query=with_query,
        STATUS_ORDER=STATUS_ORDER,
        InvitationStatus=InvitationStatus,
        DeliveryStatus=DeliveryStatus,
    )
    return env


templates = Jinja2Templates(env=_environment())
