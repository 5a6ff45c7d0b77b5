"""The web application: routes, the request body limit and the one mapping of errors to HTTP."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from datetime import timedelta
from functools import partial
from typing import Any

import structlog
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute

from webhooks.api import InvalidParameterError, api_routes, openapi_routes
from webhooks.callbacks import callback_routes
from webhooks.dashboard import dashboard_routes
from webhooks.health import Probe, health_routes
from webhooks.integrations import Collaborators, integration_routes
from webhooks.metrics import metrics_routes
from webhooks.receipts import ReceiptWriter
from worker.broker import broker_probe, make_broker, queue_depths
from worker.errors import (
    CallbackRejectedError,
    ConfigurationError,
    IsogradApiError,
    IsogradProtocolError,
    RetryableError,
)
from worker.isograd.errors import IsogradAuthError
from worker.jobs.actors import DramatiqEnqueuer, declare_actors
from worker.metrics import RelayMetrics
from worker.queries import InvalidQueryError
from worker.requests import InvalidRequestError
from worker.runtime import Runtime
from worker.settings import Settings

log = structlog.get_logger(__name__)

MAX_BODY_BYTES = 64 * 1024
API_PREFIX = "/api"
CALLBACK_PREFIX = "/callbacks/isograd/"


def _loggable_path(request: Request) -> str:
    # A callback path holds its token, a credential (worker.logs): never logged.
    path = request.url.path
    return CALLBACK_PREFIX + "{token}" if path.startswith(CALLBACK_PREFIX) else path


def _wants_json(request: Request) -> bool:
    return request.url.path == API_PREFIX or request.url.path.startswith(API_PREFIX + "/")


def _error(request: Request, status: int, error: str, message: str, **extra: Any) -> Response:
    headers = extra.pop("headers", None)
    if _wants_json(request):
        return JSONResponse({"error": error, "message": message, **extra}, status, headers)
    return PlainTextResponse(message, status, headers)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    error = {
        401: "unauthorized",
        404: "not_found",
        405: "method_not_allowed",
        409: "conflict",
        429: "too_many_requests",
    }.get(exc.status_code, "content_too_large" if exc.status_code == 413 else "http_error")
    return _error(request, exc.status_code, error, exc.detail, headers=exc.headers)


async def _callback_rejected(request: Request, exc: Exception) -> Response:
    # The reason is logged by the callback endpoint, never echoed to the caller.
    return PlainTextResponse("Not Found", 404)


async def _invalid_request(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, InvalidRequestError | InvalidParameterError | InvalidQueryError)
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
    log.exception("unhandled_error", path=_loggable_path(request))
    return _error(request, 500, "internal_error", "Internal Server Error")


# The one place errors become HTTP statuses (STYLE "Errors"). Lookup follows the MRO, so the
# IsogradApiError subclasses (one per error code) all land on the 502 handler.
EXCEPTION_HANDLERS: dict[Any, Any] = {
    HTTPException: _http_error,
    CallbackRejectedError: _callback_rejected,
    InvalidRequestError: _invalid_request,
    InvalidParameterError: _invalid_request,
    InvalidQueryError: _invalid_request,
    IsogradApiError: _isograd_api_error,
    IsogradProtocolError: _isograd_protocol_error,
    IsogradAuthError: _isograd_auth_error,
    RetryableError: _retryable,
    ConfigurationError: _configuration_error,
    Exception: _internal_error,
}


def create_app(
    settings: Settings,
    *,
    runtime: Runtime | None = None,
    broker_ping: Probe | None = None,
    metrics: RelayMetrics | None = None,
) -> Starlette:
    """The ASGI application of the `web` process.

    With no `runtime`, one is built from `settings` on a broker for BROKER_URL (actors declared,
    messages sent through DramatiqEnqueuer) and closed at shutdown. `broker_ping` is the
    readiness probe of the broker; omitted with a given runtime, /readyz checks the database only.
    `metrics` (one per process; a new one if omitted) is served on /metrics, with the database's
    gauges and, when the broker is built here, its queue depths.
    """
    owned: list[Callable[[], object]] = []
    metrics = metrics if metrics is not None else RelayMetrics()
    depths: Callable[[], Mapping[str, int]] | None = None
    if runtime is None:
        broker = make_broker(settings.broker_url)
        runtime = Runtime.from_settings(settings, DramatiqEnqueuer(declare_actors(broker)))
        owned = [runtime.close, broker.close]
        broker_ping = broker_ping or broker_probe(broker)
        depths = partial(queue_depths, broker)
    metrics.watch_state(runtime.store, queue_depths=depths)
    probes: dict[str, Probe] = {"database": runtime.store.ping}
    if broker_ping is not None:
        probes["broker"] = broker_ping
    api = api_routes(
        admin_token=settings.admin_token,
        store=runtime.store,
        client=runtime.client,
        enqueuer=runtime.enqueuer,
        callback_keys=settings.callback_keys,
        public_url=settings.public_url,
        clock=runtime.clock,
        first_check_after=timedelta(seconds=settings.reconcile_first_check_seconds),
        subscriptions=runtime.subscriptions,
        anonymizer=runtime.client,
    )
    routes: list[BaseRoute] = [
        *health_routes(probes),
        *callback_routes(
            keys=settings.callback_keys,
            writer=ReceiptWriter(store=runtime.store, enqueuer=runtime.enqueuer, observer=metrics),
            clock=runtime.clock,
            metrics=metrics,
        ),
        # Before the /api mount, whose bearer check would otherwise refuse it.
        *openapi_routes(api),
        *api,
        *dashboard_routes(
            admin_token=settings.admin_token,
            store=runtime.store,
            enqueuer=runtime.enqueuer,
            subscriptions=runtime.subscriptions,
            clock=runtime.clock,
            secure_cookie=settings.public_url.lower().startswith("https://"),
            catalogue=runtime.catalogue,
        ),
        *metrics_routes(metrics, token=settings.metrics_token),
        *integration_routes(
            Collaborators(
                subscriptions=runtime.subscriptions,
                store=runtime.store,
                client=runtime.client,
                http=runtime.http,
                callback_keys=settings.callback_keys,
                public_url=settings.public_url,
                clock=runtime.clock,
                first_check_after=timedelta(seconds=settings.reconcile_first_check_seconds),
            )
        ),
    ]

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            for close in owned:
                close()

    return Starlette(
        routes=routes,
        exception_handlers=EXCEPTION_HANDLERS,
        max_body_size=MAX_BODY_BYTES,
        lifespan=lifespan,
    )
