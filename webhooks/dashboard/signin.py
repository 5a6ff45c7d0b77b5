"""Dashboard sign-in: the ADMIN_TOKEN form, the session cookie, throttled wrong tokens, and the
guards every other route goes through (a session; for a POST, its CSRF token too)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime

import structlog
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from webhooks.dashboard.responses import here, page, read_form, redirect, safe_next
from webhooks.dashboard.sessions import (
    COOKIE_NAME,
    SESSION_LIFETIME,
    Session,
    csrf_matches,
    new_session_cookie,
    read_session,
    token_matches,
)
from webhooks.dashboard.views import ROOT, path, with_query
from webhooks.throttle import FailureThrottle

log = structlog.get_logger(__name__)

# Wrong admin tokens a client address may send in SIGN_IN_WINDOW_SECONDS before it must wait.
SIGN_IN_FAILURES = 5
SIGN_IN_WINDOW_SECONDS = 60.0

Page = Callable[[Request, Session], Awaitable[Response]]
Action = Callable[[Request, Session, dict[str, str]], Awaitable[Response]]


class SignIn:
    """`secure_cookie` (PUBLIC_URL is https) marks the session cookie Secure even when the request
    reached us as plain HTTP, as it does from a TLS-terminating proxy whose forwarded headers
    uvicorn does not trust; otherwise only https requests get a Secure cookie. `throttle` counts
    wrong tokens per client address (a new one if omitted)."""

    def __init__(
        self,
        *,
        admin_token: str | None,
        clock: Callable[[], datetime],
        secure_cookie: bool = False,
        throttle: FailureThrottle | None = None,
    ) -> None:
        self._admin_token = admin_token
        self._clock = clock
        self._secure_cookie = secure_cookie
        self._throttle = throttle or FailureThrottle(
            limit=SIGN_IN_FAILURES, window_seconds=SIGN_IN_WINDOW_SECONDS
        )

    def routes(self) -> list[Route]:
        return [
            Route("/login", self.login_form, methods=["GET"]),
            Route("/login", self.login, methods=["POST"]),
            Route("/logout", self.signed_in(self.posted(self.logout)), methods=["POST"]),
        ]

    def signed_in(self, page_of: Page) -> Callable[[Request], Awaitable[Response]]:
        """An endpoint serving `page_of` to a signed-in browser; others go to the form."""

        async def endpoint(request: Request) -> Response:
            cookie = request.cookies.get(COOKIE_NAME)
            session = read_session(cookie, self._admin_token, self._clock())
            if session is None:
                if request.method in ("GET", "HEAD"):
                    return redirect(with_query(path("login"), next=here(request)))
                return login_page(request, next_path=path(""), status_code=401)
            return await page_of(request, session)

        return endpoint

    def posted(self, action: Action) -> Page:
        """`action` behind the session's CSRF token (403 without it)."""

        async def checked(request: Request, session: Session) -> Response:
            fields = await read_form(request)
            if not csrf_matches(session, fields.get("csrf_token")):
                log.warning("dashboard_csrf_rejected", path=request.url.path)
                return page(request, "forbidden.html", "Forbidden", status_code=403)
            return await action(request, session, fields)

        return checked

    async def login_form(self, request: Request) -> Response:
        next_path = safe_next(request.query_params.get("next"))
        return login_page(request, next_path=next_path, closed=not self._admin_token)

    async def login(self, request: Request) -> Response:
        fields = await read_form(request)
        next_path = safe_next(fields.get("next"))
        closed = not self._admin_token
        address = request.client.host if request.client else "unknown"
        # Checked before the token, so a blocked address learns nothing from more guesses.
        wait = self._throttle.retry_after(address)
        if wait is not None:
            log.warning("dashboard_login_throttled", retry_after=wait)
            error = f"Too many wrong tokens from your address: try again in {wait} s."
            refused = login_page(
                request, next_path=next_path, error=error, closed=closed, status_code=429
            )
            refused.headers["Retry-After"] = str(wait)
            return refused
        if not self._admin_token or not token_matches(fields.get("token", ""), self._admin_token):
            self._throttle.record_failure(address)
            log.warning("dashboard_login_failed")
            return login_page(
                request, next_path=next_path, error="Wrong token.", closed=closed, status_code=401
            )
        self._throttle.clear(address)
        log.info("dashboard_login")
        response = redirect(next_path)
        response.set_cookie(
            COOKIE_NAME,
            new_session_cookie(self._admin_token, self._clock()),
            max_age=int(SESSION_LIFETIME.total_seconds()),
            path=ROOT,
            secure=self._secure_cookie or request.url.scheme == "https",
            httponly=True,
            samesite="strict",
        )
        return response

    async def logout(self, request: Request, session: Session, fields: dict[str, str]) -> Response:
        response = redirect(path("login"))
        response.delete_cookie(COOKIE_NAME, path=ROOT, httponly=True, samesite="strict")
        return response


def login_page(
    request: Request,
    *,
    next_path: str,
    error: str | None = None,
    closed: bool = False,
    status_code: int = 200,
) -> Response:
    title = "Dashboard closed" if closed else "Sign in"
    return page(
        request,
        "login.html",
        title,
        next_path=next_path,
        error=error,
        closed=closed,
        status_code=status_code,
    )
