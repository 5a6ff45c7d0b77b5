"""The Prometheus scrape endpoint of the web process."""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from webhooks.auth import bearer_token_matches
from worker.metrics import CONTENT_TYPE, RelayMetrics


def metrics_routes(metrics: RelayMetrics, *, token: str | None = None) -> list[BaseRoute]:
    """`GET /metrics` in the Prometheus text format; with `token`, only for `Bearer <token>`.

    Collection reads the database and the broker (cached a few seconds), so it runs in a thread,
    never on the event loop.
    """

    async def scrape(request: Request) -> Response:
        if token is not None and not bearer_token_matches(
            request.headers.get("authorization"), token
        ):
            raise HTTPException(
                401, "missing or invalid bearer token", {"WWW-Authenticate": "Bearer"}
            )
        body = await run_in_threadpool(metrics.exposition)
        return Response(body, media_type=CONTENT_TYPE)

    return [Route("/metrics", scrape, methods=["GET"])]
