"""Tests of the operator dashboard: sign-in, pages on a real SQLite store, replay, enable, CSRF,
escaping."""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import pytest
from sqlalchemy import update
from starlette.applications import Starlette
from starlette.testclient import TestClient

from tests.fakes import FakeClock, RecordingEnqueuer
from tests.fixtures.dashboard import (
    ADMIN_TOKEN,
    EMAIL,
    HOOK_URL,
    PUBLIC_URL,
    SECRET,
    csrf_token,
    fail_delivery,
    sign_in,
    store_event,
    store_invitation,
)
from tests.fixtures.web import edge_settings
from webhooks.app import create_app
from webhooks.dashboard import dashboard_routes, views
from webhooks.dashboard.pages import EVENTS_PAGE_SIZE
from webhooks.dashboard.sessions import COOKIE_NAME, SESSION_LIFETIME
from webhooks.dashboard.signin import SIGN_IN_FAILURES, SIGN_IN_WINDOW_SECONDS
from webhooks.throttle import FailureThrottle
from worker.catalogue import AssessmentCatalogue
from worker.errors import IsogradUnavailableError
from worker.runtime import Runtime
from worker.settings import Settings
from worker.storage.records import DeliveryStatus, InvitationStatus
from worker.storage.store import SqlStore
from worker.storage.tables import events as events_table

XSS = "<script>alert(1)</script>"


def status_of(store: SqlStore, delivery_id: str) -> DeliveryStatus:
    delivery = store.get_delivery(delivery_id)
    assert delivery is not None
    return delivery.status


def rows_of(page: str) -> list[str]:
    return re.findall(r"<tr>.*?</tr>", page, flags=re.DOTALL)


# -- signing in ---------------------------------------------------------------------------------


def test_a_page_without_a_session_redirects_to_the_sign_in_form(browser: TestClient) -> None:
    response = browser.get("/dashboard/events?before=evt_x")

    assert response.status_code == 303
    assert (
        response.headers["location"]
        == "/dashboard/login?next=%2Fdashboard%2Fevents%3Fbefore%3Devt_x"
    )


def test_the_sign_in_form_asks_for_the_token(browser: TestClient) -> None:
    response = browser.get("/dashboard/login?next=/dashboard/deliveries")

    assert response.status_code == 200
    assert 'type="password" name="token"' in response.text
    assert 'name="next" value="/dashboard/deliveries"' in response.text


def test_signing_in_with_a_wrong_token_is_refused_without_a_cookie(browser: TestClient) -> None:
    response = sign_in(browser, ADMIN_TOKEN + "x")

    assert response.status_code == 401
    assert "Wrong token" in response.text
    assert "set-cookie" not in response.headers
    assert browser.get("/dashboard/").status_code == 303


def test_signing_in_sets_a_strict_http_only_secure_cookie_without_the_token(
    browser: TestClient,
) -> None:
    response = sign_in(browser, ADMIN_TOKEN, next_path="/dashboard/deliveries?status=failed")

    assert response.status_code == 303
    assert response.headers["location"] == "/dashboard/deliveries?status=failed"
    cookie = response.headers["set-cookie"]
    assert cookie.startswith(f"{COOKIE_NAME}=")
    assert {"httponly", "samesite=strict", "secure", "path=/dashboard"} <= {
        part.strip().lower() for part in cookie.split(";")
    }
    assert ADMIN_TOKEN not in cookie


def test_the_cookie_is_not_secure_over_plain_http(dashboard_runtime: Runtime) -> None:
    settings = replace(edge_settings(), public_url="http://127.0.0.1:8000")
    app = create_app(settings, runtime=dashboard_runtime, broker_ping=lambda: None)
    with TestClient(app, base_url="http://127.0.0.1:8000", follow_redirects=False) as client:
        response = sign_in(client, ADMIN_TOKEN)

    assert "secure" not in response.headers["set-cookie"].lower()


def test_the_cookie_is_secure_behind_a_tls_proxy_when_the_public_url_is_https(
    dashboard_runtime: Runtime,
) -> None:
    # The proxy talks plain HTTP to us (its X-Forwarded-Proto is not trusted by default).
    app = create_app(edge_settings(), runtime=dashboard_runtime, broker_ping=lambda: None)
    with TestClient(app, base_url="http://10.0.0.5:8000", follow_redirects=False) as client:
        response = sign_in(client, ADMIN_TOKEN)

    assert "secure" in {part.strip().lower() for part in response.headers["set-cookie"].split(";")}


