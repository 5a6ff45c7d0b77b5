"""Dashboard pages: stored records rendered as plain HTML, every value escaped.

Nothing here reads a request or the store: the dashboard's routes gather the records and pass
them in. Every piece of data goes through `html.escape` (text) or `_href` (URLs we build), so a
candidate named `<script>` is shown, never run; the Content-Security-Policy set by the routes
forbids scripts anyway.
"""

from __future__ import annotations

import html
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode

from worker.storage.records import (
    Attempt,
    Delivery,
    DeliveryStatus,
    Event,
    Invitation,
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


@dataclass(frozen=True, slots=True)
class Form:
    """What every POST form of a page needs: the session's CSRF token and where to come back."""

    csrf_token: str
    here: str


def path(*parts: str) -> str:
    """A dashboard URL path with each part percent-encoded."""
    return "/".join([ROOT, *(quote(part, safe="") for part in parts)])


def with_query(base: str, **params: str | None) -> str:
    """`base` with these query parameters set (replaced if present; None or "" removes them)."""
    path_part, _, query = base.partition("?")
    kept = [(key, value) for key, value in parse_qsl(query) if key not in params]
    kept += [(key, value) for key, value in params.items() if value]
    return f"{path_part}?{urlencode(kept)}" if kept else path_part


def layout(title: str, body: str, *, form: Form | None, notice: str | None = None) -> str:
    nav = ""
    if form is not None:
        nav = (
            f'<nav><a href="{_href(path(""))}">Overview</a>'
            f'<a href="{_href(path("events"))}">Events</a>'
            f'<a href="{_href(path("deliveries"))}">Deliveries</a>'
            f"{_button(path('logout'), 'Sign out', form, css='link')}</nav>"
        )
    banner = f'<p class="notice">{_e(notice)}</p>' if notice else ""
    return _PAGE.format(title=_e(title), nav=nav, notice=banner, body=body)


def login_page(*, next_path: str, error: str | None, closed: bool) -> str:
    if closed:
        body = (
            "<h1>Dashboard closed</h1><p>No <code>ADMIN_TOKEN</code> is configured, so the "
            "dashboard and the admin API are closed. Set it and restart the web process.</p>"
        )
        return layout("Dashboard closed", body, form=None)
    problem = f'<p class="bad">{_e(error)}</p>' if error else ""
    body = (
        f"<h1>Sign in</h1>{problem}"
        f'<form method="post" action="{_href(path("login"))}" class="login">'
        '<label>Admin token <input type="password" name="token" autocomplete="current-password" '
        "required autofocus></label>"
        f'<input type="hidden" name="next" value="{_e(next_path)}">'
        "<button>Sign in</button></form>"
        "<p>The token is the relay's <code>ADMIN_TOKEN</code>. The session lasts 12 hours.</p>"
    )
    return layout("Sign in", body, form=None)


def overview_page(view: Overview, form: Form, notice: str | None) -> str:
    invitations = "".join(
        f"<tr><th>{_e(status.value)}</th><td>{view.invitations.get(status, 0)}</td></tr>"
        for status in InvitationStatus
    )
    deliveries = "".join(
        f'<tr><th><a href="{_href(with_query(path("deliveries"), status=status.value))}">'
        f"{_badge(status)}</a></th><td>{view.deliveries.get(status, 0)}</td></tr>"
        for status in STATUS_ORDER
    )
    cards = (
        '<div class="cards">'
        f"<section><h2>Invitations</h2><table>{invitations}</table></section>"
        f'<section><h2>Events</h2><p class="big"><a href="{_href(path("events"))}">'
        f"{view.events}</a></p><p>completions confirmed and stored</p></section>"
        f"<section><h2>Deliveries</h2><table>{deliveries}</table></section></div>"
    )
    failures = (
        _deliveries_table(view.recent_failures, form)
        if view.recent_failures
        else "<p>No failed delivery.</p>"
    )
    body = (
        f"<h1>Overview</h1>{cards}<h2>Subscriptions</h2>{_subscriptions(view.subscriptions, form)}"
        f"<h2>Recent failures</h2>{failures}"
    )
    return layout("Overview", body, form=form, notice=notice)


def events_page(
    events: Sequence[Event],
    deliveries: Mapping[str, Sequence[Delivery]],
    *,
    older: str | None,
    form: Form,
) -> str:
    if events:
        rows = "".join(_event_row(event, deliveries.get(event.id, ())) for event in events)
        table = (
            "<table><tr><th>created</th><th>event</th><th>candidate</th><th>test</th>"
            f"<th>grade</th><th>deliveries</th></tr>{rows}</table>"
        )
    else:
        table = "<p>No event yet.</p>"
    pager = ""
    if older is not None:
        pager = f'<p><a href="{_href(with_query(path("events"), before=older))}">Older →</a></p>'
    body = f"<h1>Events</h1><p>Newest first.</p>{table}{pager}"
    return layout("Events", body, form=form)


def event_page(
    event: Event,
    invitation: Invitation | None,
    deliveries: Sequence[tuple[Delivery, Sequence[Attempt]]],
    *,
    form: Form,
    notice: str | None,
) -> str:
    data = _data(event)
    facts = [
        ("type", _e(event.type)),
        ("created", _time(event.created_at)),
        ("candidate", _candidate(data)),
        ("test", _test(event)),
        ("grade", _e(_grade(data))),
        ("invitation", _invitation(invitation, event.invitation_id)),
    ]
    if event.purged_at is not None:
        facts.append(("PII purged", _time(event.purged_at)))
    facts_table = "".join(f"<tr><th>{name}</th><td>{value}</td></tr>" for name, value in facts)
    sections = "".join(_delivery_section(d, attempts, form) for d, attempts in deliveries)
    payload = json.dumps(event.payload, indent=2, ensure_ascii=False)
    body = (
        f"<h1>Event <code>{_e(event.id)}</code></h1><table>{facts_table}</table>"
        f"<h2>Deliveries</h2>{sections or '<p>No subscription matched this event.</p>'}"
        f"<h2>Payload</h2><pre>{_e(payload)}</pre>"
    )
    return layout(f"Event {event.id}", body, form=form, notice=notice)


def deliveries_page(
    deliveries: Sequence[Delivery],
    *,
    status: DeliveryStatus | None,
    subscription: str | None,
    subscriptions: Sequence[str],
    limit: int,
    form: Form,
    notice: str | None,
) -> str:
    def status_link(value: DeliveryStatus | None) -> str:
        label = "all (failed first)" if value is None else value.value
        href = with_query(
            path("deliveries"), status=value and value.value, subscription=subscription
        )
        current = ' class="current"' if value == status else ""
        return f'<a href="{_href(href)}"{current}>{_e(label)}</a>'

    filters = " ".join(status_link(value) for value in (None, *STATUS_ORDER))
    options = "".join(
        f'<option value="{_e(name)}"{" selected" if name == subscription else ""}>'
        f"{_e(name)}</option>"
        for name in subscriptions
    )
    picker = (
        f'<form method="get" action="{_href(path("deliveries"))}" class="inline">'
        + (f'<input type="hidden" name="status" value="{_e(status.value)}">' if status else "")
        + '<select name="subscription"><option value="">every subscription</option>'
        + f"{options}</select> <button>Filter</button></form>"
    )
    table = _deliveries_table(deliveries, form) if deliveries else "<p>No delivery.</p>"
    body = (
        f'<h1>Deliveries</h1><p class="filters">{filters}</p>{picker}'
        f"<p>The newest {limit} at most.</p>{table}"
    )
    return layout("Deliveries", body, form=form, notice=notice)


def not_found_page(what: str, form: Form) -> str:
    return layout("Not found", f"<h1>Not found</h1><p>No such {_e(what)}.</p>", form=form)


# -- pieces ------------------------------------------------------------------------------------


def _e(value: object) -> str:
    return html.escape("" if value is None else str(value))


def _href(url: str) -> str:
    return html.escape(url, quote=True)


def _time(value: datetime | None) -> str:
    if value is None:
        return "—"
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _badge(status: DeliveryStatus) -> str:
    return f'<span class="badge {_e(status.value)}">{_e(status.value)}</span>'


def _button(action: str, label: str, form: Form, *, css: str = "") -> str:
    return (
        f'<form method="post" action="{_href(action)}" class="inline">'
        f'<input type="hidden" name="csrf_token" value="{_e(form.csrf_token)}">'
        f'<input type="hidden" name="next" value="{_e(form.here)}">'
        f'<button class="{_e(css)}">{_e(label)}</button></form>'
    )


def _data(event: Event) -> dict[str, Any]:
    data = event.payload.get("data")
    return data if isinstance(data, dict) else {}


def _candidate(data: Mapping[str, Any]) -> str:
    candidate = data.get("candidate")
    if not isinstance(candidate, dict):
        return "—"
    name = " ".join(
        str(part) for part in (candidate.get("first_name"), candidate.get("last_name")) if part
    )
    email = candidate.get("email")
    shown = _e(name or "—")
    return f"{shown}<br><small>{_e(email)}</small>" if email else shown


def _test(event: Event) -> str:
    test = _data(event).get("test")
    form_id = test.get("tst_frm_id") if isinstance(test, dict) else None
    return f"test {_e(form_id if form_id is not None else '?')} · session {event.pla_tst_id}"


def _grade(data: Mapping[str, Any]) -> str:
    grade = data.get("grade")
    if not isinstance(grade, dict):
        return "—"
    if grade.get("text"):
        return str(grade["text"])
    value, top = grade.get("value"), grade.get("max")
    return f"{value} / {top}" if top is not None else str(value)


def _invitation(invitation: Invitation | None, invitation_id: str | None) -> str:
    if invitation is None:
        return _e(invitation_id or "—")
    return (
        f"<code>{_e(invitation.id)}</code> · {_e(invitation.status.value)} · "
        f"{_e(invitation.source.value)} · created {_time(invitation.created_at)}"
    )


def _event_row(event: Event, deliveries: Sequence[Delivery]) -> str:
    data = _data(event)
    badges = " ".join(
        f'<span title="{_e(d.subscription)}">{_e(d.subscription)}: {_badge(d.status)}</span>'
        for d in deliveries
    )
    cells = [
        _time(event.created_at),
        f'<a href="{_href(path("events", event.id))}"><code>{_e(event.id)}</code></a>',
        _candidate(data),
        _test(event),
        _e(_grade(data)),
        badges or "—",
    ]
    return "<tr>" + "".join(f"<td>{cell}</td>" for cell in cells) + "</tr>"


def _deliveries_table(deliveries: Sequence[Delivery], form: Form) -> str:
    rows = "".join(_delivery_row(delivery, form) for delivery in deliveries)
    return (
        "<table><tr><th>updated</th><th>delivery</th><th>event</th><th>subscription</th>"
        "<th>status</th><th>attempts</th><th>next attempt</th><th>last error</th><th></th></tr>"
        f"{rows}</table>"
    )


def _delivery_row(delivery: Delivery, form: Form) -> str:
    event_link = path("events", delivery.event_id) + f"#{quote(delivery.id, safe='')}"
    cells = [
        _time(delivery.updated_at),
        f"<code>{_e(delivery.id)}</code>",
        f'<a href="{_href(event_link)}"><code>{_e(delivery.event_id)}</code></a>',
        _e(delivery.subscription),
        _badge(delivery.status),
        str(delivery.attempt_count),
        _time(delivery.next_attempt_at),
        _e(delivery.last_error or ""),
        _replay_button(delivery, form),
    ]
    return "<tr>" + "".join(f"<td>{cell}</td>" for cell in cells) + "</tr>"


def _replay_button(delivery: Delivery, form: Form) -> str:
    if delivery.status is not DeliveryStatus.FAILED:
        return ""
    return _button(path("deliveries", delivery.id, "replay"), "Replay", form)


def _delivery_section(delivery: Delivery, attempts: Sequence[Attempt], form: Form) -> str:
    summary = (
        f"<p>{_badge(delivery.status)} · {delivery.attempt_count} attempt(s) since created or "
        f"replayed · created {_time(delivery.created_at)} · "
        f"delivered {_time(delivery.delivered_at)} · next attempt {_time(delivery.next_attempt_at)}"
        f"{' · last error: ' + _e(delivery.last_error) if delivery.last_error else ''}"
        f" {_replay_button(delivery, form)}</p>"
    )
    if attempts:
        rows = "".join(_attempt_row(attempt) for attempt in attempts)
        table = (
            "<table><tr><th>#</th><th>started</th><th>duration</th><th>outcome</th>"
            f"<th>HTTP status</th><th>error</th><th>response body</th></tr>{rows}</table>"
        )
    else:
        table = "<p>No attempt yet.</p>"
    return (
        f'<section id="{_e(delivery.id)}"><h3>{_e(delivery.subscription)} '
        f"<small><code>{_e(delivery.id)}</code></small></h3>{summary}{table}</section>"
    )


def _attempt_row(attempt: Attempt) -> str:
    body = attempt.response_body or ""
    shown = body[:MAX_SHOWN_BODY_CHARS]
    more = f"\n… ({len(body) - len(shown)} more characters)" if len(body) > len(shown) else ""
    body_cell = (
        f"<details><summary>{len(body)} chars</summary><pre>{_e(shown + more)}</pre></details>"
    )
    cells = [
        str(attempt.number),
        _time(attempt.started_at),
        f"{attempt.duration_ms} ms",
        _e(attempt.outcome.value),
        _e(attempt.status_code if attempt.status_code is not None else "—"),
        _e(attempt.error or ""),
        body_cell if body else "",
    ]
    return "<tr>" + "".join(f"<td>{cell}</td>" for cell in cells) + "</tr>"


def _subscriptions(rows: Sequence[SubscriptionRow], form: Form) -> str:
    if not rows:
        return "<p>No subscription is configured in relay.toml.</p>"

    def health(row: SubscriptionRow) -> str:
        state = row.state
        if state.disabled:
            return (
                f'<span class="bad">disabled since {_time(state.disabled_at)}: '
                f"{_e(state.disabled_reason or 'no reason recorded')}</span> "
                + _button(path("subscriptions", row.name, "enable"), "Enable", form)
            )
        if state.failing_since is not None:
            return f'<span class="warn">failing since {_time(state.failing_since)}</span>'
        return '<span class="ok">healthy</span>'

    body = "".join(
        f"<tr><td>{_e(row.name)}</td><td>{_e(row.target or 'not in relay.toml')}</td>"
        f"<td>{health(row)}</td><td>{_time(row.state.last_success_at)}</td>"
        f'<td><a href="{_href(with_query(path("deliveries"), subscription=row.name))}">'
        "deliveries</a></td></tr>"
        for row in rows
    )
    return (
        "<table><tr><th>name</th><th>target host</th><th>state</th><th>last success</th><th></th>"
        f"</tr>{body}</table>"
    )


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title} · isograd-relay</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body{{font-family:system-ui,sans-serif;margin:0;color:#222;background:#fafafa}}
header{{background:#1f3a5f;color:#fff;padding:.6rem 2rem;display:flex;gap:2rem;align-items:center}}
header strong{{font-size:1.1rem}}nav{{display:flex;gap:1.2rem;align-items:center}}
nav a,nav .link{{color:#fff}}main{{padding:1rem 2rem 3rem}}
table{{border-collapse:collapse;background:#fff;margin:.5rem 0}}
td,th{{border:1px solid #ddd;padding:.3rem .6rem;text-align:left;vertical-align:top}}
th{{background:#f0f2f5}}pre{{background:#fff;border:1px solid #ddd;padding:.6rem;overflow:auto;
max-width:70rem;margin:0}}code{{font-size:.85em}}
.cards{{display:flex;gap:2rem;flex-wrap:wrap}}.big{{font-size:2rem;margin:.2rem 0}}
.badge{{padding:.05rem .45rem;border-radius:.6rem;font-size:.85em;background:#e4e7eb}}
.failed{{background:#f8d7da;color:#842029}}.delivered{{background:#d1e7dd;color:#0f5132}}
.retrying,.delivering{{background:#fff3cd;color:#664d03}}
.ok{{color:#0f5132}}.bad{{color:#842029}}.warn{{color:#664d03}}
.notice{{background:#cfe2ff;border:1px solid #9ec5fe;padding:.5rem 1rem}}
form.inline{{display:inline;margin:0}}button{{cursor:pointer}}
.link{{background:none;border:none;text-decoration:underline;padding:0;font:inherit}}
.filters a{{margin-right:.6rem}}.filters a.current{{font-weight:bold}}
.login label{{display:block;margin:.5rem 0}}section h3{{margin-bottom:.2rem}}
</style></head>
<body><header><strong>isograd-relay</strong>{nav}</header>
<main>{notice}{body}</main></body></html>
"""
