"""Dashboard routes: server-rendered pages of events, deliveries and failures, with replay.

    GET  /dashboard/                              overview: counts, subscriptions, recent failures
    GET  /dashboard/events?before=<cursor>        events, newest first, 50 a page
    GET  /dashboard/events/{event_id}             payload, deliveries and their attempts
    GET  /dashboard/deliveries?status=&subscription=
    GET  /dashboard/invitations?status=pending&after=<cursor>   invitations and their age
    GET  /dashboard/search?q=<email, pla_tst_id, invitation or event id>
    POST /dashboard/subscriptions/{name}/replay   its failed deliveries created in [from, until)
    POST /dashboard/deliveries/{delivery_id}/replay
    POST /dashboard/subscriptions/{name}/enable, POST /dashboard/subscriptions/{name}/disable
    GET  /dashboard/login, POST /dashboard/login, POST /dashboard/logout

Sign-in is a form asking for ADMIN_TOKEN; it sets an HttpOnly, SameSite=Strict cookie (Secure
over https) holding a MAC derived from the token, never the token (sessions.py). Every
POST needs the session's CSRF token. Without ADMIN_TOKEN the dashboard is closed. Wrong tokens
are throttled per client address (SIGN_IN_FAILURES a minute, then 429 until the minute has passed).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Literal, Protocol
from urllib.parse import parse_qs, urlsplit

import structlog
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route

from webhooks.dashboard.charts import build_charts, chart_window
from webhooks.dashboard.sessions import (
    COOKIE_NAME,
    SESSION_LIFETIME,
    Session,
    csrf_matches,
    new_session_cookie,
    read_session,
    token_matches,
)
from webhooks.dashboard.views import (
    ROOT,
    Form,
    Overview,
    SubscriptionRow,
    path,
    templates,
    with_query,
)
from webhooks.throttle import FailureThrottle
from worker.replay import (
    BulkReplayStore,
    DeliveryEnqueuer,
    DeliveryStore,
    ReplayOutcome,
    replay_delivery,
    replay_matching,
)
from worker.storage.activity import HourlyAttempts
from worker.storage.paging import InvalidCursorError
from worker.storage.records import (
    Attempt,
    Delivery,
    DeliveryFilter,
    DeliveryStatus,
    Event,
    EventFilter,
    Invitation,
    InvitationFilter,
    InvitationStatus,
    SubscriptionState,
)
from worker.storage.records import Page as Listing
from worker.subscription_status import (
    SubscriptionStateStore,
    UnknownSubscriptionError,
    set_subscription_enabled,
)
from worker.subscriptions import Subscription

log = structlog.get_logger(__name__)

EVENTS_PAGE_SIZE = 50
DELIVERIES_PAGE_SIZE = 100
RECENT_FAILURES = 10
# Wrong admin tokens a client address may send in SIGN_IN_WINDOW_SECONDS before it must wait.
SIGN_IN_FAILURES = 5
SIGN_IN_WINDOW_SECONDS = 60.0
INVITATIONS_PAGE_SIZE = 50
SEARCH_LIMIT = 20
# Scripts are never needed; the inline <style> is the only thing a page loads.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    # Pages show candidates' names and emails: keep them out of shared caches and history.
    "Cache-Control": "no-store",
}
NOTICES = {
    ReplayOutcome.REQUEUED.value: "Delivery replayed: it is being sent again now.",
    ReplayOutcome.REQUEUED_ONLY.value: (
        "Delivery requeued in the database; the scheduler will send it shortly."
    ),
    ReplayOutcome.UNKNOWN.value: "No such delivery.",
    ReplayOutcome.BUSY.value: "The delivery is being sent right now; try again in a moment.",
    ReplayOutcome.DELIVERED.value: "The delivery was already delivered; nothing replayed.",
    "enabled": "Subscription enabled: new deliveries go to it again.",
    "bad_range": "Not replayed: the times must look like 2026-11-27T08:00 (UTC).",
    "disabled": (
        "Subscription disabled: new events get no delivery for it, and its pending deliveries are "
        "cancelled when their turn comes (replay them once it is enabled again)."
    ),
}


class DashboardStore(DeliveryStore, BulkReplayStore, SubscriptionStateStore, Protocol):
    # Both replays' protocols name it; the store's one method takes every argument of each.
    def requeue_delivery(
        self,
        delivery_id: str,
        now: datetime | None = None,
        *,
        allow_delivered: bool = True,
        only_from: Sequence[DeliveryStatus] | None = None,
    ) -> Delivery | None: ...

    def count_invitations(self) -> dict[InvitationStatus, int]: ...

    def count_events(self) -> int: ...

    def count_deliveries(self) -> dict[DeliveryStatus, int]: ...

    def list_subscription_states(self) -> list[SubscriptionState]: ...

    def list_events(
        self, filters: EventFilter | None = None, *, limit: int = 50, cursor: str | None = None
    ) -> Listing[Event]: ...

    def get_event(self, event_id: str) -> Event | None: ...

    def get_invitation(self, invitation_id: str) -> Invitation | None: ...

    def list_deliveries_of_events(self, event_ids: Sequence[str]) -> list[Delivery]: ...

    def list_attempts(self, delivery_id: str) -> list[Attempt]: ...

    def list_invitations(
        self, filters: InvitationFilter | None = None, *, limit: int = 50, cursor: str | None = None
    ) -> Listing[Invitation]: ...

    def find_invitations(self, term: str, limit: int = 20) -> list[Invitation]: ...

    def get_event_by_pla_tst_id(self, pla_tst_id: int) -> Event | None: ...

    def hourly_attempts(self, since: datetime, until: datetime) -> list[HourlyAttempts]: ...


Page = Callable[[Request, Session], Awaitable[Response]]


def dashboard_routes(
    *,
    admin_token: str | None,
    store: DashboardStore,
    enqueuer: DeliveryEnqueuer | None,
    subscriptions: Sequence[Subscription],
    clock: Callable[[], datetime],
    secure_cookie: bool = False,
    sign_in_throttle: FailureThrottle | None = None,
) -> list[BaseRoute]:
    """The `/dashboard` mount. `enqueuer` sends replayed deliveries (None: the sweeper will).

    `secure_cookie` (PUBLIC_URL is https) marks the session cookie Secure even when the request
    reached us as plain HTTP, as it does from a TLS-terminating proxy whose forwarded headers
    uvicorn does not trust; otherwise only https requests get a Secure cookie.
    `sign_in_throttle` counts wrong tokens per client address (a new one per mount if omitted).
    """
    throttle = sign_in_throttle or FailureThrottle(
        limit=SIGN_IN_FAILURES, window_seconds=SIGN_IN_WINDOW_SECONDS
    )

    def session_of(request: Request) -> Session | None:
        return read_session(request.cookies.get(COOKIE_NAME), admin_token, clock())

    def signed_in(page: Page) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            session = session_of(request)
            if session is None:
                if request.method in ("GET", "HEAD"):
                    here = _here(request)
                    return _redirect(with_query(path("login"), next=here))
                return _login_page(request, next_path=path(""), status_code=401)
            return await page(request, session)

        return endpoint

    def posted(page: Callable[[Request, Session, dict[str, str]], Awaitable[Response]]) -> Page:
        async def checked(request: Request, session: Session) -> Response:
            fields = await _form(request)
            if not csrf_matches(session, fields.get("csrf_token")):
                log.warning("dashboard_csrf_rejected", path=request.url.path)
                return _page(request, "forbidden.html", "Forbidden", status_code=403)
            return await page(request, session, fields)

        return checked

    def form_of(request: Request, session: Session) -> Form:
        return Form(csrf_token=session.csrf_token, here=_here(request))

    async def login_form(request: Request) -> Response:
        next_path = _safe_next(request.query_params.get("next"))
        closed = not admin_token
        return _login_page(request, next_path=next_path, closed=closed)

    async def login(request: Request) -> Response:
        fields = await _form(request)
        next_path = _safe_next(fields.get("next"))
        address = request.client.host if request.client else "unknown"
        # Checked before the token, so a blocked address learns nothing from more guesses.
        wait = throttle.retry_after(address)
        if wait is not None:
            log.warning("dashboard_login_throttled", retry_after=wait)
            page = _login_page(
                request,
                next_path=next_path,
                error=f"Too many wrong tokens from your address: try again in {wait} s.",
                closed=not admin_token,
                status_code=429,
            )
            page.headers["Retry-After"] = str(wait)
            return page
        if not admin_token or not token_matches(fields.get("token", ""), admin_token):
            throttle.record_failure(address)
            log.warning("dashboard_login_failed")
            return _login_page(
                request,
                next_path=next_path,
                error="Wrong token.",
                closed=not admin_token,
                status_code=401,
            )
        throttle.clear(address)
        log.info("dashboard_login")
        response = _redirect(next_path)
        response.set_cookie(
            COOKIE_NAME,
            new_session_cookie(admin_token, clock()),
            max_age=int(SESSION_LIFETIME.total_seconds()),
            path=ROOT,
            secure=secure_cookie or request.url.scheme == "https",
            httponly=True,
            samesite="strict",
        )
        return response

    async def logout(request: Request, session: Session, fields: dict[str, str]) -> Response:
        response = _redirect(path("login"))
        response.delete_cookie(COOKIE_NAME, path=ROOT, httponly=True, samesite="strict")
        return response

    def gather_overview() -> Overview:
        failed = store.list_deliveries(status=DeliveryStatus.FAILED, limit=RECENT_FAILURES)
        rows = _subscription_rows(subscriptions, store.list_subscription_states())
        now = clock()
        activity = store.hourly_attempts(*chart_window(now))
        return Overview(
            invitations=store.count_invitations(),
            events=store.count_events(),
            deliveries=store.count_deliveries(),
            subscriptions=rows,
            recent_failures=failed,
            charts=build_charts([row.name for row in rows], activity, now),
        )

    async def overview(request: Request, session: Session) -> Response:
        view = await run_in_threadpool(gather_overview)
        return _page(
            request, "overview.html", "Overview", form=form_of(request, session), view=view
        )

    def gather_events(before: str | None) -> tuple[Listing[Event], dict[str, list[Delivery]]]:
        try:
            found = store.list_events(limit=EVENTS_PAGE_SIZE, cursor=before)
        except InvalidCursorError:
            found = Listing([])
        by_event: dict[str, list[Delivery]] = {}
        for delivery in store.list_deliveries_of_events([event.id for event in found.items]):
            by_event.setdefault(delivery.event_id, []).append(delivery)
        return found, by_event

    async def events(request: Request, session: Session) -> Response:
        page_found, by_event = await run_in_threadpool(
            gather_events, request.query_params.get("before") or None
        )
        return _page(
            request,
            "events.html",
            "Events",
            form=form_of(request, session),
            events=page_found.items,
            deliveries=by_event,
            older=page_found.next_cursor,
        )

    def gather_event(
        event_id: str,
    ) -> tuple[Event, Invitation | None, list[tuple[Delivery, list[Attempt]]]] | None:
        event = store.get_event(event_id)
        if event is None:
            return None
        invitation = store.get_invitation(event.invitation_id) if event.invitation_id else None
        deliveries = store.list_deliveries_of_events([event.id])
        return event, invitation, [(d, store.list_attempts(d.id)) for d in deliveries]

    async def event(request: Request, session: Session) -> Response:
        found = await run_in_threadpool(gather_event, request.path_params["event_id"])
        form = form_of(request, session)
        if found is None:
            return _page(
                request, "not_found.html", "Not found", form=form, what="event", status_code=404
            )
        event, invitation, deliveries = found
        return _page(
            request,
            "event.html",
            f"Event {event.id}",
            form=form,
            event=event,
            invitation=invitation,
            deliveries=deliveries,
        )

    def gather_deliveries(
        status: DeliveryStatus | None, subscription: str | None
    ) -> list[Delivery]:
        if status is not None:
            return list(
                store.list_deliveries(
                    status=status, subscription=subscription, limit=DELIVERIES_PAGE_SIZE
                )
            )
        failed = store.list_deliveries(
            status=DeliveryStatus.FAILED, subscription=subscription, limit=DELIVERIES_PAGE_SIZE
        )
        others = [
            delivery
            for delivery in store.list_deliveries(
                subscription=subscription, limit=DELIVERIES_PAGE_SIZE + len(failed)
            )
            if delivery.status is not DeliveryStatus.FAILED
        ]
        return [*failed, *others][:DELIVERIES_PAGE_SIZE]

    async def deliveries(request: Request, session: Session) -> Response:
        status = _status(request.query_params.get("status"))
        subscription = request.query_params.get("subscription") or None
        found = await run_in_threadpool(gather_deliveries, status, subscription)
        return _page(
            request,
            "deliveries.html",
            "Deliveries",
            form=form_of(request, session),
            deliveries=found,
            status=status,
            subscription=subscription,
            subscriptions=sorted({s.name for s in subscriptions} | {d.subscription for d in found}),
            limit=DELIVERIES_PAGE_SIZE,
        )

    async def replay(request: Request, session: Session, fields: dict[str, str]) -> Response:
        # The same operator code path as `isograd-relay replay` (worker/replay.py).
        outcome = await run_in_threadpool(
            lambda: replay_delivery(
                request.path_params["delivery_id"], store=store, enqueuer=enqueuer, now=clock()
            )
        )
        next_path = _safe_next(fields.get("next"))
        return _redirect(with_query(next_path, notice=outcome.outcome.value))

    def unknown_subscription(request: Request, session: Session) -> Response:
        form = form_of(request, session)
        return _page(
            request, "not_found.html", "Not found", form=form, what="subscription", status_code=404
        )

    def switch(enabled: bool) -> Callable[[Request, Session, dict[str, str]], Awaitable[Response]]:
        # The same operation as the API's and the CLI's enable/disable.
        async def endpoint(request: Request, session: Session, fields: dict[str, str]) -> Response:
            name = request.path_params["name"]
            try:
                await run_in_threadpool(
                    lambda: set_subscription_enabled(
                        name, enabled, configured=subscriptions, store=store, now=clock()
                    )
                )
            except UnknownSubscriptionError:
                return unknown_subscription(request, session)
            notice = "enabled" if enabled else "disabled"
            return _redirect(with_query(_safe_next(fields.get("next")), notice=notice))

        return endpoint

    async def bulk_replay(request: Request, session: Session, fields: dict[str, str]) -> Response:
        name = request.path_params["name"]
        if name not in {s.name for s in subscriptions}:
            return unknown_subscription(request, session)
        since, until = _moment(fields.get("from")), _moment(fields.get("until"))
        next_path = _safe_next(fields.get("next"))
        if since is False or until is False:
            return _redirect(with_query(next_path, notice="bad_range"))
        filters = DeliveryFilter(subscription=name, created_from=since, created_until=until)
        # The same operation as `isograd-relay replay --subscription S --since T --until T`.
        done = await run_in_threadpool(
            lambda: replay_matching(filters, store=store, enqueuer=enqueuer, now=clock())
        )
        log.info("dashboard_bulk_replay", subscription=name, requeued=done.requeued)
        return _redirect(
            with_query(next_path, notice="bulk", requeued=str(done.requeued), subscription=name)
        )

    def gather_invitations(
        status: InvitationStatus | None, cursor: str | None
    ) -> Listing[Invitation]:
        try:
            return store.list_invitations(
                InvitationFilter(status=status), limit=INVITATIONS_PAGE_SIZE, cursor=cursor
            )
        except InvalidCursorError:
            return Listing([])

    async def invitations(request: Request, session: Session) -> Response:
        raw = request.query_params.get("status", InvitationStatus.PENDING.value)
        status = _invitation_status(raw)
        found = await run_in_threadpool(
            gather_invitations, status, request.query_params.get("after") or None
        )
        return _page(
            request,
            "invitations.html",
            "Invitations",
            form=form_of(request, session),
            invitations=found.items,
            status=status,
            later=found.next_cursor,
            now=clock(),
        )

    def gather_search(term: str) -> list[tuple[Invitation, Event | None]]:
        found = store.find_invitations(term, limit=SEARCH_LIMIT)
        return [
            (
                invitation,
                store.get_event_by_pla_tst_id(invitation.pla_tst_id)
                if invitation.pla_tst_id is not None
                else None,
            )
            for invitation in found
        ]

    async def search(request: Request, session: Session) -> Response:
        term = request.query_params.get("q", "").strip()[:200]
        found = await run_in_threadpool(gather_search, term) if term else []
        return _page(
            request,
            "search.html",
            "Search",
            form=form_of(request, session),
            term=term,
            found=found,
            limit=SEARCH_LIMIT,
            now=clock(),
        )

    routes = [
        Route("/", signed_in(overview), methods=["GET"]),
        Route("/events", signed_in(events), methods=["GET"]),
        Route("/events/{event_id}", signed_in(event), methods=["GET"]),
        Route("/deliveries", signed_in(deliveries), methods=["GET"]),
        Route("/deliveries/{delivery_id}/replay", signed_in(posted(replay)), methods=["POST"]),
        Route("/invitations", signed_in(invitations), methods=["GET"]),
        Route("/search", signed_in(search), methods=["GET"]),
        Route("/subscriptions/{name}/enable", signed_in(posted(switch(True))), methods=["POST"]),
        Route("/subscriptions/{name}/disable", signed_in(posted(switch(False))), methods=["POST"]),
        Route("/subscriptions/{name}/replay", signed_in(posted(bulk_replay)), methods=["POST"]),
        Route("/login", login_form, methods=["GET"]),
        Route("/login", login, methods=["POST"]),
        Route("/logout", signed_in(posted(logout)), methods=["POST"]),
    ]
    return [Mount(ROOT, routes=routes)]


def _subscription_rows(
    configured: Sequence[Subscription], states: Sequence[SubscriptionState]
) -> list[SubscriptionRow]:
    by_name = {state.name: state for state in states}
    rows = [
        SubscriptionRow(s.name, s.target.describe(), by_name.get(s.name, SubscriptionState(s.name)))
        for s in configured
    ]
    names = {s.name for s in configured}
    rows += [SubscriptionRow(s.name, None, s) for s in states if s.name not in names]
    return rows


async def _form(request: Request) -> dict[str, str]:
    """An urlencoded form body, first value of each field (no python-multipart needed)."""
    body = await request.body()
    try:
        parsed = parse_qs(body.decode(), keep_blank_values=True, max_num_fields=20)
    except (UnicodeDecodeError, ValueError):
        return {}
    return {key: values[0] for key, values in parsed.items()}


def _here(request: Request) -> str:
    query = request.url.query
    return request.url.path + (f"?{query}" if query else "")


def _safe_next(value: str | None) -> str:
    """A dashboard path to go back to; anything else (another site, `//host`) → the overview."""
    default = path("")
    if not value or "\\" in value or any(ord(c) < 0x20 for c in value):
        return default
    parts = urlsplit(value)
    if parts.scheme or parts.netloc or not parts.path.startswith(ROOT + "/"):
        return default
    return value


def _status(value: str | None) -> DeliveryStatus | None:
    """The status filter; an unknown one shows every delivery rather than an error page."""
    try:
        return DeliveryStatus(value) if value else None
    except ValueError:
        return None


def _invitation_status(value: str) -> InvitationStatus | None:
    """The status filter; "" or an unknown one shows every invitation."""
    try:
        return InvitationStatus(value) if value else None
    except ValueError:
        return None


def _moment(value: str | None) -> datetime | Literal[False] | None:
    """A form's `datetime-local` value read as UTC (the page says so); None when blank, False
    when it is not a date and time."""
    if not value or not value.strip():
        return None
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        return False
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _notice(request: Request) -> str | None:
    notice = request.query_params.get("notice", "")
    if notice == "bulk":
        # Only a number and a subscription name are echoed, and the page escapes both.
        count = request.query_params.get("requeued", "")
        name = request.query_params.get("subscription", "")
        if count.isdigit():
            return f"{count} failed deliveries of {name} replayed: they are being sent again."
        return None
    return NOTICES.get(notice)


def _page(
    request: Request,
    template: str,
    title: str,
    *,
    form: Form | None = None,
    status_code: int = 200,
    **context: object,
) -> Response:
    """A page of `templates/`: every page gets its title, the form pieces and the notice."""
    values = {"title": title, "form": form, "notice": _notice(request), **context}
    return templates.TemplateResponse(
        request, template, values, status_code=status_code, headers=SECURITY_HEADERS
    )


def _login_page(
    request: Request,
    *,
    next_path: str,
    error: str | None = None,
    closed: bool = False,
    status_code: int = 200,
) -> Response:
    title = "Dashboard closed" if closed else "Sign in"
    return _page(
        request,
        "login.html",
        title,
        next_path=next_path,
        error=error,
        closed=closed,
        status_code=status_code,
    )


def _redirect(url: str) -> RedirectResponse:
    return RedirectResponse(url, 303, headers=SECURITY_HEADERS)
