"""The web application: routes, the request body limit and the one mapping of errors to HTTP."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import structlog
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute

from webhooks.api import ApiStore, DeliveryEnqueuer, InvalidParameterError, api_routes
from webhooks.callbacks import CallbackStore, CompletionEnqueuer, callback_routes
from webhooks.health import health_routes
from worker.errors import (
    CallbackRejectedError,
    ConfigurationError,
    IsogradApiError,
    IsogradProtocolError,
    RetryableError,
)
from worker.invitations import InvalidInvitationError, InvitationClient
from worker.isograd.errors import IsogradAuthError
from worker.runtime import Clock
from worker.tokens import CallbackKey

log = structlog.get_logger(__name__)

MAX_BODY_BYTES = 64 * 1024
API_PREFIX = "/api"


def _wants_json(request: Request) -> bool:
    return request.url.path == API_PREFIX or request.url.path.startswith(API_PREFIX + "/")


def _error(request: Request, status: int, error: str, message: str, **extra: Any) -> Response:
    headers = extra.pop("headers", None)
    if _wants_json(request):
        return JSONResponse({"error": error, "message": message, **extra}, status, headers)
    return PlainTextResponse(message, status, headers)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    error = {401: "unauthorized", 404: "not_found", 405: "method_not_allowed"}.get(
        exc.status_code, "content_too_large" if exc.status_code == 413 else "http_error"
    )
    return _error(request, exc.status_code, error, exc.detail, headers=exc.headers)


async def _callback_rejected(request: Request, exc: Exception) -> Response:
    # The reason is logged by the callback endpoint, never echoed to the caller.
    return PlainTextResponse("Not Found", 404)


async def _invalid_request(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, InvalidInvitationError | InvalidParameterError)
    return JSONResponse({"error": "invalid_request", "errors": exc.errors}, 422)


async def _isograd_api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, IsogradApiError)
    log.warning("isograd_error", isograd_code=exc.code, action=exc.action)
    return _error(
        request, 502, "isograd_error", exc.error_message, isograd_code=exc.code, action=exc.action
    )


async def _isograd_protocol_error(request: Request, exc: Exception) -> Response:
    log.warning("isograd_protocol_error", error=str(exc))
    return _error(request, 502, "isograd_protocol_error", "Isograd answered an unexpected response")


async def _isograd_auth_error(request: Request, exc: Exception) -> Response:
    log.error("isograd_auth_error", error=str(exc))
    return _error(request, 502, "isograd_auth_error", "Isograd refused the relay's credentials")


async def _retryable(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RetryableError)
    log.warning("dependency_unavailable", error_type=type(exc).__name__, error=str(exc))
    headers = {}
    if exc.retry_after is not None:
        headers["Retry-After"] = str(max(1, round(exc.retry_after)))
    return _error(
        request, 503, "unavailable", "a dependency is unavailable, retry later", headers=headers
    )


async def _configuration_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ConfigurationError)
    log.error("configuration_error", problems=exc.problems)
    return _error(request, 500, "configuration_error", "the relay is misconfigured")


async def _internal_error(request: Request, exc: Exception) -> Response:
    log.exception("unhandled_error", path=request.url.path)
    return _error(request, 500, "internal_error", "Internal Server Error")


# The one place errors become HTTP statuses (STYLE "Errors"). Lookup follows the MRO, so the
# IsogradApiError subclasses (one per error code) all land on the 502 handler.
EXCEPTION_HANDLERS: dict[Any, Any] = {
    HTTPException: _http_error,
    CallbackRejectedError: _callback_rejected,
    InvalidInvitationError: _invalid_request,
    InvalidParameterError: _invalid_request,
    IsogradApiError: _isograd_api_error,
    IsogradProtocolError: _isograd_protocol_error,
    IsogradAuthError: _isograd_auth_error,
    RetryableError: _retryable,
    ConfigurationError: _configuration_error,
    Exception: _internal_error,
}


class EdgeStore(ApiStore, CallbackStore, Protocol):
    def ping(self) -> None: ...


class EdgeEnqueuer(CompletionEnqueuer, DeliveryEnqueuer, Protocol): ...


class EdgeRuntime(Protocol):
    """What the web process needs from worker.runtime.Runtime."""

    @property
    def store(self) -> EdgeStore: ...

    @property
    def isograd(self) -> InvitationClient: ...

    @property
    def enqueuer(self) -> EdgeEnqueuer: ...

    @property
    def clock(self) -> Clock: ...

    def ping_broker(self) -> None: ...


class EdgeSettings(Protocol):
    @property
    def callback_keys(self) -> Sequence[CallbackKey]: ...

    @property
    def admin_token(self) -> str | None: ...

    @property
    def public_url(self) -> str: ...


def create_app(settings: EdgeSettings, *, runtime: EdgeRuntime) -> Starlette:
    """The ASGI application of the `web` process."""
    routes: list[BaseRoute] = [
        *health_routes({"database": runtime.store.ping, "broker": runtime.ping_broker}),
        *callback_routes(
            keys=settings.callback_keys,
            store=runtime.store,
            enqueuer=runtime.enqueuer,
            clock=runtime.clock.now,
        ),
        *api_routes(
            admin_token=settings.admin_token,
            store=runtime.store,
            client=runtime.isograd,
            enqueuer=runtime.enqueuer,
            callback_keys=settings.callback_keys,
            public_url=settings.public_url,
            clock=runtime.clock.now,
        ),
    ]
    return Starlette(
        routes=routes, exception_handlers=EXCEPTION_HANDLERS, max_body_size=MAX_BODY_BYTES
    )