def test_a_signed_in_browser_sees_the_overview(signed_in: TestClient) -> None:
    response = signed_in.get("/dashboard/")

    assert response.status_code == 200
    assert "<h1>Overview</h1>" in response.text


def test_signing_in_never_redirects_to_another_site(browser: TestClient) -> None:
    targets = ["https://evil.example/", "//evil.example/dashboard/", "/\\evil.example", "/api/x"]

    locations = [sign_in(browser, ADMIN_TOKEN, t).headers["location"] for t in targets]

    assert locations == ["/dashboard/"] * len(targets)


def test_a_session_ends_after_its_lifetime(signed_in: TestClient, clock: FakeClock) -> None:
    clock.advance(SESSION_LIFETIME.total_seconds())

    assert signed_in.get("/dashboard/").status_code == 303


def test_a_session_from_another_admin_token_is_refused(
    signed_in: TestClient, dashboard_runtime: Runtime
) -> None:
    settings = Settings(admin_token="a-rotated-admin-token-0123456789", public_url=PUBLIC_URL)
    app = create_app(settings, runtime=dashboard_runtime, broker_ping=lambda: None)
    with TestClient(app, base_url=PUBLIC_URL, follow_redirects=False) as other:
        other.cookies = signed_in.cookies

        response = other.get("/dashboard/")

    assert response.status_code == 303


def test_signing_out_ends_the_session(signed_in: TestClient) -> None:
    token = csrf_token(signed_in.get("/dashboard/").text)

    response = signed_in.post("/dashboard/logout", data={"csrf_token": token})

    assert response.status_code == 303
    assert signed_in.get("/dashboard/").status_code == 303


@pytest.fixture
def closed(dashboard_runtime: Runtime) -> Iterator[TestClient]:
    settings = Settings(public_url=PUBLIC_URL)  # no ADMIN_TOKEN
    app = create_app(settings, runtime=dashboard_runtime, broker_ping=lambda: None)
    with TestClient(app, base_url=PUBLIC_URL, follow_redirects=False) as client:
        yield client


def test_without_an_admin_token_the_sign_in_page_says_the_dashboard_is_closed(
    closed: TestClient,
) -> None:
    response = closed.get("/dashboard/login")

    assert "Dashboard closed" in response.text
    assert 'name="token"' not in response.text


@pytest.mark.parametrize("token", ["", "anything", "None"])
def test_without_an_admin_token_no_token_signs_in(closed: TestClient, token: str) -> None:
    response = sign_in(closed, token)

    assert response.status_code == 401
    assert "set-cookie" not in response.headers
    assert closed.get("/dashboard/").status_code == 303


# -- pages ----------------------------------------------------------------------------------------


def test_the_overview_counts_invitations_events_and_deliveries_by_status(
    signed_in: TestClient, store: SqlStore
) -> None:
    store_invitation(store, 1)
    store_event(store, 2, subscriptions=("hr", "ats"))
    event, deliveries = store_event(store, 3)
    store.mark_invitation(event.invitation_id or "", InvitationStatus.COMPLETED)
    fail_delivery(store, deliveries[0].id)

    page = signed_in.get("/dashboard/").text

    assert "<tr><th>pending</th><td>2</td></tr>" in page
    assert "<tr><th>completed</th><td>1</td></tr>" in page
    assert '<a href="/dashboard/events">2</a>' in page
    assert re.search(r">pending</span></a></th><td>2</td>", page)
    assert re.search(r">failed</span></a></th><td>1</td>", page)


def test_the_overview_shows_a_disabled_subscription_with_its_reason_and_an_enable_button(
    signed_in: TestClient, store: SqlStore
) -> None:
    store.disable_subscription("hr", "receiver answered 410 Gone")

    page = signed_in.get("/dashboard/").text

    assert "receiver answered 410 Gone" in page
    assert 'action="/dashboard/subscriptions/hr/enable"' in page


def test_the_overview_lists_recent_failures_with_a_replay_button(
    signed_in: TestClient, store: SqlStore
) -> None:
    _, deliveries = store_event(store)
    fail_delivery(store, deliveries[0].id, error="HTTP 410 from receiver")

    page = signed_in.get("/dashboard/").text

    assert "HTTP 410 from receiver" in page
    assert f'action="/dashboard/deliveries/{deliveries[0].id}/replay"' in page


