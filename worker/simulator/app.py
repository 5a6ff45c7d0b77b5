"""The simulator's ASGI app: Isograd's token endpoint and /api/usage, plus the control routes."""

from __future__ import annotations

import asyncio
import base64
import binascii
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping
from urllib.parse import parse_qsl, unquote

import httpx2
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from worker.simulator import administration, assessments, candidates, reports
from worker.simulator.answers import Handler, Html, Redirect
from worker.simulator.auth import TokenCheck, TokenStore
from worker.simulator.callbacks import CallbackSender
from worker.simulator.clock import SimulatedClock
from worker.simulator.control import control_routes
from worker.simulator.counters import SimulatorCounters
from worker.simulator.failures import ACT_ID_NOT_VALID, ActionError, missing_property
from worker.simulator.faults import FaultInjector
from worker.simulator.pages import page_routes
from worker.simulator.params import Params
from worker.simulator.runtime import Simulator
from worker.simulator.state import SimulatorConfig, SimulatorState

ACTIONS: Mapping[int, Handler] = {
    1: candidates.act_create_candidate,
    2: assessments.act_add_test,
    4: reports.act_result,
    5: reports.act_result_details,
    6: reports.act_pdf_report,
    8: assessments.act_create_candidate_and_add_test,
    9: assessments.act_add_new_test,
    10: assessments.act_test_status,
    11: administration.act_create_session,
    12: candidates.act_anonymize_candidate,
    13: administration.act_login_admin,
    14: administration.act_list_tests,
    15: administration.act_list_credits,
    16: assessments.act_add_proctoring,
    17: assessments.act_remove_proctoring,
    23: assessments.act_delete_test,
    24: candidates.act_delete_candidate,
    38: candidates.act_login_candidate,
    42: administration.act_send_registration_email,
    51: candidates.act_update_candidate,
    58: assessments.act_add_confirmation_test,
}

_FORM = "application/x-www-form-urlencoded"


async def _form(request: Request) -> dict[str, str]:
    """Query parameters overlaid with the urlencoded body (what PHP's $_REQUEST would give).

    Other bodies (JSON, multipart) are not read: PHP's $_POST ignores JSON, so such a call lacks
    act_id, as on the platform; multipart is not modelled.
    """
    values = dict(request.query_params)
    if request.headers.get("content-type", "").split(";")[0].strip().lower() == _FORM:
        body = (await request.body()).decode("utf-8", errors="replace")
        values.update(parse_qsl(body, keep_blank_values=True))
    return values


async def _disturb(simulator: Simulator) -> Response | None:
    """Apply the latency and 5xx faults; a Response means "answer this instead"."""
    faults = simulator.faults.faults
    if faults.latency_ms:
        await asyncio.sleep(faults.latency_ms / 1000)
    if simulator.faults.should_fail():
        simulator.counters.add("injected_errors")
        # What a load balancer in front of the platform answers: HTML, not the API's JSON.
        return HTMLResponse(
            f"<html><body><h1>{faults.error_status} Service Unavailable</h1></body></html>",
            status_code=faults.error_status,
        )
    return None


