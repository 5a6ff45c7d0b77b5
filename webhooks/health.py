"""Liveness (/healthz) and readiness (/readyz) probes."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import structlog
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route

log = structlog.get_logger(__name__)

Probe = Callable[[], object]
"""Checks one dependency; returns when it answers, raises when it does not. Runs in a thread."""


def health_routes(probes: Mapping[str, Probe]) -> list[BaseRoute]:
    """`/healthz` answers while the process runs; `/readyz` also asks each of `probes`."""

    async def healthz(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> JSONResponse:
        checks: dict[str, str] = {}
        for name, probe in probes.items():
            try:
                await run_in_threadpool(probe)
            except Exception as exc:
                # The message may carry a DSN or host name; the type is enough to start looking.
                log.warning("readiness_check_failed", dependency=name, error=type(exc).__name__)
                checks[name] = "unavailable"
            else:
                checks[name] = "ok"
        ready = all(state == "ok" for state in checks.values())
        return JSONResponse(
            {"status": "ok" if ready else "unavailable", "checks": checks},
            status_code=200 if ready else 503,
        )

    return [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
    ]