def test_the_overview_shows_the_subscription_host_but_not_its_secret_url(
    signed_in: TestClient,
) -> None:
    page = signed_in.get("/dashboard/").text

    assert "hooks.example" in page
    assert "T0SECRETPATH" not in page
    assert HOOK_URL not in page


def test_events_are_listed_newest_first_with_candidate_grade_and_delivery_status(
    signed_in: TestClient, store: SqlStore, clock: FakeClock
) -> None:
    older, _ = store_event(store, 1, first_name="Grace", last_name="Hopper")
    clock.advance(60)
    newer, deliveries = store_event(store, 2)
    fail_delivery(store, deliveries[0].id)

    page = signed_in.get("/dashboard/events").text

    rows = rows_of(page)[1:]
    assert [newer.id in rows[0], older.id in rows[1]] == [True, True]
    assert "Ada Lovelace" in rows[0]
    assert EMAIL in rows[0]
    assert "720 / 1000" in rows[0]
    assert "hr: " in rows[0]
    assert "failed" in rows[0]
    assert "Grace Hopper" in rows[1]


def test_events_are_paged_with_a_link_to_older_ones(
    signed_in: TestClient, store: SqlStore, clock: FakeClock
) -> None:
    for pla_tst_id in range(1, EVENTS_PAGE_SIZE + 2):
        store_event(store, pla_tst_id, subscriptions=())
        clock.advance(1)

    first = signed_in.get("/dashboard/events").text
    older_link = re.search(r'href="(/dashboard/events\?before=[^"]+)">Older', first)
    assert older_link is not None
    second = signed_in.get(older_link.group(1)).text

    assert len(rows_of(first)) == 1 + EVENTS_PAGE_SIZE
    assert len(rows_of(second)) == 1 + 1
    assert "evt_test1<" in second
    assert "Older" not in second


def test_the_event_page_shows_the_payload_deliveries_and_attempts(
    signed_in: TestClient, store: SqlStore
) -> None:
    event, deliveries = store_event(store)
    fail_delivery(store, deliveries[0].id, status_code=410, body='{"detail":"gone"}')

    page = signed_in.get(f"/dashboard/events/{event.id}").text

    assert f"<code>{deliveries[0].id}</code>" in page
    attempt_row = next(row for row in rows_of(page) if "87 ms" in row)
    assert "<td>410</td>" in attempt_row
    assert "HTTP 410" in attempt_row
    assert "{&#34;detail&#34;:&#34;gone&#34;}" in attempt_row
    assert "&#34;pla_tst_id&#34;: 1001,\n" in page  # pretty-printed, two-space indent
    assert f'action="/dashboard/deliveries/{deliveries[0].id}/replay"' in page


def test_a_long_response_body_is_shown_truncated(signed_in: TestClient, store: SqlStore) -> None:
    event, deliveries = store_event(store)
    fail_delivery(store, deliveries[0].id, body="x" * 5_000)

    page = signed_in.get(f"/dashboard/events/{event.id}").text

    assert "x" * 2_000 + "\n… (3000 more characters)" in page
    assert "x" * 2_001 not in page


def test_an_unknown_event_is_not_found(signed_in: TestClient) -> None:
    response = signed_in.get("/dashboard/events/evt_nope")

    assert response.status_code == 404
    assert "No such event" in response.text


def test_deliveries_are_listed_failed_first(signed_in: TestClient, store: SqlStore) -> None:
    _, failed = store_event(store, 1)
    fail_delivery(store, failed[0].id)
    _, pending = store_event(store, 2)

    rows = rows_of(signed_in.get("/dashboard/deliveries").text)[1:]

    assert [failed[0].id in rows[0], pending[0].id in rows[1]] == [True, True]


def test_deliveries_are_filtered_by_status_and_subscription(
    signed_in: TestClient, store: SqlStore
) -> None:
    _, deliveries = store_event(store, 1, subscriptions=("hr", "ats"))
    by_name = {d.subscription: d for d in deliveries}
    fail_delivery(store, by_name["hr"].id)
    _, other = store_event(store, 2, subscriptions=("hr",))

    failed = signed_in.get("/dashboard/deliveries?status=failed").text
    ats = signed_in.get("/dashboard/deliveries?subscription=ats").text

    assert by_name["hr"].id in failed
    assert other[0].id not in failed
    assert by_name["ats"].id in ats
    assert by_name["hr"].id not in ats