def _basic_credentials(authorization: str | None) -> tuple[str | None, str | None]:
    """client_id/client_secret from HTTP Basic auth (RFC 6749 §2.3.1 allows either place)."""
    if not authorization or not authorization.lower().startswith("basic "):
        return None, None
    try:
        decoded = base64.b64decode(authorization[6:].strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None, None
    client_id, _, client_secret = decoded.partition(":")
    return unquote(client_id), unquote(client_secret)


def _oauth_error(error: str, status_code: int) -> JSONResponse:
    return JSONResponse({"error": error}, status_code=status_code)


def _token_endpoint(simulator: Simulator) -> Callable[[Request], Awaitable[Response]]:
    config = simulator.config

    async def token(request: Request) -> Response:
        simulator.counters.add("token_requests")
        disturbed = await _disturb(simulator)
        if disturbed is not None:
            return disturbed
        values = await _form(request)
        client_id, client_secret = _basic_credentials(request.headers.get("authorization"))
        client_id = values.get("client_id") or client_id
        client_secret = values.get("client_secret") or client_secret
        valid = (
            client_id is not None
            and client_secret is not None
            and secrets.compare_digest(client_id.encode(), config.client_id.encode())
            and secrets.compare_digest(client_secret.encode(), config.client_secret.encode())
        )
        if not valid:
            simulator.counters.add("token_rejections")
            return _oauth_error("invalid_client", 401)
        grant_type = values.get("grant_type")
        if not grant_type:
            return _oauth_error("invalid_request", 400)
        if grant_type != "client_credentials":
            return _oauth_error("unsupported_grant_type", 400)
        # The reference's URL spells it `scopes=usage`; `scope` is the RFC's name.
        scope = values.get("scopes") or values.get("scope")
        if scope is not None and scope != "usage":
            return _oauth_error("invalid_scope", 400)
        ttl = simulator.faults.faults.token_ttl_seconds
        access_token = simulator.tokens.issue(ttl)
        simulator.counters.add("tokens_issued")
        return JSONResponse(
            {"access_token": access_token, "expires_in": ttl, "token_type": "Bearer"},
            headers={"Cache-Control": "no-store"},
        )

    return token


def _unauthorized(check: TokenCheck) -> JSONResponse:
    # RFC 6750 §3: an expired or unknown token is "invalid_token"; no token, no error code.
    challenge = 'Bearer error="invalid_token"' if check is not TokenCheck.MISSING else "Bearer"
    return JSONResponse(
        {"message": "Unauthorized"}, status_code=401, headers={"WWW-Authenticate": challenge}
    )


def _run_action(simulator: Simulator, values: dict[str, str]) -> Response:
    params = Params(values)
    act = params.get("act_id")
    simulator.counters.add_call(act or "missing")
    try:
        if act is None:
            raise ActionError(missing_property("act_id"))
        handler = ACTIONS.get(int(act)) if act.isdigit() else None
        if handler is None:
            raise ActionError(ACT_ID_NOT_VALID)
        sub_com_id = params.integer("sub_com_id", missing_property("sub_com_id"))
        answer = handler(simulator.state, params, sub_com_id)
    except ActionError as exc:
        simulator.counters.add_error(exc.failure.code)
        return JSONResponse(exc.as_json())
    if isinstance(answer, Redirect):
        return RedirectResponse(answer.url, status_code=302)
    if isinstance(answer, Html):
        return HTMLResponse(answer.body)
    return JSONResponse(answer)


def _usage_endpoint(simulator: Simulator) -> Callable[[Request], Awaitable[Response]]:
    async def usage(request: Request) -> Response:
        disturbed = await _disturb(simulator)
        if disturbed is not None:
            return disturbed
        check = simulator.tokens.check(request.headers.get("authorization"))
        if check is not TokenCheck.VALID:
            simulator.counters.add("unauthorized")
            return _unauthorized(check)
        # In-memory work under a lock held for microseconds: fine on the event loop.
        return _run_action(simulator, await _form(request))

    return usage


def build_simulator(
    config: SimulatorConfig,
    *,
    clock: Callable[[], float] = time.time,
    callback_transport: httpx2.BaseTransport | None = None,
) -> Simulator:
    """The simulator's live parts, without the HTTP layer."""
    simulated_clock = SimulatedClock(clock)
    faults = FaultInjector(config.faults)
    counters = SimulatorCounters()
    return Simulator(
        config=config,
        clock=simulated_clock,
        state=SimulatorState(config, simulated_clock),
        tokens=TokenStore(simulated_clock),
        faults=faults,
        counters=counters,
        callbacks=CallbackSender(
            timeout_seconds=config.callback_timeout_seconds,
            faults=faults,
            counters=counters,
            clock=simulated_clock,
            transport=callback_transport,
        ),
    )


def create_simulator_app(
    config: SimulatorConfig,
    *,
    clock: Callable[[], float] = time.time,
    callback_transport: httpx2.BaseTransport | None = None,
) -> Starlette:
    """The Isograd simulator as an ASGI app (`app.state.simulator` is its `Simulator`).

    `clock` gives epoch seconds (the control API can advance it); `callback_transport` replaces
    the network for the completion callbacks.
    """
    simulator = build_simulator(config, clock=clock, callback_transport=callback_transport)
    routes = [
        Route("/oauth2/token", _token_endpoint(simulator), methods=["POST"]),
        Route("/api/usage", _usage_endpoint(simulator), methods=["POST"]),
        *control_routes(simulator),
        *page_routes(simulator),
    ]
    app = Starlette(routes=routes)
    app.state.simulator = simulator
    return app
