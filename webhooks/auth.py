"""Bearer-token authentication of the admin API."""

from __future__ import annotations

import hmac

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

_SCHEME = "bearer"


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


class BearerAuthMiddleware:
    """Refuses every HTTP request without the admin bearer token with 401 (before routing)."""

    def __init__(self, app: ASGIApp, *, token: str | None) -> None:
        self.app = app
        self.token = token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not bearer_token_matches(
            Headers(scope=scope).get("authorization"), self.token
        ):
            raise HTTPException(
                401, "missing or invalid bearer token", {"WWW-Authenticate": "Bearer"}
            )
        await self.app(scope, receive, send)