def test_pages_are_not_cached_and_forbid_scripts(signed_in: TestClient) -> None:
    response = signed_in.get("/dashboard/")

    assert response.headers["cache-control"] == "no-store"
    assert "default-src 'none'" in response.headers["content-security-policy"]
    assert response.headers["x-frame-options"] == "DENY"


# -- replay and enable ------------------------------------------------------------------------


def test_the_replay_button_requeues_a_failed_delivery_and_enqueues_it_once(
    signed_in: TestClient, store: SqlStore, enqueuer: RecordingEnqueuer
) -> None:
    event, deliveries = store_event(store)
    delivery_id = fail_delivery(store, deliveries[0].id).id
    page = signed_in.get(f"/dashboard/events/{event.id}").text

    response = signed_in.post(
        f"/dashboard/deliveries/{delivery_id}/replay",
        data={"csrf_token": csrf_token(page), "next": f"/dashboard/events/{event.id}"},
    )

    assert response.status_code == 303
    assert response.headers["location"] == f"/dashboard/events/{event.id}?notice=requeued"
    replayed = store.get_delivery(delivery_id)
    assert replayed is not None
    assert (replayed.status, replayed.attempt_count) == (DeliveryStatus.PENDING, 0)
    assert [job.id for job in enqueuer.of_kind("delivery")] == [delivery_id]


def test_after_a_replay_the_page_says_so(signed_in: TestClient, store: SqlStore) -> None:
    event, _ = store_event(store)

    page = signed_in.get(f"/dashboard/events/{event.id}?notice=requeued").text

    assert "Delivery replayed" in page


def test_a_replay_without_the_csrf_token_is_forbidden(
    signed_in: TestClient, store: SqlStore, enqueuer: RecordingEnqueuer
) -> None:
    _, deliveries = store_event(store)
    delivery_id = fail_delivery(store, deliveries[0].id).id

    response = signed_in.post(f"/dashboard/deliveries/{delivery_id}/replay", data={})

    assert response.status_code == 403
    assert status_of(store, delivery_id) is DeliveryStatus.FAILED
    assert enqueuer.jobs == []


def test_a_replay_with_another_sessions_csrf_token_is_forbidden(
    signed_in: TestClient, store: SqlStore, dashboard_runtime: Runtime, enqueuer: RecordingEnqueuer
) -> None:
    _, deliveries = store_event(store)
    delivery_id = fail_delivery(store, deliveries[0].id).id
    app = create_app(edge_settings(), runtime=dashboard_runtime, broker_ping=lambda: None)
    with TestClient(app, base_url=PUBLIC_URL, follow_redirects=False) as other:
        sign_in(other, ADMIN_TOKEN)
        foreign = csrf_token(other.get("/dashboard/").text)

    response = signed_in.post(
        f"/dashboard/deliveries/{delivery_id}/replay", data={"csrf_token": foreign}
    )

    assert response.status_code == 403
    assert enqueuer.jobs == []


def test_a_replay_without_a_session_is_unauthorized(
    browser: TestClient, store: SqlStore, enqueuer: RecordingEnqueuer
) -> None:
    _, deliveries = store_event(store)
    delivery_id = fail_delivery(store, deliveries[0].id).id

    response = browser.post(f"/dashboard/deliveries/{delivery_id}/replay", data={})

    assert response.status_code == 401
    assert enqueuer.jobs == []


def test_replaying_a_delivered_delivery_changes_nothing(
    signed_in: TestClient, store: SqlStore, enqueuer: RecordingEnqueuer
) -> None:
    _, deliveries = store_event(store)
    delivery_id = deliveries[0].id
    store.claim_delivery(delivery_id)
    store.mark_delivered(delivery_id)
    token = csrf_token(signed_in.get("/dashboard/").text)

    response = signed_in.post(
        f"/dashboard/deliveries/{delivery_id}/replay", data={"csrf_token": token}
    )

    assert response.headers["location"] == "/dashboard/?notice=delivered"
    assert status_of(store, delivery_id) is DeliveryStatus.DELIVERED
    assert enqueuer.jobs == []


def test_the_enable_button_enables_a_disabled_subscription(
    signed_in: TestClient, store: SqlStore
) -> None:
    store.disable_subscription("hr", "receiver answered 410 Gone")
    token = csrf_token(signed_in.get("/dashboard/").text)

    response = signed_in.post("/dashboard/subscriptions/hr/enable", data={"csrf_token": token})

    assert response.headers["location"] == "/dashboard/?notice=enabled"
    assert not store.subscription_state("hr").disabled


