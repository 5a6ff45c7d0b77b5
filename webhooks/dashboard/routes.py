"""Dashboard routes: the `/dashboard` mount, every page and action behind a session.

    GET  /dashboard/                              overview: counts, subscriptions (state, chart),
                                                  recent failures
    GET  /dashboard/invitations?status=pending&after=<cursor>   invitations and their age
    GET  /dashboard/events?before=<cursor>        events, newest first, 50 a page
    GET  /dashboard/events/{event_id}             payload, deliveries and their attempts
    GET  /dashboard/deliveries?status=&subscription=
    GET  /dashboard/search?q=<email, pla_tst_id, invitation or event id>
    POST /dashboard/deliveries/{delivery_id}/replay
    POST /dashboard/subscriptions/{name}/replay   its failed deliveries created in [from, until)
    POST /dashboard/subscriptions/{name}/enable, POST /dashboard/subscriptions/{name}/disable
    GET  /dashboard/login, POST /dashboard/login, POST /dashboard/logout

Sign-in is a form asking for ADMIN_TOKEN; it sets an HttpOnly, SameSite=Strict cookie (Secure
over https) holding a MAC derived from the token, never the token (sessions.py). Every POST
needs the session's CSRF token. Without ADMIN_TOKEN the dashboard is closed. Wrong tokens are
throttled per client address (signin.py: a few a minute, then 429 until the minute has passed).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Protocol

from starlette.routing import BaseRoute, Mount, Route

from webhooks.dashboard.actions import Actions, ActionsStore
from webhooks.dashboard.pages import NAMES_WAIT_SECONDS, Pages, PagesStore, TestNamer
from webhooks.dashboard.signin import SignIn
from webhooks.dashboard.views import ROOT
from webhooks.throttle import FailureThrottle
from worker.replay import DeliveryEnqueuer
from worker.subscriptions import Subscription


class DashboardStore(PagesStore, ActionsStore, Protocol):
    """What the dashboard reads and changes (SqlStore is one)."""


def dashboard_routes(
    *,
    admin_token: str | None,
    store: DashboardStore,
    enqueuer: DeliveryEnqueuer | None,
    subscriptions: Sequence[Subscription],
    clock: Callable[[], datetime],
    secure_cookie: bool = False,
    sign_in_throttle: FailureThrottle | None = None,
    catalogue: TestNamer | None = None,
    names_wait: float = NAMES_WAIT_SECONDS,
) -> list[BaseRoute]:
    """The `/dashboard` mount. `enqueuer` sends replayed deliveries (None: the sweeper will);
    `secure_cookie` and `sign_in_throttle` are SignIn's (signin.py); `catalogue` names the
    tests shown (act 14, cached; None: tests are shown by tst_frm_id), waited for `names_wait`
    seconds at most."""
    sign_in = SignIn(
        admin_token=admin_token,
        clock=clock,
        secure_cookie=secure_cookie,
        throttle=sign_in_throttle,
    )
    pages = Pages(
        store=store,
        subscriptions=subscriptions,
        clock=clock,
        catalogue=catalogue,
        names_wait=names_wait,
    )
    actions = Actions(store=store, enqueuer=enqueuer, subscriptions=subscriptions, clock=clock)
    signed_in, posted = sign_in.signed_in, sign_in.posted
    routes = [
        Route("/", signed_in(pages.overview), methods=["GET"]),
        Route("/invitations", signed_in(pages.invitations), methods=["GET"]),
        Route("/events", signed_in(pages.events), methods=["GET"]),
        Route("/events/{event_id}", signed_in(pages.event), methods=["GET"]),
        Route("/deliveries", signed_in(pages.deliveries), methods=["GET"]),
        Route("/search", signed_in(pages.search), methods=["GET"]),
        Route(
            "/deliveries/{delivery_id}/replay",
            signed_in(posted(actions.replay)),
            methods=["POST"],
        ),
        Route(
            "/subscriptions/{name}/replay",
            signed_in(posted(actions.replay_failed)),
            methods=["POST"],
        ),
        Route(
            "/subscriptions/{name}/enable",
            signed_in(posted(actions.switch(enabled=True))),
            methods=["POST"],
        ),
        Route(
            "/subscriptions/{name}/disable",
            signed_in(posted(actions.switch(enabled=False))),
            methods=["POST"],
        ),
        *sign_in.routes(),
    ]
    return [Mount(ROOT, routes=routes)]
