"""Bearer-token authentication of the admin API, throttled per client address."""

from __future__ import annotations

import hmac

import structlog
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from webhooks.throttle import FailureThrottle

log = structlog.get_logger(__name__)

_SCHEME = "bearer"

# Failed authentications per client address and minute before the address must wait: plenty for
# an operator's typo, hopeless for guessing (the token has >= 40 bits, see worker.token_strength).
AUTH_FAILURES_PER_ADDRESS = 10
AUTH_FAILURES_WINDOW_SECONDS = 60.0


def bearer_token_matches(authorization: str | None, expected: str | None) -> bool:
    """True when `authorization` is `Bearer <expected>`; False when no token is configured.

    The comparison is constant-time so the token cannot be guessed byte by byte from timings.
    """
    if not expected or not authorization:
        return False
    scheme, _, credentials = authorization.partition(" ")
    if scheme.lower() != _SCHEME:
        return False
    return hmac.compare_digest(credentials.strip().encode(), expected.encode())


def client_address(scope: Scope) -> str:
    """The client's address as the server saw it (behind a proxy, the proxy's unless uvicorn
    trusts its X-Forwarded-For: `--forwarded-allow-ips`)."""
    client = scope.get("client")
    return str(client[0]) if client else "unknown"


class BearerAuthMiddleware:
    """Refuses every HTTP request without the admin bearer token with 401 (before routing).

    Failures are logged (address and path, never what was sent) and counted per client address;
    past `throttle`'s limit the address is answered 429 with Retry-After, before its token is
    even compared, until its failures age out of the window.
    """

    def __init__(
        self, app: ASGIApp, *, token: str | None, throttle: FailureThrottle | None = None
    ) -> None:
        self.app = app
        self.token = token
        self.throttle = throttle or FailureThrottle(
            limit=AUTH_FAILURES_PER_ADDRESS, window_seconds=AUTH_FAILURES_WINDOW_SECONDS
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            address = client_address(scope)
            wait = self.throttle.retry_after(address)
            if wait is not None:
                log.warning("api_auth_throttled", client=address, retry_after=wait)
                raise HTTPException(
                    429, "too many failed authentications; retry later", {"Retry-After": str(wait)}
                )
            authorization = Headers(scope=scope).get("authorization")
            if not bearer_token_matches(authorization, self.token):
                self.throttle.record_failure(address)
                log.warning(
                    "api_auth_failed",
                    client=address,
                    path=scope.get("path", ""),
                    reason="no token configured"
                    if not self.token
                    else ("missing" if not authorization else "invalid"),
                )
                raise HTTPException(
                    401, "missing or invalid bearer token", {"WWW-Authenticate": "Bearer"}
                )
        await self.app(scope, receive, send)