def test_an_unknown_subscription_cannot_be_enabled(signed_in: TestClient, store: SqlStore) -> None:
    token = csrf_token(signed_in.get("/dashboard/").text)

    response = signed_in.post("/dashboard/subscriptions/nope/enable", data={"csrf_token": token})

    assert response.status_code == 404
    assert [state.name for state in store.list_subscription_states()] == []


# -- escaping and secrets ---------------------------------------------------------------------


@pytest.mark.parametrize("page", ["/dashboard/", "/dashboard/events", "/dashboard/events/{id}"])
def test_a_candidate_named_like_a_script_is_shown_escaped(
    signed_in: TestClient, store: SqlStore, page: str
) -> None:
    event, deliveries = store_event(store, first_name=XSS, ext_id=XSS)
    fail_delivery(store, deliveries[0].id, error=XSS, body=XSS)

    text = signed_in.get(page.format(id=event.id)).text

    assert XSS not in text
    assert "<script" not in text
    if page != "/dashboard/":
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text


def test_a_subscription_filter_is_reflected_encoded(signed_in: TestClient) -> None:
    text = signed_in.get("/dashboard/deliveries", params={"subscription": XSS}).text

    assert "<script" not in text
    assert "subscription=%3Cscript%3Ealert%281%29%3C%2Fscript%3E" in text


def test_no_page_shows_a_secret(signed_in: TestClient, store: SqlStore) -> None:
    event, deliveries = store_event(store)
    fail_delivery(store, deliveries[0].id)
    store.disable_subscription("hr", "410")

    pages = [
        signed_in.get(path).text
        for path in (
            "/dashboard/",
            "/dashboard/events",
            f"/dashboard/events/{event.id}",
            "/dashboard/deliveries",
        )
    ]

    for text in pages:
        assert ADMIN_TOKEN not in text
        assert SECRET not in text
        assert SECRET.removeprefix("whsec_") not in text


# -- templates ----------------------------------------------------------------------------------


def test_every_page_template_renders(
    browser: TestClient, store: SqlStore, dashboard_runtime: Runtime
) -> None:
    event, deliveries = store_event(store)
    fail_delivery(store, deliveries[0].id)
    store.disable_subscription("hr", "receiver answered 410 Gone")
    rendered = {"login.html": browser.get("/dashboard/login")}
    sign_in(browser, ADMIN_TOKEN)
    pages_to_visit = (
        "/",
        "/events",
        f"/events/{event.id}",
        "/deliveries",
        "/events/evt_nope",
        "/invitations",
        "/search?q=1001",
    )
    for path in pages_to_visit:
        response = browser.get("/dashboard" + path)
        rendered.setdefault(response.template.name, response)  # type: ignore[attr-defined]
    forbidden = browser.post(f"/dashboard/deliveries/{deliveries[0].id}/replay", data={})
    rendered[forbidden.template.name] = forbidden  # type: ignore[attr-defined]
    closed_app = create_app(
        Settings(public_url=PUBLIC_URL), runtime=dashboard_runtime, broker_ping=lambda: None
    )
    with TestClient(closed_app, base_url=PUBLIC_URL) as closed_browser:
        closed_page = closed_browser.get("/dashboard/login")

    pages = sorted(
        name
        for name in os.listdir(Path(views.__file__).parent / "templates")
        if not name.startswith("_") and name != "base.html"
    )
    assert sorted(rendered) == pages
    statuses = {name: response.status_code for name, response in rendered.items()}
    assert statuses == {
        "deliveries.html": 200,
        "event.html": 200,
        "events.html": 200,
        "forbidden.html": 403,
        "invitations.html": 200,
        "login.html": 200,
        "not_found.html": 404,
        "overview.html": 200,
        "search.html": 200,
    }
    for response in [*rendered.values(), closed_page]:
        assert response.text.startswith("<!doctype html>")
        assert response.text.rstrip().endswith("</html>")
    assert "Dashboard closed" in closed_page.text


# -- sign-in throttle -------------------------------------------------------------------------


@pytest.fixture
def seconds() -> list[float]:
    """The throttle's monotonic clock, moved by the test."""
    return [1000.0]


@pytest.fixture
def throttled(
    dashboard_runtime: Runtime, clock: FakeClock, seconds: list[float]
) -> Iterator[TestClient]:
    throttle = FailureThrottle(
        limit=SIGN_IN_FAILURES, window_seconds=SIGN_IN_WINDOW_SECONDS, clock=lambda: seconds[0]
    )
    routes = dashboard_routes(
        admin_token=ADMIN_TOKEN,
        store=dashboard_runtime.store,
        enqueuer=None,
        subscriptions=dashboard_runtime.subscriptions,
        clock=clock,
        sign_in_throttle=throttle,
    )
    with TestClient(Starlette(routes=routes), base_url=PUBLIC_URL, follow_redirects=False) as c:
        yield c


def test_after_a_few_wrong_tokens_signing_in_answers_429_even_with_the_right_one(
    throttled: TestClient,
) -> None:
    wrong = [sign_in(throttled, "guess").status_code for _ in range(SIGN_IN_FAILURES)]

    response = sign_in(throttled, ADMIN_TOKEN)

    assert wrong == [401] * SIGN_IN_FAILURES
    assert response.status_code == 429
    assert response.headers["retry-after"] == "60"
    assert "Too many wrong tokens" in response.text
    assert "set-cookie" not in response.headers


def test_signing_in_works_again_once_the_window_has_passed(
    throttled: TestClient, seconds: list[float]
) -> None:
    for _ in range(SIGN_IN_FAILURES):
        sign_in(throttled, "guess")
    seconds[0] += SIGN_IN_WINDOW_SECONDS

    assert sign_in(throttled, ADMIN_TOKEN).status_code == 303


def test_signing_in_forgets_the_earlier_wrong_tokens(throttled: TestClient) -> None:
    for _ in range(SIGN_IN_FAILURES - 1):
        sign_in(throttled, "typo")
    assert sign_in(throttled, ADMIN_TOKEN).status_code == 303

    statuses = [sign_in(throttled, "typo").status_code for _ in range(SIGN_IN_FAILURES)]

    assert statuses == [401] * SIGN_IN_FAILURES


# -- disable and charts -----------------------------------------------------------------------


def test_the_disable_button_disables_a_subscription(signed_in: TestClient, store: SqlStore) -> None:
    page = signed_in.get("/dashboard/").text
    assert 'action="/dashboard/subscriptions/hr/disable"' in page

    response = signed_in.post(
        "/dashboard/subscriptions/hr/disable", data={"csrf_token": csrf_token(page)}
    )

    assert response.headers["location"] == "/dashboard/?notice=disabled"
    state = store.subscription_state("hr")
    assert (state.disabled, state.disabled_reason) == (True, "disabled by an operator")
    after = signed_in.get("/dashboard/?notice=disabled").text
    assert "Subscription disabled" in after
    assert 'action="/dashboard/subscriptions/hr/enable"' in after
    assert 'action="/dashboard/subscriptions/hr/disable"' not in after


def test_disabling_without_the_csrf_token_is_forbidden(
    signed_in: TestClient, store: SqlStore
) -> None:
    response = signed_in.post("/dashboard/subscriptions/hr/disable", data={})

    assert response.status_code == 403
    assert not store.subscription_state("hr").disabled


def test_an_unknown_subscription_cannot_be_disabled(signed_in: TestClient, store: SqlStore) -> None:
    token = csrf_token(signed_in.get("/dashboard/").text)

    response = signed_in.post("/dashboard/subscriptions/nope/disable", data={"csrf_token": token})

    assert response.status_code == 404
    assert store.list_subscription_states() == []


def test_the_overview_charts_each_subscriptions_last_day_of_attempts(
    signed_in: TestClient, store: SqlStore, clock: FakeClock
) -> None:
    _, deliveries = store_event(store, 1)
    fail_delivery(store, deliveries[0].id)  # one failed attempt at 10:15, 87 ms

    page = signed_in.get("/dashboard/").text

    chart = re.search(r'<svg class="chart".*?</svg>', page, flags=re.DOTALL)
    assert chart is not None
    assert "2026-11-27 10:00 UTC: 0 delivered, 1 failed, mean latency 87 ms" in chart.group(0)
    assert chart.group(0).count('class="bar-failed"') == 1
    assert 'class="bar-delivered"' not in chart.group(0)
    assert "hr, last 24 h: 0 delivered, 1 failed attempts" in chart.group(0)


# -- search, invitations, bulk replay ---------------------------------------------------------


@pytest.mark.parametrize("term", [EMAIL.upper(), "1001", "evt_test1001", "{invitation}"])
def test_the_search_box_finds_a_candidate_by_email_session_invitation_or_event(
    signed_in: TestClient, store: SqlStore, term: str
) -> None:
    event, _ = store_event(store, 1001, first_name="Grace")
    store_invitation(store, 1002, email="someone.else@example.org", first_name="Alan")
    query = term.format(invitation=event.invitation_id)

    page = signed_in.get("/dashboard/search", params={"q": query}).text

    rows = rows_of(page)[1:]
    assert len(rows) == 1
    assert "Grace Lovelace" in rows[0]
    assert f'href="/dashboard/events/{event.id}"' in rows[0]
    assert "720 / 1000" in rows[0]


def test_every_page_has_the_search_box(signed_in: TestClient) -> None:
    for path in ("/dashboard/", "/dashboard/events", "/dashboard/invitations"):
        assert 'action="/dashboard/search"' in signed_in.get(path).text


def test_a_search_without_a_match_says_so_and_escapes_the_term(signed_in: TestClient) -> None:
    page = signed_in.get("/dashboard/search", params={"q": XSS}).text

    assert "Nothing matches" in page
    assert "<script" not in page
    assert "&lt;script&gt;" in page


def test_the_invitations_page_lists_pending_ones_with_their_age(
    signed_in: TestClient, store: SqlStore, clock: FakeClock
) -> None:
    store_invitation(store, 1, first_name="Grace")
    event, _ = store_event(store, 2, first_name="Edsger")
    store.mark_invitation(event.invitation_id or "", InvitationStatus.COMPLETED)
    clock.advance(3 * 3600 + 12 * 60)

    pending = signed_in.get("/dashboard/invitations").text
    everyone = signed_in.get("/dashboard/invitations?status=all").text

    rows = rows_of(pending)[1:]
    assert len(rows) == 1
    assert "Grace Lovelace" in rows[0]
    assert "<td>3 h 12 min</td>" in rows[0]
    assert len(rows_of(everyone)) == 1 + 2


def test_replay_failed_requeues_a_subscriptions_failed_deliveries_in_the_time_range(
    signed_in: TestClient, store: SqlStore, clock: FakeClock, enqueuer: RecordingEnqueuer
) -> None:
    _, early = store_event(store, 1)  # created 10:15
    fail_delivery(store, early[0].id)
    clock.advance(3600)
    _, late = store_event(store, 2)  # created 11:15
    fail_delivery(store, late[0].id)
    token = csrf_token(signed_in.get("/dashboard/").text)

    response = signed_in.post(
        "/dashboard/subscriptions/hr/replay",
        data={"csrf_token": token, "from": "2026-11-27T11:00", "until": "2026-11-27T12:00"},
    )

    assert response.headers["location"] == ("/dashboard/?notice=bulk&requeued=1&subscription=hr")
    assert status_of(store, late[0].id) is DeliveryStatus.PENDING
    assert status_of(store, early[0].id) is DeliveryStatus.FAILED
    assert [job.id for job in enqueuer.of_kind("delivery")] == [late[0].id]
    notice = signed_in.get(response.headers["location"]).text
    assert "1 failed deliveries of hr replayed" in notice


def test_replay_failed_without_a_range_takes_every_failed_delivery_once(
    signed_in: TestClient, store: SqlStore, enqueuer: RecordingEnqueuer
) -> None:
    failed = [fail_delivery(store, store_event(store, n)[1][0].id).id for n in (1, 2)]
    token = csrf_token(signed_in.get("/dashboard/").text)

    first = signed_in.post("/dashboard/subscriptions/hr/replay", data={"csrf_token": token})
    second = signed_in.post("/dashboard/subscriptions/hr/replay", data={"csrf_token": token})

    assert "requeued=2" in first.headers["location"]
    assert "requeued=0" in second.headers["location"]
    assert sorted(job.id for job in enqueuer.of_kind("delivery")) == sorted(failed)


def test_replay_failed_with_a_time_that_is_not_one_replays_nothing(
    signed_in: TestClient, store: SqlStore, enqueuer: RecordingEnqueuer
) -> None:
    delivery_id = fail_delivery(store, store_event(store)[1][0].id).id
    token = csrf_token(signed_in.get("/dashboard/").text)

    response = signed_in.post(
        "/dashboard/subscriptions/hr/replay", data={"csrf_token": token, "from": "yesterday"}
    )

    assert response.headers["location"] == "/dashboard/?notice=bad_range"
    assert status_of(store, delivery_id) is DeliveryStatus.FAILED
    assert enqueuer.jobs == []


def test_replay_failed_needs_the_csrf_token(
    signed_in: TestClient, store: SqlStore, enqueuer: RecordingEnqueuer
) -> None:
    delivery_id = fail_delivery(store, store_event(store)[1][0].id).id

    response = signed_in.post("/dashboard/subscriptions/hr/replay", data={})

    assert response.status_code == 403
    assert status_of(store, delivery_id) is DeliveryStatus.FAILED
    assert enqueuer.jobs == []


# -- test names (act 14) ----------------------------------------------------------------------


class Act14:
    """Act 14's test names as the catalogue reads them: a mapping, or an error to raise."""

    def __init__(self, answer: Mapping[int, str] | Exception) -> None:
        self.answer = answer
        self.calls = 0

    def list_test_names(self, *, sub_com_id: int | None = None) -> Mapping[int, str]:
        self.calls += 1
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


@contextmanager
def signed_in_with_names(runtime: Runtime, act14: Act14) -> Iterator[TestClient]:
    runtime.catalogue = AssessmentCatalogue(act14)
    app = create_app(edge_settings(), runtime=runtime, broker_ping=lambda: None)
    with TestClient(app, base_url=PUBLIC_URL, follow_redirects=False) as client:
        assert sign_in(client, ADMIN_TOKEN).status_code == 303
        yield client


def test_tests_are_shown_by_the_name_act_14_gives(
    dashboard_runtime: Runtime, store: SqlStore
) -> None:
    event, _ = store_event(store, 1001)
    store_invitation(store, 1002)
    act14 = Act14({101: "Excel 2019"})
    paths = (
        "/dashboard/events",
        f"/dashboard/events/{event.id}",
        "/dashboard/invitations?status=all",
        "/dashboard/search?q=1002",
    )

    with signed_in_with_names(dashboard_runtime, act14) as browser:
        pages = [browser.get(path).text for path in paths]

    for text in pages:
        assert "Excel 2019" in text
        assert "test 101" not in text
    assert act14.calls == 1  # cached by the catalogue


def test_a_name_delivered_with_the_event_is_shown_without_asking_act_14(
    dashboard_runtime: Runtime, store: SqlStore
) -> None:
    event, _ = store_event(store, 1001)
    with store.engine.begin() as connection:
        payload = dict(event.payload)
        payload["data"] = {**payload["data"], "test": {**payload["data"]["test"], "name": XSS}}
        connection.execute(
            update(events_table).where(events_table.c.id == event.id).values(payload=payload)
        )
    act14 = Act14({101: "Excel 2019"})

    with signed_in_with_names(dashboard_runtime, act14) as browser:
        text = browser.get(f"/dashboard/events/{event.id}").text

    assert "&lt;script&gt;alert(1)&lt;/script&gt; · session 1001" in text
    assert "<script" not in text
    assert act14.calls == 0


def test_pages_show_test_ids_when_act_14_fails(dashboard_runtime: Runtime, store: SqlStore) -> None:
    event, _ = store_event(store, 1001)
    down = Act14(IsogradUnavailableError("down"))

    with signed_in_with_names(dashboard_runtime, down) as browser:
        responses = [browser.get(p) for p in ("/dashboard/events", f"/dashboard/events/{event.id}")]

    assert [response.status_code for response in responses] == [200, 200]
    assert all("test 101 · session 1001" in response.text for response in responses)


class HangingCatalogue:
    """A catalogue whose act 14 does not answer until the test lets it."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.asked = threading.Event()

    def name(self, tst_frm_id: int, *, sub_com_id: int | None = None) -> str | None:
        self.asked.set()
        self.release.wait(30)
        return "Excel 2019"


def test_a_page_does_not_wait_long_for_a_hanging_act_14(
    dashboard_runtime: Runtime, store: SqlStore, clock: FakeClock
) -> None:
    event, _ = store_event(store, 1001)
    catalogue = HangingCatalogue()
    routes = dashboard_routes(
        admin_token=ADMIN_TOKEN,
        store=store,
        enqueuer=None,
        subscriptions=dashboard_runtime.subscriptions,
        clock=clock,
        catalogue=catalogue,
        names_wait=0.2,
    )
    with TestClient(Starlette(routes=routes), base_url=PUBLIC_URL) as browser:
        sign_in(browser, ADMIN_TOKEN)
        try:
            page = browser.get(f"/dashboard/events/{event.id}")
        finally:
            catalogue.release.set()

    assert catalogue.asked.is_set()
    assert page.status_code == 200
    assert "test 101 · session 1001" in page.text
